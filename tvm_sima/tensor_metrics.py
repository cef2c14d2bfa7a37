"""Streaming float-vs-quantized statistics of one tensor, mergeable exactly across shards of a dataset.

:class:`TensorMetrics` is what :func:`tvm_sima.compare.compare_tensors` accumulates per tensor.
Its state is a function of the *set* of batches it saw, each known by its index in the dataset,
so the metrics of shards evaluated apart (on Ray workers) merge (:meth:`TensorMetrics.merge`)
into exactly the metrics of one run over the whole dataset, whatever the order:

* counts are ints, the max absolute error a max;
* the sums (``sum(r*t)``, ``sum(r^2)``, ``sum(t^2)``, ``sum((r-t)^2)``) are
  exact totals of each batch's float64 sum, rounded
  once when read (they may differ from a left-to-right float sum in the last bits; Inf / NaN
  batch sums as :class:`~tvm_sima.calibration.exact_sum.ExactTotal` says);
* the paired value sample is a bottom-k sample: every value of batch ``b`` of tensor number
  ``order`` gets a uniform key drawn from a generator seeded by ``(order, b)``; the ``k`` smallest
  keys of everything seen are kept, ordered by key (then the values, for equal keys).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .calibration.exact_sum import ExactTotal
from .math.metrics import cosine_from_sums, nan_max, sqnr_db_from_sums
from .math.qtypes import parse_qtype

__all__ = ["SAMPLE_SIZE", "TensorMetrics"]

#: Paired values kept per tensor for the report's histograms.
SAMPLE_SIZE = 4096

_SUMS = ("dot", "ref_sq", "test_sq", "err_sq")


def _exact_sums() -> dict[str, ExactTotal]:
    return {name: ExactTotal() for name in _SUMS}


@dataclass
class TensorMetrics:
    """Streaming float-vs-quantized statistics of one tensor (see the module docstring)."""

    name: str
    scale: float = 0.0
    zero_point: int = 0
    dtype: str = ""
    count: int = 0
    max_abs_error: float = 0.0
    order: int = 0  # the tensor's number in the program: part of its sample's seed
    producer: str = ""  # the quantized program's op computing the tensor (sima.conv2d, ...)
    source: str = ""  # the model's own name for the node computing it (tvm_sima.source_names)
    layer: str = ""  # the fused layer computing it, if one does
    weight_bits: int = 0  # that layer's weight bits (0: no weights)
    sample_size: int = SAMPLE_SIZE
    batches: int = 0  # batches seen (the default index of the next one)
    _sums: dict[str, ExactTotal] = field(default_factory=_exact_sums, repr=False)
    _keys: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _ref_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    _test_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def bits(self) -> int:
        return parse_qtype(self.dtype).bits if self.dtype else 0

    @property
    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """A uniform sample (``sample_size`` at most) of the float and the dequantized values, paired."""
        return self._ref_sample, self._test_sample

    @property
    def sample_keys(self) -> np.ndarray:
        """The kept samples' keys, ascending."""
        return self._keys

    def update(self, ref: np.ndarray, test: np.ndarray, batch: Optional[int] = None) -> None:
        """Add one batch's values: ``batch`` is its index in the dataset (default: the batches seen so far)."""
        r, t = np.asarray(ref, np.float64).ravel(), np.asarray(test, np.float64).ravel()
        index = self.batches if batch is None else int(batch)
        keys = np.random.default_rng([self.order, index]).random(r.size)
        self._keep(np.concatenate([self._keys, keys]), np.concatenate([self._ref_sample, r.astype(np.float32)]),
                   np.concatenate([self._test_sample, t.astype(np.float32)]))
        self.count += r.size
        self.batches += 1
        for name, value in zip(_SUMS, (r @ t, r @ r, t @ t, ((r - t) ** 2).sum()), strict=True):
            self._sums[name].add(float(value))
        self.max_abs_error = nan_max(self.max_abs_error, float(np.abs(r - t).max(initial=0.0)))

    def merge(self, other: "TensorMetrics") -> None:
        """Add the batches ``other`` saw (other batches of the same tensor): exact, in any order."""
        if (other.name, other.order, other.sample_size) != (self.name, self.order, self.sample_size):
            raise ValueError(f"cannot merge the metrics of tensor {other.name!r} (number {other.order}, sample "
                             f"{other.sample_size}) into those of {self.name!r} (number {self.order}, sample "
                             f"{self.sample_size}): not the same tensor of the same comparison")
        self.count += other.count
        self.batches += other.batches
        for name in _SUMS:
            self._sums[name].merge(other._sums[name])
        self.max_abs_error = nan_max(self.max_abs_error, other.max_abs_error)
        self._keep(np.concatenate([self._keys, other._keys]), np.concatenate([self._ref_sample, other._ref_sample]),
                   np.concatenate([self._test_sample, other._test_sample]))

    def _keep(self, keys: np.ndarray, ref: np.ndarray, test: np.ndarray) -> None:
        """Keep the ``sample_size`` smallest keys, ordered by key (then the values: a canonical order)."""
        if keys.size > self.sample_size:
            keep = np.argpartition(keys, self.sample_size - 1)[: self.sample_size]
            keys, ref, test = keys[keep], ref[keep], test[keep]
        order = np.lexsort((test, ref, keys))
        self._keys, self._ref_sample, self._test_sample = keys[order], ref[order], test[order]

    def _sum(self, name: str) -> float:
        return self._sums[name].value()

    @property
    def dot(self) -> float:
        return self._sum("dot")

    @property
    def ref_sq(self) -> float:
        return self._sum("ref_sq")

    @property
    def test_sq(self) -> float:
        return self._sum("test_sq")

    @property
    def err_sq(self) -> float:
        return self._sum("err_sq")

    @property
    def cosine(self) -> float:
        return cosine_from_sums(self.dot, self.ref_sq, self.test_sq)

    @property
    def sqnr(self) -> float:
        return sqnr_db_from_sums(self.ref_sq, self.err_sq)

    @property
    def mse(self) -> float:
        return self.err_sq / max(self.count, 1)

    def to_dict(self) -> dict:
        return {"name": self.name, "producer": self.producer, "source": self.source, "layer": self.layer,
                "scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype,
                "bits": self.bits, "weight_bits": self.weight_bits, "cosine": self.cosine, "sqnr_db": self.sqnr,
                "mse": self.mse, "max_abs_error": self.max_abs_error}
