"""A QDQ chain as the converter sees it: ``dequantize -> op -> clip* -> quantize`` (see :mod:`tvm_sima.converter`).

:func:`dequantized` reads an operand's integer source and parameters, :func:`match_tail` the clips
and quantize after an op, :class:`Match` what replaces a chain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from tvm import relax

from .. import lowering
from .. import math as sm
from ..graph import GraphIndex, clip_bounds, op_name
from ..lowering.base import same_qparams
from ..ops import qparams_from_attrs

__all__ = ["Emitter", "Match", "Tail", "dequantized", "match_tail"]

#: TFLite's rounding of real clip bounds to codes (CalculateActivationRangeQuantized).
_TFLITE = lowering.Numerics.tflite()

Emitter = Callable[[relax.BlockBuilder, dict], relax.Expr]


def dequantized(index: GraphIndex, expr: relax.Expr, through_reshape: bool = False
                ) -> Optional[tuple[relax.Expr, sm.QParams]]:
    """``(integer source, qparams)`` of a var bound to ``sima.dequantize`` (optionally through a reshape)."""
    if not isinstance(expr, relax.Var):
        return None
    value = index.producer.get(expr)
    if through_reshape and op_name(value) == "relax.reshape" and isinstance(value.args[0], relax.Var):  # type: ignore
        value = index.producer.get(value.args[0])  # type: ignore[union-attr]
    if op_name(value) != "sima.dequantize":
        return None
    assert isinstance(value, relax.Call)
    return value.args[0], qparams_from_attrs(value.attrs)


@dataclass
class Tail:
    """The clips and the quantize after a root op: ``root -> clip* -> quantize [-> DQ -> clip* -> Q]``."""

    vars: list[relax.Var] = field(default_factory=list)
    lo: float = -np.inf
    hi: float = np.inf
    out: Optional[relax.Var] = None
    out_q: Optional[sm.QParams] = None

    def codes(self) -> tuple[int, int]:
        assert self.out_q is not None
        return _TFLITE.clip_codes(self.out_q, self.lo, self.hi)


def _clips_then_quantize(index: GraphIndex, start: relax.Var, tail: Tail) -> Optional[relax.Var]:
    current = start
    while True:
        user = index.single_user(current)
        if user is None:
            return None
        value = index.producer[user]
        bounds = clip_bounds(value)
        tail.vars.append(user)
        if bounds is not None and bounds[0].same_as(current):
            tail.lo, tail.hi = max(tail.lo, bounds[1]), min(tail.hi, bounds[2])
        elif op_name(value) == "sima.quantize":
            return user
        else:
            return None
        current = user


def match_tail(index: GraphIndex, start: relax.Var, tail: Optional[Tail] = None) -> Optional[Tail]:
    """The :class:`Tail` after ``start`` (each step its only user), or None."""
    tail = tail or Tail()
    out = _clips_then_quantize(index, start, tail)
    if out is None:
        return None
    value = index.producer[out]
    assert isinstance(value, relax.Call)
    tail.out, tail.out_q = out, qparams_from_attrs(value.attrs)
    # An activation written after the quantize: Q -> DQ (same parameters) -> act -> Q (same parameters).
    user = index.single_user(out)
    if user is not None and op_name(index.producer[user]) == "sima.dequantize" and \
            same_qparams(qparams_from_attrs(index.producer[user].attrs), tail.out_q):  # type: ignore[union-attr]
        after = Tail(lo=tail.lo, hi=tail.hi)
        end = _clips_then_quantize(index, user, after)
        if end is not None and len(after.vars) > 1 and \
                same_qparams(qparams_from_attrs(index.producer[end].attrs), tail.out_q):  # type: ignore[union-attr]
            tail.vars += [user, *after.vars]
            tail.lo, tail.hi, tail.out = after.lo, after.hi, end
    return tail


@dataclass
class Match:
    """One QDQ chain to replace: ``root`` and ``tail.vars`` go, ``emit`` builds the integer ops."""

    root: relax.Var
    tail: Tail
    op: str
    emit: Emitter
