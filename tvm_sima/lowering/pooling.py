"""Integer ``mean`` and ``avg_pool2d``, per ``Numerics.pool`` (:class:`~tvm_sima.lowering.numerics.PoolMethod`).

* NPU: mean is the int32 sum rescaled by ``s_x / (count s_y)``; avg_pool2d is a depthwise
  ``sima.conv2d`` of ones with ``1 / window`` in its multiplier (the padding counts, as
  ``count_include_pad``);
* TFLITE: TFLite's int8 MEAN (the count folded into a Q31 multiplier) and AVERAGE_POOL_2D
  (window sums divided by the in-bounds count, half away from zero; the padding does not count).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..ops import LAYOUTS
from .base import (
    Codes,
    Lowered,
    accumulator_dtype,
    centered,
    centered_bound,
    clip_to,
    per_tensor,
    rescale,
    same_qparams,
)
from .fused import as_quantization, emit_conv2d, from_product
from .numerics import Numerics, PoolMethod

__all__ = ["avg_pool2d_refusal", "lower_avg_pool2d", "lower_mean", "reduced_axes"]


def reduced_axes(axis: Any, rank: int) -> list[int]:
    """A reduction's ``axis`` attribute as non-negative axes (None: all)."""
    return [int(a) % rank for a in axis] if axis is not None else list(range(rank))


def lower_mean(in_shape: Sequence[int], axes: Sequence[int], keepdims: bool, x_q: sm.QParams, y_q: sm.QParams,
               codes: Codes, out_dtype: str, numerics: Numerics) -> Lowered:
    """``mean(x, axes)``: the sum of the codes, then one requantization.

    The sum is int32 where every sum of ``count`` codes and its zero-point fold fit (8-bit codes up
    to 2**23 of them), else int64 (65536 16-bit codes of one sign already wrap int32).
    """
    count = int(np.prod([in_shape[a] for a in axes])) if axes else int(np.prod(in_shape))
    (s_x, zp_x), (s_y, zp_y) = per_tensor(x_q), per_tensor(y_q)
    acc = accumulator_dtype(count * (max(abs(x_q.qmin), abs(x_q.qmax)) + abs(zp_x)))
    centered_sum = count * centered_bound(x_q)
    if numerics.pool is PoolMethod.TFLITE and acc == "int32":
        # TFLite's int8 MEAN (reference_ops::QuantizedMeanOrSum): QuantizeMultiplier(s_in / s_out), the
        # count folded into the multiplier, then MultiplyByQuantizedMultiplier(sum - zp_in * count) + zp_out.
        fpm = sm.FixedPointMultiplier.tflite(s_x / s_y).fold_divisor(count)
    else:
        fpm = numerics.multiplier(s_x / (count * s_y), centered_sum)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        total = bb.emit(relax.op.sum(bb.emit(relax.op.astype(xs[0], acc)), list(axes), keepdims))
        return rescale(bb, total, zp_x * count, fpm, zp_y, codes, out_dtype, acc)

    return Lowered("integer mean", emit, [int(fpm.right_shift)], [int(fpm.multiplier)], requantizes=1)


def avg_pool2d_refusal(attrs: Any, numerics: Numerics) -> Optional[str]:
    """Why this ``avg_pool2d`` has no integer form under ``numerics``, else None."""
    layout = str(attrs["layout"])
    padding = [int(p) for p in attrs["padding"]]
    if numerics.pool is PoolMethod.NPU:
        if layout not in LAYOUTS or str(attrs["out_layout"]) != layout or bool(attrs["ceil_mode"]):
            return f"avg_pool2d with layout {layout} / ceil_mode (sima.conv2d takes NCHW or NHWC, floor mode)"
        if any(padding) and not bool(attrs["count_include_pad"]):
            return "padded avg_pool2d that excludes the padding from the count (the divisor varies per position)"
        return None
    if layout not in ("NHWC", "NCHW") or str(attrs["out_layout"]) != layout:
        return f"avg_pool2d layout {layout}"
    if bool(attrs["ceil_mode"]):
        return "avg_pool2d with ceil_mode"
    if [int(d) for d in attrs["dilation"]] != [1, 1]:
        return "dilated avg_pool2d"
    if bool(attrs["count_include_pad"]) and any(padding):
        return "avg_pool2d counting the padding (ONNX count_include_pad=1)"
    return None


def lower_avg_pool2d(attrs: Any, in_shape: Sequence[int], x_q: sm.QParams, y_q: sm.QParams, codes: tuple[int, int],
                     out_dtype: str, numerics: Numerics) -> Union[Lowered, str]:
    """``avg_pool2d`` of int8 codes (module docstring), or why it has no integer form."""
    refusal = avg_pool2d_refusal(attrs, numerics)
    if refusal:
        return refusal
    window = int(np.prod([int(k) for k in attrs["pool_size"]]))
    if accumulator_dtype(window * centered_bound(x_q)) != "int32":
        return f"a {window}-value window of {x_q.dtype.bits}-bit codes could overflow the int32 window sum"
    if numerics.pool is PoolMethod.NPU:
        return _npu_avg_pool(attrs, in_shape, x_q, y_q, out_dtype)
    return _tflite_avg_pool(attrs, in_shape, x_q, y_q, codes, out_dtype)


def _npu_avg_pool(attrs: Any, in_shape: Sequence[int], x_q: sm.QParams, y_q: sm.QParams, out_dtype: str) -> Lowered:
    layout = str(attrs["layout"])
    kh, kw = (int(k) for k in attrs["pool_size"])
    channels = int(in_shape[layout.index("C")])
    s_x, zp_x = per_tensor(x_q)
    ones = np.ones((kh, kw, 1, channels, 1), dtype=np.int8)  # HWIGO, depthwise
    consts = from_product(ones, None, zp_x, sm.Quantization(s_x / (kh * kw), 0, 32),
                          as_quantization(y_q), False, sm.RoundingMode.TFLITE)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        return emit_conv2d(xs[0], consts, zp_x, None, out_dtype, strides=[int(v) for v in attrs["strides"]],
                           padding=[int(p) for p in attrs["padding"]], dilation=[int(v) for v in attrs["dilation"]],
                           groups=channels, layout=layout)

    return Lowered("integer avg_pool2d", emit, consts.shift if isinstance(consts.shift, list) else [consts.shift],
                   [consts.multiplier])


def _window_counts(size: int, pool: int, stride: int, before: int, out: int) -> np.ndarray:
    starts = np.arange(out) * stride - before
    return np.clip(starts + pool, 0, size) - np.clip(starts, 0, size)


def _tflite_avg_pool(attrs: Any, shape: Sequence[int], x_q: sm.QParams, y_q: sm.QParams, codes: tuple[int, int],
                     out_dtype: str) -> Lowered:
    layout = str(attrs["layout"])
    pool, strides = [int(k) for k in attrs["pool_size"]], [int(s) for s in attrs["strides"]]
    padding = [int(p) for p in attrs["padding"]]
    h_axis, w_axis, c_axis = (1, 2, 3) if layout == "NHWC" else (2, 3, 1)
    out_h = (shape[h_axis] + padding[0] + padding[2] - pool[0]) // strides[0] + 1
    out_w = (shape[w_axis] + padding[1] + padding[3] - pool[1]) // strides[1] + 1
    counts = np.outer(_window_counts(shape[h_axis], pool[0], strides[0], padding[0], out_h),
                      _window_counts(shape[w_axis], pool[1], strides[1], padding[1], out_w)).astype(np.int32)
    channels = shape[c_axis]
    if layout == "NHWC":
        counts_t, kernel, kernel_layout = counts[None, :, :, None], np.ones((*pool, 1, channels), np.int32), "HWIO"
    else:
        counts_t, kernel, kernel_layout = counts[None, None], np.ones((channels, 1, *pool), np.int32), "OIHW"
    same = same_qparams(x_q, y_q)
    s_x, zp = per_tensor(x_q)
    fpm = sm.FixedPointMultiplier.tflite(s_x / per_tensor(y_q)[0])

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        # TFLite sums the raw codes (the zero point averages to itself) when input and output share
        # parameters; otherwise the centred codes are averaged and requantized.
        acc = bb.emit(relax.op.nn.conv2d(centered(bb, xs[0], 0 if same else zp), relax.const(kernel, "int32"),
                                         strides=strides, padding=padding, groups=channels, data_layout=layout,
                                         kernel_layout=kernel_layout, out_dtype="int32"))
        n = relax.const(counts_t, "int32")
        half = relax.const(counts_t // 2, "int32")
        magnitude = bb.emit(relax.op.floor_divide(bb.emit(relax.op.add(bb.emit(relax.op.abs(acc)), half)), n))
        average = bb.emit(relax.op.multiply(bb.emit(relax.op.sign(acc)), magnitude))
        if same:
            return clip_to(bb, relax.op.astype(bb.emit(relax.op.clip(average, y_q.qmin, y_q.qmax)), out_dtype),
                           codes, y_q)
        return rescale(bb, average, 0, fpm, per_tensor(y_q)[1], codes, out_dtype)

    return Lowered("integer avg_pool2d", emit, [int(fpm.right_shift)], [int(fpm.multiplier)])
