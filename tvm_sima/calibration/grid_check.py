"""Does a tensor's integer grid keep it? Measured on its calibration sample, and the rescue when not.

One per-tensor grid can destroy a tensor whose range a tail owns: BlazeFace's classifier logits
calibrate to ``[-3430, +1.66]``, an int8 grid of scale 13.45 with zero point 127, and every logit
in ``(-6.7, +1.66]`` -- nearly all the ones a face decision reads -- becomes the code of 0. Its
SQNR over all values still looks fine (27 dB: the tail is the signal), so the check looks at the
*typical* values instead.

The rule, in one sentence: **a tensor is collapsed when its grid leaves the middle half of its
calibration sample (the nonzero values between their quartiles) with less than one bit -- their quantization
noise within 6.02 dB of their own variance -- and a collapsed tensor gets the first grid, in order of
cost, that gives them that bit back without raising the whole sample's squared error: the same bits
over the range of least squared error (a tail-aware clip), then 16 bits over the calibrated range,
then 16 bits over the range of least squared error; when none does, it keeps its grid and a warning
names it.** Every error is measured with the real quantizer (``choose_qparams`` / ``quantize`` /
``dequantize``) on the tensor's :class:`~tvm_sima.calibration.sampling.ValueSample`.

For reference, an int8 grid at the 99.99th percentile gives the middle half of a Gaussian about 44
codes (33 dB) and of a Laplacian 19 (26 dB); the BlazeFace logits get 0.8 codes (-2 dB). A middle
half that is one value (a saturated ReLU6) has no variation to lose and passes; exact zeros are left
out (every grid keeps them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Iterator, Optional

import numpy as np

from ..math import QParams, QScheme, choose_qparams, dequantize, quantize
from .observers import mse_range

__all__ = ["MIDDLE_SQNR_DB", "WIDE_BITS", "GridFit", "GridVerdict", "check_grid", "fit_grid", "rescue_grid"]

#: One bit for the middle half: noise power at most a quarter of the values' variance (20 log10 2 dB).
MIDDLE_SQNR_DB = 20 * math.log10(2.0)
#: The activation width a collapsed tensor may be widened to (the fused ops take int16 activations).
WIDE_BITS = 16


@dataclass(frozen=True)
class GridFit:
    """What one grid does to a tensor's sample (``qparams`` per-tensor).

    ``middle_sqnr_db``: ``10 log10(var / noise)`` over the nonzero values between their quartiles
    (inf when they are one value, or the grid keeps them exactly); ``middle_codes``: their
    interquartile range in grid steps; ``mse``: mean squared error over the whole sample;
    ``codes``: distinct codes the sample uses; ``tail_share``: the part of the grid's range
    outside the 1st..99th percentiles of the nonzero values.
    """

    qparams: QParams
    middle_sqnr_db: float
    middle_codes: float
    mse: float
    codes: int
    tail_share: float

    @property
    def collapsed(self) -> bool:
        """The middle half gets less than one bit (:data:`MIDDLE_SQNR_DB`)."""
        return self.middle_sqnr_db < MIDDLE_SQNR_DB

    def describe(self) -> str:
        qp = self.qparams
        scale, zp = float(np.atleast_1d(qp.scale)[0]), int(np.atleast_1d(qp.zero_point)[0])
        edge = {qp.qmin: " (the lowest code)", qp.qmax: " (the highest code)"}.get(zp, "")
        return (f"{qp.dtype.bits}-bit scale {scale:.4g} zero point {zp}{edge}: the middle half of the nonzero values "
                f"spans {self.middle_codes:.2g} codes ({self.middle_sqnr_db:.1f} dB there), the sample uses "
                f"{self.codes} codes, the 2% in the tails own {100 * self.tail_share:.0f}% of the range")

    def to_dict(self) -> dict[str, Any]:
        qp = self.qparams
        return {"bits": qp.dtype.bits, "scale": float(np.atleast_1d(qp.scale)[0]),
                "zero_point": int(np.atleast_1d(qp.zero_point)[0]), "middle_sqnr_db": _finite(self.middle_sqnr_db),
                "middle_codes": self.middle_codes, "mse": self.mse, "codes": self.codes,
                "tail_share": self.tail_share}


def _finite(value: float) -> Optional[float]:
    """JSON has no infinity: None stands for it."""
    return None if math.isinf(value) else round(value, 2)


def _sqnr_db(variance: float, noise: float) -> float:
    """``10 log10(variance / noise)``; inf when the values do not vary (no variation to lose: a grid only
    moves one value by at most half a step) or the grid keeps them exactly."""
    if variance == 0 or noise == 0:
        return math.inf
    return 10 * math.log10(variance / noise)


def fit_grid(sample: np.ndarray, qparams: QParams) -> GridFit:
    """Measure ``qparams`` on ``sample`` (a 1-D array of the tensor's values, not empty).

    The middle half and the tails are those of the *nonzero* values: 0 is exact on every grid
    (``choose_qparams`` puts it on a code), and a ReLU's zeros would otherwise fill the middle half
    (EfficientNet-Lite0's ReLU6 outputs are 75% zeros).
    """
    x = np.asarray(sample, dtype=np.float64)
    q = quantize(x, qparams)
    error = dequantize(q, qparams) - x
    scale = float(np.atleast_1d(qparams.scale)[0])
    span = scale * (qparams.qmax - qparams.qmin)
    nonzero = x != 0
    if not nonzero.any():
        return GridFit(qparams, math.inf, 0.0, float(np.mean(error**2)), int(np.unique(q).size), 0.0)
    q01, q25, q75, q99 = np.quantile(x[nonzero], [0.01, 0.25, 0.75, 0.99])
    middle = nonzero & (x >= q25) & (x <= q75)  # empty for two values: then no variation to lose
    variance, noise = (float(x[middle].var()), float(np.mean(error[middle] ** 2))) if middle.any() else (0.0, 0.0)
    return GridFit(qparams, _sqnr_db(variance, noise),
                   float((q75 - q25) / scale), float(np.mean(error**2)), int(np.unique(q).size),
                   float(max(0.0, 1.0 - (q99 - q01) / span)) if span > 0 else 0.0)


@dataclass(frozen=True)
class GridVerdict:
    """A collapsed tensor: its grid before, the grid chosen (None: nothing saves it) and why."""

    tensor: str
    before: GridFit
    after: Optional[GridFit]
    choice: str

    @property
    def rescued(self) -> bool:
        return self.after is not None

    def message(self) -> str:
        if self.after is None:
            return (f"tensor {self.tensor!r} collapses on its grid and nothing tried saves it ({self.choice}): "
                    f"{self.before.describe()}; the layer's output is close to a constant -- widen it "
                    "(activation_bits=16), clip it, or keep the layer float")
        return f"tensor {self.tensor!r}: {self.before.describe()}; chose {self.choice}: {self.after.describe()}"

    def to_dict(self) -> dict[str, Any]:
        return {"tensor": self.tensor, "rescued": self.rescued, "problem": self.before.describe(),
                "choice": self.choice, "before": self.before.to_dict(),
                "after": None if self.after is None else self.after.to_dict()}


def _candidates(sample: np.ndarray, extrema: tuple[float, float], calibrated: tuple[float, float],
                scheme: QScheme, bits: int, widen: bool) -> Iterator[tuple[str, float, float, int]]:
    """``(label, lo, hi, bits)`` of the grids to try, cheapest first (each range searched only when reached)."""
    lo, hi = mse_range(sample, None, extrema[0], extrema[1], scheme, bits)
    yield f"{bits}-bit over [{lo:.4g}, {hi:.4g}], the range of least squared error", lo, hi, bits
    if widen and bits < WIDE_BITS:
        yield f"{WIDE_BITS}-bit over the calibrated range", calibrated[0], calibrated[1], WIDE_BITS
        lo, hi = mse_range(sample, None, extrema[0], extrema[1], scheme, WIDE_BITS)
        yield f"{WIDE_BITS}-bit over [{lo:.4g}, {hi:.4g}], the range of least squared error", lo, hi, WIDE_BITS


def rescue_grid(tensor: str, sample: np.ndarray, before: GridFit, extrema: tuple[float, float],
                calibrated: tuple[float, float], scheme: QScheme, widen: bool = True) -> GridVerdict:
    """The verdict on a collapsed tensor (``before``: its calibrated grid's fit): the first candidate that
    passes, or none (module docstring: the rule).

    ``extrema``: the observed ``(min, max)``, where the least-squared-error searches start;
    ``calibrated``: the calibrator's clip range (the wide grid's first candidate covers it);
    ``widen``: allow :data:`WIDE_BITS`-bit candidates.
    """
    qparams = before.qparams
    tried = []
    for label, lo, hi, bits in _candidates(sample, extrema, calibrated, scheme, qparams.dtype.bits, widen):
        fit = fit_grid(sample, choose_qparams(lo, hi, scheme, bits, signed=qparams.dtype.signed))
        if not fit.collapsed and fit.mse <= before.mse:
            return GridVerdict(tensor, before, fit, label)
        tried.append(f"{label}: {fit.middle_sqnr_db:.1f} dB")
    return GridVerdict(tensor, before, None, "; ".join(tried))


def check_grid(tensor: str, sample: np.ndarray, qparams: QParams, extrema: tuple[float, float],
               calibrated: tuple[float, float], scheme: QScheme, rescue: bool = True,
               widen: bool = True) -> Optional[GridVerdict]:
    """None when ``qparams`` (a per-tensor grid) keeps the tensor whose calibration sample is ``sample``,
    else the verdict: :func:`rescue_grid`'s, or with ``rescue=False`` one that chose nothing.

    An empty sample (statistics saved before samples were kept) is not checked: None.
    """
    sample = np.asarray(sample, dtype=np.float64).ravel()
    if sample.size == 0 or qparams.per_channel:
        return None
    before = fit_grid(sample, qparams)
    if not before.collapsed:
        return None
    if not rescue:
        return GridVerdict(tensor, before, None, "rescue disabled (rescue_collapsed_tensors=False)")
    return rescue_grid(tensor, sample, before, extrema, calibrated, scheme, widen)
