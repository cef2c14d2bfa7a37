"""Lookup tables: a unary function of one tensor as ``table[code - qmin]``, and integer softmax.

A table holds ``quantize(f(dequantize(code)))`` for every input code, so the op is exact up to the
output's own rounding, whatever ``f`` is (sigmoid, tanh, gelu, silu, ..., ``x + c``, ``x * c``).
Tables of 8-bit codes have 256 entries, of 16-bit codes 65536 (128 KiB of int16: the exact table,
rather than the interpolated ``2**lut_items_in_bits`` one the spec allows, which no op builds yet).
"""

from __future__ import annotations

import math
from typing import Callable, Optional, Union

import numpy as np
from tvm import relax

from .. import math as sm

__all__ = ["LUT_FUNCTIONS", "SOFTMAX_EXP_BITS", "emit_softmax", "emit_table", "table"]


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


#: Unary float functions realized as a table over every input code (``fn(x, call)``).
LUT_FUNCTIONS: dict[str, Callable[[np.ndarray, relax.Call], np.ndarray]] = {
    "relax.sigmoid": lambda x, c: 1.0 / (1.0 + np.exp(-x)),
    "relax.tanh": lambda x, c: np.tanh(x),
    "relax.exp": lambda x, c: np.exp(x),
    "relax.erf": lambda x, c: np.vectorize(math.erf)(x),
    "relax.nn.gelu": lambda x, c: _gelu(x),
    "relax.nn.gelu_tanh": lambda x, c: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "relax.nn.silu": lambda x, c: x / (1.0 + np.exp(-x)),
    "relax.nn.leakyrelu": lambda x, c: np.where(x >= 0, x, float(c.attrs["alpha"]) * x),
    "relax.nn.softplus": lambda x, c: np.log1p(np.exp(x)),
    "relax.sqrt": lambda x, c: np.sqrt(np.maximum(x, 0)),
    "relax.abs": lambda x, c: np.abs(x),
    "relax.negative": lambda x, c: -x,
}

#: Fraction bits of the softmax exponential table.
SOFTMAX_EXP_BITS = 15


def table(fn: Callable[[np.ndarray], np.ndarray], x_q: sm.QParams, y_q: sm.QParams,
          rounding: Union[sm.RoundingMode, str], codes: tuple[int, int]) -> np.ndarray:
    """``clip(quantize(fn(dequantize(c)), y_q), *codes)`` for every code ``c`` of ``x_q``, in y's container type.

    Non-finite results saturate (NaN becomes 0).
    """
    inputs = np.arange(x_q.qmin, x_q.qmax + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        real = fn(sm.dequantize(inputs, x_q))
    real = np.nan_to_num(np.asarray(real, dtype=np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
    return np.clip(sm.quantize(real, y_q, rounding), *codes).astype(y_q.dtype.container.name)


def emit_table(bb: relax.BlockBuilder, x: relax.Expr, x_q: sm.QParams, values: np.ndarray,
               offsets: Optional[np.ndarray] = None) -> relax.Call:
    """``values[x - qmin (+ offsets)]``: a ``relax.take`` of the (flattened) tables by the input codes.

    ``offsets``: int32, broadcasting with ``x``, the start of each element's table in ``values``.
    """
    index = bb.emit(relax.op.subtract(relax.op.astype(x, "int32"), relax.const(x_q.qmin, "int32")))
    if offsets is not None:
        index = bb.emit(relax.op.add(index, relax.const(offsets)))
    # every index is in [0, values.size): mode="clip" changes none (the default "fast" mode makes TVM warn)
    return relax.op.take(relax.const(values.reshape(-1)), index, axis=0, mode="clip")


def emit_softmax(bb: relax.BlockBuilder, x: relax.Expr, x_q: sm.QParams, y_q: sm.QParams, axis: int) -> relax.Call:
    """Integer softmax: ``e = EXP[max(x) - x]`` (a table in Q15), ``y = round(e / (sum(e) * s_y)) + zp_y``."""
    s_x, s_y = float(np.atleast_1d(x_q.scale)[0]), float(np.atleast_1d(y_q.scale)[0])
    zp_y = int(np.atleast_1d(y_q.zero_point)[0])
    span = x_q.qmax - x_q.qmin
    exp = np.round(np.exp(-np.arange(span + 1) * s_x) * 2**SOFTMAX_EXP_BITS).astype("int64")
    x64 = bb.emit(relax.op.astype(x, "int64"))
    top = bb.emit(relax.op.max(x64, axis=[axis], keepdims=True))
    # top - x is in [0, span]: mode="clip" changes no index (the default "fast" mode makes TVM warn)
    e = bb.emit(relax.op.astype(relax.op.take(relax.const(exp, "int64"), bb.emit(relax.op.subtract(top, x64)),
                                              axis=0, mode="clip"), "int64"))
    total = bb.emit(relax.op.sum(e, axis=[axis], keepdims=True))
    # q = floor(e * K / 2**16 / total + 1/2) with K = round(2**16 / s_y): all in int64.
    k = int(round(2**16 / s_y))
    numerator = bb.emit(relax.op.add(relax.op.multiply(e, relax.const(k, "int64")),
                                     relax.op.multiply(total, relax.const(2**15, "int64"))))
    codes = bb.emit(relax.op.floor_divide(numerator, relax.op.multiply(total, relax.const(2**16, "int64"))))
    shifted = bb.emit(relax.op.add(codes, relax.const(zp_y, "int64")))
    return relax.op.astype(relax.op.clip(shifted, y_q.qmin, y_q.qmax), y_q.dtype.container.name)
