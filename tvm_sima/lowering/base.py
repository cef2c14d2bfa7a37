"""What a lowering family returns: the numbers are fixed, the integer ops are emitted on demand."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..graph import static_shape
from ..ops import requantize as sima_requantize
from .numerics import Numerics, TableRounding

__all__ = ["Codes", "Emit", "Lowered", "Request", "accumulator_dtype", "centered", "centered_bound", "clip_to",
           "per_tensor", "rescale", "same_qparams"]

#: Output clip range in codes; None leaves the op's default (the whole output container type).
Codes = Optional[tuple[int, int]]
#: ``emit(bb, inputs) -> expr``: the integer ops, on the routes' integer input expressions.
Emit = Callable[[relax.BlockBuilder, Sequence[relax.Expr]], relax.Expr]


@dataclass(frozen=True)
class Lowered:
    """An op's integer form: its label, its emitter and what the hardware rules check.

    ``shifts`` / ``multipliers``: every requantization's right shift and multiplier (lists), for
    :func:`tvm_sima.converter.rules.check_requant`; ``requantizes``: how many ``sima.requantize``
    ops ``emit`` adds and ``tally`` the name under which it counts the op (default: the op's
    own), both for the float route's report.
    """

    label: str
    emit: Emit
    shifts: Sequence[int] = ()
    multipliers: Sequence[int] = ()
    requantizes: int = 0
    tally: Optional[str] = None


def per_tensor(qp: sm.QParams) -> tuple[float, int]:
    """``(scale, zero_point)`` of per-tensor parameters."""
    return float(np.atleast_1d(qp.scale)[0]), int(np.atleast_1d(qp.zero_point)[0])


def centered_bound(qp: sm.QParams) -> int:
    """The largest ``|code - zp|`` of ``qp``'s codes (per-tensor): 255 for an unsigned-range 8-bit grid."""
    zp = per_tensor(qp)[1]
    return max(qp.qmax - zp, zp - qp.qmin)


def accumulator_dtype(bound: int) -> str:
    """``int32`` for integers ``|v| <= bound`` that fit it (every 8-bit case), else ``int64``."""
    return "int32" if bound <= sm.INT32_MAX else "int64"


def centered(bb: relax.BlockBuilder, x: relax.Expr, zp: int, dtype: str = "int32") -> relax.Expr:
    """``x - zp`` in ``dtype`` (no subtraction for a zero point of 0)."""
    y = bb.emit(relax.op.astype(x, dtype))
    return bb.emit(relax.op.subtract(y, relax.const(zp, dtype))) if zp else y


def rescale(bb: relax.BlockBuilder, x: relax.Expr, zp_in: int, fpm: sm.FixedPointMultiplier, zp_out: int,
            codes: Codes, out_dtype: str, acc_dtype: str = "int32") -> relax.Call:
    """``clip(fpm(x - zp_in) + zp_out, *codes)``: one ``sima.requantize`` (the subtraction in ``acc_dtype`` first)."""
    if zp_in:
        x = bb.emit(relax.op.subtract(relax.op.astype(x, acc_dtype), relax.const(zp_in, acc_dtype)))
    lo, hi = codes if codes is not None else (None, None)
    return sima_requantize(x, **fpm.op_args(), zp_out=zp_out, qmin=lo, qmax=hi, out_dtype=out_dtype)


def clip_to(bb: relax.BlockBuilder, y: relax.Expr, codes: tuple[int, int], y_q: sm.QParams) -> relax.Expr:
    """``clip(y, *codes)``, or ``y`` itself when the codes are the whole range of ``y_q``."""
    if codes == (y_q.qmin, y_q.qmax):
        return y
    return relax.op.clip(bb.emit(y), codes[0], codes[1])


def same_qparams(a: sm.QParams, b: sm.QParams) -> bool:
    """Same scales, zero points and type: the codes of one tensor mean the same reals in the other."""
    return bool(np.array_equal(np.atleast_1d(a.scale), np.atleast_1d(b.scale))
                and np.array_equal(np.atleast_1d(a.zero_point), np.atleast_1d(b.zero_point))
                and str(a.dtype) == str(b.dtype))


@dataclass(frozen=True)
class Request:
    """One float op to lower: its call, its operands' and output's parameters, and the route's numerics.

    ``lo`` / ``hi``: real bounds of clips the route folds after the op; ``rounding``: of the
    model's own quantize after the op (pre-quantized route), for tables.
    """

    call: relax.Call
    inputs: list[sm.QParams]
    output: sm.QParams
    numerics: Numerics
    lo: float = -math.inf
    hi: float = math.inf
    rounding: Optional[str] = None

    def codes(self) -> tuple[int, int]:
        return self.numerics.clip_codes(self.output, self.lo, self.hi)

    @property
    def out_dtype(self) -> str:
        return str(self.output.dtype.container.name)

    @property
    def table_rounding(self) -> Union[str, sm.RoundingMode]:
        """How table entries round: as the model's own quantize after the op, or half up."""
        if self.numerics.tables is TableRounding.OF_THE_MODEL and self.rounding:
            return self.rounding
        return sm.RoundingMode.HALF_UP

    def input_shape(self) -> Optional[list[int]]:
        """The static shape of the call's first argument, or None."""
        return static_shape(self.call.args[0])
