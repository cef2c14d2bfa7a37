"""PReLU with a per-channel (or per-element) constant slope: one lookup table per distinct slope.

``y = x if x >= 0 else alpha * x`` is a unary function of the code for each slope, so each
distinct slope gets a table ``quantize(prelu(dequantize(code)))`` (exact up to the output's own
rounding), and every element indexes the table of its slope: ``tables[k(i) * 256 + code - qmin]``.
TVM's TFLite importer flattens PRELU to a 1-D tensor with one slope per element; those slopes
repeat per channel, so there are still only as many tables as channels.
"""

from __future__ import annotations

from typing import Callable, Sequence, Union

import numpy as np
from tvm import relax

from ..graph import constant_value
from .base import Lowered, Request
from .numerics import TableRounding
from .tables import table

__all__ = ["lower_prelu"]

#: Most distinct slopes given tables (each 2**bits entries) before the op stays float.
MAX_TABLES = 4096


def lower_prelu(r: Request) -> Union[Lowered, str]:
    """``relax.nn.prelu(x, alpha, axis)`` of 8-bit codes, or why it stays float."""
    x_q, call = r.inputs[0], r.call
    if x_q.dtype.bits > 8:
        return "lookup tables need 8-bit inputs"
    alpha = constant_value(call.args[1])
    shape = getattr(getattr(call.args[0], "ty", None), "shape", None)
    if alpha is None or shape is None:
        return "the slope is not a constant (or the input has no static shape)"
    dims = [int(d) for d in shape]
    axis = int(call.attrs["axis"]) % len(dims)
    alpha = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if alpha.size not in (1, dims[axis]):
        return f"{alpha.size} slopes for {dims[axis]} channels"
    slopes, which = np.unique(alpha, return_inverse=True)
    if slopes.size > MAX_TABLES:
        return f"{slopes.size} distinct slopes (at most {MAX_TABLES} tables)"
    rounding = r.rounding if r.numerics.tables is TableRounding.OF_THE_MODEL and r.rounding else "half_up"
    def prelu(slope: float) -> Callable[[np.ndarray], np.ndarray]:
        return lambda v: np.where(v >= 0, v, slope * v)

    tables = np.stack([table(prelu(float(a)), x_q, r.output, rounding, r.codes()) for a in slopes])
    offsets = (which.astype(np.int64) * tables.shape[1]).astype("int32")
    offsets = offsets.reshape([offsets.size if i == axis else 1 for i in range(len(dims))])

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        codes = relax.op.subtract(relax.op.astype(xs[0], "int32"), relax.const(x_q.qmin, "int32"))
        index = bb.emit(relax.op.add(bb.emit(codes), relax.const(offsets)))
        # every index is in [0, tables.size): mode="clip" changes none (the default "fast" mode warns)
        return relax.op.take(relax.const(tables.reshape(-1)), index, axis=0, mode="clip")

    return Lowered(f"lookup table (prelu, {slopes.size} slopes)", emit, tally="lut(prelu)")
