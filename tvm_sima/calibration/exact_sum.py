"""Exact sums of float64 values: the same result whatever the order or grouping of the additions.

A float sum ``((a + b) + c)`` depends on the order of its terms; calibration statistics summed on
shards of a dataset (:meth:`tvm_sima.calibration.Observer.merge`) must not. Every finite float64
is an integer multiple of ``2**-1074``; :class:`ExactSum` keeps the sum of its terms as that
integer (a Python int, no overflow), so adding is exact, associative and commutative, and
:meth:`ExactSum.value` rounds the exact total once, to the nearest float64 (Python's ``int / int``
is correctly rounded). The sum of one term is that term.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["SCALE_BITS", "ExactSum", "ExactTotal"]

#: Terms are held as integers times ``2**-SCALE_BITS``: 1074 (float64's smallest step) plus 52, so the
#: 53-bit integer significand that :func:`numpy.frexp` gives a subnormal still shifts left, never right.
SCALE_BITS = 1126


def _exact_ints(values: np.ndarray) -> list[int]:
    """Each finite float64 of ``values`` as the integer ``value * 2**SCALE_BITS`` (exactly)."""
    fraction, exponent = np.frexp(np.asarray(values, dtype=np.float64).ravel())
    significand = np.ldexp(fraction, 53).astype(np.int64)  # exact: 53 bits of significand
    shifts = exponent.astype(np.int64) + (SCALE_BITS - 53)
    return [s << k for s, k in zip(significand.tolist(), shifts.tolist(), strict=True)]


def _rounded(total: int) -> float:
    try:
        return total / (1 << SCALE_BITS)
    except OverflowError:  # beyond float64: the float sum would be infinite too
        return float("inf") if total > 0 else float("-inf")


class ExactSum:
    """The exact running sum of float64 arrays of one shape (a scalar: shape ``()``).

    Parameters
    ----------
    shape : tuple of int
        Shape of every term added.
    """

    def __init__(self, shape: tuple[int, ...] = ()) -> None:
        self.shape = tuple(int(n) for n in shape)
        self.ints = [0] * int(np.prod(self.shape, dtype=np.int64))

    def add(self, values: Any) -> None:
        """Add one term (finite float64 values of :attr:`shape`)."""
        array = np.asarray(values, dtype=np.float64)
        if array.shape != self.shape:
            raise ValueError(f"ExactSum of shape {self.shape}: cannot add a term of shape {array.shape}")
        self.ints = [a + b for a, b in zip(self.ints, _exact_ints(array), strict=True)]

    def merge(self, other: "ExactSum") -> None:
        """Add another sum's terms (exact: the order of merges does not matter)."""
        if other.shape != self.shape:
            raise ValueError(f"cannot merge an ExactSum of shape {other.shape} into one of shape {self.shape}")
        self.ints = [a + b for a, b in zip(self.ints, other.ints, strict=True)]

    def value(self) -> np.ndarray:
        """The sum rounded once to the nearest float64 (an array of :attr:`shape`)."""
        return np.asarray([_rounded(i) for i in self.ints], dtype=np.float64).reshape(self.shape)

    def state(self) -> dict[str, Any]:
        """JSON-ready state: the shape and the integers (as decimal strings)."""
        return {"shape": list(self.shape), "ints": [str(i) for i in self.ints]}

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> "ExactSum":
        total = cls(tuple(state["shape"]))
        total.ints = [int(i) for i in state["ints"]]
        if len(total.ints) != int(np.prod(total.shape, dtype=np.int64)):
            raise ValueError(f"ExactSum state: {len(total.ints)} integers for shape {total.shape}")
        return total


class ExactTotal:
    """The exact sum of float scalars, Inf and NaN allowed (what metrics add up, batch by batch).

    Finite terms go to an :class:`ExactSum`; Inf / NaN terms are added as floats beside it (IEEE
    sums of infinities and NaNs do not depend on the order either), and their sum, when there is
    one, is the value: ``inf`` (or ``-inf``), or NaN for a NaN or infinities of both signs.
    """

    def __init__(self) -> None:
        self.finite = ExactSum()
        self.special = 0.0  # the sum of the Inf / NaN terms (0.0 while there is none)

    def add(self, value: float) -> None:
        if math.isfinite(value):
            self.finite.add(value)
        else:
            self.special += value

    def merge(self, other: "ExactTotal") -> None:
        self.finite.merge(other.finite)
        self.special += other.special

    def value(self) -> float:
        return float(self.finite.value()) if math.isfinite(self.special) else self.special

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ExactTotal) and self.finite.ints == other.finite.ints and \
            (self.special == other.special or math.isnan(self.special) and math.isnan(other.special))

    def __repr__(self) -> str:
        return f"ExactTotal({self.value()!r})"
