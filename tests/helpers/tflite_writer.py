"""Write one-op int8 TFLite files field by field (no TFLite writer is installed), for LiteRT oracles.

Field slots from TFLite's schema.fbs: Tensor (shape 0, type 1, buffer 2, name 3, quantization 4),
QuantizationParameters (scale 2, zero_point 3), Buffer (data 0), Operator (opcode_index 0,
inputs 1, outputs 2, builtin_options_type 3, builtin_options 4), OperatorCode
(deprecated_builtin_code 0, version 2, builtin_code 3), SubGraph (tensors 0, inputs 1, outputs 2,
operators 3), Model (version 0, operator_codes 1, subgraphs 2, buffers 4).
"""

from __future__ import annotations

import pathlib
from dataclasses import dataclass
from typing import Callable, Optional, Sequence

import flatbuffers
import numpy as np

INT8, INT32 = 9, 2  # TensorType
#: op name -> (BuiltinOperator code, BuiltinOptions union type, or 0 for none)
OPS = {"RESIZE_BILINEAR": (23, 15), "RESIZE_NEAREST_NEIGHBOR": (97, 74), "DEPTH_TO_SPACE": (5, 94),
       "SPACE_TO_DEPTH": (26, 19), "PAD": (34, 22)}


@dataclass
class Tensor:
    """A tensor of the file: int8 activations with ``(scale, zero_point)``, or an int32 constant."""

    name: str
    shape: Sequence[int]
    qparams: Optional[tuple[float, int]] = None
    data: Optional[np.ndarray] = None


def _ints(b: flatbuffers.Builder, items: Sequence[int]) -> int:
    b.StartVector(4, len(items), 4)
    for v in reversed(list(items)):
        b.PrependInt32(int(v))
    return b.EndVector()


def _tables(b: flatbuffers.Builder, offsets: Sequence[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(list(offsets)):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _tensor(b: flatbuffers.Builder, t: Tensor, buffer: int) -> int:
    name, dims = b.CreateString(t.name), _ints(b, t.shape)
    quant = None
    if t.qparams is not None:
        b.StartVector(4, 1, 4)
        b.PrependFloat32(float(t.qparams[0]))
        scales = b.EndVector()
        b.StartVector(8, 1, 8)
        b.PrependInt64(int(t.qparams[1]))
        zps = b.EndVector()
        b.StartObject(7)
        b.PrependUOffsetTRelativeSlot(2, scales, 0)
        b.PrependUOffsetTRelativeSlot(3, zps, 0)
        quant = b.EndObject()
    b.StartObject(8)
    b.PrependUOffsetTRelativeSlot(0, dims, 0)
    b.PrependInt8Slot(1, INT32 if t.data is not None else INT8, 0)
    b.PrependUint32Slot(2, buffer, 0)
    b.PrependUOffsetTRelativeSlot(3, name, 0)
    if quant is not None:
        b.PrependUOffsetTRelativeSlot(4, quant, 0)
    return b.EndObject()


def _buffer(b: flatbuffers.Builder, data: Optional[np.ndarray]) -> int:
    raw = None
    if data is not None:
        raw = b.CreateByteVector(np.ascontiguousarray(data, dtype="<i4").tobytes())
    b.StartObject(1)
    if raw is not None:
        b.PrependUOffsetTRelativeSlot(0, raw, 0)
    return b.EndObject()


def one_op_tflite(path: pathlib.Path, op: str, inputs: Sequence[Tensor], output: Tensor,
                  options: Optional[Callable[[flatbuffers.Builder], int]] = None) -> pathlib.Path:
    """``output = op(*inputs)``; the first input is the model's input, the others int32 constants.

    ``options(builder) -> table offset`` writes the op's BuiltinOptions table (or None).
    """
    code, options_type = OPS[op]
    b = flatbuffers.Builder(0)
    tensors = list(inputs) + [output]
    buffers = [_buffer(b, None)] + [_buffer(b, t.data) for t in tensors]
    offsets = [_tensor(b, t, k + 1) for k, t in enumerate(tensors)]
    table = options(b) if options is not None else None
    if table is None and options_type:
        b.StartObject(0)
        table = b.EndObject()
    op_in, op_out = _ints(b, range(len(inputs))), _ints(b, [len(inputs)])
    b.StartObject(5)
    b.PrependUOffsetTRelativeSlot(1, op_in, 0)
    b.PrependUOffsetTRelativeSlot(2, op_out, 0)
    if table is not None:
        b.PrependUint8Slot(3, options_type, 0)
        b.PrependUOffsetTRelativeSlot(4, table, 0)
    operator = b.EndObject()
    parts = [_tables(b, offsets), _ints(b, [0]), _ints(b, [len(inputs)]), _tables(b, [operator])]
    b.StartObject(4)
    for slot, part in enumerate(parts):
        b.PrependUOffsetTRelativeSlot(slot, part, 0)
    subgraph = b.EndObject()
    b.StartObject(4)
    b.PrependInt8Slot(0, code, 0)
    b.PrependInt32Slot(2, 1, 0)
    b.PrependInt32Slot(3, code, 0)
    opcode = b.EndObject()
    codes, subgraphs, all_buffers = _tables(b, [opcode]), _tables(b, [subgraph]), _tables(b, buffers)
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, codes, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(4, all_buffers, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    path.write_bytes(b.Output())
    return path


def resize_tflite(path: pathlib.Path, shape: Sequence[int], size: Sequence[int], qparams: tuple[float, int], *,
                  align_corners: bool = False, half_pixel_centers: bool = False, nearest: bool = False) -> pathlib.Path:
    """An int8 NHWC RESIZE_BILINEAR (RESIZE_NEAREST_NEIGHBOR) of ``shape`` to ``size = (height, width)``.

    Both tensors share ``qparams``; the options tables: bilinear (align_corners 2,
    half_pixel_centers 3), nearest (align_corners 0, half_pixel_centers 1).
    """
    first = 0 if nearest else 2

    def options(b: flatbuffers.Builder) -> int:
        b.StartObject(first + 2)
        b.PrependBoolSlot(first, align_corners, False)
        b.PrependBoolSlot(first + 1, half_pixel_centers, False)
        return b.EndObject()

    out = [shape[0], size[0], size[1], shape[3]]
    op = "RESIZE_NEAREST_NEIGHBOR" if nearest else "RESIZE_BILINEAR"
    return one_op_tflite(path, op, [Tensor("x", shape, qparams), Tensor("size", [2], data=np.asarray(size, np.int32))],
                         Tensor("y", out, qparams), options)


def resize_bilinear_tflite(path: pathlib.Path, shape: Sequence[int], size: Sequence[int], qparams: tuple[float, int],
                           *, align_corners: bool = False, half_pixel_centers: bool = False) -> pathlib.Path:
    """:func:`resize_tflite` of RESIZE_BILINEAR."""
    return resize_tflite(path, shape, size, qparams, align_corners=align_corners, half_pixel_centers=half_pixel_centers)

def pad_tflite(path: pathlib.Path, shape: Sequence[int], paddings: Sequence[Sequence[int]],
               qparams: tuple[float, int]) -> pathlib.Path:
    """An int8 PAD of ``shape`` by ``paddings`` (one ``(before, after)`` per axis)."""
    pads = np.asarray(paddings, np.int32)
    out = [d + int(p.sum()) for d, p in zip(shape, pads, strict=True)]
    return one_op_tflite(path, "PAD", [Tensor("x", shape, qparams), Tensor("paddings", list(pads.shape), data=pads)],
                         Tensor("y", out, qparams))


def depth_space_tflite(path: pathlib.Path, op: str, shape: Sequence[int], block: int,
                       qparams: tuple[float, int]) -> pathlib.Path:
    """An int8 NHWC DEPTH_TO_SPACE or SPACE_TO_DEPTH of ``shape`` with ``block``."""
    n, h, w, c = shape
    out = [n, h * block, w * block, c // block**2] if op == "DEPTH_TO_SPACE" else \
        [n, h // block, w // block, c * block**2]

    def options(b: flatbuffers.Builder) -> int:
        b.StartObject(1)
        b.PrependInt32Slot(0, block, 0)
        return b.EndObject()

    return one_op_tflite(path, op, [Tensor("x", shape, qparams)], Tensor("y", out, qparams), options)
