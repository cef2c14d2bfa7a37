"""The built-in output metrics (the ``tvm_sima.metrics`` plugins of this package).

Each scores the float model's output (``reference``) against the quantized model's (``test``),
batch by batch: ``update(reference, test, labels)``, then ``result() -> float``. They are found
through :func:`tvm_sima.plugins.get_metric` (and named ``tvm_sima.plugins:top1`` etc. in the
entry points, which import them from here).

* ``top1``, ``top5`` (:class:`TopK`): accuracy against the labels when the dataset has them,
  otherwise agreement (the float model's top-1 class within the quantized model's top k);
* ``cosine``, ``sqnr`` (dB, ``inf`` when equal), ``max_abs_error``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .math.metrics import cosine_from_sums, sqnr_db_from_sums

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

    def result(self) -> float:
        return self.hits / self.count if self.count else math.nan


@dataclass
class Cosine:
    """Cosine similarity of the float and quantized outputs, over all of them."""

    name: str = "cosine"
    dot: float = 0.0
    ref_sq: float = 0.0
    test_sq: float = 0.0

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        r, t = np.asarray(reference, np.float64).ravel(), np.asarray(test, np.float64).ravel()
        self.dot += float(r @ t)
        self.ref_sq += float(r @ r)
        self.test_sq += float(t @ t)

    def result(self) -> float:
        return cosine_from_sums(self.dot, self.ref_sq, self.test_sq)


@dataclass
class Sqnr:
    """Signal-to-quantization-noise ratio of the outputs in dB (inf when equal)."""

    name: str = "sqnr"
    signal: float = 0.0
    noise: float = 0.0

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        r, t = np.asarray(reference, np.float64), np.asarray(test, np.float64)
        self.signal += float((r * r).sum())
        self.noise += float(((r - t) ** 2).sum())

    def result(self) -> float:
        return sqnr_db_from_sums(self.signal, self.noise)


@dataclass
class MaxAbsError:
    """The largest absolute difference between float and quantized outputs."""

    name: str = "max_abs_error"
    value: float = 0.0

    def update(self, reference: np.ndarray, test: np.ndarray, labels: Optional[np.ndarray] = None) -> None:
        diff = np.abs(np.asarray(reference, np.float64) - np.asarray(test, np.float64))
        self.value = max(self.value, float(diff.max(initial=0.0)))

    def result(self) -> float:
        return self.value


def top1() -> TopK:
    return TopK(1)


def top5() -> TopK:
    return TopK(5)
