"""``tvm_sima.load_model(path, input_shapes=None) -> (mod, params)`` for float ONNX and TFLite files.

Before importing, every op of the file is checked against TVM's Relax importer; all the unsupported
ones are reported at once, each with its node (ONNX) or op index and output tensor (TFLite; a custom
op by its custom code). Float TFLite files import with TVM's importer plus the custom ops of
:mod:`tvm_sima.frontends.tflite_custom` (MediaPipe's ``Convolution2DTransposeBias``). Shapes come
from the file. A dynamic dimension (an ONNX ``dim_param`` symbol, an unset ``?`` dimension, a
literal ``-1`` as paddle2onnx writes; a TFLite ``shape_signature`` ``-1``) is taken from
``input_shapes``, or from another input given the same symbol; a dynamic *batch* (first) dimension
otherwise becomes 1, logged once at INFO; any other is an :class:`InputShapeError` that says which
shape to give. :func:`shapes_from_data` fills them from an array's shape (calibration data).
An int8 TFLite model is imported by :mod:`tvm_sima.frontends.tflite_qdq` as a QDQ graph that
keeps its integer interface; a quantized ONNX model (QDQ, or QOperator rewritten to QDQ) by
:mod:`tvm_sima.frontends.onnx_qdq`, with its weights as constants. Both are what
``tvm_sima.convert`` takes.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
from typing import Any, Callable, Mapping, Optional, Sequence, Union

from ..params import bind_params
from .errors import MAX_ELEMENTS

__all__ = ["load_model", "bind_params", "declared_inputs", "shapes_from_data", "python_argument",
           "UnsupportedOpsError", "InputShapeError", "DynamicShapeError"]

logger = logging.getLogger(__name__)

Shapes = Optional[Mapping[str, Sequence[int]]]
Dim = Union[int, str, None]
"""A declared input dimension: a fixed size, a symbol (ONNX ``dim_param``), or None (``?``, ``-1``)."""
Declared = dict[str, Optional[list[Dim]]]
"""Each input's declared dimensions, or None when the file gives no shape (unknown rank)."""
Spell = Callable[[str, Sequence[str]], str]
"""How an error names the argument that sets a shape: ``spell(input name, dims) -> text``."""


class UnsupportedOpsError(ValueError):
    """The model uses ops the importer cannot convert; ``ops`` lists ``(op, where)`` pairs."""

    def __init__(self, path: str, ops: list[tuple[str, str]]) -> None:
        self.ops = ops
        listed = "; ".join(f"{op} ({where})" for op, where in ops[:20])
        more = f"; and {len(ops) - 20} more" if len(ops) > 20 else ""
        super().__init__(f"{path}: {len(ops)} unsupported op(s): {listed}{more}")


def python_argument(name: str, dims: Sequence[str]) -> str:
    """Spell a shape as :func:`load_model`'s argument: ``input_shapes={'x': (1, 3, H, W)}``."""
    return f"input_shapes={{{name!r}: ({', '.join(dims)}{',' if len(dims) == 1 else ''})}}"


def _spelled(dims: Optional[Sequence[Dim]]) -> str:
    return "unknown" if dims is None else "[" + ", ".join("?" if d is None else str(d) for d in dims) + "]"


class InputShapeError(ValueError):
    """A shape given for an input does not fit the shape its model file declares.

    ``path``, ``name``, ``declared`` (a list of :data:`Dim`, or None for an unknown rank), ``given``
    (the shape given) and ``problem`` (what is wrong with it) are attributes, so a caller can word
    the error for its own interface: ``err.message(spell)`` names the argument with
    ``spell(name, dims)``; ``str(err)`` is ``err.message(python_argument)``.
    """

    def __init__(self, path: str, name: str, declared: Optional[list[Dim]], given: Sequence[Any],
                 problem: str) -> None:
        self.path, self.name, self.declared = path, name, declared
        self.given, self.problem = tuple(given), problem
        super().__init__(self.message(python_argument))

    def message(self, spell: Spell) -> str:
        """The one-line error, naming the shape argument as ``spell`` writes it."""
        return f"{self.path}: {spell(self.name, [str(d) for d in self.given])} {self.problem}"


class DynamicShapeError(InputShapeError):
    """An input has a dynamic dimension (not the batch) that no given shape or symbol fixes.

    ``given`` is the shape to give, with the known sizes filled in and a placeholder (the
    symbol, or ``D<k>`` for the k-th dimension) where a size is needed.
    """

    def __init__(self, path: str, name: str, declared: Optional[list[Dim]], suggestion: Sequence[str]) -> None:
        super().__init__(path, name, declared, suggestion, "")

    def message(self, spell: Spell) -> str:
        """The one-line error, suggesting the shape to give as ``spell`` writes it."""
        if self.declared is None:
            what = "no declared shape (unknown rank)"
        else:
            dynamic = ", ".join(s for s in self.given if not s.isdigit())
            what = f"dynamic dimension(s) {dynamic} in its declared shape {_spelled(self.declared)}"
        return (f"{self.path}: input {self.name!r} has {what} that the model file does not fix; "
                f"give its shape with {spell(self.name, list(self.given))}")


def load_model(path: Union[str, os.PathLike, Any], input_shapes: Shapes = None,
               example_inputs: Optional[Sequence[Any]] = None) -> tuple[Any, dict]:
    """Load a float ``.onnx`` / ``.tflite`` / PyTorch or a quantized model as a Relax module and its parameters.

    An int8 TFLite model becomes a QDQ graph (``sima.dequantize`` -> float op -> ``sima.quantize``)
    with int8 inputs and outputs, like LiteRT's interface (:mod:`tvm_sima.frontends.tflite_qdq`);
    a PT2E-quantized PyTorch model a QDQ graph with float inputs and outputs, as its own.

    Parameters
    ----------
    path : str, PathLike, torch.nn.Module or torch.export.ExportedProgram
        The model file (``.onnx``, ``.tflite``, or ``.pt2`` as ``torch.export.save`` writes it), or a
        PyTorch model (:mod:`tvm_sima.frontends.torch_export`; needs ``pip install tvm-sima[torch]``).
    input_shapes : dict, optional
        ``{input name: shape}``; a shape fits the declared one when it has its rank and its fixed
        sizes (dynamic dimensions take any size >= 1). Needed for inputs with a dynamic dimension
        other than the batch (a dynamic batch becomes 1).
    example_inputs : tuple, optional
        A ``torch.nn.Module``'s inputs (tensors or NumPy arrays) for ``torch.export.export``: the
        model is built for their shapes.

    Returns
    -------
    (mod, params)
        ``params`` maps weight names to NumPy arrays: the parameters of ``main`` after its
        ``num_input`` data inputs (ONNX); TFLite weights are constants already, so ``{}``.
        :func:`bind_params` binds them back.

    Raises
    ------
    FileNotFoundError, ValueError, InputShapeError, DynamicShapeError, UnsupportedOpsError
        Missing file; unknown extension, unreadable file; a given shape that does not fit;
        a dynamic dimension nothing fixes; unsupported ops (all of them, with where they are).
    """
    if not isinstance(path, (str, os.PathLike)):
        from .torch_export import is_torch_model, load_torch

        if is_torch_model(path):
            return load_torch(path, example_inputs, input_shapes)
        raise TypeError(f"load_model: a model file path, a torch.nn.Module or a torch.export.ExportedProgram, "
                        f"not a {type(path).__name__}")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} not found")
    suffix = file.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(file, input_shapes)
    if suffix == ".tflite":
        return _load_tflite(file, input_shapes)
    if suffix == ".pt2":
        from .torch_export import load_torch

        return load_torch(file, None, input_shapes)
    raise ValueError(f"{file}: unknown model type {suffix!r}; tvm-sima loads .onnx, .tflite and .pt2 files")


def _input_shapes(path: pathlib.Path, declared: Declared, given: Shapes) -> dict[str, tuple[int, ...]]:
    """Every input's static shape: given, else declared, with its dynamic dimensions resolved.

    A symbol takes the size a given shape has for it; a dynamic first (batch) dimension left
    over becomes 1 (logged); any other dynamic dimension is a :class:`DynamicShapeError`.
    """
    fixed = {name: _checked(str(path), name, declared, shape) for name, shape in (given or {}).items()}
    bound = {d: size for name, shape in fixed.items() for d, size in zip(declared[name] or [], shape, strict=False)
             if isinstance(d, str)}
    return {name: fixed[name] if name in fixed else _resolved(str(path), name, dims, bound)
            for name, dims in declared.items()}


def _checked(path: str, name: str, declared: Declared, shape: Sequence[Any]) -> tuple[int, ...]:
    """``shape`` as ints, when it fits input ``name``'s declared shape; else an InputShapeError."""
    try:
        ints = tuple(int(d) for d in shape)
    except (TypeError, ValueError):
        raise ValueError(f"{path}: input_shapes[{name!r}]={shape!r}: a shape is a sequence of ints") from None
    if name not in declared:
        raise InputShapeError(path, name, None, ints, f"names no input of the model; its inputs: {sorted(declared)}")
    dims = declared[name]
    if any(d < 1 for d in ints):
        raise InputShapeError(path, name, dims, ints, "has a size < 1; give every dimension as a positive size, "
                                                      "the dynamic ones too")
    if math.prod(ints) > MAX_ELEMENTS:
        raise InputShapeError(path, name, dims, ints, f"has {math.prod(ints)} elements, more than the "
                                                      f"{MAX_ELEMENTS} a tensor may hold")
    if dims is None:
        return ints
    if len(ints) != len(dims):
        raise InputShapeError(path, name, dims, ints, f"has rank {len(ints)}; input {name!r} has rank "
                                                      f"{len(dims)}, declared {_spelled(dims)}")
    conflicts = [f"dimension {k} is {d}" for k, (d, g) in enumerate(zip(dims, ints, strict=True))
                 if isinstance(d, int) and d != g]
    if conflicts:
        raise InputShapeError(path, name, dims, ints, f"does not fit input {name!r}, declared {_spelled(dims)} "
                                                      f"({', '.join(conflicts)} in the file)")
    return ints


def _resolved(path: str, name: str, dims: Optional[list[Dim]], bound: dict[str, int]) -> tuple[int, ...]:
    """The declared shape with symbols from ``bound`` and a dynamic batch of 1 (binds its symbol)."""
    if dims is None:
        raise DynamicShapeError(path, name, None, ["D1", "D2", "..."])
    sizes = [d if isinstance(d, int) else bound.get(d) if isinstance(d, str) else None for d in dims]
    batch = bool(dims) and sizes[0] is None
    if batch:
        sizes[0] = 1
    shape = tuple(s for s in sizes if s is not None)
    if len(shape) < len(dims):
        suggestion = [_placeholder(k, d, s) for k, (d, s) in enumerate(zip(dims, sizes, strict=True))]
        raise DynamicShapeError(path, name, dims, suggestion)
    if batch:
        _log_batch(path, name, dims[0])
        if isinstance(dims[0], str):
            bound[dims[0]] = 1
    return shape


def _log_batch(path: str, name: str, dim: Dim) -> None:
    logger.info("%s: input %r: dynamic batch dimension %r set to 1", path, name, dim or "?")


def _placeholder(k: int, dim: Dim, size: Optional[int]) -> str:
    """How a suggested shape writes dimension ``k``: its size, else its symbol, else ``D<k+1>``."""
    return str(size) if size is not None else str(dim) if dim is not None else f"D{k + 1}"


def _read_onnx(path: pathlib.Path, load_external_data: bool = True) -> Any:
    from .onnx_check import read_onnx  # decodes and checks; a CorruptModelError otherwise

    return read_onnx(path, load_external_data=load_external_data)


def _onnx_dim(dim: Any) -> Dim:
    """A size (``dim_value`` >= 1), a symbol (``dim_param``), or None (unset, or paddle2onnx's ``-1``)."""
    if dim.HasField("dim_value") and dim.dim_value >= 1:
        return int(dim.dim_value)
    return dim.dim_param if dim.HasField("dim_param") and dim.dim_param else None


def _onnx_declared(model: Any) -> Declared:
    """The data inputs of the graph (not its initializers) with their declared dimensions."""
    initializers = {i.name for i in model.graph.initializer}
    return {i.name: [_onnx_dim(d) for d in i.type.tensor_type.shape.dim] if i.type.tensor_type.HasField("shape")
            else None for i in model.graph.input if i.name not in initializers}


def _load_onnx(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    model = _read_onnx(path)
    from .errors import importer_errors
    from .onnx_qdq import UNSUPPORTED_QUANTIZED, is_quantized, qdq_to_sima, rewrite_qoperators

    quantized = is_quantized(model)
    if quantized:
        bad = [(n.op_type, f"node '{n.name or n.output[0]}'") for n in model.graph.node
               if n.op_type in UNSUPPORTED_QUANTIZED]
        model = rewrite_qoperators(model)
    else:
        bad = []
    supported = _get_convert_map()
    missing = bad + [(n.op_type, f"node '{n.name or n.output[0]}'") for n in model.graph.node
                     if n.op_type not in supported and n.op_type not in UNSUPPORTED_QUANTIZED]
    if missing:
        raise UnsupportedOpsError(str(path), missing)
    shapes = _input_shapes(path, _onnx_declared(model), input_shapes)
    from .onnx_fold import fold_shape_computations

    model = fold_shape_computations(model, shapes)  # Shape -> ... -> Reshape chains: constants for the fixed shapes
    from .source_importers import import_onnx  # TVM's importer, keeping the node names

    if quantized:  # weights stay constants: the converter reads them
        with importer_errors(path, "TVM's ONNX importer"):  # on a checked file: what still fails says so
            return qdq_to_sima(_onnx_rewrites(import_onnx(model, shapes, keep_params_in_input=False))), {}
    with importer_errors(path, "TVM's ONNX importer"):
        mod, detached = detach_params(_onnx_rewrites(import_onnx(model, shapes, keep_params_in_input=True)))
    main = mod["main"]
    names = [p.name for p in main.params[int(main.attrs["num_input"]):]]
    return mod, {name: value.numpy() for name, value in zip(names, detached.get("main", []), strict=True)}



def _onnx_rewrites(mod: Any) -> Any:
    """What TVM's ONNX importer writes in a form the passes cannot read, rewritten: its TE ``pad`` as
    ``relax.nn.pad``, its stacked Max / Min as pairwise ``maximum`` / ``minimum``."""
    from ..source_names import name_aliases
    from .onnx_extrema import pairwise_extrema
    from .onnx_pad import pad_from_te

    return name_aliases(pairwise_extrema(pad_from_te(mod)))


def _load_tflite(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    import numpy as np
    import tflite
    from tvm.relax.frontend import detach_params

    from .errors import importer_errors
    from .tflite_custom import CustomOpConverter
    from .tflite_flatbuffer import read_tflite

    graph = read_tflite(path)
    inputs = [graph.tensors[i] for i in graph.inputs]
    if any(t.dtype == np.int8 and t.quantized and t.data is None for t in graph.tensors):  # int8 activations
        from .tflite_qdq import import_int8_tflite, unsupported_ops

        static = {t.name: list(t.shape) for t in inputs}
        declared = _tflite_declared(inputs)
        for name, shape in (input_shapes or {}).items():
            if list(_checked(str(path), name, declared, shape)) != static[name]:
                raise InputShapeError(str(path), name, declared[name], shape, "does not fit: an int8 TFLite model "
                                      f"is imported with the shapes it stores, {static[name]} for {name!r}")
        for name, dims in declared.items():  # the importer takes the stored shapes: a dynamic batch is 1
            if dims and dims[0] is None and name not in (input_shapes or {}):
                _log_batch(str(path), name, None)
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpsError(str(path), missing)
        return import_int8_tflite(path), {}
    supported = set(CustomOpConverter(None, None, None, None).convert_map)
    missing = [(f"{op.name} {op.custom_code}".strip(), f"op {op.index}, output '{graph.tensors[op.outputs[0]].name}'")
               for op in graph.ops if (op.custom_code if op.name == "CUSTOM" else op.name) not in supported]
    if missing:
        raise UnsupportedOpsError(str(path), missing)
    buf = path.read_bytes()
    shapes = _input_shapes(path, _tflite_declared(inputs), input_shapes)
    from .source_importers import import_tflite  # TVM's importer, keeping the tensor names

    with importer_errors(path, "TVM's TFLite importer"):  # on a validated file: what still fails says so
        mod = import_tflite(tflite.Model.GetRootAsModel(buf, 0), shapes, {t.name: str(t.dtype) for t in inputs},
                            CustomOpConverter)
    if any(t.dtype == np.float16 and t.data is not None for t in graph.tensors):  # float16 weights
        from .float16 import float32_constants

        mod = float32_constants(mod)
    return detach_params(mod)[0], {}  # its weights are constants in main


def _tflite_declared(inputs: Sequence[Any]) -> Declared:
    """Input dimensions from the tensors' ``signature`` (``shape_signature``: -1, None here, where dynamic)."""
    return {t.name: [d if d > 0 else None for d in t.signature] for t in inputs}


def declared_inputs(path: Union[str, os.PathLike]) -> Declared:
    """The data inputs of a ``.onnx`` / ``.tflite`` / ``.pt2`` file and the dimensions it declares, not importing it.

    Returns
    -------
    dict
        ``{input name: [dim, ...]}``, each dim a size, a symbol (ONNX ``dim_param``) or None
        (``?``, ``-1``); None instead of the list when the file declares no shape.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} not found")
    if file.suffix.lower() == ".onnx":
        return _onnx_declared(_read_onnx(file, load_external_data=False))
    if file.suffix.lower() == ".tflite":
        from .tflite_flatbuffer import read_tflite

        graph = read_tflite(file)
        return _tflite_declared([graph.tensors[i] for i in graph.inputs])
    if file.suffix.lower() == ".pt2":
        from .torch_export import declared_inputs as torch_declared

        return torch_declared(file)
    raise ValueError(f"{file}: unknown model type {file.suffix!r}; tvm-sima loads .onnx, .tflite and .pt2 files")


def shapes_from_data(path: Union[str, os.PathLike], data_shapes: Mapping[str, Sequence[int]],
                     input_shapes: Shapes = None) -> dict[str, tuple[int, ...]]:
    """``input_shapes`` for :func:`load_model`, with the dynamic dimensions taken from data.

    Parameters
    ----------
    path : str or PathLike
        The model file.
    data_shapes : dict
        ``{input name: shape of one batch of data}``, e.g. a calibration batch's; its first
        dimension is the batch the model will be built for.
    input_shapes : dict, optional
        Shapes given explicitly; they win over the data.

    Returns
    -------
    dict
        ``input_shapes`` plus, for each other input that has a dynamic dimension and data of its
        rank, the declared shape with the data's sizes where it is dynamic (logged at INFO).
        Fixed sizes stay the file's: :func:`load_model` and the dataset check the rest.
    """
    shapes = {name: tuple(int(d) for d in shape) for name, shape in (input_shapes or {}).items()}
    for name, dims in declared_inputs(path).items():
        data = data_shapes.get(name)
        if name in shapes or data is None or (dims is not None and len(dims) != len(data)):
            continue
        if dims is None or not all(isinstance(d, int) for d in dims):
            shapes[name] = tuple(int(g) if dims is None or not isinstance(d, int) else d
                                 for d, g in zip(dims or data, data, strict=True))
            logger.info("%s: input %r: dynamic dimensions of %s taken from the data: %s", path, name,
                        _spelled(dims), shapes[name])
    return shapes
