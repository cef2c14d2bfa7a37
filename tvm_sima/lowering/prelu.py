"""PReLU with a constant per-channel (or per-element) slope: a table per distinct slope.

TVM's TFLite importer flattens PRELU to a 1-D tensor with one slope per element; those slopes
repeat per channel, so there are still only as many tables as channels
(:mod:`.constant_tables`).
"""

from __future__ import annotations

from typing import Union

import numpy as np

from ..graph import constant_value
from .base import Lowered, Request
from .constant_tables import lower_by_constant

__all__ = ["lower_prelu"]


def lower_prelu(r: Request) -> Union[Lowered, str]:
    """``relax.nn.prelu(x, alpha, axis)`` of 8-bit codes, or why it stays float."""
    alpha = constant_value(r.call.args[1])
    dims = r.input_shape()
    if alpha is None or dims is None:
        return "the slope is not a constant (or the input has no static shape)"
    axis = int(r.call.attrs["axis"]) % len(dims)
    slopes = np.asarray(alpha, dtype=np.float64).reshape(-1)
    if slopes.size not in (1, dims[axis]):
        return f"{slopes.size} slopes for {dims[axis]} channels"
    slopes = slopes.reshape([slopes.size if i == axis else 1 for i in range(len(dims))])
    return lower_by_constant(r.inputs[0], r.output, r.table_rounding, r.codes(), slopes,
                             lambda x, a: np.where(x >= 0, x, a * x), "lookup table (prelu)", "lut(prelu)")
