"""The histogram observers' streaming histogram: bins of a power-of-two width, aligned, so it merges exactly.

A histogram whose range follows the data (widening and re-binning as values fall outside it)
depends on the order it saw them in, so histograms of shards of a dataset could not be merged
into the one histogram of the whole. :class:`StreamingHistogram` instead puts value ``v`` in the
bin ``floor(v / 2**e)`` — exact arithmetic for float64, no rounding at the edges — and keeps the
``bins`` consecutive bins from ``floor(min / 2**e)``, where ``e`` is the smallest exponent whose
bins span every value seen (at least float64's resolution at the largest ``|v|``). The exponent
and the first bin depend only on the extrema seen, the counts only on the values: the state is a
function of the *set* of values, whatever the order or the grouping, and :meth:`StreamingHistogram.merge`
of shards equals the histogram of all of them, bit for bit. Widening doubles the width (merging
aligned pairs of bins exactly), so the values occupy between half and all of the ``bins``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["StreamingHistogram", "bin_exponent"]


def _bin(value: float, exponent: int) -> int:
    """``floor(value / 2**exponent)``: exact (a power-of-two scaling, then a floor)."""
    return math.floor(math.ldexp(value, -exponent))


def bin_exponent(vmin: float, vmax: float, bins: int) -> int:
    """The smallest ``e`` whose bins ``floor(v / 2**e)`` put ``[vmin, vmax]`` in ``bins`` consecutive bins.

    ``e`` is at least the exponent of float64's step at ``max(|vmin|, |vmax|)`` (a constant
    tensor's bins stay wider than float64 resolves there).
    """
    amax = max(abs(vmin), abs(vmax))
    exponent = math.frexp(amax)[1] - 53 if amax > 0 else -1074
    if vmax > vmin:  # exponents whose bins are narrower than (vmax - vmin) / (bins + 1) cannot fit
        exponent = max(exponent, math.frexp((vmax - vmin) / (bins + 1))[1] - 2)
    while _bin(vmax, exponent) - _bin(vmin, exponent) >= bins:
        exponent += 1
    return exponent


class StreamingHistogram:
    """``bins`` aligned bins of width ``2**exponent`` from ``offset * 2**exponent``, covering every value seen."""

    def __init__(self, bins: int = 2048, include_zero: bool = False) -> None:
        self.bins = int(bins)
        self.include_zero = include_zero
        self.counts = np.zeros(self.bins, dtype=np.float64)  # integer counts (exact in float64 below 2**53)
        self.exponent, self.offset = 0, 0
        self.vmin = self.vmax = 0.0
        self.empty = True

    def update(self, x: np.ndarray) -> None:
        """Count finite float64 values (the range widens first when they fall outside it)."""
        if x.size == 0:
            return
        x = np.asarray(x, dtype=np.float64)
        lo, hi = float(x.min()), float(x.max())
        if self.include_zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        self._rebase(lo, hi)
        index = np.floor(np.ldexp(x, -self.exponent)).astype(np.int64) - self.offset
        self.counts += np.bincount(index, minlength=self.bins)

    def merge(self, other: "StreamingHistogram") -> None:
        """Add another histogram's counts: the result is the histogram of both sets of values."""
        if other.bins != self.bins or other.include_zero != self.include_zero:
            raise ValueError(f"cannot merge a histogram of {other.bins} bins (include_zero={other.include_zero}) "
                             f"into one of {self.bins} (include_zero={self.include_zero})")
        if other.empty:
            return
        self._rebase(other.vmin, other.vmax)
        self.counts += other._counts_at(self.exponent, self.offset)

    def _rebase(self, lo: float, hi: float) -> None:
        """Widen to hold ``[lo, hi]`` too: the exponent and first bin of all extrema seen, counts re-binned."""
        vmin, vmax = (lo, hi) if self.empty else (min(lo, self.vmin), max(hi, self.vmax))
        exponent = bin_exponent(vmin, vmax, self.bins)
        offset = _bin(vmin, exponent)
        if not self.empty:
            self.counts = self._counts_at(exponent, offset)
        self.exponent, self.offset, self.vmin, self.vmax, self.empty = exponent, offset, vmin, vmax, False

    def _counts_at(self, exponent: int, offset: int) -> np.ndarray:
        """The counts on the (coarser or equal) bins ``exponent`` from ``offset``: aligned pairs merged exactly."""
        if (exponent, offset) == (self.exponent, self.offset):
            return self.counts.copy()
        index = ((np.arange(self.bins, dtype=np.int64) + self.offset) >> (exponent - self.exponent)) - offset
        used = self.counts > 0
        return np.bincount(index[used], weights=self.counts[used], minlength=self.bins)

    @property
    def lo(self) -> float:
        return math.ldexp(self.offset, self.exponent)

    @property
    def hi(self) -> float:
        return math.ldexp(self.offset + self.bins, self.exponent)

    @property
    def width(self) -> float:
        return math.ldexp(1.0, self.exponent)

    def centers(self) -> np.ndarray:
        return self.lo + (np.arange(self.bins) + 0.5) * self.width

    def quantile(self, q: float) -> float:
        """Value below which a fraction ``q`` of the mass lies (linear within a bin, within the extrema seen).

        The aligned bins overhang the extrema; a quantile interpolated in the first or last bin is
        cut to them (relu6's 99.99th percentile is not above 6).
        """
        total = self.counts.sum()
        if total == 0:
            return 0.0
        cdf = np.cumsum(self.counts) / total
        i = int(np.searchsorted(cdf, q))
        i = min(i, self.bins - 1)
        before = cdf[i - 1] if i > 0 else 0.0
        frac = 0.0 if self.counts[i] == 0 else (q - before) / (cdf[i] - before)
        value = float(self.lo + (i + min(max(frac, 0.0), 1.0)) * self.width)
        return min(max(value, self.vmin), self.vmax)

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts, "exponent": self.exponent, "offset": self.offset, "vmin": self.vmin,
                "vmax": self.vmax, "empty": self.empty, "include_zero": self.include_zero}

    def load(self, state: dict[str, Any]) -> None:
        if "exponent" not in state:
            raise ValueError("statistics saved by an earlier tvm-sima: its histograms are not on aligned bins "
                             "and cannot be restored; calibrate again to write a new statistics file")
        self.counts = np.asarray(state["counts"], dtype=np.float64)
        self.bins = self.counts.size
        self.exponent, self.offset = int(state["exponent"]), int(state["offset"])
        self.vmin, self.vmax = float(state["vmin"]), float(state["vmax"])
        self.empty, self.include_zero = bool(state["empty"]), bool(state["include_zero"])
