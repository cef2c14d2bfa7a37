"""``relax.image.resize2d``: nearest on the codes (:mod:`.moves`), bilinear with fixed-point taps.

A bilinear resize is :func:`tvm_sima.math.resize_bilinear`: per axis, two ``take`` of the rows
(columns) each output reads, multiplied by constant 10-bit weights and summed in int32 (14-bit
weights in int64 for 16-bit codes); the 2**-20 (2**-28) of the weights and any rescale
``s_in / s_out`` are one ``sima.requantize``. Where the taps
and the rounding come from is :attr:`Numerics.resize <tvm_sima.lowering.Numerics>`:

* ``ResizeMethod.EXACT`` (float route): the exact source coordinate of ``resize2d``, weights
  rounded to 10 bits, codes centred on the zero point, rounded half up;
* ``ResizeMethod.OF_THE_MODEL`` (converter): a model whose quantize rounds half away from zero
  (TFLite) gets LiteRT's RESIZE_BILINEAR — its 10-bit scale, the raw codes, half away from zero —
  bit for bit where input and output share parameters; any other model (ONNX: half to even) gets
  the exact taps, rounded as its quantize rounds (within one code of dequantize -> float resize
  -> quantize).
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from .base import Lowered, Request, accumulator_dtype, centered_bound, per_tensor, rescale, same_qparams
from .moves import lower_move
from .numerics import ResizeMethod

__all__ = ["lower_resize"]

_AXES = {"NCHW": (2, 3), "NHWC": (1, 2)}


def _refusal(r: Request) -> Union[str, None]:
    a = r.call.attrs
    layout, mode = str(a["layout"]), str(a["coordinate_transformation_mode"])
    if layout not in _AXES:
        return f"linear resize in layout {layout} (NCHW / NHWC only)"
    if mode not in sm.LINEAR_COORDINATE_MODES:
        return f"linear resize with coordinate_transformation_mode {mode}"
    if any(float(v) != 0.0 for v in a["roi"]):
        return "linear resize of a region of interest"
    if r.inputs[0].per_channel:
        return "per-channel activation parameters"
    return None


def _spatial(shape: object, axes: Sequence[int]) -> Union[list[int], None]:
    """The static sizes of ``shape`` along ``axes`` (the batch may be symbolic), else None."""
    try:
        return [int(shape[a]) for a in axes]  # type: ignore[index]
    except (TypeError, ValueError, IndexError):
        return None


def _taps_and_multiplier(r: Request, sizes: tuple[list[int], list[int]]
                         ) -> tuple[list[sm.LinearTaps], sm.FixedPointMultiplier, bool]:
    """The taps per axis, the final rescale (with the weights' 2**-20 or 2**-28), and whether it runs on raw codes."""
    x_q, y_q = r.inputs[0], r.output
    mode = str(r.call.attrs["coordinate_transformation_mode"])
    model = sm.RoundingMode.parse(r.rounding) if r.rounding else None
    tflite = (r.numerics.resize is ResizeMethod.OF_THE_MODEL and model is sm.RoundingMode.HALF_AWAY_FROM_ZERO
              and mode != "pytorch_half_pixel")
    fraction = sm.RESIZE_FRACTION_BITS if tflite or x_q.dtype.bits <= 8 else sm.WIDE_RESIZE_FRACTION_BITS
    taps = [sm.linear_taps(n_in, n_out, mode, tflite=tflite, fraction_bits=fraction)
            for n_in, n_out in zip(*sizes, strict=True)]
    bits = 2 * fraction
    of_the_model = model if model in (sm.RoundingMode.HALF_EVEN, sm.RoundingMode.HALF_AWAY_FROM_ZERO) else None
    if same_qparams(x_q, y_q):
        return taps, sm.FixedPointMultiplier(1, bits, of_the_model or sm.RoundingMode.HALF_UP), tflite
    fpm = r.numerics.multiplier(per_tensor(x_q)[0] / per_tensor(y_q)[0], _acc_bound(x_q, False, fraction))
    rounding = of_the_model or fpm.rounding
    return taps, sm.FixedPointMultiplier(fpm.multiplier, int(fpm.right_shift) + bits, rounding), False


def _acc_bound(x_q: sm.QParams, raw: bool, fraction_bits: int) -> int:
    """The largest ``|acc|`` of the two axes' taps (weights summing to ``2**fraction_bits`` each) on the codes."""
    codes = max(abs(x_q.qmin), abs(x_q.qmax)) if raw else centered_bound(x_q)
    return codes << (2 * fraction_bits)


def _along(bb: relax.BlockBuilder, x: relax.Expr, taps: sm.LinearTaps, axis: int, rank: int,
           acc: str) -> relax.Expr:
    shape = [1] * rank
    shape[axis] = int(taps.lo.size)

    def tap(index: np.ndarray, weight: np.ndarray) -> relax.Expr:
        rows = bb.emit(relax.op.take(x, relax.const(index.astype(np.int32), "int32"), axis=axis, mode="clip"))
        return bb.emit(relax.op.multiply(rows, relax.const(weight.astype(acc).reshape(shape), acc)))

    return bb.emit(relax.op.add(tap(taps.lo, taps.w_lo), tap(taps.hi, taps.w_hi)))


def lower_resize(r: Request) -> Union[Lowered, str]:
    """``resize2d``: nearest moves the codes, linear interpolates them (module docstring).

    The accumulator carries twice the taps' fraction bits: 20 in int32 for 8-bit codes, 28 in int64 for
    16-bit ones (:data:`~tvm_sima.math.WIDE_RESIZE_FRACTION_BITS`).
    """
    method = str(r.call.attrs["method"])
    if method == "nearest_neighbor":
        return lower_move(r.call, r.inputs[0], r.output, r.codes(), r.numerics)
    if method != "linear":
        return f"{method} resize (nearest_neighbor and linear run on integers)"
    refusal = _refusal(r)
    if refusal:
        return refusal
    axes = _AXES[str(r.call.attrs["layout"])]
    shape_in = getattr(r.call.args[0].ty, "shape", None)
    sizes = (_spatial(shape_in, axes), _spatial(getattr(r.call.ty, "shape", None), axes))
    if sizes[0] is None or sizes[1] is None or shape_in is None:
        return "linear resize without static spatial sizes"
    rank = len(shape_in)
    taps, fpm, raw = _taps_and_multiplier(r, sizes)  # type: ignore[arg-type]
    zp_in, zp_out = (0, 0) if raw else (per_tensor(r.inputs[0])[1], per_tensor(r.output)[1])
    codes, out_dtype = r.codes(), r.out_dtype
    dtype = accumulator_dtype(_acc_bound(r.inputs[0], raw, taps[0].fraction_bits))

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        acc = bb.emit(relax.op.astype(xs[0], dtype))
        if zp_in:
            acc = bb.emit(relax.op.subtract(acc, relax.const(zp_in, dtype)))
        for t, axis in zip(taps, axes, strict=True):
            acc = _along(bb, acc, t, axis, rank, dtype)
        return rescale(bb, acc, 0, fpm, zp_out, codes, out_dtype)

    label = "integer bilinear resize (LiteRT's 10-bit taps)" if raw else "integer bilinear resize"
    return Lowered(label, emit, shifts=[int(fpm.right_shift)], multipliers=[int(fpm.multiplier)], requantizes=1,
                   tally="resize2d(linear)")
