"""Int8 TFLite ops with an int8 weight and an int32 bias: CONV_2D / DEPTHWISE_CONV_2D (also in the
dilated SPACE_TO_BATCH_ND form), TRANSPOSE_CONV and FULLY_CONNECTED (:mod:`tvm_sima.frontends.tflite_qdq`)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from .. import math as sm
from .. import ops as so
from .tflite_flatbuffer import TFLiteGraph, TFLiteOp, TFLiteTensor
from .tflite_qdq_importer import Importer, finish, qparams, register


def _constant(graph: TFLiteGraph, op: TFLiteOp, position: int) -> np.ndarray:
    t = graph.tensors[op.inputs[position]]
    if t.data is None:
        raise ValueError(f"op {op.index} ({op.name}): input {position} '{t.name}' is not a constant; "
                         "weights and biases computed at run time are not supported")
    return t.data


def _bias(graph: TFLiteGraph, op: TFLiteOp, x: TFLiteTensor, w: TFLiteTensor, channel_axis: int,
          rank: int, position: int = 2) -> relax.Expr:
    """``dequantize(int32 bias)`` (input ``position``) at the product scale, shaped to broadcast along the
    output channel."""
    b = _constant(graph, op, position).astype(np.int32)
    scales = np.float64(np.float32(x.scale[0])) * np.asarray(w.scale, dtype=np.float32).astype(np.float64)
    qp = sm.QParams(float(scales[0]), 0, "int32") if scales.size == 1 else \
        sm.QParams(scales, np.zeros(scales.size, np.int64), "int32", axis=0)
    deq = so.dequantize(relax.const(b, "int32"), qp)
    return deq if channel_axis == rank - 1 else relax.op.reshape(deq, [-1] + [1] * (rank - channel_axis - 1))


@register("CONV_2D", "DEPTHWISE_CONV_2D")
def _op_conv_2d(im: Importer, op: TFLiteOp) -> relax.Expr:
    graph, o = im.graph, op.options
    atrous = im.atrous.get(op.index)
    x_index = atrous["input"] if atrous else op.inputs[0]
    x, w, out = im.tensor(x_index), im.tensor(op.inputs[1]), im.tensor(op.outputs[0])
    weight = _constant(graph, op, 1)
    if op.name == "CONV_2D":
        hwio, groups = weight.transpose(1, 2, 3, 0), 1  # OHWI -> HWIO
    else:
        hwio, groups = weight.transpose(1, 2, 0, 3), im.shape(x_index)[3]  # 1,H,W,C*m -> H,W,1,C*m
    strides = (o["StrideH"], o["StrideW"])
    dilation = atrous["dilation"] if atrous else (o["DilationHFactor"], o["DilationWFactor"])
    if atrous:
        padding = atrous["padding"]
    elif o["Padding"] == "SAME":
        shape = im.shape(x_index)
        (top, bottom), (left, right) = (sm.same_padding(shape[1 + i], hwio.shape[i], strides[i], dilation[i])
                                        for i in range(2))
        padding = [top, left, bottom, right]
    else:
        padding = [0, 0, 0, 0]
    bb = im.bb
    xf = im.dequantize(x_index)
    wf = bb.emit(so.dequantize(relax.const(hwio.astype(np.int8), "int8"), qparams(w, axis=3)))
    y = bb.emit(relax.op.nn.conv2d(xf, wf, strides=strides, padding=padding, dilation=dilation, groups=groups,
                                   data_layout="NHWC", kernel_layout="HWIO"))
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 3, 4)))
    result = finish(bb, op, out, y)
    if atrous:
        im.values[atrous["output"]] = result
    return result


@register("TRANSPOSE_CONV")
def _op_transpose_conv(im: Importer, op: TFLiteOp) -> relax.Expr:
    """Inputs: output shape, weights ``[O, kh, kw, I]``, data, [bias]; rows ``iy * s - top + ky`` (LiteRT)."""
    graph, o, bb = im.graph, op.options, im.bb
    x, w, out = im.tensor(op.inputs[2]), im.tensor(op.inputs[1]), im.tensor(op.outputs[0])
    weight, size = _constant(graph, op, 1), im.static_value(op.inputs[0])
    if size is None:
        raise ValueError(f"op {op.index} (TRANSPOSE_CONV): the output shape must be a constant")
    strides, in_shape = (o["StrideH"], o["StrideW"]), im.shape(op.inputs[2])
    before, after, extra = [], [], []
    for i in range(2):
        k, n = weight.shape[1 + i], int(size[1 + i])
        top = sm.same_padding(n, k, strides[i])[0] if o["Padding"] == "SAME" else 0
        bottom = (in_shape[1 + i] - 1) * strides[i] + k - top - n
        before.append(top)
        after.append(max(bottom, 0))
        extra.append(max(-bottom, 0))
    wf = bb.emit(so.dequantize(relax.const(weight.transpose(3, 0, 1, 2).astype(np.int8), "int8"),
                               qparams(w, axis=1)))  # OHWI -> IOHW
    y = bb.emit(relax.op.nn.conv2d_transpose(im.dequantize(op.inputs[2]), wf, strides=strides,
                                             padding=(*before, *after), output_padding=extra, data_layout="NHWC",
                                             kernel_layout="IOHW"))
    if len(op.inputs) > 3 and op.inputs[3] >= 0:
        y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 3, 4, position=3)))
    return finish(bb, op, out, y)


@register("FULLY_CONNECTED")
def _op_fully_connected(im: Importer, op: TFLiteOp) -> relax.Expr:
    graph, bb = im.graph, im.bb
    x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
    weight = _constant(graph, op, 1)  # (O, K)
    x_int = im.value(op.inputs[0])
    if len(im.shape(op.inputs[0])) != 2:
        x_int = bb.emit(relax.op.reshape(x_int, (-1, weight.shape[1])))
    xf = bb.emit(so.dequantize(x_int, qparams(x)))
    wf = bb.emit(so.dequantize(relax.const(weight.T.astype(np.int8).copy(), "int8"), qparams(w, axis=1)))
    y = bb.emit(relax.op.matmul(xf, wf))
    if len(op.inputs) > 2 and op.inputs[2] >= 0:
        y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 1, 2)))
    y = finish(bb, op, out, y)
    if op.options.get("KeepNumDims", False):
        keep = im.shape(op.inputs[0])[:-1] + [weight.shape[0]]
        y = bb.emit(relax.op.reshape(y, keep))
    return y
