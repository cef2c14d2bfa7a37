"""Int8 TFLite element-wise ops, activations and float-domain reductions (AVERAGE_POOL_2D, MEAN):
``quantize(f(dequantize(x), ...))`` (:mod:`tvm_sima.frontends.tflite_qdq`)."""

from __future__ import annotations

from typing import Callable

import numpy as np
from tvm import relax

from .tflite_flatbuffer import TFLiteOp
from .tflite_qdq_importer import Importer, finish, register


@register("LOGISTIC")
def _op_logistic(im: Importer, op: TFLiteOp) -> relax.Expr:
    y = im.bb.emit(relax.op.sigmoid(im.dequantize(op.inputs[0])))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)


@register("PRELU")
def _op_prelu(im: Importer, op: TFLiteOp) -> relax.Expr:
    # ai-edge-quantizer 0.10.0 leaves PRELU float: DEQUANTIZE -> PRELU (float slope) -> QUANTIZE
    x, alpha = im.tensor(op.inputs[0]), im.tensor(op.inputs[1])
    shape = im.shape(op.inputs[0])
    if x.dtype != np.float32 or alpha.dtype != np.float32 or alpha.data is None:
        raise ValueError(f"op {op.index} (PRELU): only a float PRELU with a constant float slope (between "
                         "DEQUANTIZE and QUANTIZE) is supported, not the int8 kernel")
    slopes = np.asarray(alpha.data, np.float32)
    if slopes.size not in (1, shape[-1]) or slopes.size > 1 and slopes.shape[-1] != shape[-1]:
        raise ValueError(f"op {op.index} (PRELU): slope of shape {list(slopes.shape)} for input {shape}; "
                         "one slope per channel (the last axis) or one in all is supported")
    return im.bb.emit(relax.op.nn.prelu(im.value(op.inputs[0]), relax.const(slopes.reshape(-1)),
                                        axis=len(shape) - 1), name_hint=im.out_name(op))


@register("RELU", "RELU6")
def _op_relu(im: Importer, op: TFLiteOp) -> relax.Expr:
    xf = im.dequantize(op.inputs[0])
    y = relax.op.nn.relu(xf) if op.name == "RELU" else relax.op.clip(xf, 0.0, 6.0)
    return finish(im.bb, op, im.tensor(op.outputs[0]), im.bb.emit(y))


@register("AVERAGE_POOL_2D")
def _op_average_pool_2d(im: Importer, op: TFLiteOp) -> relax.Expr:
    pool, strides, padding = im.pool_geometry(op)
    y = im.bb.emit(relax.op.nn.avg_pool2d(im.dequantize(op.inputs[0]), pool, strides, padding, layout="NHWC",
                                          count_include_pad=False))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)


#: two-operand ops: ``quantize(f(dequantize(a), dequantize(b)))``
_BINARY: dict[str, Callable[[relax.Expr, relax.Expr], relax.Expr]] = {
    "ADD": relax.op.add, "SUB": relax.op.subtract, "MUL": relax.op.multiply, "MAXIMUM": relax.op.maximum,
    "MINIMUM": relax.op.minimum}


@register(*_BINARY)
def _op_binary(im: Importer, op: TFLiteOp) -> relax.Expr:
    y = im.bb.emit(_BINARY[op.name](im.dequantize(op.inputs[0]), im.dequantize(op.inputs[1])))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)


@register("HARD_SWISH")
def _op_hard_swish(im: Importer, op: TFLiteOp) -> relax.Expr:
    """``x * relu6(x + 3) / 6`` between the dequantize and the quantize: the converter's one table
    (``lowering.chains``; in ``mode="tflite"`` LiteRT's own fixed-point hard-swish)."""
    x = im.dequantize(op.inputs[0])
    three, six = relax.const(3.0, "float32"), relax.const(6.0, "float32")
    relu6 = im.bb.emit(relax.op.clip(im.bb.emit(relax.op.add(x, three)), 0, 6))
    y = im.bb.emit(relax.op.divide(im.bb.emit(relax.op.multiply(x, relu6)), six))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)


@register("MEAN")
def _op_mean(im: Importer, op: TFLiteOp) -> relax.Expr:
    axes = im.static_value(op.inputs[1])
    if axes is None:
        raise ValueError(f"op {op.index} (MEAN): the axes must be a constant")
    y = im.bb.emit(relax.op.mean(im.dequantize(op.inputs[0]), [int(a) for a in np.atleast_1d(axes)],
                                 keepdims=bool(op.options.get("KeepDims", False))))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)
