"""Shards read by workers hold the batches the local datasets give, numbered as in the whole dataset."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from tvm_sima.distributed import array_shards, image_shards, npy_shards
from tvm_sima.plugins import InputSpec, PluginError, load_dataset

RNG = np.random.default_rng(5)


def _indexed(dataset):
    return [(i, b) for shard in dataset.shards for i, b in shard.batches()]


def test_npy_shards_are_the_npy_dataset_file_by_file(tmp_path):
    inputs = [InputSpec("x", (2, 3, 4, 4))]
    arrays = [RNG.standard_normal((n, 3, 4, 4)).astype(np.float32) for n in (6, 5, 4)]  # 5: one sample left over
    for k, a in enumerate(arrays):
        np.save(tmp_path / f"s{k}.npy", a)
    shards = npy_shards(tmp_path, inputs)
    want = [b for k in range(3) for b in load_dataset(str(tmp_path / f"s{k}.npy"), inputs).batches]
    assert [s.count for s in shards.shards] == [3, 2, 2] and [s.first for s in shards.shards] == [0, 3, 5]
    got = _indexed(shards)
    assert [i for i, _ in got] == list(range(7))
    for (_, batch), expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(batch, expected)
    assert [b.shape for b in shards] == [(2, 3, 4, 4)] * 7  # iterated: every batch in order (the local path)


def test_image_shards_are_the_images_dataset(tmp_path):
    for k in range(11):
        Image.fromarray(RNG.integers(0, 256, (10, 12), dtype=np.uint8)).save(tmp_path / f"img{k:02d}.png")
    inputs = [InputSpec("x", (1, 1, 8, 8))]
    options = {"resize": "8x8", "scale": 1 / 16}
    shards = image_shards(tmp_path, inputs, options, shard_batches=4)
    assert [s.count for s in shards.shards] == [4, 4, 3]
    want = load_dataset(str(tmp_path), inputs, options).batches
    got = _indexed(shards)
    assert [i for i, _ in got] == list(range(11))
    for (_, batch), expected in zip(got, want, strict=True):
        np.testing.assert_array_equal(batch, expected)
    with pytest.raises(PluginError, match="images give 1 .grayscale. or 3 .RGB. channels"):
        image_shards(tmp_path, [InputSpec("x", (1, 4, 8, 8))])


def test_array_shards_number_batches_across_shards():
    batches = [np.full((1, 2), k, np.float32) for k in range(5)]
    got = _indexed(array_shards(batches, shard_batches=2))
    assert [i for i, _ in got] == list(range(5)) and [float(b[0, 0]) for _, b in got] == [0, 1, 2, 3, 4]
