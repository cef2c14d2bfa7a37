"""A bounded uniform sample of a tensor's values, kept while calibration streams.

The histogram observers keep counts over a range; what a particular integer grid does to a
tensor (how many codes its typical values get, the error of a clip) is measured best on values
themselves. :class:`ValueSample` keeps at most :data:`SAMPLE_SIZE` of them, uniformly over
everything seen whatever the batch sizes, seeded by the tensor's name so that runs repeat.
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
    and the ``size`` largest keys over all batches are kept.
    """

    def __init__(self, tensor: str, size: int = SAMPLE_SIZE) -> None:
        self.size = int(size)
        self.values = np.zeros(0, np.float32)
        self.keys = np.zeros(0, np.float64)
        self.rng = np.random.default_rng(zlib.crc32(tensor.encode()))

    def update(self, values: np.ndarray) -> None:
        """Merge one batch of (finite) values."""
        n = values.size
        if n == 0:
            return
        k = min(n, self.size)
        picked = values if k == n else values[self.rng.integers(0, n, k)]
        keys = np.concatenate([self.keys, np.log(self.rng.random(k) + 1e-300) * (k / n)])
        merged = np.concatenate([self.values, picked.astype(np.float32)])
        if keys.size > self.size:
            keep = np.argpartition(keys, keys.size - self.size)[keys.size - self.size:]
            keys, merged = keys[keep], merged[keep]
        self.keys, self.values = keys, merged

    def state(self) -> dict[str, Any]:
        return {"values": self.values, "keys": self.keys}

    def load(self, state: dict[str, Any]) -> None:
        self.values = np.asarray(state["values"], dtype=np.float32)
        self.keys = np.asarray(state["keys"], dtype=np.float64)
