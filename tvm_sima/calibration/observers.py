"""Streaming observers: record statistics of a tensor batch by batch, then choose its qparams.

Each observer is a small class with ``update(x)``, ``compute_qparams(...)``, ``reset()`` and a
``state_dict`` that :func:`~tvm_sima.calibration.save_statistics` /
:func:`~tvm_sima.calibration.load_statistics` round-trip. Memory does not
grow with the dataset: the state is running extrema / moments and a fixed-size histogram that
widens (re-binning) when new data falls outside it. Observers are registered by name
(:data:`OBSERVERS`, :func:`register_observer`); users add their own the same way.

Every observer turns its statistic into a clipping range ``[lo, hi]`` and hands it to
:func:`tvm_sima.math.choose_qparams`, so schemes and bit widths behave the same everywhere.

Every per-tensor observer also keeps a bounded uniform sample of the values it saw
(:attr:`Observer.sample`, a :class:`~tvm_sima.calibration.sampling.ValueSample`): after
calibration, :mod:`tvm_sima.calibration.grid_check` measures on it what a grid does to the tensor.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np

from ..math import QParams, QScheme, choose_qparams, dequantize, quantize
from .histogram import StreamingHistogram
from .sampling import ValueSample

__all__ = [
    "OBSERVERS",
    "Observer",
    "register_observer",
    "make_observer",
    "StreamingHistogram",
    "MSE_FACTORS",
    "mse_range",
]

LOG = logging.getLogger(__name__)
OBSERVERS: dict[str, type["Observer"]] = {}
#: Shrink factors of the range that :func:`mse_range` tries (each end separately when asymmetric).
MSE_FACTORS = np.geomspace(0.01, 1.0, 40)
T = TypeVar("T", bound=type)


def register_observer(name: str, override: bool = False) -> Callable[[T], T]:
    """Class decorator adding an observer to :data:`OBSERVERS` under ``name``; returns the class."""

    def wrap(cls: T) -> T:
        if name in OBSERVERS and not override:
            raise ValueError(f"observer {name!r} is already registered; pass override=True to replace it")
        OBSERVERS[name] = cls  # type: ignore[assignment]
        cls.name = name  # type: ignore[attr-defined]
        return cls

    return wrap


class Observer:
    """Base class: running extrema, moments and trimming of non-finite values.

    Parameters
    ----------
    tensor : str
        Name of the observed tensor, used in errors and warnings.
    axis : int, optional
        Channel axis for per-channel statistics (extrema and mean observers only).
    trim_infinity : bool
        Drop NaN / Inf values (counted in :attr:`trimmed`, warned once) instead of raising.
    options : dict
        Observer parameters from the QConfig (``percentile``, ``nstd``, ``kl_top_n``,
        ``running_statistic_momentum``, ``histc_bins``, ``global_scale``, ``bits``), and
        ``channel_mean_axis``: also keep the mean of every channel along that axis
        (:attr:`channel_mean`; realize's bias correction uses it).
    """

    name = "base"
    per_channel_ok = False

    def __init__(self, tensor: str, axis: Optional[int] = None, trim_infinity: bool = False,
                 **options: Any) -> None:
        if axis is not None and not self.per_channel_ok:
            raise ValueError(f"observer {self.name!r} is per-tensor; tensor {tensor!r} asked for axis={axis}")
        self.tensor, self.axis, self.trim_infinity, self.options = tensor, axis, trim_infinity, options
        self.reset()

    def reset(self) -> None:
        """Forget everything seen."""
        self.count = 0
        self.trimmed = 0
        self.min_val: Optional[np.ndarray] = None
        self.max_val: Optional[np.ndarray] = None
        self.sum = 0.0
        self.sum_sq = 0.0
        self.channel_sum: Optional[np.ndarray] = None
        self.channel_count = 0
        self.sample = ValueSample(self.tensor)

    def _finite(self, x: np.ndarray) -> np.ndarray:
        bad = ~np.isfinite(x)
        if not bad.any():
            return x
        if not self.trim_infinity:
            kinds = "NaN" if np.isnan(x).any() else "Inf"
            raise ValueError(f"tensor {self.tensor!r} has {int(bad.sum())} {kinds} values in calibration data; "
                             "pass trim_infinity_before_statistic=True to drop them, or fix the model / data")
        if self.trimmed == 0:
            LOG.warning("tensor %r: dropping NaN/Inf values from its statistics", self.tensor)
        self.trimmed += int(bad.sum())
        if self.axis is not None:
            return np.where(bad, np.nan, x)  # reduced with nan-aware functions below
        return x[~bad]

    def _reduce_axes(self, x: np.ndarray) -> Optional[tuple[int, ...]]:
        if self.axis is None:
            return None
        axis = self.axis % x.ndim
        return tuple(i for i in range(x.ndim) if i != axis)

    def update(self, x: np.ndarray) -> None:
        """Record one batch of the tensor's values."""
        data = np.asarray(x, dtype=np.float64)
        if data.size == 0:
            return
        total = float(np.sum(data))
        if math.isfinite(total):  # no NaN / Inf: plain sums are the NaN-aware ones (same values, same order)
            self._record(data, total, np.sum, data.size)
            return
        data = self._finite(data)
        if data.size:
            self._record(data, float(np.nansum(data)), np.nansum, int(np.isfinite(data).sum()))

    def _record(self, data: np.ndarray, total: float, summed: Callable[..., Any], count: int) -> None:
        """Add one batch to the statistics; ``summed`` is ``np.sum``, or ``np.nansum`` for NaN-marked values."""
        axes = self._reduce_axes(data)
        self._record_extrema(np.nanmin(data, axis=axes), np.nanmax(data, axis=axes))
        self.count += count
        self.sum += total
        self.sum_sq += float(summed(data * data))
        channel_axis = self.options.get("channel_mean_axis")
        if channel_axis is not None and data.ndim > 0:
            axis = int(channel_axis) % data.ndim
            sums = summed(data, axis=tuple(i for i in range(data.ndim) if i != axis))
            self.channel_sum = sums if self.channel_sum is None else self.channel_sum + sums
            self.channel_count += data.size // data.shape[axis]
        if self.axis is None:
            self.sample.update(data.ravel())
        self._update(data)

    def _record_extrema(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else np.maximum(self.max_val, hi)

    def _update(self, data: np.ndarray) -> None:
        """Observer-specific statistics (default: none beyond the base ones)."""

    def _check_seen(self) -> None:
        if self.min_val is None:
            raise ValueError(f"tensor {self.tensor!r} has no calibration statistics: feed data before compute_qparams")

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        """The ``(lo, hi)`` this observer recommends (default: the extrema)."""
        self._check_seen()
        assert self.min_val is not None and self.max_val is not None
        return self.min_val, self.max_val

    def compute_qparams(self, scheme: Union[QScheme, str] = "symmetric_full", bits: int = 8,
                        signed: bool = True) -> QParams:
        """Quantization parameters from :meth:`clip_range` (see :func:`tvm_sima.math.choose_qparams`)."""
        lo, hi = self.clip_range()
        return choose_qparams(lo, hi, scheme, bits, signed=signed, axis=self.axis)

    # Persistence.
    def state_dict(self) -> dict[str, Any]:
        state = {"name": self.name, "tensor": self.tensor, "axis": self.axis, "count": self.count,
                 "trimmed": self.trimmed, "sum": self.sum, "sum_sq": self.sum_sq,
                 "min_val": self.min_val, "max_val": self.max_val, "options": self.options,
                 "channel_sum": self.channel_sum, "channel_count": self.channel_count,
                 "sample": self.sample.state()}
        state.update(self._extra_state())
        return state

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.trimmed = int(state["count"]), int(state["trimmed"])
        self.sum, self.sum_sq = float(state["sum"]), float(state["sum_sq"])
        self.min_val = None if state["min_val"] is None else np.asarray(state["min_val"])
        self.max_val = None if state["max_val"] is None else np.asarray(state["max_val"])
        self.channel_sum = None if state.get("channel_sum") is None else np.asarray(state["channel_sum"])
        self.channel_count = int(state.get("channel_count", 0))
        if state.get("sample") is not None:  # statistics saved before samples were kept have none
            self.sample.load(state["sample"])
        self._load_extra(state)

    def _load_extra(self, state: dict[str, Any]) -> None:
        """Observer-specific state (default: none)."""

    @property
    def channel_mean(self) -> Optional[np.ndarray]:
        """Mean of each channel along ``channel_mean_axis`` (None when not tracked or nothing seen)."""
        if self.channel_sum is None or self.channel_count == 0:
            return None
        return self.channel_sum / self.channel_count

    @property
    def mean(self) -> float:
        return self.sum / max(self.count, 1)

    @property
    def std(self) -> float:
        return math.sqrt(max(self.sum_sq / max(self.count, 1) - self.mean**2, 0.0))


@register_observer("extrema")
class ExtremaObserver(Observer):
    """``[min, max]`` of everything seen (per channel with ``axis``)."""

    per_channel_ok = True


@register_observer("mean")
class MovingAverageObserver(Observer):
    """Momentum average of per-batch min and max: ``r = m * r + (1 - m) * batch``."""

    per_channel_ok = True

    def reset(self) -> None:
        super().reset()
        self.avg_lo: Optional[np.ndarray] = None
        self.avg_hi: Optional[np.ndarray] = None

    def _update(self, data: np.ndarray) -> None:
        axes = self._reduce_axes(data)
        lo, hi = np.nanmin(data, axis=axes), np.nanmax(data, axis=axes)
        m = float(self.options.get("running_statistic_momentum", 0.9))
        self.avg_lo = lo if self.avg_lo is None else m * self.avg_lo + (1 - m) * lo
        self.avg_hi = hi if self.avg_hi is None else m * self.avg_hi + (1 - m) * hi

    def clip_range(self) -> tuple[np.ndarray, np.ndarray]:
        self._check_seen()
        assert self.avg_lo is not None and self.avg_hi is not None
        return self.avg_lo, self.avg_hi

    def _extra_state(self) -> dict[str, Any]:
        return {"avg_lo": self.avg_lo, "avg_hi": self.avg_hi}

    def _load_extra(self, state: dict[str, Any]) -> None:
        self.avg_lo = None if state["avg_lo"] is None else np.asarray(state["avg_lo"])
        self.avg_hi = None if state["avg_hi"] is None else np.asarray(state["avg_hi"])


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


def make_observer(strategy: str, tensor: str, axis: Optional[int] = None, trim_infinity: bool = False,
                  **options: Any) -> Observer:
    """An observer by registered name, e.g. ``make_observer("percentile", "conv1", percentile=99.9)``."""
    if strategy not in OBSERVERS:
        raise ValueError(f"unknown calibration strategy {strategy!r}; registered: {sorted(OBSERVERS)}")
    return OBSERVERS[strategy](tensor, axis=axis, trim_infinity=trim_infinity, **options)
