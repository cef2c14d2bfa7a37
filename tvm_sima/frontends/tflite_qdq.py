"""Import an int8 TFLite model as a Relax QDQ graph (``sima.dequantize`` -> float op -> ``sima.quantize``).

Relax's own TFLite importer rejects many int8 graphs; this one reads the flatbuffer with
:mod:`tvm_sima.frontends.tflite_flatbuffer` and writes, per op, the graph a QDQ converter expects:

* CONV_2D / DEPTHWISE_CONV_2D (NHWC, weights HWIO, SAME padding made explicit) and
  FULLY_CONNECTED: ``quantize(act(op(dequantize(x), dequantize(W)) + dequantize(b)))`` with the
  int8 weight and the int32 bias kept as constants behind their dequantize (per-channel along the
  output channel), the fused activation as ``relu`` / ``clip``;
* RESHAPE on the integers.

The model keeps its integer interface: int8 in, int8 out, as in LiteRT. Executed as is (float
arithmetic between the dequantize and quantize), it matches LiteRT's integer kernels to within
rounding; ``tvm_sima.convert`` (the converter issue) folds each chain into one fused sima op.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import tvm
from tvm import relax

from .. import math as sm
from .. import ops as so
from .tflite_flatbuffer import TFLiteGraph, TFLiteOp, TFLiteTensor, read_tflite

__all__ = ["QDQ_OPS", "import_int8_tflite"]

QDQ_OPS = ("CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "RESHAPE")
_ACTIVATIONS = {"NONE": None, "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _qparams(t: TFLiteTensor, axis: int = -1) -> sm.QParams:
    scale = np.asarray(t.scale, dtype=np.float64)
    zp = np.asarray(t.zero_point, dtype=np.int64)
    if scale.size == 1:
        return sm.QParams(float(scale[0]), int(zp[0]), str(np.dtype(t.dtype)))
    return sm.QParams(scale, zp, str(np.dtype(t.dtype)), axis=axis)


def _constant(graph: TFLiteGraph, op: TFLiteOp, position: int) -> np.ndarray:
    t = graph.tensors[op.inputs[position]]
    if t.data is None:
        raise ValueError(f"op {op.index} ({op.name}): input {position} '{t.name}' is not a constant; "
                         "weights and biases computed at run time are not supported")
    return t.data


def _bias(graph: TFLiteGraph, op: TFLiteOp, x: TFLiteTensor, w: TFLiteTensor, channel_axis: int,
          rank: int) -> relax.Expr:
    """``dequantize(int32 bias)`` at the product scale, shaped to broadcast along the output channel."""
    b = _constant(graph, op, 2).astype(np.int32)
    scales = np.float64(np.float32(x.scale[0])) * np.asarray(w.scale, dtype=np.float32).astype(np.float64)
    qp = sm.QParams(float(scales[0]), 0, "int32") if scales.size == 1 else \
        sm.QParams(scales, np.zeros(scales.size, np.int64), "int32", axis=0)
    deq = so.dequantize(relax.const(b, "int32"), qp)
    return deq if channel_axis == rank - 1 else relax.op.reshape(deq, [-1] + [1] * (rank - channel_axis - 1))


def _finish(bb: relax.BlockBuilder, op: TFLiteOp, out: TFLiteTensor, y: relax.Expr) -> relax.Expr:
    activation = op.options.get("FusedActivationFunction", "NONE")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"op {op.index} ({op.name}): fused activation {activation} is not supported")
    bounds = _ACTIVATIONS[activation]
    if bounds is not None:
        lo, hi = bounds
        y = bb.emit(relax.op.nn.relu(y) if hi is None else relax.op.clip(y, lo, hi))
    return bb.emit(so.quantize(y, _qparams(out), "half_away_from_zero"))


def _conv(bb: relax.BlockBuilder, graph: TFLiteGraph, op: TFLiteOp, x_int: relax.Expr) -> relax.Expr:
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    weight = _constant(graph, op, 1)
    o = op.options
    if op.name == "CONV_2D":
        hwio, groups = weight.transpose(1, 2, 3, 0), 1  # OHWI -> HWIO
    else:
        hwio, groups = weight.transpose(1, 2, 0, 3), x.shape[3]  # 1,H,W,C*m -> H,W,1,C*m
    strides = (o["StrideH"], o["StrideW"])
    dilation = (o["DilationHFactor"], o["DilationWFactor"])
    if o["Padding"] == "SAME":
        (top, bottom), (left, right) = (sm.same_padding(x.shape[1 + i], hwio.shape[i], strides[i], dilation[i])
                                        for i in range(2))
        padding = [top, left, bottom, right]
    else:
        padding = [0, 0, 0, 0]
    xf = bb.emit(so.dequantize(x_int, _qparams(x)))
    wf = bb.emit(so.dequantize(relax.const(hwio.astype(np.int8), "int8"), _qparams(w, axis=3)))
    y = bb.emit(relax.op.nn.conv2d(xf, wf, strides=strides, padding=padding, dilation=dilation, groups=groups,
                                   data_layout="NHWC", kernel_layout="HWIO"))
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 3, 4)))
    return _finish(bb, op, out, y)


def _fully_connected(bb: relax.BlockBuilder, graph: TFLiteGraph, op: TFLiteOp, x_int: relax.Expr) -> relax.Expr:
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    weight = _constant(graph, op, 1)  # (O, K)
    if len(x.shape) != 2:
        x_int = bb.emit(relax.op.reshape(x_int, (-1, weight.shape[1])))
    xf = bb.emit(so.dequantize(x_int, _qparams(x)))
    wf = bb.emit(so.dequantize(relax.const(weight.T.astype(np.int8).copy(), "int8"), _qparams(w, axis=1)))
    y = bb.emit(relax.op.matmul(xf, wf))
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 1, 2)))
    y = _finish(bb, op, out, y)
    return y if tuple(out.shape) == (int(np.prod(out.shape[:-1])), out.shape[-1]) else \
        bb.emit(relax.op.reshape(y, out.shape))


def import_int8_tflite(model: Union[str, os.PathLike, bytes]) -> tvm.IRModule:
    """The QDQ Relax module of an int8 TFLite model (module docstring).

    Raises
    ------
    ValueError
        Listing every unsupported op with its index and output tensor, or for non-int8 tensors.
    """
    graph = read_tflite(model)
    missing = [f"{op.name} (op {op.index}, output '{graph.tensors[op.outputs[0]].name}')"
               for op in graph.ops if op.name not in QDQ_OPS]
    if missing:
        raise ValueError(f"unsupported int8 TFLite ops: {', '.join(missing)}; supported: {', '.join(QDQ_OPS)}")
    for op in graph.ops:
        for index in op.inputs[:2] + op.outputs:
            t = graph.tensors[index]
            if index >= 0 and op.name != "RESHAPE" and t.dtype != np.int8:
                raise ValueError(f"op {op.index} ({op.name}): tensor '{t.name}' is {t.dtype}; only int8 "
                                 "activations and weights are supported")
    params = [relax.Var(graph.tensors[i].name.replace(":", "_") or f"input{k}",
                        relax.TensorType(graph.tensors[i].shape, str(np.dtype(graph.tensors[i].dtype))))
              for k, i in enumerate(graph.inputs)]
    bb = relax.BlockBuilder()
    with bb.function("main", params, attrs={"num_input": len(params)}):
        with bb.dataflow():
            values: dict[int, relax.Expr] = dict(zip(graph.inputs, params, strict=True))
            for op in graph.ops:
                x = values[op.inputs[0]]
                if op.name == "RESHAPE":
                    values[op.outputs[0]] = bb.emit(relax.op.reshape(x, graph.tensors[op.outputs[0]].shape))
                elif op.name == "FULLY_CONNECTED":
                    values[op.outputs[0]] = _fully_connected(bb, graph, op, x)
                else:
                    values[op.outputs[0]] = _conv(bb, graph, op, x)
            outs = [values[i] for i in graph.outputs]
            result = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(result)
    return bb.get()
