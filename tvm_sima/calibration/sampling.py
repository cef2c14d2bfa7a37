"""A bounded uniform sample of a tensor's values, kept while calibration streams.

The histogram observers keep counts over a range; what a particular integer grid does to a
tensor (how many codes its typical values get, the error of a clip) is measured best on values
themselves. :class:`ValueSample` keeps at most :data:`SAMPLE_SIZE` of them, uniformly over
everything seen whatever the batch sizes. The draws of a batch are seeded by the tensor's name
and the batch's index in the dataset, so runs repeat, and samples of shards of a dataset merge
(:meth:`ValueSample.merge`) into exactly the sample of the whole, whatever the order.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

__all__ = ["SAMPLE_SIZE", "ValueSample"]

#: Values kept per tensor (16 KiB of float32, plus their float64 keys).
SAMPLE_SIZE = 4096


class ValueSample:
    """A weighted reservoir (Efraimidis-Spirakis): every value seen has the same chance to be kept.

    Each batch contributes at most ``size`` values drawn with replacement; each one stands for
    ``n / k`` values of its batch of ``n``, so its key is ``log(u) * k / n`` with ``u`` uniform,
    and the ``size`` largest keys over all batches are kept, in a canonical order (by key, then
    value), so that the kept sample does not depend on the order the batches came in.
    """

    def __init__(self, tensor: str, size: int = SAMPLE_SIZE) -> None:
        self.size = int(size)
        self.values = np.zeros(0, np.float32)
        self.keys = np.zeros(0, np.float64)
        self.seed = zlib.crc32(tensor.encode())

    def update(self, values: np.ndarray, batch: int) -> None:
        """Merge one batch of (finite) values, the ``batch``-th of the dataset (its draws' seed)."""
        n = values.size
        if n == 0:
            return
        rng = np.random.default_rng([self.seed, int(batch)])
        k = min(n, self.size)
        picked = values if k == n else values[rng.integers(0, n, k)]
        keys = np.log(rng.random(k) + 1e-300) * (k / n)
        if self.keys.size == self.size:  # full: only keys from the smallest kept one up can get in
            enter = keys >= self.keys[0]
            keys, picked = keys[enter], picked[enter]
        self._keep(np.concatenate([self.keys, keys]), np.concatenate([self.values, picked.astype(np.float32)]))

    def merge(self, other: "ValueSample") -> None:
        """Add another sample's values (of other batches): the sample of both, whatever the order."""
        if other.size != self.size or other.seed != self.seed:
            raise ValueError(f"cannot merge a sample of size {other.size} (seed {other.seed}) into one of size "
                             f"{self.size} (seed {self.seed}): they are not samples of the same tensor")
        self._keep(np.concatenate([self.keys, other.keys]), np.concatenate([self.values, other.values]))

    def _keep(self, keys: np.ndarray, values: np.ndarray) -> None:
        """Keep the ``size`` largest keys, ordered by key then value (a canonical order)."""
        order = np.argsort(keys, kind="stable")  # the kept keys are sorted already: a merge of runs
        if np.any(np.diff(keys[order]) == 0):  # equal keys (rare): the values decide, whatever came first
            order = np.lexsort((values, keys))
        order = order[-self.size:]
        self.keys, self.values = keys[order], values[order]

    def state(self) -> dict[str, Any]:
        return {"values": self.values, "keys": self.keys}

    def load(self, state: dict[str, Any]) -> None:
        self.values = np.asarray(state["values"], dtype=np.float32)
        self.keys = np.asarray(state["keys"], dtype=np.float64)
