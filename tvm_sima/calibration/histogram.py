"""The fixed-size streaming histogram of the histogram observers, and NumPy's bin counting without its range mask.

:func:`bin_counts` is ``np.histogram(x, bins, range=(lo, hi))[0]`` for values already inside the
range (the histogram widens before it counts, so they always are): the same edges, the same
index arithmetic and corrections, block by block as NumPy does, without the two comparisons and
the mask NumPy spends on values outside the range. Counts are bit-identical
(``tests/calibration/test_histogram.py`` checks it against ``np.histogram``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["BLOCK", "StreamingHistogram", "bin_counts"]

#: Values counted at a time (NumPy's ``histogram`` block: its temporaries stay in the cache).
BLOCK = 65536


def bin_counts(x: np.ndarray, lo: float, hi: float, bins: int) -> np.ndarray:
    """``np.histogram(x, bins, range=(lo, hi))[0]`` (int64) for float64 ``x`` with every value in ``[lo, hi]``.

    Bin ``i`` holds ``edges[i] <= v < edges[i + 1]`` (the last bin also ``v == hi``), ``edges =
    linspace(lo, hi, bins + 1)``; the index is ``int((v - lo) / (hi - lo) * bins)``, moved by one
    where rounding put it across an edge, exactly as NumPy computes it. Other dtypes (NumPy bins
    float32 data on float32 edges) and ranges NumPy would reject or widen (``lo >= hi``,
    non-finite, bins narrower than float64 resolves) go to ``np.histogram`` itself.
    """
    x, lo, hi = np.asarray(x).ravel(), float(lo), float(hi)
    edges = np.linspace(lo, hi, bins + 1, endpoint=True, dtype=np.float64) if lo < hi else None
    if x.dtype != np.float64 or edges is None or not np.isfinite(hi - lo) or np.any(edges[:-1] >= edges[1:]):
        return np.histogram(x, bins=bins, range=(lo, hi))[0]
    denom = np.subtract(hi, lo)
    counts = np.zeros(bins, dtype=np.int64)
    for start in range(0, x.size, BLOCK):
        part = x[start:start + BLOCK]
        index = ((part - lo) / denom * bins).astype(np.intp)
        index[index == bins] -= 1
        index[part < edges[index]] -= 1
        index[(part >= edges[index + 1]) & (index != bins - 1)] += 1
        counts += np.bincount(index, minlength=bins)
    return counts


class StreamingHistogram:
    """A histogram of fixed ``bins`` over a range that grows to cover every value seen."""

    def __init__(self, bins: int = 2048, include_zero: bool = False) -> None:
        self.bins = int(bins)
        self.counts = np.zeros(self.bins, dtype=np.float64)
        self.lo = self.hi = 0.0
        self.empty = True
        self.include_zero = include_zero

    def update(self, x: np.ndarray) -> None:
        if x.size == 0:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.include_zero:
            lo, hi = min(lo, 0.0), max(hi, 0.0)
        if self.empty:  # a constant tensor still needs bins wider than float64's resolution at its value
            self.lo, self.hi, self.empty = lo, max(hi, lo + max(1e-12, abs(lo) * 1e-9 * self.bins)), False
        elif lo < self.lo or hi > self.hi:
            self._widen(min(lo, self.lo), max(hi, self.hi))
        self.counts += bin_counts(x, self.lo, self.hi, self.bins)

    def _widen(self, lo: float, hi: float) -> None:
        """Re-bin the old counts (each old bin's mass to the new bin holding its center)."""
        old_centers = self.centers()
        self.lo, self.hi = lo, hi
        index = np.clip(((old_centers - lo) / self.width).astype(np.int64), 0, self.bins - 1)
        counts = np.zeros(self.bins)
        np.add.at(counts, index, self.counts)
        self.counts = counts

    @property
    def width(self) -> float:
        return (self.hi - self.lo) / self.bins

    def centers(self) -> np.ndarray:
        return self.lo + (np.arange(self.bins) + 0.5) * self.width

    def quantile(self, q: float) -> float:
        """Value below which a fraction ``q`` of the mass lies (linear within a bin)."""
        total = self.counts.sum()
        if total == 0:
            return 0.0
        cdf = np.cumsum(self.counts) / total
        i = int(np.searchsorted(cdf, q))
        i = min(i, self.bins - 1)
        before = cdf[i - 1] if i > 0 else 0.0
        frac = 0.0 if self.counts[i] == 0 else (q - before) / (cdf[i] - before)
        return float(self.lo + (i + min(max(frac, 0.0), 1.0)) * self.width)

    def state(self) -> dict[str, Any]:
        return {"counts": self.counts, "lo": self.lo, "hi": self.hi, "empty": self.empty}

    def load(self, state: dict[str, Any]) -> None:
        self.counts = np.asarray(state["counts"], dtype=np.float64)
        self.bins = self.counts.size
        self.lo, self.hi, self.empty = float(state["lo"]), float(state["hi"]), bool(state["empty"])
