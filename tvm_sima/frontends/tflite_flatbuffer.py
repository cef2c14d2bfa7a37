"""Read a ``.tflite`` flatbuffer into plain Python data: tensors, quantization, ops, options.

Needs only the ``tflite`` package (no TVM, no TensorFlow). Used by the NumPy reference
interpreter (:mod:`tvm_sima.frontends.tflite_numpy`) and by graph rewrites before import.

The file is validated before anything else reads it (TVM's importer reads the same buffer
lazily): its layout (:mod:`.flatbuffer_check`: every offset and length inside the file), then its
contents: tensor types, shapes (rank at most ``MAX_RANK``, no dimension below -1, at most
``MAX_ELEMENTS`` elements), buffer indices,
constant data sizes (``prod(shape) * itemsize``), quantization parameter counts, opcode indices,
and the tensor indices of the ops and of the subgraph's inputs and outputs. Any violation raises
:class:`~tvm_sima.frontends.errors.CorruptModelError` with a one-line message.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import numpy as np

from .errors import MAX_ELEMENTS, CorruptModelError
from .flatbuffer_check import LayoutError, verify_tflite

__all__ = ["MAX_RANK", "TFLiteTensor", "TFLiteOp", "TFLiteGraph", "read_tflite"]

#: Tensors of higher rank are taken for corruption (TFLite kernels go up to 6 dimensions).
MAX_RANK = 16

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
    "RESIZE_BILINEAR": ("ResizeBilinearOptions", ("AlignCorners", "HalfPixelCenters")),
    "RESIZE_NEAREST_NEIGHBOR": ("ResizeNearestNeighborOptions", ("AlignCorners", "HalfPixelCenters")),
    "DEPTH_TO_SPACE": ("DepthToSpaceOptions", ("BlockSize",)),
    "SPACE_TO_DEPTH": ("SpaceToDepthOptions", ("BlockSize",)),
    "TRANSPOSE_CONV": ("TransposeConvOptions", ("Padding", "StrideH", "StrideW", "FusedActivationFunction")),
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
    #: ``shape_signature`` (-1 where dynamic) when the file stores one of the shape's rank, else ``shape``.
    signature: tuple[int, ...] = ()

    @property
    def quantized(self) -> bool:
        """True when the tensor carries affine quantization parameters."""
        return self.scale.size > 0


@dataclass
class TFLiteOp:
    """One operator: builtin name, input / output tensor indices, decoded options.

    A custom op is named ``CUSTOM``; ``custom_code`` holds its own name (e.g. ``Convolution2DTransposeBias``).
    """

    index: int
    name: str
    inputs: list[int]
    outputs: list[int]
    options: dict[str, Any] = field(default_factory=dict)
    custom_code: str = ""


@dataclass
class TFLiteGraph:
    """The main subgraph of a TFLite model."""

    tensors: list[TFLiteTensor]
    ops: list[TFLiteOp]
    inputs: list[int]
    outputs: list[int]



def _enum_names(enum_cls: type) -> dict[int, str]:
    return {v: k for k, v in vars(enum_cls).items() if not k.startswith("_")}


class _Reader:
    """Decode the main subgraph of a layout-verified model, checking what the layout cannot show."""

    def __init__(self, where: str, buf: bytes) -> None:
        import tflite

        self.where, self.buf = where, buf
        self.model = tflite.Model.GetRootAsModel(buf, 0)
        self.type_names = _enum_names(tflite.TensorType)
        self.buffers = self.model.BuffersLength()

    def corrupt(self, what: str) -> CorruptModelError:
        return CorruptModelError(self.where, what)

    def name(self, raw: Optional[bytes], what: str) -> str:
        try:
            return (raw or b"").decode("utf-8")
        except UnicodeDecodeError:
            raise self.corrupt(f"{what}: the name is not UTF-8 ({(raw or b'')[:40]!r})") from None

    def shape(self, index: int, t: Any) -> tuple[int, ...]:
        shape = tuple(int(d) for d in t.ShapeAsNumpy()) if t.ShapeLength() else ()
        if len(shape) > MAX_RANK or any(d < -1 for d in shape):
            raise self.corrupt(f"tensor {index}: shape {list(shape)[:20]} (rank above {MAX_RANK} or a dimension "
                               "below -1)")
        if math.prod(d for d in shape if d > 0) > MAX_ELEMENTS:
            raise self.corrupt(f"tensor {index}: shape {list(shape)} declares more than {MAX_ELEMENTS} elements")
        return shape

    def quantization(self, index: int, t: Any, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray, int]:
        q = t.Quantization()
        if q is None:
            return np.zeros(0), np.zeros(0), 0
        scale = np.asarray(q.ScaleAsNumpy(), dtype=np.float32) if q.ScaleLength() else np.zeros(0)
        zp = np.asarray(q.ZeroPointAsNumpy(), dtype=np.int64) if q.ZeroPointLength() else np.zeros(0)
        qdim = int(q.QuantizedDimension())
        if scale.size > 1 and not (0 <= qdim < len(shape) and shape[qdim] == scale.size):
            raise self.corrupt(f"tensor {index}: {scale.size} scales along dimension {qdim} of shape {list(shape)}")
        if zp.size not in (0, 1, scale.size):
            raise self.corrupt(f"tensor {index}: {zp.size} zero points for {scale.size} scales")
        return scale, zp, qdim

    def data(self, index: int, t: Any, shape: tuple[int, ...], dtype: np.dtype) -> Optional[np.ndarray]:
        if not 0 <= t.Buffer() < max(self.buffers, 1):
            raise self.corrupt(f"tensor {index}: buffer index {t.Buffer()} beyond the {self.buffers} buffers")
        buffer = self.model.Buffers(t.Buffer()) if self.buffers else None
        if buffer is not None and buffer.Offset() > 1:  # data after the flatbuffer (models over 2 GB)
            if buffer.Offset() + buffer.Size() > len(self.buf):
                raise self.corrupt(f"tensor {index}: data at offset {buffer.Offset()} ({buffer.Size()} bytes) "
                                   f"beyond the end of the file of {len(self.buf)} bytes")
            raw = self.buf[buffer.Offset() : buffer.Offset() + buffer.Size()]
        elif buffer is not None and buffer.DataLength() > 0:
            raw = buffer.DataAsNumpy().tobytes()
        else:
            return None
        count = int(np.prod(shape, dtype=object)) if shape else 1
        if min(shape, default=0) < 0 or len(raw) != count * dtype.itemsize:
            raise self.corrupt(f"tensor {index}: {len(raw)} bytes of data for shape {list(shape)} of "
                               f"{dtype.name} ({count * dtype.itemsize} bytes)")
        return np.frombuffer(raw, dtype=dtype).reshape(shape)

    def tensor(self, index: int, t: Any) -> TFLiteTensor:
        name = self.name(t.Name(), f"tensor {index}")
        if t.Type() not in self.type_names:
            raise self.corrupt(f"tensor {index} '{name}': type {t.Type()} is not a TFLite tensor type")
        type_name = self.type_names[t.Type()]
        if type_name not in _TENSOR_TYPES:
            raise ValueError(f"{self.where}: tensor {index} ({name}) has unsupported type {type_name}")
        dtype = np.dtype(_TENSOR_TYPES[type_name])
        shape = self.shape(index, t)
        scale, zp, qdim = self.quantization(index, t, shape)
        signature = tuple(int(d) for d in t.ShapeSignatureAsNumpy()) if t.ShapeSignatureLength() else ()
        return TFLiteTensor(index, name, shape, dtype, scale, zp, qdim, self.data(index, t, shape, dtype),
                            signature if len(signature) == len(shape) else shape)

    def options(self, op: Any, index: int, name: str) -> dict[str, Any]:
        import tflite

        if name not in _OPTION_FIELDS or op.BuiltinOptions() is None:
            return {}
        cls_name, fields = _OPTION_FIELDS[name]
        if op.BuiltinOptionsType() != getattr(tflite.BuiltinOptions, cls_name):
            raise self.corrupt(f"op {index} ({name}): its options are of type {op.BuiltinOptionsType()}, "
                               f"not {cls_name}")
        table = op.BuiltinOptions()
        opts = getattr(tflite, cls_name)()
        opts.Init(table.Bytes, table.Pos)
        decoded = {f: getattr(opts, f)() for f in fields}
        for key, enum in (("Padding", tflite.Padding), ("FusedActivationFunction", tflite.ActivationFunctionType)):
            if key in decoded:
                names = _enum_names(enum)
                if decoded[key] not in names:
                    raise self.corrupt(f"op {index} ({name}): {key} {decoded[key]} is not a TFLite {enum.__name__}")
                decoded[key] = names[decoded[key]]
        return decoded

    def indices(self, values: Any, count: int, what: str, optional: bool = False) -> list[int]:
        found = [int(j) for j in values] if not isinstance(values, int) else []
        low = -1 if optional else 0
        if any(not low <= j < count for j in found):
            raise self.corrupt(f"{what}: tensor indices {found[:20]} outside [{low}, {count})")
        return found

    def op(self, index: int, op: Any, tensors: int, names: dict[int, str]) -> TFLiteOp:
        codes = self.model.OperatorCodesLength()
        if not 0 <= op.OpcodeIndex() < codes:
            raise self.corrupt(f"op {index}: opcode index {op.OpcodeIndex()} beyond the {codes} operator codes")
        code = self.model.OperatorCodes(op.OpcodeIndex())
        name = names.get(_builtin_code(code), "CUSTOM")
        inputs = self.indices(op.InputsAsNumpy(), tensors, f"op {index} ({name}) inputs", optional=True)
        outputs = self.indices(op.OutputsAsNumpy(), tensors, f"op {index} ({name}) outputs")
        if not outputs:
            raise ValueError(f"{self.where}: op {index} ({name}) has no outputs; tvm-sima imports graphs whose "
                             "every op has an output")
        custom = code.CustomCode() if name == "CUSTOM" else None
        return TFLiteOp(index, name, inputs, outputs, self.options(op, index, name),
                        custom.decode("utf-8", "replace") if custom else "")

    def graph(self) -> TFLiteGraph:
        import tflite

        if self.model.SubgraphsLength() < 1:
            raise ValueError(f"{self.where}: the TFLite model has no subgraph")
        graph = self.model.Subgraphs(0)
        count = graph.TensorsLength()
        tensors = [self.tensor(i, graph.Tensors(i)) for i in range(count)]
        names = _enum_names(tflite.BuiltinOperator)
        ops = [self.op(i, graph.Operators(i), count, names) for i in range(graph.OperatorsLength())]
        inputs = self.indices(graph.InputsAsNumpy(), count, "subgraph 0 inputs")
        outputs = self.indices(graph.OutputsAsNumpy(), count, "subgraph 0 outputs")
        return TFLiteGraph(tensors, ops, inputs, outputs)


def read_tflite(model: Union[str, os.PathLike, bytes]) -> TFLiteGraph:
    """Parse a ``.tflite`` file (path or bytes) into a :class:`TFLiteGraph`, validating it first.

    Raises
    ------
    CorruptModelError
        A ``ValueError``: the file is not a TFLite flatbuffer, is truncated, or has an offset,
        length, index, shape or data size that does not fit (module docstring), with what and where.
    ValueError
        If the model has no subgraph, an op without outputs, or a tensor type tvm-sima does not read.
    FileNotFoundError
        If the path does not exist.
    """
    if isinstance(model, (bytes, bytearray)):
        buf, where = bytes(model), "the given bytes"
    else:
        where = os.fspath(model)
        with open(model, "rb") as f:
            buf = f.read()
    if len(buf) < 8 or buf[4:8] != b"TFL3":
        raise CorruptModelError(where, f"it is not a TFLite flatbuffer: {len(buf)} bytes without the 'TFL3' "
                                       "identifier at bytes 4 to 8")
    try:
        verify_tflite(buf)
        return _Reader(where, buf).graph()
    except LayoutError as err:
        raise CorruptModelError(where, str(err)) from None
    except (struct.error, TypeError, IndexError, KeyError, AttributeError, OverflowError) as err:
        # not seen in the fuzz battery: a safety net so a reader bug is still one line naming the file
        raise CorruptModelError(where, f"{type(err).__name__}: {err}") from None


def _builtin_code(code: Any) -> int:
    """An OperatorCode's operator as LiteRT reads it: ``max(deprecated_builtin_code, builtin_code)``.

    The ``tflite`` package's ``BuiltinCode()`` returns the deprecated (int8) field whenever
    ``builtin_code`` is below 127, so a file that writes only ``builtin_code`` (ai-edge-quantizer's
    QUANTIZE: builtin 114, deprecated 0) would read as ADD (0); the field (slot 3, vtable offset
    10, int32) is read here directly.
    """
    import flatbuffers

    offset = code._tab.Offset(10)
    raw = code._tab.Get(flatbuffers.number_types.Int32Flags, offset + code._tab.Pos) if offset else 0
    return max(int(raw), int(code.DeprecatedBuiltinCode()))
