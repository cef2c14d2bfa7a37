"""Write small TFLite flatbuffers for tests, with the ``tflite`` package's generated builders.

No TFLite converter is installed (TensorFlow is not a dependency), so a test model is written
table by table: tensors (shape, type, constant data, affine quantization), operators (a builtin
with its options table, or a custom op with its raw options bytes) and one subgraph::

    write_tflite(path, [Tensor("x", (1, 4, 4, 2)), ...], [Op("TRANSPOSE_CONV", [0, 1, 2], [3],
                 ("TransposeConvOptions", {"Padding": 0, "StrideH": 2, "StrideW": 2}))], inputs=[2], outputs=[3])

An op of :data:`DEFAULT_OPTIONS` given no options gets its options table with every field at its
default (no fused activation, ...). :func:`int8` makes an int8 activation tensor; the one-op
builders at the end (:func:`resize_tflite`, :func:`pad_tflite`, :func:`depth_space_tflite`) write
int8 models whose first input is the model's input and whose other inputs are int32 constants.
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import flatbuffers
import numpy as np
import tflite

_TYPES = {"float32": tflite.TensorType.FLOAT32, "float16": tflite.TensorType.FLOAT16,
          "int32": tflite.TensorType.INT32, "int8": tflite.TensorType.INT8}
#: op -> the options table it is written with when an :class:`Op` gives none (all fields default).
DEFAULT_OPTIONS = {"FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions", "MUL": "MulOptions",
                   "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions", "PAD": "PadOptions"}


@dataclass
class Tensor:
    """One tensor; ``data`` makes it a constant; ``scale`` / ``zero_point`` quantize it (along ``axis``)."""

    name: str
    shape: Sequence[int]
    dtype: str = "float32"
    data: Optional[np.ndarray] = None
    scale: Optional[Sequence[float]] = None
    zero_point: Optional[Sequence[int]] = None
    axis: int = 0


def int8(name: str, shape: Sequence[int], qparams: tuple[float, int], data: Optional[np.ndarray] = None) -> Tensor:
    """A per-tensor int8 tensor of ``qparams = (scale, zero_point)``."""
    return Tensor(name, shape, "int8", data, scale=[qparams[0]], zero_point=[qparams[1]])


@dataclass
class Op:
    """A builtin op (``code`` its name, ``options`` ``(table name, {field: value})``) or a custom op
    (``code`` ``"CUSTOM:<name>"``, ``custom_options`` its raw bytes)."""

    code: str
    inputs: list[int]
    outputs: list[int]
    options: Optional[tuple[str, dict[str, Any]]] = None
    custom_options: bytes = b""
    version: int = 1


def _vector(b: flatbuffers.Builder, start: Any, items: Sequence[Any], prepend: str) -> int:
    start(b, len(items))
    for v in reversed(list(items)):
        getattr(b, prepend)(v)
    return b.EndVector()


def _tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    name = b.CreateString(t.name)
    shape = _vector(b, tflite.TensorStartShapeVector, [int(d) for d in t.shape], "PrependInt32")
    quant = None
    if t.scale is not None:
        scale = _vector(b, tflite.QuantizationParametersStartScaleVector, [float(s) for s in t.scale],
                        "PrependFloat32")
        zps = _vector(b, tflite.QuantizationParametersStartZeroPointVector,
                      [int(z) for z in (t.zero_point if t.zero_point is not None else [0] * len(t.scale))],
                      "PrependInt64")
        tflite.QuantizationParametersStart(b)
        tflite.QuantizationParametersAddScale(b, scale)
        tflite.QuantizationParametersAddZeroPoint(b, zps)
        tflite.QuantizationParametersAddQuantizedDimension(b, t.axis)
        quant = tflite.QuantizationParametersEnd(b)
    tflite.TensorStart(b)
    tflite.TensorAddShape(b, shape)
    tflite.TensorAddType(b, _TYPES[t.dtype])
    tflite.TensorAddBuffer(b, buffer)
    tflite.TensorAddName(b, name)
    if quant is not None:
        tflite.TensorAddQuantization(b, quant)
    return tflite.TensorEnd(b)


def _options(b: flatbuffers.Builder, table: str, values: dict[str, Any]) -> int:
    getattr(tflite, f"{table}Start")(b)
    for key, value in values.items():
        getattr(tflite, f"{table}Add{key}")(b, value)
    return getattr(tflite, f"{table}End")(b)


def _operator(b: flatbuffers.Builder, op: Op, code_index: int) -> int:
    inputs = _vector(b, tflite.OperatorStartInputsVector, op.inputs, "PrependInt32")
    outputs = _vector(b, tflite.OperatorStartOutputsVector, op.outputs, "PrependInt32")
    if op.options is None and op.code in DEFAULT_OPTIONS:
        op = Op(op.code, op.inputs, op.outputs, (DEFAULT_OPTIONS[op.code], {}), op.custom_options, op.version)
    options = _options(b, *op.options) if op.options else None
    custom = _vector(b, tflite.OperatorStartCustomOptionsVector, list(op.custom_options), "PrependUint8") \
        if op.custom_options else None
    tflite.OperatorStart(b)
    tflite.OperatorAddOpcodeIndex(b, code_index)
    tflite.OperatorAddInputs(b, inputs)
    tflite.OperatorAddOutputs(b, outputs)
    if options is not None:
        assert op.options is not None
        tflite.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, op.options[0]))
        tflite.OperatorAddBuiltinOptions(b, options)
    if custom is not None:
        tflite.OperatorAddCustomOptions(b, custom)
    return tflite.OperatorEnd(b)


def _code(b: flatbuffers.Builder, code: str, version: int) -> int:
    custom = b.CreateString(code.split(":", 1)[1]) if code.startswith("CUSTOM:") else None
    builtin = tflite.BuiltinOperator.CUSTOM if custom is not None else getattr(tflite.BuiltinOperator, code)
    tflite.OperatorCodeStart(b)
    tflite.OperatorCodeAddDeprecatedBuiltinCode(b, min(builtin, 127))
    tflite.OperatorCodeAddBuiltinCode(b, builtin)
    tflite.OperatorCodeAddVersion(b, version)
    if custom is not None:
        tflite.OperatorCodeAddCustomCode(b, custom)
    return tflite.OperatorCodeEnd(b)


def _tensor_maps(b: flatbuffers.Builder, start: Any, tensors: list[Tensor], indices: list[int]) -> int:
    maps = []
    for i in indices:
        name = b.CreateString(tensors[i].name)
        tflite.TensorMapStart(b)
        tflite.TensorMapAddName(b, name)
        tflite.TensorMapAddTensorIndex(b, i)
        maps.append(tflite.TensorMapEnd(b))
    return _vector(b, start, maps, "PrependUOffsetTRelative")


def _signature(b: flatbuffers.Builder, key: str, tensors: list[Tensor], inputs: list[int], outputs: list[int]) -> int:
    """The SignatureDef ``key`` of subgraph 0, its inputs and outputs named as their tensors."""
    ins = _tensor_maps(b, tflite.SignatureDefStartInputsVector, tensors, inputs)
    outs = _tensor_maps(b, tflite.SignatureDefStartOutputsVector, tensors, outputs)
    name = b.CreateString(key)
    tflite.SignatureDefStart(b)
    tflite.SignatureDefAddInputs(b, ins)
    tflite.SignatureDefAddOutputs(b, outs)
    tflite.SignatureDefAddSignatureKey(b, name)
    tflite.SignatureDefAddSubgraphIndex(b, 0)
    return tflite.SignatureDefEnd(b)


def write_tflite(path: pathlib.Path, tensors: list[Tensor], ops: list[Op], inputs: list[int],
                 outputs: list[int], signature: Optional[str] = None) -> pathlib.Path:
    """Write the one-subgraph model and return ``path``; ``signature``: the key of a SignatureDef
    (ai-edge-quantizer calibrates through one) whose inputs and outputs are named as their tensors."""
    b = flatbuffers.Builder(1024)
    buffers = [None] + [t.data for t in tensors if t.data is not None]  # buffer 0: empty, as TFLite writes
    buffer_of, k = [], 1
    for t in tensors:
        buffer_of.append(k if t.data is not None else 0)
        k += t.data is not None
    buffer_tables = []
    for data in buffers:
        raw = None
        if data is not None:
            raw_bytes = np.ascontiguousarray(data).tobytes()
            b.StartVector(1, len(raw_bytes), 16)  # 16-byte aligned, as the converter writes
            b.head = b.head - len(raw_bytes)
            b.Bytes[b.head:b.head + len(raw_bytes)] = raw_bytes
            raw = b.EndVector()
        tflite.BufferStart(b)
        if raw is not None:
            tflite.BufferAddData(b, raw)
        buffer_tables.append(tflite.BufferEnd(b))
    tensor_tables = [_tensor(b, t, buffer_of[i]) for i, t in enumerate(tensors)]
    codes = list(dict.fromkeys(op.code for op in ops))
    op_tables = [_operator(b, op, codes.index(op.code)) for op in ops]
    code_tables = [_code(b, c, next(op.version for op in ops if op.code == c)) for c in codes]
    sub_tensors = _vector(b, tflite.SubGraphStartTensorsVector, tensor_tables, "PrependUOffsetTRelative")
    sub_inputs = _vector(b, tflite.SubGraphStartInputsVector, inputs, "PrependInt32")
    sub_outputs = _vector(b, tflite.SubGraphStartOutputsVector, outputs, "PrependInt32")
    sub_ops = _vector(b, tflite.SubGraphStartOperatorsVector, op_tables, "PrependUOffsetTRelative")
    tflite.SubGraphStart(b)
    tflite.SubGraphAddTensors(b, sub_tensors)
    tflite.SubGraphAddInputs(b, sub_inputs)
    tflite.SubGraphAddOutputs(b, sub_outputs)
    tflite.SubGraphAddOperators(b, sub_ops)
    subgraph = tflite.SubGraphEnd(b)
    model_codes = _vector(b, tflite.ModelStartOperatorCodesVector, code_tables, "PrependUOffsetTRelative")
    model_subgraphs = _vector(b, tflite.ModelStartSubgraphsVector, [subgraph], "PrependUOffsetTRelative")
    model_buffers = _vector(b, tflite.ModelStartBuffersVector, buffer_tables, "PrependUOffsetTRelative")
    signatures = None if signature is None else _vector(
        b, tflite.ModelStartSignatureDefsVector, [_signature(b, signature, tensors, inputs, outputs)],
        "PrependUOffsetTRelative")
    tflite.ModelStart(b)
    tflite.ModelAddVersion(b, 3)
    tflite.ModelAddOperatorCodes(b, model_codes)
    tflite.ModelAddSubgraphs(b, model_subgraphs)
    tflite.ModelAddBuffers(b, model_buffers)
    if signatures is not None:
        tflite.ModelAddSignatureDefs(b, signatures)
    b.Finish(tflite.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path


def _one_op(path: pathlib.Path, op: str, x: Tensor, constants: Sequence[Tensor], y: Tensor,
            options: Optional[tuple[str, dict[str, Any]]] = None) -> pathlib.Path:
    tensors = [x, *constants, y]
    return write_tflite(path, tensors, [Op(op, list(range(len(tensors) - 1)), [len(tensors) - 1], options)],
                        inputs=[0], outputs=[len(tensors) - 1])


def resize_tflite(path: pathlib.Path, shape: Sequence[int], size: Sequence[int], qparams: tuple[float, int], *,
                  align_corners: bool = False, half_pixel_centers: bool = False, nearest: bool = False) -> pathlib.Path:
    """An int8 NHWC RESIZE_BILINEAR (RESIZE_NEAREST_NEIGHBOR) of ``shape`` to ``size = (height, width)``;
    both tensors share ``qparams``."""
    op, table = ("RESIZE_NEAREST_NEIGHBOR", "ResizeNearestNeighborOptions") if nearest else \
        ("RESIZE_BILINEAR", "ResizeBilinearOptions")
    out = [shape[0], size[0], size[1], shape[3]]
    return _one_op(path, op, int8("x", shape, qparams), [Tensor("size", [2], "int32", np.asarray(size, np.int32))],
                   int8("y", out, qparams),
                   (table, {"AlignCorners": align_corners, "HalfPixelCenters": half_pixel_centers}))


def resize_bilinear_tflite(path: pathlib.Path, shape: Sequence[int], size: Sequence[int], qparams: tuple[float, int],
                           *, align_corners: bool = False, half_pixel_centers: bool = False) -> pathlib.Path:
    """:func:`resize_tflite` of RESIZE_BILINEAR."""
    return resize_tflite(path, shape, size, qparams, align_corners=align_corners, half_pixel_centers=half_pixel_centers)


def pad_tflite(path: pathlib.Path, shape: Sequence[int], paddings: Sequence[Sequence[int]],
               qparams: tuple[float, int]) -> pathlib.Path:
    """An int8 PAD of ``shape`` by ``paddings`` (one ``(before, after)`` per axis)."""
    pads = np.asarray(paddings, np.int32)
    out = [d + int(p.sum()) for d, p in zip(shape, pads, strict=True)]
    return _one_op(path, "PAD", int8("x", shape, qparams), [Tensor("paddings", list(pads.shape), "int32", pads)],
                   int8("y", out, qparams))


def depth_space_tflite(path: pathlib.Path, op: str, shape: Sequence[int], block: int,
                       qparams: tuple[float, int]) -> pathlib.Path:
    """An int8 NHWC DEPTH_TO_SPACE or SPACE_TO_DEPTH of ``shape`` with ``block``."""
    n, h, w, c = shape
    out = [n, h * block, w * block, c // block**2] if op == "DEPTH_TO_SPACE" else \
        [n, h // block, w // block, c * block**2]
    table = "DepthToSpaceOptions" if op == "DEPTH_TO_SPACE" else "SpaceToDepthOptions"
    return _one_op(path, op, int8("x", shape, qparams), [], int8("y", out, qparams), (table, {"BlockSize": block}))
