"""Float-vs-quantized agreement from running sums, shared by the per-tensor report and the output metrics."""

from __future__ import annotations

import math

__all__ = ["cosine_from_sums", "nan_max", "sqnr_db_from_sums"]


def sqnr_db_from_sums(signal: float, noise: float) -> float:
    """``10 log10(signal / noise)`` from ``sum(ref^2)`` and ``sum((ref - test)^2)``; inf when the noise is 0."""
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)


def cosine_from_sums(dot: float, ref_sq: float, test_sq: float) -> float:
    """Cosine similarity from ``sum(ref*test)``, ``sum(ref^2)``, ``sum(test^2)``; 1 when either is all zero."""
    den = math.sqrt(ref_sq * test_sq)
    return 1.0 if den == 0 else dot / den


def nan_max(a: float, b: float) -> float:
    """``max(a, b)``, NaN when either is NaN (Python's ``max`` would then depend on the argument order)."""
    return math.nan if math.isnan(a) or math.isnan(b) else max(a, b)
