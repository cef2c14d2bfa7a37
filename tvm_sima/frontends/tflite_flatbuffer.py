"""Read a ``.tflite`` flatbuffer into plain Python data: tensors, quantization, ops, options.

Needs only the ``tflite`` package (no TVM, no TensorFlow). Used by the NumPy reference
interpreter (:mod:`tvm_sima.frontends.tflite_numpy`) and by graph rewrites before import.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

__all__ = ["TFLiteTensor", "TFLiteOp", "TFLiteGraph", "read_tflite"]

_TENSOR_TYPES = {
    "FLOAT32": np.float32,
    "FLOAT16": np.float16,
    "INT32": np.int32,
    "UINT8": np.uint8,
    "INT64": np.int64,
    "BOOL": np.bool_,
    "INT16": np.int16,
    "INT8": np.int8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
}

# Options tables we decode: op name -> (options class name, accessor names).
_OPTION_FIELDS = {
    "CONV_2D": ("Conv2DOptions", ("Padding", "StrideH", "StrideW", "DilationHFactor", "DilationWFactor",
                                   "FusedActivationFunction")),
    "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", ("Padding", "StrideH", "StrideW", "DilationHFactor",
                                                     "DilationWFactor", "DepthMultiplier",
                                                     "FusedActivationFunction")),
    "FULLY_CONNECTED": ("FullyConnectedOptions", ("FusedActivationFunction", "KeepNumDims", "WeightsFormat")),
    "ADD": ("AddOptions", ("FusedActivationFunction",)),
    "SUB": ("SubOptions", ("FusedActivationFunction",)),
    "MUL": ("MulOptions", ("FusedActivationFunction",)),
    "AVERAGE_POOL_2D": ("Pool2DOptions", ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                          "FusedActivationFunction")),
    "MAX_POOL_2D": ("Pool2DOptions", ("Padding", "StrideH", "StrideW", "FilterHeight", "FilterWidth",
                                      "FusedActivationFunction")),
    "CONCATENATION": ("ConcatenationOptions", ("Axis", "FusedActivationFunction")),
    "MEAN": ("ReducerOptions", ("KeepDims",)),
    "STRIDED_SLICE": ("StridedSliceOptions", ("BeginMask", "EndMask", "EllipsisMask", "NewAxisMask",
                                              "ShrinkAxisMask", "Offset")),
    "PACK": ("PackOptions", ("ValuesCount", "Axis")),
}


@dataclass
class TFLiteTensor:
    """One tensor of the main subgraph, with its quantization and constant data."""

    index: int
    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int
    data: Optional[np.ndarray] = None

    @property
    def quantized(self) -> bool:
        """True when the tensor carries affine quantization parameters."""
        return self.scale.size > 0


@dataclass
class TFLiteOp:
    """One operator: builtin name, input / output tensor indices, decoded options."""

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)


@dataclass
class TFLiteGraph:
    """The main subgraph of a TFLite model."""

    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: list[int]
    outputs: list[int]


def _builtin_names() -> dict[int, str]:
    import tflite

    return {v: k for k, v in vars(tflite.BuiltinOperator).items() if not k.startswith("_")}


def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


def _decode_options(op: Any, name: str) -> dict[str, Any]:
    import tflite

    if name not in _OPTION_FIELDS or op.BuiltinOptions() is None:
        return {}
    cls_name, fields = _OPTION_FIELDS[name]
    table = op.BuiltinOptions()
    opts = getattr(tflite, cls_name)()
    opts.Init(table.Bytes, table.Pos)
    decoded = {f: getattr(opts, f)() for f in fields}
    if "Padding" in decoded:
        decoded["Padding"] = _enum_names(tflite.Padding)[decoded["Padding"]]
    if "FusedActivationFunction" in decoded:
        decoded["FusedActivationFunction"] = _enum_names(tflite.ActivationFunctionType)[
            decoded["FusedActivationFunction"]
        ]
    return decoded


def _tensor(model: Any, buf: bytes, index: int, t: Any, type_names: dict[int, str]) -> TFLiteTensor:
    type_name = type_names.get(t.Type(), str(t.Type()))
    if type_name not in _TENSOR_TYPES:
        raise ValueError(f"tensor {index} ({t.Name().decode()}) has unsupported type {type_name}")
    dtype = np.dtype(_TENSOR_TYPES[type_name])
    shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
    q = t.Quantization()
    scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32) if q is not None and q.ScaleLength() else np.zeros(0)
    zp = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64) if q is not None and q.ZeroPointLength() else np.zeros(0)
    qdim = int(q.QuantizedDimension()) if q is not None else 0
    data = None
    buffer = model.Buffers(t.Buffer())
    if buffer is not None and buffer.Offset() > 1:
        raw = buf[buffer.Offset() : buffer.Offset() + buffer.Size()]
        data = np.frombuffer(raw, dtype=dtype).reshape(shape)
    elif buffer is not None and buffer.DataLength() > 0:
        data = np.frombuffer(buffer.DataAsNumpy().tobytes(), dtype=dtype).reshape(shape)
    return TFLiteTensor(index, t.Name().decode(), shape, dtype, scale, zp, qdim, data)


def read_tflite(model: Union[str, os.PathLike, bytes]) -> TFLiteGraph:
    """Parse a ``.tflite`` file (path or bytes) into a :class:`TFLiteGraph`.

    Raises
    ------
    ValueError
        If the file is not a TFLite flatbuffer or has no subgraph.
    FileNotFoundError
        If the path does not exist.
    """
    import tflite

    buf = bytes(model) if isinstance(model, (bytes, bytearray)) else open(model, "rb").read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        where = "the given bytes" if isinstance(model, (bytes, bytearray)) else os.fspath(model)
        raise ValueError(f"{where} is not a TFLite flatbuffer (missing the 'TFL3' identifier)")
    m = tflite.Model.GetRootAsModel(buf, 0)
    if m.SubgraphsLength() < 1:
        raise ValueError("the TFLite model has no subgraph")
    graph = m.Subgraphs(0)
    type_names = _enum_names(tflite.TensorType)
    tensors = [_tensor(m, buf, i, graph.Tensors(i), type_names) for i in range(graph.TensorsLength())]
    names = _builtin_names()
    ops = []
    for i in range(graph.OperatorsLength()):
        op = graph.Operators(i)
        code = m.OperatorCodes(op.OpcodeIndex())
        name = names.get(max(code.BuiltinCode(), code.DeprecatedBuiltinCode()), "CUSTOM")
        inputs = [int(j) for j in op.InputsAsNumpy()]
        outputs = [int(j) for j in op.OutputsAsNumpy()]
        ops.append(TFLiteOp(i, name, inputs, outputs, _decode_options(op, name)))
    return TFLiteGraph(tensors, ops, [int(j) for j in graph.InputsAsNumpy()], [int(j) for j in graph.OutputsAsNumpy()])
