"""The op families both routes lower through: ``op name -> Family`` (:data:`FAMILIES`).

A route gathers, for one float op, the parameters of its tensor operands (``Family.operands``)
and of its output, and calls ``Family.lower`` with a :class:`Request`; it gets a
:class:`~tvm_sima.lowering.base.Lowered` (or the reason there is no integer form) and emits it on
its own integer inputs. The float-model route (``passes/realize``) and the pre-quantized route
(``converter``) differ only in how they find those parameters and in their :class:`Numerics`.

Adding a family: one module with a ``lower(request)`` function, and one :func:`register` line below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable, Union

from tvm import relax

from ..graph import clip_bounds
from .arithmetic import lower_add, lower_multiply
from .base import Lowered, Request
from .extrema import lower_extremum
from .moves import MOVES, lower_clip, lower_concat, lower_move
from .pooling import lower_avg_pool2d, lower_mean, reduced_axes
from .prelu import lower_prelu
from .resize import lower_resize
from .tables import LUT_FUNCTIONS, emit_softmax, emit_table, table

__all__ = ["CLIPS", "FAMILIES", "Family", "Request", "register"]

#: Clips: relu, relu6, clip with constant bounds, maximum / minimum with a scalar constant.
CLIPS = ("relax.nn.relu", "relax.nn.relu6", "relax.clip", "relax.maximum", "relax.minimum")


@dataclass(frozen=True)
class Family:
    """How to lower a family of ops.

    ``keeps_scale``: the integer output has the input's parameters (the float route asks for no
    others; it requantizes to the tensor's own scale where that differs). ``moves_values``: the op
    only moves values, so the tensor keeps its input's scale even where its own observer differs.
    """

    operands: Callable[[relax.Call], list[relax.Expr]]
    lower: Callable[[Request], Union[Lowered, str]]
    keeps_scale: Union[bool, Callable[[relax.Call], bool]] = False
    moves_values: bool = False

    def keeps(self, call: relax.Call) -> bool:
        """``keeps_scale`` for this call (a family may keep its input's scale for some calls only)."""
        return self.keeps_scale(call) if callable(self.keeps_scale) else bool(self.keeps_scale)


FAMILIES: dict[str, Family] = {}


def register(ops: Iterable[str], family: Family) -> None:
    """Lower every op of ``ops`` with ``family`` (replacing a previous registration)."""
    for op in ops:
        FAMILIES[op] = family


def _first(call: relax.Call) -> list[relax.Expr]:
    return [call.args[0]]


def _two(call: relax.Call) -> list[relax.Expr]:
    return list(call.args[:2])


def _fields(call: relax.Call) -> list[relax.Expr]:
    return list(call.args[0].fields) if isinstance(call.args[0], relax.Tuple) else []


def _clip_operand(call: relax.Call) -> list[relax.Expr]:
    bounds = clip_bounds(call)
    return [bounds[0]] if bounds is not None else []


def _move(r: Request) -> Union[Lowered, str]:
    if any(isinstance(a, relax.Var) for a in r.call.args[1:]):
        return "an argument other than the data is computed at run time"
    return lower_move(r.call, r.inputs[0], r.output, r.codes(), r.numerics)


def _clip(r: Request) -> Union[Lowered, str]:
    bounds = clip_bounds(r.call)
    if bounds is None:
        return "maximum / minimum of two tensors, or clip bounds that are not constants"
    return lower_clip(r.inputs[0], r.output, r.numerics.clip_codes(r.output, max(r.lo, bounds[1]),
                                                                     min(r.hi, bounds[2])), r.numerics)


def _is_clip(call: relax.Call) -> bool:
    return clip_bounds(call) is not None


def _extremum_operands(call: relax.Call) -> list[relax.Expr]:
    return _clip_operand(call) if _is_clip(call) else _two(call)


def _extremum(r: Request) -> Union[Lowered, str]:
    """maximum / minimum: a clip with a scalar constant, else of two tensors on the output's grid."""
    if _is_clip(r.call):
        return _clip(r)
    if len(r.inputs) != 2 or any(q.per_channel for q in r.inputs):
        return "maximum / minimum of a tensor and a constant tensor, or per-channel activation parameters"
    return lower_extremum(r.inputs[0], r.inputs[1], r.output, r.codes(), r.numerics,
                          minimum=str(r.call.op.name) == "relax.minimum")  # type: ignore[attr-defined]


def _concat(r: Request) -> Union[Lowered, str]:
    if not r.inputs:
        return "inputs are not a tuple"
    full = (r.output.qmin, r.output.qmax)
    return lower_concat(r.inputs, r.output, int(r.call.attrs["axis"]), full, r.codes(), r.numerics)


def _arithmetic(r: Request) -> Union[Lowered, str]:
    if any(q.per_channel for q in r.inputs):
        return "per-channel activation parameters"
    if str(r.call.op.name) == "relax.multiply":  # type: ignore[attr-defined]
        return lower_multiply(r.inputs[0], r.inputs[1], r.output, r.codes(), r.out_dtype, r.numerics)
    return lower_add(r.inputs[0], r.inputs[1], r.output, r.codes(), r.out_dtype, r.numerics,
                     subtract=str(r.call.op.name) == "relax.subtract")  # type: ignore[attr-defined]


def _mean(r: Request) -> Union[Lowered, str]:
    shape = r.input_shape()
    if shape is None:
        return "mean of an input without a static shape"
    axes = reduced_axes(r.call.attrs["axis"], len(shape))
    return lower_mean(shape, axes, bool(r.call.attrs["keepdims"]), r.inputs[0], r.output, r.codes(), r.out_dtype,
                      r.numerics)


def _global_pool(r: Request) -> Union[Lowered, str]:
    a = r.call.attrs
    layout = str(a["layout"])
    size = [int(s) for s in a["output_size"]] if a["output_size"] is not None else None
    shape = r.input_shape()
    if size not in ([1, 1], [1]) or layout not in ("NCHW", "NHWC") or str(a["out_layout"]) != layout:
        return "adaptive pooling to a size other than 1x1"
    if shape is None:
        return "mean of an input without a static shape"
    lowered = lower_mean(shape, [2, 3] if layout == "NCHW" else [1, 2], True, r.inputs[0], r.output, r.codes(),
                         r.out_dtype, r.numerics)
    return Lowered(lowered.label, lowered.emit, lowered.shifts, lowered.multipliers, lowered.requantizes,
                   tally="relax.mean")


def _avg_pool(r: Request) -> Union[Lowered, str]:
    shape = r.input_shape()
    if shape is None:
        return "avg_pool2d input without a static shape"
    return lower_avg_pool2d(r.call.attrs, shape, r.inputs[0], r.output, r.codes(), r.out_dtype, r.numerics)


def _table(r: Request) -> Union[Lowered, str]:
    x_q, call = r.inputs[0], r.call
    op = str(call.op.name)  # type: ignore[attr-defined]
    values = table(lambda x: LUT_FUNCTIONS[op](x, call), x_q, r.output, r.table_rounding, r.codes())
    short = op.rsplit(".", 1)[-1]
    return Lowered(f"lookup table ({short})", lambda bb, xs: emit_table(bb, xs[0], x_q, values), tally=f"lut({short})")


def _softmax(r: Request) -> Union[Lowered, str]:
    if not r.numerics.integer_softmax:
        return "no integer softmax equal to LiteRT's yet"
    x_q = r.inputs[0]
    axis = int(r.call.attrs["axis"])
    return Lowered("integer softmax", lambda bb, xs: emit_softmax(bb, xs[0], x_q, r.output, axis),
                   tally="softmax(lut)")


register(MOVES, Family(_first, _move, keeps_scale=True, moves_values=True))
register(CLIPS, Family(_clip_operand, _clip, keeps_scale=True))
register(["relax.concat"], Family(_fields, _concat))
register(["relax.add", "relax.subtract", "relax.multiply"], Family(_two, _arithmetic))
register(["relax.mean"], Family(_first, _mean))
register(["relax.nn.adaptive_avg_pool2d"], Family(_first, _global_pool))
register(["relax.nn.avg_pool2d"], Family(_first, _avg_pool))
register(LUT_FUNCTIONS, Family(_first, _table))
register(["relax.nn.softmax"], Family(_first, _softmax))
register(["relax.nn.prelu"], Family(_first, lower_prelu))
register(["relax.image.resize2d"], Family(_first, lower_resize, keeps_scale=True, moves_values=True))
register(["relax.maximum", "relax.minimum"], Family(_extremum_operands, _extremum, keeps_scale=_is_clip))
