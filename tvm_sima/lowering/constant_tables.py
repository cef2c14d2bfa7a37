"""Element-wise ops of one tensor and a constant: one lookup table per distinct constant value.

``f(x, c)`` (``x + c``, ``x * c``, ``c - x``, ``x / c``, PReLU's slope) is a unary function of the
code of ``x`` for each value of ``c``, so each distinct value gets a table
``quantize(f(dequantize(code), c))`` (exact up to the output's own rounding) and every element
indexes the table of its constant: ``tables[k(i) * 2**bits + code - qmin]``. A scalar constant is
one table. The constant may have any shape that broadcasts with the tensor. The tables hold at
most :data:`MAX_TABLE_ENTRIES` entries in all: 4096 tables of 8-bit codes, 16 of 16-bit codes.

Wider codes of an affine op (``f(x, c) = a(c) x + b(c)``: add, subtract, multiply, divide;
:func:`affine_with_constant`) are computed instead, with one rounding:
``y = round(((x - zp_x) * A + B) / 2**N) + zp_y``, ``A = round(a s_x / s_y 2**N)`` and
``B = round(b / s_y 2**N)`` int64 constants shaped like ``c``, ``N`` as large as keeps ``|acc| < 2**61``.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..graph import constant_value, op_name
from ..ops import requantize as sima_requantize
from .base import Codes, Lowered, centered, centered_bound, per_tensor
from .tables import emit_table, table

__all__ = ["MAX_TABLE_ENTRIES", "affine_with_constant", "binary_with_constant", "lower_by_constant"]

#: ``(a, b)`` of ``f(x, c) = a x + b``, shaped like the constant.
Affine = tuple[np.ndarray, np.ndarray]

#: Most entries of one op's tables (one table of ``2**bits`` entries per distinct constant value) before
#: the op stays float: 4096 tables of 8-bit codes (1 MiB of int8), 16 of 16-bit codes (2 MiB of int16).
MAX_TABLE_ENTRIES = 4096 * 256

#: ``f(x, c)``: the op, on real values.
ConstantFunction = Callable[[np.ndarray, float], np.ndarray]


def binary_with_constant(call: relax.Call) -> Optional[tuple[int, np.ndarray, ConstantFunction]]:
    """``(index of the tensor operand, the constant, f)`` of add / subtract / multiply / divide with
    exactly one constant operand; None for anything else (or a division by a constant holding 0)."""
    values = [constant_value(a) for a in call.args[:2]]
    if len(call.args) != 2 or sum(v is not None for v in values) != 1:
        return None
    k = 0 if values[0] is None else 1
    c = np.asarray(values[1 - k], dtype=np.float64)
    op = op_name(call)
    if op == "relax.add":
        return k, c, lambda x, v: x + v
    if op == "relax.multiply":
        return k, c, lambda x, v: x * v
    if op == "relax.divide":
        return (k, c, lambda x, v: x / v) if k == 0 and np.all(c != 0) else None
    if op == "relax.subtract":
        return (k, c, lambda x, v: x - v) if k == 0 else (k, c, lambda x, v: v - x)
    return None


def affine_with_constant(call: relax.Call) -> Optional[Affine]:
    """``(a, b)`` with ``f(x, c) = a x + b`` for the ops of :func:`binary_with_constant`, else None."""
    found = binary_with_constant(call)
    if found is None:
        return None
    k, c, _ = found
    one, zero = np.ones_like(c), np.zeros_like(c)
    op = op_name(call)
    if op == "relax.add":
        return one, c
    if op == "relax.multiply":
        return c, zero
    if op == "relax.divide":
        return 1.0 / c, zero
    return (one, -c) if k == 0 else (-one, c)


def lower_by_constant(x_q: sm.QParams, y_q: sm.QParams, rounding: Union[sm.RoundingMode, str], codes: Codes,
                      constant: np.ndarray, fn: ConstantFunction, label: str, tally: str,
                      affine: Optional[Affine] = None) -> Union[Lowered, str]:
    """``f(x, constant)`` as tables, or for wide codes of an ``affine`` op computed (module docstring);
    else why it stays float."""
    if affine is not None and x_q.dtype.bits > 8:
        return _lower_affine(x_q, y_q, rounding, codes, affine)
    values, which = np.unique(constant, return_inverse=True)
    entries = x_q.qmax - x_q.qmin + 1
    if values.size * entries > MAX_TABLE_ENTRIES:
        return (f"{values.size} distinct constant values: {values.size} tables of {entries} entries "
                f"(at most {MAX_TABLE_ENTRIES} entries in all)")
    bounds = codes if codes is not None else (y_q.qmin, y_q.qmax)

    def unary(c: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda x: fn(x, c)

    tables = np.stack([table(unary(float(c)), x_q, y_q, rounding, bounds) for c in values])
    offsets = (which.reshape(np.shape(constant)).astype(np.int64) * tables.shape[1]).astype("int32")

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        return emit_table(bb, xs[0], x_q, tables, offsets if values.size > 1 else None)

    return Lowered(label, emit, tally=tally)


def _lower_affine(x_q: sm.QParams, y_q: sm.QParams, rounding: Union[sm.RoundingMode, str], codes: Codes,
                  affine: Affine) -> Lowered:
    """``round(((x - zp_x) A + B) / 2**N) + zp_y`` (module docstring)."""
    (s_x, zp_x), (s_y, zp_y) = per_tensor(x_q), per_tensor(y_q)
    a_real, b_real = np.asarray(affine[0], np.float64) * s_x / s_y, np.asarray(affine[1], np.float64) / s_y
    peak = float(np.abs(a_real).max(initial=0.0)) * centered_bound(x_q) + float(np.abs(b_real).max(initial=0.0))
    n = 0 if peak == 0 else int(np.clip(np.floor(61 - np.log2(peak)) - 1, 0, 62))
    a_int, b_int = (sm.round_real(v * 2.0**n, sm.RoundingMode.HALF_AWAY_FROM_ZERO).astype(np.int64)
                    for v in (a_real, b_real))
    mode = sm.RoundingMode.parse(rounding)
    mode = sm.RoundingMode.HALF_AWAY_FROM_ZERO if mode is sm.RoundingMode.TFLITE else mode  # one rounding, not Q31
    lo, hi = codes if codes is not None else (y_q.qmin, y_q.qmax)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        scaled = bb.emit(relax.op.multiply(centered(bb, xs[0], zp_x, "int64"), relax.const(a_int, "int64")))
        acc = bb.emit(relax.op.add(scaled, relax.const(b_int, "int64"))) if np.any(b_int) else scaled
        return sima_requantize(acc, multiplier=1, shift=n, rounding=mode, zp_out=zp_y, qmin=lo, qmax=hi,
                               out_dtype=str(y_q.dtype.container.name))

    return Lowered("integer affine op with a constant", emit, [n], [1], requantizes=1)
