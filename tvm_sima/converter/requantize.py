"""``dequantize -> quantize`` with other parameters: one ``sima.requantize`` (see :mod:`tvm_sima.converter`).

TFLite's int8 -> int8 QUANTIZE (ai-edge-quantizer writes one where two consumers need different
parameters) means ``quantize(dequantize(x))``; LiteRT computes it as
``MultiplyByQuantizedMultiplier(x - zp_x, s_x / s_y) + zp_y``, which is the lowering's ``rescale``
with the mode's multiplier.
"""

from __future__ import annotations

from typing import Union

from tvm import relax

from .. import lowering
from ..graph import GraphIndex, remap
from ..lowering.base import per_tensor, rescale
from ..ops import qparams_from_attrs
from . import rules
from .chains import Match, Tail, dequantized
from .rules import HardwareLimits

__all__ = ["match_requantize"]


def match_requantize(index: GraphIndex, var: relax.Var, numerics: lowering.Numerics,
                     limits: HardwareLimits) -> Union[Match, str, None]:
    """The :class:`Match` of the quantize bound to ``var`` when it reads a dequantize, why not, or None."""
    call = index.producer[var]
    assert isinstance(call, relax.Call)
    source = dequantized(index, call.args[0])
    if source is None:
        return None
    x, x_q = source
    y_q = qparams_from_attrs(call.attrs)
    if x_q.per_channel or y_q.per_channel:
        return "per-channel parameters"
    bad = rules.check_tensors([str(x_q.dtype), str(y_q.dtype)])
    if bad:
        return bad
    (s_x, zp_x), (s_y, zp_y) = per_tensor(x_q), per_tensor(y_q)
    fpm = numerics.multiplier(s_x / s_y)
    bad = rules.check_requant(limits, fpm.right_shift, fpm.multiplier)
    if bad:
        return bad
    codes, out_dtype = (y_q.qmin, y_q.qmax), str(y_q.dtype.container.name)
    return Match(var, Tail(out=var, out_q=y_q), "sima.requantize",
                 lambda bb, m: rescale(bb, remap(x, m), zp_x, fpm, zp_y, codes, out_dtype))
