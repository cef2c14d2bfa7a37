"""The observer contract and registry: record statistics of a tensor batch by batch, then choose its qparams.

Each observer is a small class with ``update(x)``, ``compute_qparams(...)``, ``reset()`` and a
``state_dict`` that :func:`~tvm_sima.calibration.save_statistics` /
:func:`~tvm_sima.calibration.load_statistics` round-trip. Memory does not
grow with the dataset: the state is running extrema / moments and a fixed-size histogram that
widens (re-binning) when new data falls outside it. Observers are registered by name
(:data:`OBSERVERS`, :func:`register_observer`); users add their own the same way.

Every observer turns its statistic into a clipping range ``[lo, hi]`` and hands it to
:func:`tvm_sima.math.choose_qparams`, so schemes and bit widths behave the same everywhere.

Observers merge (:meth:`Observer.merge`): an observer fed shards of a dataset, one observer per
shard, merged in any order, has bit for bit the state of the observer fed the whole dataset —
extrema, counts, exact sums (:class:`~tvm_sima.calibration.exact_sum.ExactSum`), histograms on
aligned bins, samples drawn per batch, the per-batch extrema of ``mean`` — provided each batch is
given its index in the dataset (``update(x, batch=i)``; by default batches are numbered as they
come). So calibration can run on many processes or machines (:mod:`tvm_sima.distributed`).

Every per-tensor observer also keeps a bounded uniform sample of the values it saw
(:attr:`Observer.sample`, a :class:`~tvm_sima.calibration.sampling.ValueSample`): after
calibration, :mod:`tvm_sima.calibration.grid_check` measures on it what a grid does to the tensor.
"""

from __future__ import annotations

import logging
import math
from typing import Any, Callable, Optional, TypeVar, Union

import numpy as np

from ..math import QParams, QScheme, choose_qparams
from .exact_sum import ExactSum
from .sampling import ValueSample

__all__ = ["OBSERVERS", "Observer", "register_observer", "make_observer"]

LOG = logging.getLogger(__name__)
OBSERVERS: dict[str, type["Observer"]] = {}
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
        self.batches = 0  # the index the next batch gets when update() is not told one
        self.batch = 0  # the index of the batch being recorded (for _update)
        self.min_val: Optional[np.ndarray] = None
        self.max_val: Optional[np.ndarray] = None
        self.exact_sum, self.exact_sum_sq = ExactSum(), ExactSum()
        self.exact_channel_sum: Optional[ExactSum] = None
        self.channel_count = 0
        self.sample = ValueSample(self.tensor)

    @property
    def sum(self) -> float:
        """Sum of the finite values seen (exact, rounded once: the same however the data was split)."""
        return float(self.exact_sum.value())

    @property
    def sum_sq(self) -> float:
        """Sum of the squares of the finite values seen (of each batch's float64 sum, exactly)."""
        return float(self.exact_sum_sq.value())

    @property
    def channel_sum(self) -> Optional[np.ndarray]:
        """Sum of each channel along ``channel_mean_axis`` (None when not tracked or nothing seen)."""
        return None if self.exact_channel_sum is None else self.exact_channel_sum.value()

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
        if self.axis is not None or self.options.get("channel_mean_axis") is not None:
            return np.where(bad, np.nan, x)  # per-channel reductions keep the shape: nan-aware functions below
        return x[~bad]

    def _reduce_axes(self, x: np.ndarray) -> Optional[tuple[int, ...]]:
        if self.axis is None:
            return None
        axis = self.axis % x.ndim
        return tuple(i for i in range(x.ndim) if i != axis)

    def update(self, x: np.ndarray, batch: Optional[int] = None) -> None:
        """Record one batch of the tensor's values, the ``batch``-th of the dataset (default: the next one)."""
        self.batch = self.batches if batch is None else int(batch)
        self.batches = max(self.batches, self.batch + 1)
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
        self.exact_sum.add(total)
        self.exact_sum_sq.add(float(summed(data * data)))
        channel_axis = self.options.get("channel_mean_axis")
        if channel_axis is not None and data.ndim > 0:
            axis = int(channel_axis) % data.ndim
            sums = summed(data, axis=tuple(i for i in range(data.ndim) if i != axis))
            if self.exact_channel_sum is None:
                self.exact_channel_sum = ExactSum(sums.shape)
            self.exact_channel_sum.add(sums)
            self.channel_count += data.size // data.shape[axis]
        if self.axis is None and summed is np.nansum:  # NaN-marked for the channel sums: the values, finite
            data = data[np.isfinite(data)]
        if self.axis is None:
            self.sample.update(data.ravel(), self.batch)
        self._update(data)

    def _record_extrema(self, lo: np.ndarray, hi: np.ndarray) -> None:
        self.min_val = lo if self.min_val is None else np.minimum(self.min_val, lo)
        self.max_val = hi if self.max_val is None else np.maximum(self.max_val, hi)

    def _update(self, data: np.ndarray) -> None:
        """Observer-specific statistics of batch :attr:`batch` (default: none beyond the base ones)."""

    def merge(self, other: "Observer") -> "Observer":
        """Add the statistics of ``other`` (the same tensor's observer, fed other batches); returns self.

        Exact: observers fed disjoint sets of a dataset's batches (each with its index), merged in
        any order, equal the observer fed all of them — the same state, the same qparams.
        """
        if type(other) is not type(self) or (other.tensor, other.axis, other.options) != \
                (self.tensor, self.axis, self.options):
            raise ValueError(f"cannot merge observer {other.name!r} of tensor {other.tensor!r} (axis {other.axis}) "
                             f"into {self.name!r} of {self.tensor!r} (axis {self.axis}): not the same observer")
        if type(self)._update is not Observer._update and type(self)._merge_extra is Observer._merge_extra:
            raise TypeError(f"observer {self.name!r} keeps statistics of its own (_update) but defines no "
                            "_merge_extra: it cannot be merged from shards; define _merge_extra")
        self.count, self.trimmed = self.count + other.count, self.trimmed + other.trimmed
        self.batches = max(self.batches, other.batches)
        if other.min_val is not None and other.max_val is not None:
            self._record_extrema(other.min_val, other.max_val)
        self.exact_sum.merge(other.exact_sum)
        self.exact_sum_sq.merge(other.exact_sum_sq)
        if other.exact_channel_sum is not None:
            if self.exact_channel_sum is None:
                self.exact_channel_sum = ExactSum(other.exact_channel_sum.shape)
            self.exact_channel_sum.merge(other.exact_channel_sum)
        self.channel_count += other.channel_count
        self.sample.merge(other.sample)
        self._merge_extra(other)
        return self

    def _merge_extra(self, other: "Observer") -> None:
        """Merge observer-specific statistics (default: none)."""

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
                 "trimmed": self.trimmed, "sum": self.sum, "sum_sq": self.sum_sq, "batches": self.batches,
                 "min_val": self.min_val, "max_val": self.max_val, "options": self.options,
                 "channel_sum": self.channel_sum, "channel_count": self.channel_count,
                 "exact": {"sum": self.exact_sum.state(), "sum_sq": self.exact_sum_sq.state(),
                           "channel_sum": None if self.exact_channel_sum is None else self.exact_channel_sum.state()},
                 "sample": self.sample.state()}
        state.update(self._extra_state())
        return state

    def _extra_state(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.trimmed = int(state["count"]), int(state["trimmed"])
        self.batches = int(state.get("batches", 0))
        self.min_val = None if state["min_val"] is None else np.asarray(state["min_val"])
        self.max_val = None if state["max_val"] is None else np.asarray(state["max_val"])
        self._load_sums(state)
        self.channel_count = int(state.get("channel_count", 0))
        if state.get("sample") is not None:  # statistics saved before samples were kept have none
            self.sample.load(state["sample"])
        self._load_extra(state)

    def _load_sums(self, state: dict[str, Any]) -> None:
        """The exact sums; a file saved before they were kept has only their floats (exact from there on)."""
        exact = state.get("exact")
        if exact is not None:
            self.exact_sum, self.exact_sum_sq = ExactSum.from_state(exact["sum"]), ExactSum.from_state(exact["sum_sq"])
            channel = exact.get("channel_sum")
            self.exact_channel_sum = None if channel is None else ExactSum.from_state(channel)
            return
        self.exact_sum, self.exact_sum_sq = ExactSum(), ExactSum()
        self.exact_sum.add(float(state["sum"]))
        self.exact_sum_sq.add(float(state["sum_sq"]))
        channel_sum = state.get("channel_sum")
        self.exact_channel_sum = None
        if channel_sum is not None:
            self.exact_channel_sum = ExactSum(np.shape(channel_sum))
            self.exact_channel_sum.add(channel_sum)

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


def make_observer(strategy: str, tensor: str, axis: Optional[int] = None, trim_infinity: bool = False,
                  **options: Any) -> Observer:
    """An observer by registered name, e.g. ``make_observer("percentile", "conv1", percentile=99.9)``."""
    if strategy not in OBSERVERS:
        raise ValueError(f"unknown calibration strategy {strategy!r}; registered: {sorted(OBSERVERS)}")
    return OBSERVERS[strategy](tensor, axis=axis, trim_infinity=trim_infinity, **options)
