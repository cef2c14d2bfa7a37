"""Write small TFLite flatbuffers for the tests with the ``tflite`` package's builders (no TensorFlow).

``write_tflite(path, tensors, ops, inputs, outputs)``: one subgraph; each :class:`T` is a tensor
(shape, TensorType name, optional constant data, optional int8 ``(scale, zero_point)``), each op a
``(BuiltinOperator name, input indices, output indices)``; an op of :data:`OPTIONS` gets its
builtin options table with every field at its default (no fused activation, ...).
"""

from __future__ import annotations

import importlib
import pathlib
from dataclasses import dataclass
from typing import Optional, Sequence

import flatbuffers
import numpy as np
import tflite

# the modules (``from tflite import Model`` is the reader class of the same name)
Buffer, Model, Operator, OperatorCode, QuantizationParameters, SubGraph, Tensor = (
    importlib.import_module(f"tflite.{m}") for m in
    ("Buffer", "Model", "Operator", "OperatorCode", "QuantizationParameters", "SubGraph", "Tensor"))


#: op -> its BuiltinOptions table (written empty: the defaults).
OPTIONS = {"FULLY_CONNECTED": "FullyConnectedOptions", "ADD": "AddOptions", "MUL": "MulOptions",
           "MAXIMUM": "MaximumMinimumOptions", "MINIMUM": "MaximumMinimumOptions"}


@dataclass
class T:
    name: str
    shape: Sequence[int]
    dtype: str  # "FLOAT32", "FLOAT16", "INT8", "INT32"
    data: Optional[np.ndarray] = None
    quant: Optional[tuple[float, int]] = None


def _int_vector(b: flatbuffers.Builder, start, values: Sequence[int]) -> int:
    start(b, len(values))
    for v in reversed(values):
        b.PrependInt32(int(v))
    return b.EndVector()


def _table_vector(b: flatbuffers.Builder, start, offsets: Sequence[int]) -> int:
    start(b, len(offsets))
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def _buffer(b: flatbuffers.Builder, data: Optional[np.ndarray]) -> int:
    raw = b"" if data is None else np.ascontiguousarray(data).tobytes()
    vec = b.CreateByteVector(raw) if raw else None
    Buffer.BufferStart(b)
    if vec is not None:
        Buffer.BufferAddData(b, vec)
    return Buffer.BufferEnd(b)


def _quant(b: flatbuffers.Builder, quant: tuple[float, int]) -> int:
    QuantizationParameters.QuantizationParametersStartScaleVector(b, 1)
    b.PrependFloat32(float(quant[0]))
    scale = b.EndVector()
    QuantizationParameters.QuantizationParametersStartZeroPointVector(b, 1)
    b.PrependInt64(int(quant[1]))
    zp = b.EndVector()
    QuantizationParameters.QuantizationParametersStart(b)
    QuantizationParameters.QuantizationParametersAddScale(b, scale)
    QuantizationParameters.QuantizationParametersAddZeroPoint(b, zp)
    return QuantizationParameters.QuantizationParametersEnd(b)


def _tensor(b: flatbuffers.Builder, t: T, buffer: int) -> int:
    name = b.CreateString(t.name)
    shape = _int_vector(b, Tensor.TensorStartShapeVector, t.shape)
    quant = _quant(b, t.quant) if t.quant is not None else None
    Tensor.TensorStart(b)
    Tensor.TensorAddShape(b, shape)
    Tensor.TensorAddType(b, getattr(tflite.TensorType, t.dtype))
    Tensor.TensorAddBuffer(b, buffer)
    Tensor.TensorAddName(b, name)
    if quant is not None:
        Tensor.TensorAddQuantization(b, quant)
    return Tensor.TensorEnd(b)


def write_tflite(path: pathlib.Path, tensors: list[T], ops: list[tuple[str, list[int], list[int]]],
                 inputs: list[int], outputs: list[int]) -> pathlib.Path:
    b = flatbuffers.Builder(1024)
    names = sorted({op for op, _, _ in ops})
    codes = []
    for op in names:
        code = getattr(tflite.BuiltinOperator, op)
        OperatorCode.OperatorCodeStart(b)
        OperatorCode.OperatorCodeAddDeprecatedBuiltinCode(b, min(code, 127))
        OperatorCode.OperatorCodeAddBuiltinCode(b, code)
        OperatorCode.OperatorCodeAddVersion(b, 1)
        codes.append(OperatorCode.OperatorCodeEnd(b))
    buffers = [_buffer(b, None)] + [_buffer(b, t.data) for t in tensors]  # buffer 0 is the empty one
    tensor_offsets = [_tensor(b, t, k + 1 if t.data is not None else 0) for k, t in enumerate(tensors)]
    op_offsets = []
    for op, ins, outs in ops:
        vin = _int_vector(b, Operator.OperatorStartInputsVector, ins)
        vout = _int_vector(b, Operator.OperatorStartOutputsVector, outs)
        options = None
        if op in OPTIONS:
            table = importlib.import_module(f"tflite.{OPTIONS[op]}")
            table.Start(b)
            options = table.End(b)
        Operator.OperatorStart(b)
        Operator.OperatorAddOpcodeIndex(b, names.index(op))
        if options is not None:
            Operator.OperatorAddBuiltinOptionsType(b, getattr(tflite.BuiltinOptions, OPTIONS[op]))
            Operator.OperatorAddBuiltinOptions(b, options)
        Operator.OperatorAddInputs(b, vin)
        Operator.OperatorAddOutputs(b, vout)
        op_offsets.append(Operator.OperatorEnd(b))
    vt = _table_vector(b, SubGraph.SubGraphStartTensorsVector, tensor_offsets)
    vi = _int_vector(b, SubGraph.SubGraphStartInputsVector, inputs)
    vo = _int_vector(b, SubGraph.SubGraphStartOutputsVector, outputs)
    vops = _table_vector(b, SubGraph.SubGraphStartOperatorsVector, op_offsets)
    SubGraph.SubGraphStart(b)
    SubGraph.SubGraphAddTensors(b, vt)
    SubGraph.SubGraphAddInputs(b, vi)
    SubGraph.SubGraphAddOutputs(b, vo)
    SubGraph.SubGraphAddOperators(b, vops)
    subgraph = SubGraph.SubGraphEnd(b)
    vcodes = _table_vector(b, Model.ModelStartOperatorCodesVector, codes)
    vsub = _table_vector(b, Model.ModelStartSubgraphsVector, [subgraph])
    vbuf = _table_vector(b, Model.ModelStartBuffersVector, buffers)
    desc = b.CreateString("tvm-sima test fixture")
    Model.ModelStart(b)
    Model.ModelAddVersion(b, 3)
    Model.ModelAddOperatorCodes(b, vcodes)
    Model.ModelAddSubgraphs(b, vsub)
    Model.ModelAddDescription(b, desc)
    Model.ModelAddBuffers(b, vbuf)
    b.Finish(Model.ModelEnd(b), file_identifier=b"TFL3")
    path.write_bytes(bytes(b.Output()))
    return path
