"""Integer add / subtract / multiply of two tensors with their own parameters, per :class:`Numerics`."""

from __future__ import annotations

from typing import Sequence

import numpy as np
from tvm import relax

from .. import math as sm
from ..ops import requantize as sima_requantize
from .base import Codes, Lowered, accumulator_dtype, centered, centered_bound, per_tensor, rescale
from .numerics import AddMethod, MultiplyMethod, Numerics

__all__ = ["FINE_GRID_BITS", "fine_grid_bits", "lower_add", "lower_multiply"]

_INT32 = (-(2**31), 2**31 - 1)


def lower_multiply(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, out_dtype: str,
                   numerics: Numerics) -> Lowered:
    """``(a - zp_a)(b - zp_b)`` requantized by ``s_a s_b / s_y``.

    The product is int32 where it fits (8-bit operands: ``255**2``), else int64 (two 16-bit operands
    reach ``65535**2 > 2**31``), and the multiplier is as wide as ``product * M`` allows in int64.
    """
    (s_a, zp_a), (s_b, zp_b), (s_y, zp_y) = per_tensor(a_q), per_tensor(b_q), per_tensor(y_q)
    bound = centered_bound(a_q) * centered_bound(b_q)
    acc = accumulator_dtype(bound)
    if numerics.multiply is MultiplyMethod.SHIFT15:  # a left shift (n < 0) is left to the hardware rules
        m, n = sm.quantize_multiplier(s_a * s_b / s_y, sm.HW15_MULTIPLIER_BITS)
        shifts, mults = [int(n)], [int(m)]
    else:
        if numerics.multiply is MultiplyMethod.TFLITE and acc == "int32":  # TFLite's MUL: the factor in float32
            fpm = sm.FixedPointMultiplier.tflite(float(np.float32(s_a) * np.float32(s_b) / np.float32(s_y)))
        else:
            fpm = numerics.multiplier(s_a * s_b / s_y, bound)
        shifts, mults = [int(fpm.right_shift)], [int(fpm.multiplier)]

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        product = bb.emit(relax.op.multiply(centered(bb, xs[0], zp_a, acc), centered(bb, xs[1], zp_b, acc)))
        final = sm.FixedPointMultiplier(mults[0], shifts[0], sm.RoundingMode.HALF_UP) \
            if numerics.multiply is MultiplyMethod.SHIFT15 else fpm
        return rescale(bb, product, 0, final, zp_y, codes, out_dtype)

    return Lowered("integer multiply", emit, shifts, mults, requantizes=1)


def lower_add(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, out_dtype: str,
              numerics: Numerics, subtract: bool = False) -> Lowered:
    """``a + b`` (or ``a - b``) by ``numerics.add`` (:class:`AddMethod`)."""
    label = "integer subtract" if subtract else "integer add"
    if numerics.add is AddMethod.FINE_GRID:
        return _fine_grid(a_q, b_q, y_q, codes, out_dtype, numerics, subtract, label)
    if numerics.add is AddMethod.TFLITE:
        return _tflite_add(a_q, b_q, y_q, codes, out_dtype, subtract, label)
    return _shift15_add(a_q, b_q, y_q, codes, out_dtype, subtract, label)


#: The float route's add rescales both inputs to a grid this many bits finer than the output's.
FINE_GRID_BITS = 8


def fine_grid_bits(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams) -> int:
    """:data:`FINE_GRID_BITS`, or fewer where the two inputs on that grid could leave int32.

    An input reaches ``|code - zp| * s / s_y`` output codes; on a grid ``2**k`` finer both must sum
    below ``2**31``. 8-bit inputs keep 8 bits unless one is ``2**15`` times coarser than the output;
    16-bit inputs lose bits as soon as one is ``2**7`` times coarser (``a - b`` of nearly equal tensors).
    """
    s_y = per_tensor(y_q)[0]
    reach = sum(centered_bound(q) * per_tensor(q)[0] / s_y for q in (a_q, b_q))
    bits = FINE_GRID_BITS
    while bits > 0 and reach * 2.0**bits > sm.INT32_MAX:
        bits -= 1
    return bits


def _fine_grid(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, out_dtype: str, numerics: Numerics,
               subtract: bool, label: str) -> Lowered:
    """Both inputs to a common scale ``2**k`` finer than the output's (:func:`fine_grid_bits`), add in int32,
    round once more."""
    s_y, zp_y = per_tensor(y_q)
    k = fine_grid_bits(a_q, b_q, y_q)
    fine = s_y / 2.0**k
    parts = [(per_tensor(q)[1], numerics.multiplier(per_tensor(q)[0] / fine)) for q in (a_q, b_q)]
    combine = relax.op.subtract if subtract else relax.op.add

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        a32, b32 = (bb.emit(rescale(bb, x, zp, fpm, 0, None, "int32")) for x, (zp, fpm) in zip(xs, parts, strict=True))
        total = bb.emit(combine(a32, b32))
        return rescale(bb, total, 0, sm.FixedPointMultiplier(1, k, sm.RoundingMode.HALF_UP), zp_y, codes, out_dtype)

    return Lowered(label, emit, [int(f.right_shift) for _, f in parts] + [k],
                   [int(f.multiplier) for _, f in parts] + [1], requantizes=3)


def _tflite_add(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, out_dtype: str, subtract: bool,
                label: str) -> Lowered:
    """TFLite's int8 ADD / SUB: inputs << 20, each scaled relative to twice the larger input scale."""
    (s_a, zp_a), (s_b, zp_b), (s_y, zp_y) = per_tensor(a_q), per_tensor(b_q), per_tensor(y_q)
    twice = 2.0 * max(s_a, s_b)
    f_a, f_b, f_y = (sm.FixedPointMultiplier.tflite(r) for r in (s_a / twice, s_b / twice, twice / ((1 << 20) * s_y)))
    combine = relax.op.subtract if subtract else relax.op.add

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        def scaled(x: relax.Expr, zp: int, fpm: sm.FixedPointMultiplier) -> relax.Expr:
            shifted = bb.emit(relax.op.multiply(centered(bb, x, zp), relax.const(1 << 20, "int32")))
            return bb.emit(sima_requantize(shifted, **fpm.op_args(), qmin=_INT32[0], qmax=_INT32[1], out_dtype="int32"))

        total = bb.emit(combine(scaled(xs[0], zp_a, f_a), scaled(xs[1], zp_b, f_b)))
        return rescale(bb, total, 0, f_y, zp_y, codes, out_dtype)

    return Lowered(label, emit, [int(f.right_shift) for f in (f_a, f_b, f_y)],
                   [int(f.multiplier) for f in (f_a, f_b, f_y)], requantizes=3)


def _shift15_add(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, out_dtype: str, subtract: bool,
                 label: str) -> Lowered:
    """The fixed-point add of :func:`tvm_sima.math.fixed_point_add`: 15-bit multipliers, one final rounding."""
    _, zp_a = per_tensor(a_q)
    _, zp_b = per_tensor(b_q)
    _, zp_y = per_tensor(y_q)
    p = sm.add_params(a_q, b_q, y_q)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        ca, cb = centered(bb, xs[0], zp_a, "int64"), centered(bb, xs[1], zp_b, "int64")
        if subtract:
            cb = bb.emit(relax.op.negative(cb))
        if p.swapped:
            ca, cb = cb, ca
        total = bb.emit(relax.op.add(bb.emit(relax.op.multiply(ca, relax.const(p.m2 << (p.n1 - p.n2), "int64"))),
                                     bb.emit(relax.op.multiply(cb, relax.const(p.m1, "int64")))))
        final = sm.FixedPointMultiplier(p.m3, p.n1 + p.n3, sm.RoundingMode.HALF_UP)
        return rescale(bb, total, 0, final, zp_y, codes, out_dtype)

    return Lowered(label, emit, [p.n1 + p.n3, p.n1 - p.n2], [p.m1, p.m2, p.m3], requantizes=1)
