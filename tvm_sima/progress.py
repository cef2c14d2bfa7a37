"""A batch counter on stderr: wraps a dataset, yields its batches, shows ``label: 3/10 batches, 1.2 s``."""

from __future__ import annotations

import sys
import time
from typing import Any, Iterable, Iterator

__all__ = ["Progress"]


class Progress:
    """Counts batches on stderr (a one-line progress display) when stderr is a terminal or forced.

    Parameters
    ----------
    data : iterable
        The batches; iterated once per ``iter(progress)``.
    label : str
        Shown before the count (``"calibrating"``).
    enabled : bool
        Whether to write the display (the batches are yielded either way).
    unit : str
        What the items are, in the display (``"batches"``; ``"shards"`` for a distributed run).

    Attributes
    ----------
    total : int or None
        ``len(data)`` when ``data`` has a length.
    one_shot : bool
        ``data`` is an iterator or generator: it can be streamed only once.
    kept : list
        The first ``keep`` batches of the first pass (``keep=`` argument; for a later use of a few
        batches, e.g. the mixed-precision search, when ``data`` is streamed only once).
    """

    def __init__(self, data: Iterable[Any], label: str, enabled: bool, keep: int = 0, unit: str = "batches") -> None:
        self.data, self.label, self.enabled, self.keep, self.unit = data, label, enabled, keep, unit
        self.total = len(data) if hasattr(data, "__len__") else None  # type: ignore[arg-type]
        self.one_shot = iter(data) is data  # a generator / iterator: can be streamed only once
        self.kept: list[Any] = []
        self._passes = 0

    def __iter__(self) -> Iterator[Any]:
        start, count = time.perf_counter(), 0
        self._passes += 1
        for count, item in enumerate(self.data, start=1):
            if self._passes == 1 and count <= self.keep:
                self.kept.append(item)
            yield item
            if self.enabled:
                of = f"/{self.total}" if self.total else ""
                sys.stderr.write(f"\r{self.label}: {count}{of} {self.unit}, {time.perf_counter() - start:.1f} s")
                sys.stderr.flush()
        if self.enabled and count:
            sys.stderr.write("\n")
