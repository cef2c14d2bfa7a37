"""Bilinear resize on integer codes: two taps per output row and column, fixed-point weights.

Along one axis every output index ``o`` reads two input indices ``lo <= hi`` with integer
weights ``w_lo + w_hi = 2**RESIZE_FRACTION_BITS`` (:class:`LinearTaps`); a 2-D resize applies the
taps of both axes, so its accumulator carries ``2 * RESIZE_FRACTION_BITS`` fraction bits::

    acc[.., o_y, o_x, ..] = sum over a, b in {lo, hi} of  wy_a[o_y] * wx_b[o_x] * q[.., a, b, ..]

and the output code is that accumulator rounded back (:func:`resize_bilinear`), with a rescale
``s_in / s_out`` folded into the same rounding when the output has other parameters.

Two ways to place the taps (:func:`linear_taps`):

* ``tflite=True`` — LiteRT's int8 RESIZE_BILINEAR (``reference_ops::ResizeBilinearInteger``): the
  scale itself is a 10-bit fixed-point number, ``scale_10 = (1024 * in + out // 2) // out``
  (``in - 1`` and ``out - 1`` with align_corners), the source coordinate is ``o * scale_10``
  (``+ scale_10 // 2 - 512`` with half-pixel centers), ``lo = max(trunc(sv / 1024), 0)``,
  ``hi = min(ceil(sv / 1024), in - 1)``, ``w_hi = sv - 1024 * lo``. LiteRT sums the four products
  of the *raw* codes in int64 and rounds half away from zero (``(acc +- 2**19) / 2**20``);
* ``tflite=False`` — the exact source coordinate of ``relax.image.resize2d`` / ONNX Resize
  (half_pixel, pytorch_half_pixel, align_corners, asymmetric), computed in float64, clamped to
  ``[0, in - 1]``, its fraction rounded half up to 10 bits. Each weight is then within ``2**-11`` of
  the real one, so the result is within ``2**-10 * (|q_hi - q_lo|)`` of the float interpolation
  before the final rounding (a quarter of a code for 8-bit codes). 16-bit codes take
  ``fraction_bits=WIDE_RESIZE_FRACTION_BITS`` (14): 10 bits would leave up to 64 codes of error.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np
import numpy.typing as npt

from .fixed_point import FixedPointMultiplier
from .rounding import RoundingMode

__all__ = ["LINEAR_COORDINATE_MODES", "LinearTaps", "RESIZE_FRACTION_BITS", "WIDE_RESIZE_FRACTION_BITS", "linear_taps",
           "resize_accumulate",
           "resize_bilinear", "tflite_nearest_indices", "tflite_resize_bilinear"]

#: Fraction bits of each axis' interpolation weights (LiteRT's int8 kernel uses 10).
RESIZE_FRACTION_BITS = 10
#: Fraction bits of the exact taps for 16-bit codes: ``65535 * 2**28`` leaves a 17-bit multiplier below ``2**62``.
WIDE_RESIZE_FRACTION_BITS = 14
#: ``coordinate_transformation_mode`` values :func:`linear_taps` places exactly.
LINEAR_COORDINATE_MODES = ("half_pixel", "pytorch_half_pixel", "align_corners", "asymmetric")
_ONE = 1 << RESIZE_FRACTION_BITS


@dataclass(frozen=True)
class LinearTaps:
    """The two source indices and weights of each output index along one axis (``w_lo + w_hi = 2**fraction_bits``)."""

    lo: np.ndarray
    hi: np.ndarray
    w_lo: np.ndarray
    w_hi: np.ndarray
    fraction_bits: int = RESIZE_FRACTION_BITS


def _tflite_taps(in_size: int, out_size: int, mode: str) -> LinearTaps:
    if mode == "align_corners" and out_size > 1:
        scale = (_ONE * (in_size - 1) + (out_size - 1) // 2) // (out_size - 1)
    else:
        scale = (_ONE * in_size + out_size // 2) // out_size
    sv = np.arange(out_size, dtype=np.int64) * scale
    if mode == "half_pixel":
        sv = sv + scale // 2 - _ONE // 2
    lo = np.maximum(np.fix(sv / _ONE).astype(np.int64), 0)  # C's truncating division
    hi = np.minimum(np.fix((sv + _ONE - 1) / _ONE).astype(np.int64), in_size - 1)
    # LiteRT reads past the input when the rounded scale overshoots (huge upsampling): keep inside
    lo = np.minimum(lo, in_size - 1)
    w_hi = sv - _ONE * lo
    return LinearTaps(lo, hi, _ONE - w_hi, w_hi)


def _exact_taps(in_size: int, out_size: int, mode: str, bits: int) -> LinearTaps:
    o = np.arange(out_size, dtype=np.float64)
    ratio = in_size / out_size
    if mode == "half_pixel" or (mode == "pytorch_half_pixel" and out_size > 1):
        x = (o + 0.5) * ratio - 0.5
    elif mode == "pytorch_half_pixel":
        x = np.zeros(out_size)
    elif mode == "align_corners":
        x = o * ((in_size - 1) / (out_size - 1)) if out_size > 1 else np.zeros(out_size)
    else:  # asymmetric
        x = o * ratio
    x = np.clip(x, 0.0, in_size - 1)
    lo = np.floor(x).astype(np.int64)
    hi = np.minimum(lo + 1, in_size - 1)
    one = 1 << bits
    w_hi = np.floor((x - lo) * one + 0.5).astype(np.int64)
    return LinearTaps(lo, hi, one - w_hi, w_hi, bits)


def linear_taps(in_size: int, out_size: int, mode: str, *, tflite: bool,
                fraction_bits: int = RESIZE_FRACTION_BITS) -> LinearTaps:
    """The taps of a linear resize from ``in_size`` to ``out_size`` along one axis (module docstring).

    ``fraction_bits``: of the exact taps' weights (LiteRT's are 10 bits).

    Raises
    ------
    ValueError
        For sizes below 1, or a ``mode`` outside :data:`LINEAR_COORDINATE_MODES` (LiteRT's kernel:
        half_pixel, align_corners, asymmetric).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"linear resize from {in_size} to {out_size} elements: sizes must be at least 1")
    if not 1 <= fraction_bits <= 20 or (tflite and fraction_bits != RESIZE_FRACTION_BITS):
        raise ValueError(f"linear resize: fraction_bits={fraction_bits} (1..20; LiteRT's taps have "
                         f"{RESIZE_FRACTION_BITS})")
    allowed = ("half_pixel", "align_corners", "asymmetric") if tflite else LINEAR_COORDINATE_MODES
    if mode not in allowed:
        raise ValueError(f"linear resize: coordinate_transformation_mode {mode!r} has no integer taps; "
                         f"use one of {allowed}")
    return _tflite_taps(in_size, out_size, mode) if tflite else _exact_taps(in_size, out_size, mode, fraction_bits)


def _along(x: np.ndarray, taps: LinearTaps, axis: int) -> np.ndarray:
    shape = [1] * x.ndim
    shape[axis] = taps.lo.size
    return (np.take(x, taps.lo, axis=axis) * taps.w_lo.reshape(shape)
            + np.take(x, taps.hi, axis=axis) * taps.w_hi.reshape(shape))


def resize_accumulate(codes: npt.ArrayLike, taps: Sequence[LinearTaps], axes: Sequence[int]) -> np.ndarray:
    """``acc`` of the module docstring (int64): ``codes`` interpolated along each axis of ``axes``."""
    acc = np.asarray(codes).astype(np.int64)
    for t, axis in zip(taps, axes, strict=True):
        acc = _along(acc, t, axis)
    return acc


def resize_bilinear(codes: npt.ArrayLike, taps: Sequence[LinearTaps], axes: Sequence[int], zp_in: int,
                    fpm: FixedPointMultiplier, zp_out: int, qmin: int, qmax: int) -> np.ndarray:
    """``clip(fpm(acc(codes - zp_in)) + zp_out, qmin, qmax)``; ``fpm`` includes the weights' ``2**-(2 * bits)``
    (``bits``: the taps' ``fraction_bits``)."""
    acc = resize_accumulate(np.asarray(codes).astype(np.int64) - zp_in, taps, axes)
    return fpm.apply(acc, zp_out, qmin, qmax)


def tflite_resize_bilinear(codes: npt.ArrayLike, size: Sequence[int], *, align_corners: bool = False,
                           half_pixel_centers: bool = False) -> np.ndarray:
    """LiteRT's int8 RESIZE_BILINEAR of NHWC ``codes`` to ``size = (height, width)`` (module docstring)."""
    q = np.asarray(codes)
    mode = "half_pixel" if half_pixel_centers else "align_corners" if align_corners else "asymmetric"
    taps = [linear_taps(q.shape[1 + i], int(size[i]), mode, tflite=True) for i in range(2)]
    fpm = FixedPointMultiplier(1, 2 * RESIZE_FRACTION_BITS, RoundingMode.HALF_AWAY_FROM_ZERO)
    info = np.iinfo(q.dtype)
    return resize_bilinear(q, taps, (1, 2), 0, fpm, 0, int(info.min), int(info.max)).astype(q.dtype)


def tflite_nearest_indices(in_size: int, out_size: int, *, align_corners: bool = False,
                           half_pixel_centers: bool = False) -> np.ndarray:
    """The input index each output index of LiteRT's RESIZE_NEAREST_NEIGHBOR copies, along one axis.

    In float32 as LiteRT: ``scale = in / out`` (``(in - 1) / (out - 1)`` with align_corners),
    ``(o + offset) * scale`` (offset 0.5 with half-pixel centers) rounded half away from zero with
    align_corners, else floored, then clamped to ``[0, in - 1]``.
    """
    if align_corners and out_size > 1:
        scale = np.float32(in_size - 1) / np.float32(out_size - 1)
    else:
        scale = np.float32(in_size) / np.float32(out_size)
    x = (np.arange(out_size, dtype=np.float32) + np.float32(0.5 if half_pixel_centers else 0.0)) * scale
    index = np.sign(x) * np.floor(np.abs(x) + np.float32(0.5)) if align_corners else np.floor(x)
    return np.clip(index.astype(np.int64), 0, in_size - 1)
