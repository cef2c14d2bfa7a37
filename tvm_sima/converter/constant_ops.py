"""add / subtract / multiply / divide of one dequantized tensor and a float constant (see :mod:`tvm_sima.converter`).

onnxruntime's ``quantize_static`` leaves the constant operand of some element-wise ops float (it
does not quantize ``Div``; PP-OCR's hard-swish ends in ``Div(x, 6)``)::

    dequantize(x) -> divide(., constant) -> clip* -> quantize

is a unary function of the code of ``x`` for each constant value: one 256-entry table per distinct
value (:func:`tvm_sima.lowering.lower_by_constant`, the float route's lowering of the same ops),
rounded as the model's quantize rounds.

PReLU's slope is a constant behind a reshape (TVM's ONNX importer), and maybe behind a dequantize
(a slope quantized like a weight): :func:`dequantized_slope` gives the family the real slopes, as
the model's DequantizeLinear computes them (float32); the PReLU family makes a table per slope.
"""

from __future__ import annotations

from typing import Union

import numpy as np
from tvm import relax

from .. import lowering
from .. import math as sm
from ..graph import GraphIndex, constant_value, op_name, remap
from . import rules
from .chains import Match, dequantized, match_tail

__all__ = ["dequantized_slope", "match_with_constant"]


def dequantized_slope(index: GraphIndex, call: relax.Call) -> relax.Call:
    """``prelu(x, [reshape](constant | dequantize(int8 constant)))`` as ``prelu(x, float32 constant)``.

    Other calls come back as they are.
    """
    if op_name(call) != "relax.nn.prelu":
        return call
    slope, shape = call.args[1], getattr(call.args[1].ty, "shape", None)
    value = index.producer.get(slope) if isinstance(slope, relax.Var) else None
    if op_name(value) == "relax.reshape":
        slope = value.args[0]  # type: ignore[union-attr]
    real = constant_value(slope)
    source = dequantized(index, slope)
    codes = constant_value(source[0]) if source is not None else None
    if source is not None and codes is not None:
        # DequantizeLinear in float32: (q - zp) is exact, one rounding of the product to float32
        real = sm.dequantize(codes.astype(np.int64), source[1]).astype(np.float32)
    if real is None or shape is None:
        return call
    return relax.Call(call.op, [call.args[0], relax.const(real.reshape([int(d) for d in shape]))], call.attrs)


def match_with_constant(index: GraphIndex, var: relax.Var, numerics: lowering.Numerics) -> Union[Match, str, None]:
    """The :class:`Match` of ``var`` (an op of a dequantized tensor and a constant), why not, or None if not that op."""
    call = index.producer[var]
    assert isinstance(call, relax.Call)
    found = lowering.binary_with_constant(call)
    if found is None:
        return None
    k, constant, fn = found
    source = dequantized(index, call.args[k])
    if source is None:
        return "an input is not dequantized from integers (float producer)"
    x, x_q = source
    if x_q.per_channel:
        return "per-channel activation parameters"
    tail = match_tail(index, var)
    if tail is None:
        return "its result does not reach a quantize (through clips only)"
    assert tail.out_q is not None and tail.out is not None
    bad = rules.check_tensors([str(x_q.dtype), str(tail.out_q.dtype)])
    if bad:
        return bad
    rounding = str(index.producer[tail.out].attrs["rounding"])  # type: ignore[union-attr]
    request = lowering.Request(call, [x_q], tail.out_q, numerics, tail.lo, tail.hi, rounding)
    short = (op_name(call) or "").rsplit(".", 1)[-1]
    lowered = lowering.lower_by_constant(x_q, tail.out_q, request.table_rounding, request.codes(), constant, fn,
                                         f"lookup table ({short} by a constant)", f"lut({short})",
                                         affine=lowering.affine_with_constant(call))
    if isinstance(lowered, str):
        return lowered
    return Match(var, tail, lowered.label, lambda bb, m: lowered.emit(bb, [remap(x, m)]))
