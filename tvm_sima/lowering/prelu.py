"""PReLU with a constant per-channel (or per-element) slope.

8-bit codes: a table per distinct slope (:mod:`.constant_tables`). TVM's TFLite importer flattens
PRELU to a 1-D tensor with one slope per element; those slopes repeat per channel, so there are
still only as many tables as channels.

Wider codes (16 bits: 65536 entries per table, and one table per channel) are computed instead:
with ``c = x - zp_x``, ``y = fpm(max(c, 0)) + fpm_k(sign_k * min(c, 0)) + zp_y``, where
``fpm ~ s_x / s_y`` and channel ``k``'s ``fpm_k ~ |alpha_k| s_x / s_y`` (one per-channel
``sima.requantize``). One of the two terms is 0 for every element, so the result is ``alpha * x``
or ``x`` rounded once onto the output grid, as a table would hold it up to the multipliers' own
precision.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..graph import constant_value
from ..ops import requantize as sima_requantize
from .base import Codes, Lowered, Request, centered, centered_bound, per_tensor
from .constant_tables import lower_by_constant
from .numerics import Numerics

__all__ = ["lower_prelu"]

_INT32 = (sm.INT32_MIN, sm.INT32_MAX)


def lower_prelu(r: Request) -> Union[Lowered, str]:
    """``relax.nn.prelu(x, alpha, axis)``, or why it stays float."""
    alpha = constant_value(r.call.args[1])
    dims = r.input_shape()
    if alpha is None or dims is None:
        return "the slope is not a constant (or the input has no static shape)"
    axis = int(r.call.attrs["axis"]) % len(dims)
    slopes = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if slopes.size not in (1, dims[axis]):
        return f"{slopes.size} slopes for {dims[axis]} channels"
    if r.inputs[0].dtype.bits > 8:
        return _computed_prelu(r.inputs[0], r.output, slopes, axis, len(dims), r.codes(), r.numerics)
    slopes = slopes.reshape([slopes.size if i == axis else 1 for i in range(len(dims))])
    return lower_by_constant(r.inputs[0], r.output, r.table_rounding, r.codes(), slopes,
                             lambda x, a: np.where(x >= 0, x, a * x), "lookup table (prelu)", "lut(prelu)")


def _computed_prelu(x_q: sm.QParams, y_q: sm.QParams, slopes: np.ndarray, axis: int, rank: int, codes: Codes,
                    numerics: Numerics) -> Lowered:
    """PReLU of wide codes by two requantizations (module docstring)."""
    (s_x, zp_x), (s_y, zp_y) = per_tensor(x_q), per_tensor(y_q)
    bound = centered_bound(x_q)
    positive = numerics.multiplier(s_x / s_y, bound)
    negative = [numerics.multiplier(abs(float(a)) * s_x / s_y, bound) for a in slopes]
    signs = np.where(slopes < 0, -1, 1).astype("int32").reshape([slopes.size if i == axis else 1 for i in range(rank)])
    lo, hi = codes if codes is not None else (y_q.qmin, y_q.qmax)
    out_dtype = str(y_q.dtype.container.name)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        c = centered(bb, xs[0], zp_x)
        zero = relax.const(0, "int32")
        pos = bb.emit(sima_requantize(bb.emit(relax.op.maximum(c, zero)), **positive.op_args(), qmin=_INT32[0],
                                      qmax=_INT32[1], out_dtype="int32"))
        neg_in = bb.emit(relax.op.multiply(bb.emit(relax.op.minimum(c, zero)), relax.const(signs)))
        neg = bb.emit(sima_requantize(neg_in, multiplier=[int(f.multiplier) for f in negative],
                                      shift=[int(f.right_shift) for f in negative], rounding=positive.rounding,
                                      qmin=_INT32[0], qmax=_INT32[1], out_dtype="int32",
                                      axis=axis if slopes.size > 1 else None))
        total = bb.emit(relax.op.add(bb.emit(relax.op.add(pos, neg)), relax.const(zp_y, "int32")))
        return relax.op.astype(bb.emit(relax.op.clip(total, lo, hi)), out_dtype)

    return Lowered("integer prelu", emit, [int(positive.right_shift)] + [int(f.right_shift) for f in negative],
                   [int(positive.multiplier)] + [int(f.multiplier) for f in negative], requantizes=2)
