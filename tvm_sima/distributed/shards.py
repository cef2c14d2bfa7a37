"""Shards of a dataset (calibration or evaluation): pieces a worker reads by itself, each knowing its batches' indices.

A :class:`ShardedDataset` is a sequence of shards; iterated, it yields every batch in order (so
the local path runs it as any dataset), and the batches of shard ``k`` are numbered from the
number of batches before it, so a worker that reads only shard ``k`` observes each batch under
its index in the whole dataset (what makes merged statistics equal the single run's).

Shards that travel as a few bytes and are read where they run:

* :class:`NpyShard`: one ``.npy`` file of samples (memory-mapped: its length costs a header read);
* :class:`ImageShard`: a list of image files (read and resized as the ``images`` dataset does);

and :class:`ArrayShard`, batches already in memory (they travel with the shard).
:func:`npy_shards`, :func:`image_shards` and :func:`array_shards` build datasets of them.
"""

from __future__ import annotations

import os
import pathlib
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator, Optional, Protocol, Sequence, Union

import numpy as np

from ..calibration.data_checks import Batch, check_batches
from ..plugins import InputSpec, PluginError, batch_size, image_files, image_layout, images_of

__all__ = ["ArrayShard", "ImageShard", "NpyShard", "Shard", "ShardJob", "ShardedDataset", "array_shards",
           "image_shards", "npy_shards"]

#: Batches per shard when :func:`array_shards` / :func:`image_shards` cut a dataset.
SHARD_BATCHES = 16

Shard = Union["NpyShard", "ImageShard", "ArrayShard"]


class ShardJob(Protocol):
    """What a worker does with one shard: ``run(vms, batches)``, picklable (it travels to the workers once).

    ``vms`` are the shipped programs' virtual machines, in the order they were given to
    :meth:`~tvm_sima.distributed.RayExecutor.map_shards`; ``batches`` the shard's
    ``(index in the dataset, batch)`` pairs. The result travels back to the driver.
    """

    def run(self, vms: list[Any], batches: Iterable[tuple[int, Any]]) -> Any: ...


@dataclass(frozen=True)
class NpyShard:
    """The samples of one ``.npy`` file, in batches of the (one) input's batch size."""

    path: str
    inputs: tuple[InputSpec, ...]
    first: int = 0  # the index of this shard's first batch in the dataset
    count: int = 0  # its number of batches
    allow_nonfinite: bool = False  # NaN / Inf left to the observers (trim_infinity_before_statistic)

    def batches(self) -> Iterator[tuple[int, Batch]]:
        size = batch_size(self.inputs)
        data = np.load(self.path, mmap_mode="r")
        checked = check_batches([np.asarray(data[k * size:(k + 1) * size]) for k in range(self.count)],
                                self.inputs, self.path, self.allow_nonfinite)
        yield from enumerate(checked, start=self.first)


@dataclass(frozen=True)
class ImageShard:
    """Image files, read (and resized / cropped / normalized by ``options``) as the ``images`` dataset does."""

    files: tuple[str, ...]
    inputs: tuple[InputSpec, ...]
    options: tuple[tuple[str, Any], ...] = ()
    first: int = 0
    count: int = 0
    allow_nonfinite: bool = False

    def batches(self) -> Iterator[tuple[int, Batch]]:
        paths = [(pathlib.Path(f), -1) for f in self.files]
        dataset = images_of(paths, False, list(self.inputs), dict(self.options), self.files[0])
        checked = check_batches(dataset.batches, self.inputs, self.files[0], self.allow_nonfinite)
        yield from enumerate(checked, start=self.first)


@dataclass(frozen=True)
class ArrayShard:
    """Batches in memory (they travel with the shard)."""

    arrays: tuple[Any, ...]
    first: int = 0

    @property
    def count(self) -> int:
        return len(self.arrays)

    def batches(self) -> Iterator[tuple[int, Batch]]:
        yield from enumerate(self.arrays, start=self.first)


@dataclass
class ShardedDataset:
    """Shards in order; iterating gives every batch of every shard (the local path's dataset)."""

    shards: list[Any] = field(default_factory=list)

    def __iter__(self) -> Iterator[Batch]:
        for shard in self.shards:
            for _, batch in shard.batches():
                yield batch

    def __len__(self) -> int:
        return sum(shard.count for shard in self.shards)


def _inputs(inputs: Sequence[Union[InputSpec, tuple]]) -> tuple[InputSpec, ...]:
    specs = tuple(i if isinstance(i, InputSpec) else InputSpec(i[0], tuple(int(d) for d in i[1]), *map(str, i[2:]))
                  for i in inputs)
    if len(specs) != 1:
        raise PluginError(f"file shards feed a model with one input; this one has {[s.name for s in specs]} "
                          "(use array_shards with dict batches)")
    return specs


def npy_shards(paths: Union[str, os.PathLike, Iterable[Union[str, os.PathLike]]],
               inputs: Sequence[Union[InputSpec, tuple]], allow_nonfinite: bool = False) -> ShardedDataset:
    """One shard per ``.npy`` file (``paths``, or every ``*.npy`` of a folder, sorted), for a one-input model.

    Batches are checked where they are read (shapes, dtype; NaN / Inf unless ``allow_nonfinite``).
    """
    specs = _inputs(inputs)
    if isinstance(paths, (str, os.PathLike)) and pathlib.Path(paths).is_dir():
        files = sorted(str(p) for p in pathlib.Path(paths).glob("*.npy"))
        if not files:
            raise PluginError(f"{paths}: no .npy file in the folder")
    else:
        files = [str(paths)] if isinstance(paths, (str, os.PathLike)) else [str(p) for p in paths]
    shards, first = [], 0
    for path in files:
        try:
            samples = np.load(path, mmap_mode="r").shape[0]  # the header only
        except (OSError, ValueError, IndexError) as err:
            raise PluginError(f"{path}: not a readable .npy array of samples ({err})") from None
        count = samples // batch_size(specs)
        shards.append(NpyShard(path, specs, first, count, allow_nonfinite))
        first += count
    return ShardedDataset(shards)


def image_shards(folder: Union[str, os.PathLike], inputs: Sequence[Union[InputSpec, tuple]],
                 options: Optional[dict] = None, shard_batches: int = SHARD_BATCHES,
                 allow_nonfinite: bool = False) -> ShardedDataset:
    """A folder of images (as the ``images`` dataset reads it) cut into shards of ``shard_batches`` batches."""
    specs = _inputs(inputs)
    image_layout(specs, options or {}, str(folder))  # bad inputs or options fail here, not on a worker
    files = [str(p) for p, _ in image_files(str(folder))[0]]
    per_shard = shard_batches * batch_size(specs)
    usable = len(files) - len(files) % batch_size(specs)
    opts = tuple(sorted((options or {}).items()))
    shards = [ImageShard(tuple(files[i:i + per_shard]), specs, opts, i // batch_size(specs),
                         min(per_shard, usable - i) // batch_size(specs), allow_nonfinite)
              for i in range(0, usable, per_shard)]
    return ShardedDataset(shards)


def array_shards(batches: Iterable[Batch], shard_batches: int = SHARD_BATCHES) -> ShardedDataset:
    """Batches in memory cut into shards of ``shard_batches`` (they travel to the workers with the shards)."""
    items = list(batches)
    return ShardedDataset([ArrayShard(tuple(items[i:i + shard_batches]), i) for i in range(0, len(items),
                                                                                         shard_batches)])
