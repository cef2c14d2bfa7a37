"""Element-wise ops of one tensor and a constant: one lookup table per distinct constant value.

``f(x, c)`` (``x + c``, ``x * c``, ``c - x``, ``x / c``, PReLU's slope) is a unary function of the
code of ``x`` for each value of ``c``, so each distinct value gets a table
``quantize(f(dequantize(code), c))`` (exact up to the output's own rounding) and every element
indexes the table of its constant: ``tables[k(i) * 2**bits + code - qmin]``. A scalar constant is
one table. The constant may have any shape that broadcasts with the tensor. The tables hold at
most :data:`MAX_TABLE_ENTRIES` entries in all: 4096 tables of 8-bit codes, 16 of 16-bit codes.
"""

from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..graph import constant_value, op_name
from .base import Codes, Lowered
from .tables import emit_table, table

__all__ = ["MAX_TABLE_ENTRIES", "binary_with_constant", "lower_by_constant"]

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


def lower_by_constant(x_q: sm.QParams, y_q: sm.QParams, rounding: Union[sm.RoundingMode, str], codes: Codes,
                      constant: np.ndarray, fn: ConstantFunction, label: str, tally: str) -> Union[Lowered, str]:
    """``f(x, constant)`` as tables (module docstring), or why it stays float."""
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
