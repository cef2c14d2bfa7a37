"""Integer forms of the QDQ ops around the fused layers (see :mod:`tvm_sima.converter`).

Each matched chain is ``op(dequantize(a) [, dequantize(b)]) -> clip* -> quantize``; the integer
ops come from the op's family in :data:`tvm_sima.lowering.FAMILIES` (the same lowering the float
route uses), with the converter mode's :class:`~tvm_sima.lowering.Numerics`:

* add / subtract — ``mode="tflite"``: TFLite's int8 ADD / SUB (inputs shifted left by 20, each
  scaled by a Q31 multiplier relative to twice the larger input scale, summed, then scaled to the
  output; every step ``MultiplyByQuantizedMultiplier``'s double rounding). ``mode="shift"``: the
  fixed-point add of :mod:`tvm_sima.math.elementwise` (15-bit multipliers, one final rounding);
* multiply — ``(a - zp_a)(b - zp_b)`` requantized by ``s_a s_b / s_y`` (TFLite's MUL; 15-bit
  multiplier in shift mode);
* avg_pool2d — window sums of the codes divided by the number of in-bounds elements, rounded
  half away from zero (TFLite's AVERAGE_POOL_2D);
* mean over spatial axes and global average pooling — TFLite's int8 MEAN;
* max_pool2d, reshape, flatten, transpose, squeeze, expand_dims, strided_slice, nearest resize,
  constant pad, concat — on the codes when input and output share their parameters (requantized
  otherwise);
* relu / relu6 / clip / maximum / minimum with a constant — clips on the codes;
* prelu with a constant slope (behind a reshape and maybe a dequantize:
  :func:`.constant_ops.dequantized_slope`) — a table per distinct slope;
* sigmoid, tanh, exp, gelu, silu, ... (``lowering.LUT_FUNCTIONS``) — a 256-entry table
  ``quantize(f(dequantize(code)))`` indexed by the code (``relax.take``), rounded as the model's
  quantize rounds (half to even for ONNX, half away from zero for TFLite); so is any element-wise
  chain of one input between a dequantize and a quantize (``lowering.chains``: hard-swish as the
  importers expand onnxruntime's quantized HardSwish, HardSigmoid, ``x * sigmoid(x)``, ...).

Every requantization the lowering makes is checked against the hardware rules (:mod:`.rules`).
"""

from __future__ import annotations

from typing import Union

from tvm import relax

from .. import lowering
from ..graph import GraphIndex, clip_bounds, op_name, remap
from . import rules
from .chains import Match, Tail, dequantized, match_tail
from .constant_ops import dequantized_slope
from .rules import HardwareLimits

__all__ = ["match_chain", "match_integer"]

_WINDOWED = ("relax.nn.max_pool2d", "relax.nn.avg_pool2d")


def _window(call: relax.Call, limits: HardwareLimits) -> Union[str, None]:
    a = call.attrs
    dilation = [int(d) for d in a["dilation"]] if op_name(call) == "relax.nn.max_pool2d" else [1, 1]
    return rules.check_window(limits, [int(k) for k in a["pool_size"]], [int(s) for s in a["strides"]], dilation)


def match_integer(index: GraphIndex, var: relax.Var, numerics: lowering.Numerics,
                  limits: HardwareLimits) -> Union[Match, str]:
    """The :class:`Match` of the op bound to ``var`` (an op of ``lowering.FAMILIES``), or why there is none."""
    call = dequantized_slope(index, index.producer[var])  # type: ignore[arg-type]
    assert isinstance(call, relax.Call)
    family = lowering.FAMILIES[op_name(call) or ""]
    sources = [dequantized(index, a) for a in family.operands(call)]
    if any(s is None for s in sources):
        return "an input is not dequantized from integers (float producer)"
    ins = [(s[0], s[1]) for s in sources if s is not None]
    if any(qp.per_channel for _, qp in ins):
        return "per-channel activation parameters"
    tail = Tail()
    bounds = clip_bounds(call)
    if bounds is not None:
        tail.lo, tail.hi = bounds[1], bounds[2]
    tail = match_tail(index, var, tail)  # type: ignore[assignment]
    if tail is None:
        return "its result does not reach a quantize (through clips only)"
    assert tail.out_q is not None and tail.out is not None
    bad = rules.check_tensors([str(qp.dtype) for _, qp in ins] + [str(tail.out_q.dtype)])
    if bad:
        return bad
    rounding = str(index.producer[tail.out].attrs["rounding"])  # type: ignore[union-attr]
    lowered = family.lower(lowering.Request(call, [qp for _, qp in ins], tail.out_q, numerics, tail.lo, tail.hi,
                                            rounding))
    if isinstance(lowered, str):
        return lowered
    bad = _window(call, limits) if op_name(call) in _WINDOWED else None
    if not bad and lowered.shifts:
        bad = rules.check_requant(limits, list(lowered.shifts), list(lowered.multipliers))
    if bad:
        return bad
    return Match(var, tail, lowered.label, lambda bb, m: lowered.emit(bb, [remap(x, m) for x, _ in ins]))


def match_chain(index: GraphIndex, chain: lowering.Chain, numerics: lowering.Numerics) -> Union[Match, str]:
    """``quantize(f(dequantize(x)))`` for an element-wise chain ``f`` of one input: one table."""
    source = dequantized(index, chain.source)
    if source is None:
        return "an input is not dequantized from integers (float producer)"
    x, x_q = source
    tail = match_tail(index, chain.output, Tail(vars=list(chain.members[1:])))
    if tail is None:
        return "its result does not reach a quantize (through clips only)"
    assert tail.out_q is not None and tail.out is not None
    bad = x_q.per_channel and "per-channel activation parameters" or rules.check_tensors([str(x_q.dtype),
                                                                                           str(tail.out_q.dtype)])
    if bad:
        return bad
    rounding = str(index.producer[tail.out].attrs["rounding"])  # type: ignore[union-attr]
    request = lowering.Request(chain.calls[-1], [x_q], tail.out_q, numerics, tail.lo, tail.hi, rounding)
    lowered = lowering.lower_chain(chain, request)
    if isinstance(lowered, str):
        return lowered
    return Match(chain.members[0], tail, lowered.label, lambda bb, m: lowered.emit(bb, [remap(x, m)]))
