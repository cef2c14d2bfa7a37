"""Int8 TFLite ops that move values (on the integers when the scale is kept), the resizes, and the
QUANTIZE / DEQUANTIZE at the model's interface (:mod:`tvm_sima.frontends.tflite_qdq`)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from .. import math as sm
from .. import ops as so
from .tflite_flatbuffer import TFLiteOp
from .tflite_qdq_importer import Importer, finish, qparams, register, same, strided_slices


@register("RESHAPE")
def _op_reshape(im: Importer, op: TFLiteOp) -> relax.Expr:
    shape = im.static_value(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
    target = [int(d) for d in shape] if shape is not None else list(im.tensor(op.outputs[0]).shape)
    return im.bb.emit(relax.op.reshape(im.value(op.inputs[0]), target), name_hint=im.out_name(op))


@register("STRIDED_SLICE")
def _op_strided_slice(im: Importer, op: TFLiteOp) -> relax.Expr:
    args = [im.static_value(i) for i in op.inputs[1:4]]
    if any(a is None for a in args):
        raise ValueError(f"op {op.index} (STRIDED_SLICE): begin / end / strides must be constants")
    slices, dropped = strided_slices(np.asarray(args[0]), np.asarray(args[1]), np.asarray(args[2]), op.options)
    shape = im.shape(op.inputs[0])
    axes, begin, end, strides = [], [], [], []
    for axis, sl in enumerate(slices):
        start, stop, step = sl.indices(shape[axis])
        if step <= 0:
            raise ValueError(f"op {op.index} (STRIDED_SLICE): negative strides are not supported")
        if (start, stop, step) != (0, shape[axis], 1):
            axes.append(axis)
            begin.append(start)
            end.append(max(stop, start))
            strides.append(step)
    y = im.value(op.inputs[0])
    if axes:
        y = im.bb.emit(relax.op.strided_slice(y, axes, begin, end, strides), name_hint=im.out_name(op))
    return im.bb.emit(relax.op.squeeze(y, dropped), name_hint=im.out_name(op)) if dropped else y


def _move_operand(im: Importer, op: TFLiteOp) -> np.ndarray:
    """The constant second input of a move on the codes (RESIZE_NEAREST_NEIGHBOR's size)."""
    value = im.static_value(op.inputs[1])
    if value is None or not same(im.tensor(op.inputs[0]), im.tensor(op.outputs[0])):
        raise ValueError(f"op {op.index} ({op.name}): needs a constant second input and the input's "
                         "quantization parameters on the output")
    return np.asarray(value)


@register("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
def _op_depth_space(im: Importer, op: TFLiteOp) -> relax.Expr:
    (n, h, w, c), k = im.shape(op.inputs[0]), int(op.options["BlockSize"])
    if op.name == "DEPTH_TO_SPACE":  # NHWC, TensorFlow's order: (k, k, C / k^2) in the channels
        steps = [(n, h, w, k, k, c // (k * k)), (n, h * k, w * k, c // (k * k))]
    else:
        steps = [(n, h // k, k, w // k, k, c), (n, h // k, w // k, c * k * k)]
    y = im.bb.emit(relax.op.reshape(im.value(op.inputs[0]), steps[0]))
    y = im.bb.emit(relax.op.permute_dims(y, [0, 1, 3, 2, 4, 5]))
    return im.bb.emit(relax.op.reshape(y, steps[1]), name_hint=im.out_name(op))


@register("RESIZE_NEAREST_NEIGHBOR")
def _op_resize_nearest(im: Importer, op: TFLiteOp) -> relax.Expr:
    size, o, y = _move_operand(im, op), op.options, im.value(op.inputs[0])
    for axis, n_in in ((1, im.shape(op.inputs[0])[1]), (2, im.shape(op.inputs[0])[2])):
        index = sm.tflite_nearest_indices(n_in, int(size[axis - 1]), align_corners=bool(o["AlignCorners"]),
                                          half_pixel_centers=bool(o["HalfPixelCenters"]))
        y = im.bb.emit(relax.op.take(y, relax.const(index.astype(np.int32), "int32"), axis=axis, mode="clip"))
    return y


@register("RESIZE_BILINEAR")
def _op_resize_bilinear(im: Importer, op: TFLiteOp) -> relax.Expr:
    size, o = im.static_value(op.inputs[1]), op.options
    if size is None:
        raise ValueError(f"op {op.index} (RESIZE_BILINEAR): the size must be a constant")
    mode = "half_pixel" if o["HalfPixelCenters"] else "align_corners" if o["AlignCorners"] else "asymmetric"
    y = im.bb.emit(relax.op.image.resize2d(im.dequantize(op.inputs[0]), [int(d) for d in size], None, "NHWC",
                                           "linear", mode, ""))
    return finish(im.bb, op, im.tensor(op.outputs[0]), y)


@register("MAX_POOL_2D")
def _op_max_pool_2d(im: Importer, op: TFLiteOp) -> relax.Expr:
    x, out = im.tensor(op.inputs[0]), im.tensor(op.outputs[0])
    pool, strides, padding = im.pool_geometry(op)
    if same(x, out) and op.options.get("FusedActivationFunction", "NONE") == "NONE":
        return im.bb.emit(relax.op.nn.max_pool2d(im.value(op.inputs[0]), pool, strides, padding,
                                                 layout="NHWC"), name_hint=im.out_name(op))
    y = im.bb.emit(relax.op.nn.max_pool2d(im.dequantize(op.inputs[0]), pool, strides, padding, layout="NHWC"))
    return finish(im.bb, op, out, y)


@register("PAD")
def _op_pad(im: Importer, op: TFLiteOp) -> relax.Expr:
    paddings = im.static_value(op.inputs[1])
    x, out = im.tensor(op.inputs[0]), im.tensor(op.outputs[0])
    if paddings is None:
        raise ValueError(f"op {op.index} (PAD): the paddings must be a constant")
    width = [int(p) for p in np.asarray(paddings).reshape(-1)]
    if same(x, out):  # TFLite's int8 PAD: same parameters, pads with the zero point
        zp = int(np.atleast_1d(qparams(x).zero_point)[0])
        return im.bb.emit(relax.op.nn.pad(im.value(op.inputs[0]), width, "constant", float(zp)),
                          name_hint=im.out_name(op))
    return finish(im.bb, op, out, im.bb.emit(relax.op.nn.pad(im.dequantize(op.inputs[0]), width)))


@register("CONCATENATION")
def _op_concatenation(im: Importer, op: TFLiteOp) -> relax.Expr:
    out = im.tensor(op.outputs[0])
    axis = int(op.options.get("Axis", 0))
    if all(same(im.tensor(i), out) for i in op.inputs) and \
            op.options.get("FusedActivationFunction", "NONE") == "NONE":
        return im.bb.emit(relax.op.concat([im.value(i) for i in op.inputs], axis=axis),
                          name_hint=im.out_name(op))
    y = im.bb.emit(relax.op.concat([im.dequantize(i) for i in op.inputs], axis=axis))
    return finish(im.bb, op, out, y)


# ---- QDQ ops: the model's float interface and requantizations ---------------------------------------
@register("QUANTIZE")
def _op_quantize(im: Importer, op: TFLiteOp) -> relax.Expr:
    x, out = im.tensor(op.inputs[0]), im.tensor(op.outputs[0])
    if x.dtype not in (np.float32, np.int8) or out.dtype != np.int8:
        raise ValueError(f"op {op.index} (QUANTIZE): {np.dtype(x.dtype).name} -> {np.dtype(out.dtype).name}; "
                         "only float32 -> int8 (a float model input) and int8 -> int8 are supported")
    # int8 -> int8 (a requantization, as ai-edge-quantizer writes): quantize(dequantize(x))
    xf = im.value(op.inputs[0]) if x.dtype == np.float32 else im.dequantize(op.inputs[0])
    # float32 -> int8: LiteRT's reference kernel divides by the scale in float32
    precision = "float32" if x.dtype == np.float32 else "float64"
    return im.bb.emit(so.quantize(xf, qparams(out), sm.RoundingMode.HALF_AWAY_FROM_ZERO, precision),
                      name_hint=im.out_name(op))


@register("DEQUANTIZE")
def _op_dequantize(im: Importer, op: TFLiteOp) -> relax.Expr:
    if im.tensor(op.inputs[0]).data is not None:
        raise ValueError(f"op {op.index} (DEQUANTIZE): dequantized constants (float16 / int8 weights of a "
                         "float model) are not supported in an int8 model")
    return im.bb.emit(so.dequantize(im.value(op.inputs[0]), qparams(im.tensor(op.inputs[0]))),
                      name_hint=im.out_name(op))
