"""The built-in output metrics (the ``tvm_sima.metrics`` plugins of this package).

Each scores the float model's output (``reference``) against the quantized model's (``test``),
batch by batch: ``update(reference, test, labels)``, then ``result() -> float``. They are found
through :func:`tvm_sima.plugins.get_metric` (and named ``tvm_sima.plugins:top1`` etc. in the
entry points, which import them from here).

* ``top1``, ``top5`` (:class:`TopK`): accuracy against the labels when the dataset has them,
  otherwise agreement (the float model's top-1 class within the quantized model's top k);
* ``cosine``, ``sqnr`` (dB, ``inf`` when equal), ``max_abs_error``.

Each also has ``merge(other)``: the metric of two sets of batches scored apart (on shards of a
dataset), exactly, in any order: counts are ints, sums
:class:`~tvm_sima.calibration.exact_sum.ExactTotal` totals of each batch's float64 sum (rounded
once when read), maxima maxima.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from .calibration.exact_sum import ExactTotal
from .math.metrics import cosine_from_sums, nan_max, sqnr_db_from_sums

__all__ = ["Cosine", "MaxAbsError", "Sqnr", "TopK", "top1", "top5"]


def _rows(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    return x.reshape(len(x), -1) if x.ndim > 1 else x.reshape(1, -1)


@dataclass
class TopK:
    """Top-k accuracy against labels, or agreement with the float model's top-1 without labels."""

    k: int = 1
    hits: int = 0
    count: int = 0
    with_labels: Optional[bool] = None

    @property
    def name(self) -> str:
        return f"top{self.k}"

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        ref, tst = _rows(reference), _rows(test)
        top = np.argsort(-tst, axis=1, kind="stable")[:, : self.k]
        target = np.asarray(labels).reshape(-1) if labels is not None else ref.argmax(axis=1)
        self.with_labels = labels is not None if self.with_labels is None else self.with_labels
        self.hits += int((top == target[:, None]).any(axis=1).sum())
        self.count += len(target)

    def merge(self, other: "TopK") -> None:
        if other.k != self.k or None not in (self.with_labels, other.with_labels) and \
                self.with_labels != other.with_labels:
            raise ValueError(f"cannot merge top{other.k} (labels: {other.with_labels}) into top{self.k} (labels: "
                             f"{self.with_labels}): the same k, and labels on every shard or on none")
        self.hits += other.hits
        self.count += other.count
        self.with_labels = self.with_labels if other.with_labels is None else other.with_labels

    def result(self) -> float:
        return self.hits / self.count if self.count else math.nan


@dataclass
class Cosine:
    """Cosine similarity of the float and quantized outputs, over all of them."""

    name: str = "cosine"
    dot: ExactTotal = field(default_factory=ExactTotal)
    ref_sq: ExactTotal = field(default_factory=ExactTotal)
    test_sq: ExactTotal = field(default_factory=ExactTotal)

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        r, t = np.asarray(reference, np.float64).ravel(), np.asarray(test, np.float64).ravel()
        self.dot.add(float(r @ t))
        self.ref_sq.add(float(r @ r))
        self.test_sq.add(float(t @ t))

    def merge(self, other: "Cosine") -> None:
        for mine, theirs in ((self.dot, other.dot), (self.ref_sq, other.ref_sq), (self.test_sq, other.test_sq)):
            mine.merge(theirs)

    def result(self) -> float:
        return cosine_from_sums(self.dot.value(), self.ref_sq.value(), self.test_sq.value())


@dataclass
class Sqnr:
    """Signal-to-quantization-noise ratio of the outputs in dB (inf when equal)."""

    name: str = "sqnr"
    signal: ExactTotal = field(default_factory=ExactTotal)
    noise: ExactTotal = field(default_factory=ExactTotal)

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        r, t = np.asarray(reference, np.float64), np.asarray(test, np.float64)
        self.signal.add(float((r * r).sum()))
        self.noise.add(float(((r - t) ** 2).sum()))

    def merge(self, other: "Sqnr") -> None:
        self.signal.merge(other.signal)
        self.noise.merge(other.noise)

    def result(self) -> float:
        return sqnr_db_from_sums(self.signal.value(), self.noise.value())


@dataclass
class MaxAbsError:
    """The largest absolute difference between float and quantized outputs."""

    name: str = "max_abs_error"
    value: float = 0.0

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        diff = np.abs(np.asarray(reference, np.float64) - np.asarray(test, np.float64))
        self.value = nan_max(self.value, float(diff.max(initial=0.0)))

    def merge(self, other: "MaxAbsError") -> None:
        self.value = nan_max(self.value, other.value)

    def result(self) -> float:
        return self.value


def top1() -> TopK:
    return TopK(1)


def top5() -> TopK:
    return TopK(5)
