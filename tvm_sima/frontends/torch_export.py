"""PyTorch models into Relax: a ``torch.nn.Module``, a ``torch.export.ExportedProgram`` or a ``.pt2`` file.

torch is optional (``pip install tvm-sima[torch]``): this module is imported only when
:func:`tvm_sima.load_model` is given a torch object or a ``.pt2`` file, and nothing else in the
package imports torch.

* A module is put in eval mode and exported with ``torch.export.export(model, example_inputs)``:
  its shapes are the example inputs' (their batch is the model's). An ``ExportedProgram`` (or a
  ``.pt2`` file, ``torch.export.save``) with dynamic dimensions: a dynamic first (batch) dimension
  becomes 1 as for ONNX, any other is taken from ``input_shapes`` (``{input name: shape}``).
* The program is decomposed to core ATen (``run_decompositions``, as TVM's importer does) and every
  op is checked against TVM's ``from_exported_program`` first: all the unsupported ones are
  reported at once, each with its node and module path.
* Names: every binding gets the module's own name (:func:`node_names`), ``features.3.conv``
  rather than ``lv12``, through :mod:`tvm_sima.source_names` as the ONNX node names do.
* A PT2E-quantized model (``quantized_decomposed`` quantize / dequantize nodes, what torchao's
  ``convert_pt2e`` writes) imports as a QDQ graph of ``sima.quantize`` / ``sima.dequantize``
  (:mod:`tvm_sima.frontends.torch_qdq`) with its weights as constants: what ``tvm_sima.convert`` takes.
"""

from __future__ import annotations

import logging
import os
import pathlib
import sys
from collections import Counter
from typing import Any, Callable, Mapping, Optional, Sequence

from .. import source_names
from .input_shapes import Declared, Shapes, UnsupportedOpsError
from .input_shapes import input_shapes as _input_shapes
from .source_importers import record

__all__ = ["is_torch_model", "load_torch", "declared_inputs", "exported_program", "node_names", "module_path",
           "unsupported_ops"]

logger = logging.getLogger(__name__)

#: Nodes that name no op of their own: they take the name of the tensor they read (a tuple's item,
#: a tensor's quantization and its codes dequantized).
_PASS_THROUGH = ("getitem", "quantize_per_tensor", "dequantize_per_tensor", "quantize_per_channel",
                 "dequantize_per_channel")


def is_torch_model(model: Any) -> bool:
    """True for a ``torch.nn.Module`` or ``torch.export.ExportedProgram`` (without importing torch)."""
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(model, (torch.nn.Module, torch.export.ExportedProgram))


def _where(model: Any) -> str:
    """How errors name the model: its file, or its class."""
    if isinstance(model, (str, os.PathLike)):
        return os.fspath(model)
    return f"{type(model).__name__} ({type(model).__module__})"


def exported_program(model: Any, example_inputs: Optional[Sequence[Any]] = None) -> Any:
    """``model`` (a module, an ``ExportedProgram`` or a ``.pt2`` path) as an ``ExportedProgram``.

    Raises
    ------
    ValueError
        A module without ``example_inputs``; a ``.pt2`` file ``torch.export.load`` cannot read.
    """
    import torch
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers the quantized_decomposed ops PT2E files hold)

    if isinstance(model, (str, os.PathLike)):
        try:
            return torch.export.load(os.fspath(model))
        except Exception as err:  # noqa: BLE001 - torch's loader fails in many ways on a bad file
            from .errors import CorruptModelError

            raise CorruptModelError(model, f"torch.export.load: {type(err).__name__}: {err}") from None
    if isinstance(model, torch.export.ExportedProgram):
        return model
    if example_inputs is None:
        raise ValueError(f"{_where(model)}: a torch.nn.Module is exported with torch.export.export, which needs "
                         "example inputs: give load_model(model, example_inputs=(tensor, ...))")
    args = tuple(torch.from_numpy(x) if type(x).__module__ == "numpy" else x
                 for x in (example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)))
    if isinstance(model, torch.fx.GraphModule):  # an exported module (PT2E's) is in its eval form already
        with torch.no_grad():
            return torch.export.export(model, args)
    training = model.training
    model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, args)
    finally:
        model.train(training)  # the caller's module as it was


def module_path(node: Any) -> str:
    """The path of the innermost module a node was traced in (``features.3.conv``; ``""``: the model's forward)."""
    stack = node.meta.get("nn_module_stack") or {}
    return str(list(stack.values())[-1][0]) if stack else ""


def _op(node: Any) -> str:
    return str(getattr(node.target, "__name__", node.target))


def _user_inputs(ep: Any) -> list[str]:
    from torch.export.graph_signature import InputKind

    return [spec.arg.name for spec in ep.graph_signature.input_specs if spec.kind is InputKind.USER_INPUT]


def node_names(ep: Any) -> dict[Any, str]:
    """The source name of every node of ``ep`` computing on the inputs (weight-only nodes have none).

    A node is named after the innermost module it ran in when it is that module's only op
    (``features.3.conv``), else ``path/node`` (``_blocks.3/hardtanh_1``), or its node name in the
    model's own ``forward`` (``mean``). A tuple item, a quantize and a dequantize take the name of
    the tensor they read; the user inputs keep their names.
    """
    inputs = set(_user_inputs(ep))
    live: set = set()
    for node in ep.graph.nodes:
        if (node.op == "placeholder" and node.name in inputs) or any(a in live for a in node.all_input_nodes):
            live.add(node)
    ops = [n for n in ep.graph.nodes if n in live and n.op == "call_function" and _op(n).split(".")[0]
           not in _PASS_THROUGH]
    per_module = Counter(module_path(n) for n in ops)
    names: dict[Any, str] = {}
    for node in ep.graph.nodes:
        if node not in live or node.op not in ("placeholder", "call_function"):
            continue
        if node.op == "placeholder":
            names[node] = node.name
        elif _op(node).split(".")[0] in _PASS_THROUGH:
            first = next((a for a in node.all_input_nodes if a in names), None)
            names[node] = names[first] if first is not None else node.name
        else:
            path = module_path(node)
            names[node] = path if path and per_module[path] == 1 else f"{path}/{node.name}" if path else node.name
    return names


def unsupported_ops(ep: Any, supported: Mapping[str, Any]) -> list[tuple[str, str]]:
    """``(op, where)`` for every ``call_function`` node whose op TVM's importer (plus ours) cannot convert."""
    return [(str(node.target), f"node '{node.name}'" + (f" in module '{module_path(node)}'"
                                                       if module_path(node) else " in the model's forward"))
            for node in ep.graph.nodes if node.op == "call_function" and _op(node) not in supported]


def _importer(names: Mapping[Any, str]) -> Any:
    """TVM's ``ExportedProgramImporter``, recording each named node's result var (``.named``)."""
    from tvm.relax.frontend.torch.exported_program_translator import ExportedProgramImporter

    class Naming(ExportedProgramImporter):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.named: dict = {}
            converters: dict[str, Callable] = dict(getattr(self, "convert_map"))  # noqa: B009 (untyped base)
            self.convert_map = {op: self._naming(fn) for op, fn in converters.items()}

        def update_convert_map(self, custom: dict) -> None:
            super().update_convert_map({op: self._naming(fn) for op, fn in custom.items()})

        def _naming(self, convert: Callable) -> Callable:
            def run(node: Any, *rest: Any) -> Any:
                result = convert(node, *rest)
                name = names.get(node)
                return result if name is None else record(self.block_builder, result, name, self.named)

            return run

    return Naming()


def declared_inputs(model: Any) -> Declared:
    """The user inputs of a torch model (a ``.pt2`` file, an ``ExportedProgram``) and their dimensions."""
    return _declared(exported_program(model))


def _declared(ep: Any) -> Declared:
    """Each user input's dimensions: a size, or the torch symbol (``s0``) of a dynamic one."""
    placeholders = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    declared: Declared = {}
    for name in _user_inputs(ep):
        value = placeholders[name].meta.get("val")
        shape = getattr(value, "shape", None)
        declared[name] = None if shape is None else [d if isinstance(d, int) else str(d) for d in shape]
    return declared


def _bind_shapes(mod: Any, shapes: Mapping[str, Sequence[int]], where: str) -> Any:
    """``mod`` with every symbolic input dimension bound to the size ``shapes`` gives it."""
    from tvm import relax, tirx

    main = mod["main"]
    binding: dict = {}
    for param in main.params[: int(main.attrs["num_input"])] if main.attrs and "num_input" in main.attrs \
            else main.params:
        if param.name not in shapes or not isinstance(param.ty, relax.TensorType) or param.ty.shape is None:
            continue
        for dim, size in zip(param.ty.shape.values, shapes[param.name], strict=False):
            if isinstance(dim, tirx.Var):
                binding[dim] = int(size)
    if not binding:
        return mod
    bound = relax.transform.BindSymbolicVars(binding)(mod)
    if any(not isinstance(d, tirx.IntImm) for p in bound["main"].params if isinstance(p.ty, relax.TensorType)
           and p.ty.shape is not None for d in p.ty.shape.values):
        raise ValueError(f"{where}: an input shape derived from another (s0 * 2, ...) stays symbolic; export "
                         "the model with static shapes (torch.export.export without dynamic_shapes)")
    return bound


def load_torch(model: Any, example_inputs: Optional[Sequence[Any]] = None,
               input_shapes: Shapes = None) -> tuple[Any, dict]:
    """A torch model as ``(mod, params)`` (the module docstring); ``tvm_sima.load_model``'s torch branch."""
    from tvm.relax.frontend import detach_params

    from .errors import importer_errors
    from .torch_qdq import is_quantized, qdq_convert_map

    where = _where(model)
    ep = exported_program(model, example_inputs).run_decompositions()
    quantized = is_quantized(ep)
    names = node_names(ep)
    importer = _importer(names)
    custom = qdq_convert_map(ep) if quantized else {}
    missing = unsupported_ops(ep, {**importer.convert_map, **custom})
    if missing:
        raise UnsupportedOpsError(where, missing)
    declared = _declared(ep)
    shapes = _input_shapes(pathlib.Path(where), declared, input_shapes)
    with importer_errors(where, "TVM's PyTorch importer"):
        mod = importer.from_exported_program(ep, keep_params_as_input=not quantized, unwrap_unit_return_tuple=True,
                                             no_bind_return_tuple=False, custom_convert_map=custom)
    mod = _bind_shapes(mod, shapes, where)
    main = mod["main"]
    mod = source_names.name_aliases(source_names.attach(mod, source_names.bindings_named(main, importer.named)))
    if quantized:  # weights stay constants: the converter reads them
        return mod, {}
    mod, detached = detach_params(mod)
    main = mod["main"]
    params = [p.name for p in main.params[int(main.attrs["num_input"]):]]
    return mod, {name: value.numpy() for name, value in zip(params, detached.get("main", []), strict=True)}
