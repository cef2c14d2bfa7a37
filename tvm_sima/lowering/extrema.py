"""Maximum / minimum of two tensors: both rescaled to the output's parameters, then the integer max / min.

``max`` is monotone, so ``max(round(a'), round(b')) == round(max(a', b'))`` with ``a'``, ``b'`` the
inputs on the output's grid: the integer op is ``quantize(max(a, b))`` up to the rescale's one
rounding of each input (none for an input that already has the output's parameters, so exact
when the scales match). TFLite's int8 MAXIMUM / MINIMUM take the max / min of the raw codes (the
quantization spec requires equal parameters on inputs and output); with equal parameters this is
that, bit for bit. (With a scalar constant operand the op is a clip: :mod:`.moves`.)
"""

from __future__ import annotations

from typing import Sequence

from tvm import relax

from .. import math as sm
from .base import Codes, Lowered, clip_to, per_tensor, rescale, same_qparams
from .numerics import Numerics

__all__ = ["lower_extremum"]


def lower_extremum(a_q: sm.QParams, b_q: sm.QParams, y_q: sm.QParams, codes: Codes, numerics: Numerics,
                   minimum: bool = False) -> Lowered:
    """``max(a, b)`` (or ``min``) of two tensors' codes on the grid of ``y_q``, clipped to ``codes``."""
    out_dtype = str(y_q.dtype.container.name)
    s_y, zp_y = per_tensor(y_q)
    full = (y_q.qmin, y_q.qmax)

    def on_output_grid(bb: relax.BlockBuilder, x: relax.Expr, q: sm.QParams) -> relax.Expr:
        if same_qparams(q, y_q):
            return x
        s, zp = per_tensor(q)
        return bb.emit(rescale(bb, x, zp, numerics.multiplier(s / s_y), zp_y, full, out_dtype))

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        a, b = (on_output_grid(bb, x, q) for x, q in zip(xs, (a_q, b_q), strict=True))
        joined = (relax.op.minimum if minimum else relax.op.maximum)(a, b)
        return clip_to(bb, joined, codes, y_q) if codes is not None else joined

    label = "integer minimum" if minimum else "integer maximum"
    return Lowered(label, emit, requantizes=sum(not same_qparams(q, y_q) for q in (a_q, b_q)))
