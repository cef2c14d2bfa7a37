"""``tvm_sima.load_model(path, input_shapes=None) -> (mod, params)`` for float ONNX and TFLite files.

Before importing, every op of the file is checked against TVM's Relax importer; all the
unsupported ones are reported at once, each with its node (ONNX) or op index and output
tensor (TFLite). Shapes come from the file; dynamic dimensions need ``input_shapes``.
An int8 TFLite model is imported by :mod:`tvm_sima.frontends.tflite_qdq` as a QDQ graph that
keeps its integer interface; a quantized ONNX model (QDQ, or QOperator rewritten to QDQ) by
:mod:`tvm_sima.frontends.onnx_qdq`, with its weights as constants. Both are what
``tvm_sima.convert`` takes.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any, Optional, Union

__all__ = ["load_model", "bind_params", "UnsupportedOpsError"]

Shapes = Optional[dict[str, tuple[int, ...]]]


class UnsupportedOpsError(ValueError):
    """The model uses ops the importer cannot convert; ``ops`` lists ``(op, where)`` pairs."""

    def __init__(self, path: str, ops: list[tuple[str, str]]) -> None:
        self.ops = ops
        listed = "; ".join(f"{op} ({where})" for op, where in ops[:20])
        more = f"; and {len(ops) - 20} more" if len(ops) > 20 else ""
        super().__init__(f"{path}: {len(ops)} unsupported op(s): {listed}{more}")


def load_model(path: Union[str, os.PathLike], input_shapes: Shapes = None) -> tuple[Any, dict]:
    """Load a float ``.onnx`` / ``.tflite`` or an int8 ``.tflite`` model as a Relax module and its parameters.

    An int8 TFLite model becomes a QDQ graph (``sima.dequantize`` -> float op -> ``sima.quantize``)
    with int8 inputs and outputs, like LiteRT's interface (:mod:`tvm_sima.frontends.tflite_qdq`).

    Parameters
    ----------
    path : str or PathLike
        The model file.
    input_shapes : dict, optional
        ``{input name: shape}``, required for inputs with dynamic dimensions.

    Returns
    -------
    (mod, params)
        ``params`` maps weight names to NumPy arrays: the parameters of ``main`` after its
        ``num_input`` data inputs (ONNX); TFLite weights are constants already, so ``{}``.
        :func:`bind_params` binds them back.

    Raises
    ------
    FileNotFoundError, ValueError, UnsupportedOpsError
        Missing file; unknown extension, unreadable file, missing or wrong input shapes;
        unsupported ops (all of them, with where they are).
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} not found")
    suffix = file.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(file, input_shapes)
    if suffix == ".tflite":
        return _load_tflite(file, input_shapes)
    raise ValueError(f"{file}: unknown model type {suffix!r}; tvm-sima loads .onnx and .tflite files")


def _input_shapes(path: pathlib.Path, declared: dict[str, list], given: Shapes) -> dict[str, tuple[int, ...]]:
    given = dict(given or {})
    unknown = sorted(set(given) - set(declared))
    if unknown:
        raise ValueError(f"{path}: input_shapes names {unknown}, which are not inputs; inputs: {sorted(declared)}")
    shapes = {}
    for name, dims in declared.items():
        if name in given:
            shape = tuple(int(d) for d in given[name])
            if len(shape) != len(dims) or any(d not in (None, s) for d, s in zip(dims, shape, strict=True)):
                raise ValueError(f"{path}: input_shapes[{name!r}]={shape} does not fit the declared shape {dims}")
            shapes[name] = shape
        elif any(d is None for d in dims):
            raise ValueError(f"{path}: input {name!r} has dynamic shape {dims}; pass input_shapes={{{name!r}: (...)}}")
        else:
            shapes[name] = tuple(dims)
    return shapes


def _load_onnx(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    import onnx
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    try:
        model = onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError and others: one message for all
        raise ValueError(f"{path}: not a readable ONNX model ({type(err).__name__}: {err})") from None
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
    initializers = {i.name for i in model.graph.initializer}
    declared = {
        i.name: [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim]
        for i in model.graph.input if i.name not in initializers
    }
    shapes = _input_shapes(path, declared, input_shapes)
    if quantized:  # weights stay constants: the converter reads them
        return qdq_to_sima(from_onnx(model, shape_dict=shapes, keep_params_in_input=False)), {}
    mod, detached = detach_params(from_onnx(model, shape_dict=shapes, keep_params_in_input=True))
    main = mod["main"]
    names = [p.name for p in main.params[int(main.attrs["num_input"]):]]
    return mod, {name: value.numpy() for name, value in zip(names, detached.get("main", []), strict=True)}


def _load_tflite(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    import numpy as np
    import tflite
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.tflite import from_tflite
    from tvm.relax.frontend.tflite.tflite_frontend import OperatorConverter

    from .tflite_flatbuffer import read_tflite

    graph = read_tflite(path)
    inputs = [graph.tensors[i] for i in graph.inputs]
    if any(t.dtype == np.int8 and t.quantized and t.data is None for t in graph.tensors):  # int8 activations
        from .tflite_qdq import import_int8_tflite, unsupported_ops

        if input_shapes:
            static = {t.name: t.shape for t in inputs}
            if any(tuple(input_shapes.get(name, shape)) != tuple(shape) for name, shape in static.items()):
                raise ValueError(f"{path}: an int8 TFLite model is imported with the shapes it stores {static}; "
                                 f"input_shapes={input_shapes} asks for others")
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpsError(str(path), missing)
        return import_int8_tflite(path.read_bytes()), {}
    supported = set(OperatorConverter(None, None, None, None).convert_map)
    missing = [(op.name, f"op {op.index}, output '{graph.tensors[op.outputs[0]].name}'")
               for op in graph.ops if op.name not in supported]
    if missing:
        raise UnsupportedOpsError(str(path), missing)
    declared = {t.name: [d if d > 0 else None for d in t.shape] for t in inputs}
    shapes = _input_shapes(path, declared, input_shapes)
    buf = path.read_bytes()
    mod = from_tflite(tflite.Model.GetRootAsModel(buf, 0), shape_dict=shapes,
                      dtype_dict={t.name: str(t.dtype) for t in inputs})
    if isinstance(mod, tuple):  # the importer returns (mod, params); its weights are constants in main
        mod = mod[0]
    return detach_params(mod)[0], {}


def bind_params(mod: Any, params: dict) -> Any:
    """Bind ``params`` (name -> array) into ``main`` as constants; unknown names are an error."""
    from tvm import relax

    if not params:
        return mod
    names = {p.name for p in mod["main"].params}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ValueError(f"bind_params: {unknown} are not parameters of main")
    return relax.transform.BindParams("main", dict(params))(mod)
