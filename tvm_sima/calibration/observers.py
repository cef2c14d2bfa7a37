"""The registered observers: extrema, momentum mean, global scale, N-std, and those on a histogram.

Each turns its statistic into a clipping range ``[lo, hi]`` (:meth:`Observer.clip_range`); the
contract, the registry, the statistics every observer keeps and their exact merge are in
:mod:`tvm_sima.calibration.observer_base`.
"""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np

from ..math import QScheme, choose_qparams, dequantize, quantize
from .histogram import StreamingHistogram
from .observer_base import OBSERVERS, Observer, make_observer, register_observer

__all__ = [
    "OBSERVERS",
    "Observer",
    "register_observer",
    "make_observer",
    "StreamingHistogram",
    "MSE_FACTORS",
    "mse_range",
]

#: Shrink factors of the range that :func:`mse_range` tries (each end separately when asymmetric).
MSE_FACTORS = np.geomspace(0.01, 1.0, 40)


@register_observer("extrema")
class ExtremaObserver(Observer):
    """``[min, max]`` of everything seen (per channel with ``axis``)."""

    per_channel_ok = True


@register_observer("mean")
class MovingAverageObserver(Observer):
    """Momentum average of per-batch min and max, in dataset order: ``r = m * r + (1 - m) * batch``.

    The average depends on the order of the batches, so the observer keeps every batch's extrema
    by batch index and folds them in index order when asked (:meth:`clip_range`): merged shards
    fold exactly as one run does. Its memory grows with the number of batches (two values per
    channel per batch), unlike the other observers'.
    """

    per_channel_ok = True

    def reset(self) -> None:
        super().reset()
        self.batch_extrema: dict[int, tuple[np.ndarray, np.ndarray]] = {}

    def _update(self, data: np.ndarray) -> None:
        axes = self._reduce_axes(data)
        self.batch_extrema[self.batch] = (np.nanmin(data, axis=axes), np.nanmax(data, axis=axes))

    def _merge_extra(self, other: Observer) -> None:
        assert isinstance(other, MovingAverageObserver)
        twice = set(self.batch_extrema) & set(other.batch_extrema)
        if twice:
            raise ValueError(f"tensor {self.tensor!r}: batch {min(twice)} was observed in two merged shards")
        self.batch_extrema.update(other.batch_extrema)

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_seen()
        m = float(self.options.get("running_statistic_momentum", 0.9))
        avg_lo = avg_hi = None
        for index in sorted(self.batch_extrema):
            lo, hi = self.batch_extrema[index]
            avg_lo = lo if avg_lo is None else m * avg_lo + (1 - m) * lo
            avg_hi = hi if avg_hi is None else m * avg_hi + (1 - m) * hi
        assert avg_lo is not None and avg_hi is not None
        return avg_lo, avg_hi

    def _extra_state(self) -> dict[str, Any]:
        order = sorted(self.batch_extrema)
        return {"extrema_batches": np.asarray(order, dtype=np.int64),
                "extrema_lo": np.asarray([self.batch_extrema[i][0] for i in order]),
                "extrema_hi": np.asarray([self.batch_extrema[i][1] for i in order])}

    def _load_extra(self, state: dict[str, Any]) -> None:
        if "extrema_batches" not in state:
            raise ValueError(f"tensor {self.tensor!r}: statistics saved by an earlier tvm-sima keep no per-batch "
                             "extrema for the 'mean' observer; calibrate again to write a new statistics file")
        lows, highs = np.asarray(state["extrema_lo"]), np.asarray(state["extrema_hi"])
        self.batch_extrema = {int(i): (lows[k], highs[k]) for k, i in enumerate(np.asarray(state["extrema_batches"]))}


@register_observer("global_scale")
class GlobalScaleObserver(Observer):
    """Relay's ``global_scale``: the fixed range ``[-global_scale, global_scale]``, whatever the data."""

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        g = float(self.options.get("global_scale", 8.0))
        return np.asarray(-g), np.asarray(g)


class _HistogramObserver(Observer):
    """Base of the observers that keep a :class:`StreamingHistogram`."""

    def reset(self) -> None:
        super().reset()
        self.hist = StreamingHistogram(int(self.options.get("histc_bins", 2048)))

    def _update(self, data: np.ndarray) -> None:
        self.hist.update(data.ravel())

    def _merge_extra(self, other: Observer) -> None:
        assert isinstance(other, _HistogramObserver)
        self.hist.merge(other.hist)

    def _extra_state(self) -> dict[str, Any]:
        return {"hist": self.hist.state()}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.hist.load(state["hist"])


@register_observer("percentile")
class PercentileObserver(_HistogramObserver):
    """``[q(1 - p), q(p)]``: the ``percentile`` p of the values (not of ``|x|``), from the histogram."""

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_seen()
        p = float(self.options.get("percentile", 99.99)) / 100.0
        return np.asarray(self.hist.quantile(1.0 - p)), np.asarray(self.hist.quantile(p))


@register_observer("nstd")
class NStdObserver(Observer):
    """``mean +- N * std``, clamped to the extrema."""

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = super().clip_range()
        n = float(self.options.get("nstd", 3.0))
        return np.maximum(lo, self.mean - n * self.std), np.minimum(hi, self.mean + n * self.std)


@register_observer("aciq_laplace")
class AciqLaplaceObserver(_HistogramObserver):
    """ACIQ (Banner et al.): clip at ``alpha(bits) * b`` for a Laplace fit, ``b = E|x - mean|``."""

    ALPHA = {2: 2.83, 3: 3.89, 4: 5.03, 5: 6.20, 6: 7.41, 7: 8.64, 8: 9.89, 16: 20.0}

    def spread(self) -> float:
        centers = self.hist.centers()
        return float((self.hist.counts * np.abs(centers - self.mean)).sum() / max(self.hist.counts.sum(), 1))

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = super().clip_range()
        bits = int(self.options.get("bits", 8))
        alpha = self.ALPHA.get(bits, self.ALPHA[8]) * self.spread()
        return np.maximum(lo, self.mean - alpha), np.minimum(hi, self.mean + alpha)


@register_observer("aciq_gauss")
class AciqGaussObserver(AciqLaplaceObserver):
    """ACIQ for a Gaussian fit: clip at ``alpha(bits) * std``."""

    ALPHA = {2: 1.71, 3: 2.15, 4: 2.55, 5: 2.94, 6: 3.29, 7: 3.61, 8: 3.92, 16: 6.0}

    def spread(self) -> float:
        return self.std


@register_observer("kl_divergence")
class KLDivergenceObserver(_HistogramObserver):
    """TensorRT's entropy calibration on ``|x|``: the threshold minimizing KL(P || Q).

    For each candidate threshold (a bin edge from 128 bins up), P is the histogram clipped there
    (outliers added to the last bin) and Q the clipped histogram without the outliers, quantized to
    ``2**(bits-1)`` levels and spread back over P's non-empty bins; with
    ``kl_top_n`` > 1 the mean of the N best thresholds is used. The range is ``[-t, t]`` cut to
    the observed extrema (``[0, t]`` after a relu). Exact zeros are left out of the histogram:
    zero is always exactly representable, and after a relu / relu6 the zeros are a spike that
    drives the threshold far too low (0.74 for relu6 outputs of EfficientNet-Lite0 when counted).
    """

    def reset(self) -> None:
        super().reset()
        self.hist = StreamingHistogram(int(self.options.get("histc_bins", 2048)), include_zero=True)

    def _update(self, data: np.ndarray) -> None:
        values = np.abs(data.ravel())
        values = values[values != 0]
        if values.size:
            self.hist.update(values)

    def threshold(self) -> float:
        """The KL-optimal ``|x|`` threshold (a bin edge of the histogram, which starts at 0)."""
        counts, width = self.hist.counts, self.hist.width
        levels = 2 ** (int(self.options.get("bits", 8)) - 1)
        scores = []
        for i in range(min(levels, counts.size), counts.size + 1):
            p = counts[:i].copy()
            p[-1] += counts[i:].sum()
            if p.sum() == 0:
                continue
            nonzero = (p > 0).astype(np.float64)
            sizes: np.ndarray = np.diff(np.linspace(0, i, levels + 1).astype(np.int64)).astype(np.int64)
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
            # Q quantizes the clipped histogram *without* the outliers (TensorRT), spread over P's support.
            sums, nz = np.add.reduceat(counts[:i], starts), np.add.reduceat(nonzero, starts)
            q = np.repeat(np.divide(sums, nz, out=np.zeros_like(sums), where=nz > 0), sizes) * nonzero
            keep = p > 0
            if q.sum() == 0:
                continue
            ps, qs = p[keep] / p.sum(), q[keep] / q.sum()
            scores.append((float(np.sum(ps * np.log(ps / np.maximum(qs, 1e-30)))), self.hist.lo + i * width))
        if not scores:
            return 0.0
        top = sorted(scores)[: int(self.options.get("kl_top_n", 1))]
        return float(np.mean([t for _, t in top]))

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_seen()
        assert self.min_val is not None and self.max_val is not None
        t = self.threshold() if self.hist.counts.sum() > 0 else 0.0
        # [-t, t] cut to the extrema, holding 0: values all beyond t on one side give [-t, 0] or [0, t]
        return (np.minimum(np.maximum(self.min_val, -t), 0.0), np.maximum(np.minimum(self.max_val, t), 0.0))


def mse_range(values: np.ndarray, weights: Optional[np.ndarray], lo: float, hi: float,
              scheme: Union[QScheme, str], bits: int, factors: np.ndarray = MSE_FACTORS) -> tuple[float, float]:
    """The range ``[lo * f, hi * g]`` whose grid gives ``values`` the least squared error.

    The error is measured with the real quantizer (:func:`~tvm_sima.math.choose_qparams`,
    ``quantize``, ``dequantize``; the candidates as the channels of one per-channel grid), each
    value counted ``weights`` times (None: once). ``f`` and ``g`` run over ``factors``
    separately for an asymmetric scheme; a symmetric one shrinks ``max(-lo, hi)``. The range is
    first extended to hold 0 (a tensor of one sign). Ties go to the first candidate.
    """
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    values = np.asarray(values, dtype=np.float64).ravel()
    counts = np.ones_like(values) if weights is None else np.asarray(weights, dtype=np.float64).ravel()
    if QScheme.parse(scheme) is QScheme.ASYMMETRIC:
        los, his = np.repeat(lo * factors, factors.size), np.tile(hi * factors, factors.size)
    else:
        amax = max(-lo, hi)
        los, his = -amax * factors, amax * factors
    errors = []
    step = max(1, (1 << 18) // max(values.size, 1))  # candidates per block: ~2 MB of float64 each
    for start in range(0, los.size, step):
        qp = choose_qparams(los[start:start + step], his[start:start + step], scheme, bits, axis=0)
        grid = np.broadcast_to(values, (qp.scale.size, values.size))
        errors.append(((dequantize(quantize(grid, qp), qp) - grid) ** 2 * counts).sum(axis=1))
    best = int(np.argmin(np.concatenate(errors)))
    return float(los[best]), float(his[best])


@register_observer("mse")
class MSEObserver(_HistogramObserver):
    """The clipping range minimizing the quantization MSE, measured with the real quantizer.

    :func:`mse_range` on the histogram's bin centers, weighted by their counts: candidates shrink
    the observed range by factors log-spaced in ``[0.01, 1]`` (each end separately for
    asymmetric schemes, the symmetric bound otherwise).
    """

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        lo, hi = (float(v) for v in super().clip_range())
        keep = self.hist.counts > 0
        best = mse_range(self.hist.centers()[keep], self.hist.counts[keep], lo, hi,
                         self.options.get("scheme", "asymmetric"), int(self.options.get("bits", 8)))
        return np.asarray(best[0]), np.asarray(best[1])
