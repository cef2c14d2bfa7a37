"""TVM's ONNX and TFLite importers, recording which node of the file produced each Relax binding.

TVM's importers name every binding ``lv<k>``. Each importer here is TVM's own with one step
added after each node's conversion: the node's result is bound (it would be at its first use
anyway) and that var is recorded with the node's name; :func:`tvm_sima.source_names.bindings_named`
then gives every binding of ``main`` its node's name, attached as ``main``'s
:data:`tvm_sima.source_names.ATTR`. The graph itself is the one TVM's importer writes.

* ONNX: a node's ``name``, or its first output's name when the node has none;
* TFLite: the name of the op's first output tensor (TFLite ops have no names of their own).
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from tvm import relax
from tvm.relax.frontend.onnx.onnx_frontend import ONNXGraphImporter
from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter, get_tensor_name

from .. import source_names

__all__ = ["import_onnx", "import_tflite", "record", "with_source_names"]


def record(bb: relax.BlockBuilder, result: Any, name: str, named: dict) -> Any:
    """Bind a node's tensor result; remember the var(s) it returns as ``name``."""
    if isinstance(result, relax.Call) and isinstance(result.ty, relax.TensorType):
        result = bb.emit(result)
    for value in result.fields if isinstance(result, relax.Tuple) else [result]:
        if isinstance(value, relax.Var) and value not in named:
            named[value] = name
    return result


class _NamingOnnxImporter(ONNXGraphImporter):
    """:class:`ONNXGraphImporter`, recording each node's result var under the node's name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.named: dict[relax.Var, str] = {}

    def _convert_operator(self, op_name: str, inputs: list, attrs: dict, opset: int) -> Any:
        result = super()._convert_operator(op_name, inputs, attrs, opset)
        custom = attrs.get("tvm_custom", {})
        return record(self.bb, result, str(custom.get("name") or ""), self.named)


def _opset(model: Any) -> int:
    """The model's default-domain opset (1 when it declares none), as TVM's ``from_onnx`` reads it."""
    versions = [o.version for o in model.opset_import if str(o.domain) in ("", "ai.onnx")]
    return int(versions[0]) if versions else 1


def import_onnx(model: Any, shape_dict: dict, keep_params_in_input: bool) -> Any:
    """``tvm.relax.frontend.onnx.from_onnx(model, shape_dict, keep_params_in_input=...)`` with source names.

    An unnamed node is recorded under its first output's name. The file is not re-checked
    (:mod:`tvm_sima.frontends.onnx_check` has checked it).
    """
    if model.ir_version < 3:
        raise ValueError(f"ONNX IR version {model.ir_version} is too old; TVM's importer needs 3 or later")
    named_nodes = _name_unnamed_nodes(model)
    importer = _NamingOnnxImporter(shape_dict, "float32", keep_params_in_input=keep_params_in_input)
    mod = importer.from_onnx(named_nodes.graph, _opset(model))
    main = mod["main"]
    inputs = {p.name: original for p, original in zip(main.params, [i.name for i in _data_inputs(model)],
                                                        strict=False)}
    return source_names.attach(mod, source_names.bindings_named(main, importer.named, inputs))


def _data_inputs(model: Any) -> list:
    initializers = {i.name for i in model.graph.initializer}
    return [i for i in model.graph.input if i.name not in initializers]


def _name_unnamed_nodes(model: Any) -> Any:
    """``model`` with every unnamed node named after its first output (a copy when one is renamed)."""
    if all(node.name for node in model.graph.node):
        return model
    import onnx

    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    for node in copy.graph.node:
        if not node.name and node.output:
            node.name = node.output[0]
    return copy


def with_source_names(base: type, named: dict) -> type:
    """A subclass of the TFLite ``OperatorConverter`` class ``base`` recording each op's result var in ``named``.

    For ``from_tflite(..., op_converter=with_source_names(base, named))``; composes with any
    converter subclass (custom ops, ...).
    """

    class Naming(base):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            converters: dict[str, Callable] = dict(getattr(self, "convert_map"))  # noqa: B009 (untyped base)
            self.convert_map = {op: self._naming(fn) for op, fn in converters.items()}

        def _naming(self, convert: Callable) -> Callable:
            def run(op: Any) -> Any:
                result = convert(op=op)
                if result is None:  # prefetched: no output of its own
                    return None
                outputs = self.get_output_tensors(op)
                name = get_tensor_name(self.subgraph, outputs[0].tensor_idx) if outputs else ""
                return record(self.bb, self.bb.normalize(result), name, named)

            return run

    Naming.__name__ = f"Naming{base.__name__}"
    return Naming


def import_tflite(model: Any, shape_dict: dict, dtype_dict: dict, op_converter: Optional[type] = None) -> Any:
    """``tvm.relax.frontend.tflite.from_tflite(model, shape_dict, dtype_dict)`` with source names.

    ``op_converter``: TVM's ``OperatorConverter`` or a subclass of it (default: TVM's).
    """
    from tvm.relax.frontend.tflite import from_tflite

    named: dict[relax.Var, str] = {}
    mod = from_tflite(model, shape_dict=shape_dict, dtype_dict=dtype_dict,
                      op_converter=with_source_names(op_converter or OperatorConverter, named))
    if isinstance(mod, tuple):  # (mod, params) in some TVM versions
        mod = mod[0]
    return source_names.attach(mod, source_names.bindings_named(mod["main"], named))
