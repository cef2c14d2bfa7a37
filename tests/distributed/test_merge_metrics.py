"""Evaluation state merges exactly: per-tensor metrics and output metrics of shards of a dataset, merged in any
order, equal the single run's, field by field and sample by sample (==, not approx)."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sima.calibration.exact_sum import ExactTotal
from tvm_sima.output_metrics import Cosine, MaxAbsError, Sqnr, TopK
from tvm_sima.tensor_metrics import TensorMetrics

RNG = np.random.default_rng(5)
# Ten batches of very different magnitudes (float sums of them depend on the order of the additions),
# 40 values each: more than the sample of 50 holds, so which values are kept is decided by the keys.
REFS = [RNG.standard_normal(40) * 10.0 ** RNG.uniform(-4, 4) for _ in range(10)]
TESTS = [r + RNG.standard_normal(40) * np.abs(r).mean() * 0.1 for r in REFS]
LOGITS = [RNG.standard_normal((3, 6)) for _ in range(10)]
NOISY = [x + RNG.standard_normal((3, 6)) * 0.5 for x in LOGITS]
LABELS = [RNG.integers(0, 6, 3) for _ in range(10)]


def _tensor(batches: list[int]) -> TensorMetrics:
    m = TensorMetrics("conv2d_0.output", 0.1, 0, "int8", order=3, sample_size=50)
    for b in batches:
        m.update(REFS[b], TESTS[b], batch=b)
    return m


def _outputs(batches: list[int]) -> list:
    metrics = [TopK(1), TopK(5), Cosine(), Sqnr(), MaxAbsError()]
    for metric in metrics:
        for b in batches:
            metric.update(LOGITS[b], NOISY[b], LABELS[b])
    return metrics


def _shards(owners: list[int], rnd) -> list[list[int]]:
    """Batch indices grouped by owner, each shard's batches and the shards in a random order."""
    shards: dict[int, list[int]] = {}
    for index, owner in enumerate(owners):
        shards.setdefault(owner, []).append(index)
    parts = [rnd.sample(batches, len(batches)) for batches in shards.values()]
    rnd.shuffle(parts)
    return parts


def _same_tensor(a: TensorMetrics, b: TensorMetrics) -> None:
    for name in ("count", "batches", "max_abs_error", "dot", "ref_sq", "test_sq", "err_sq", "cosine", "sqnr", "mse"):
        assert getattr(a, name) == getattr(b, name), name
    assert a._sums == b._sums  # the exact integers, not only their rounding
    for x, y in zip((*a.samples, a.sample_keys), (*b.samples, b.sample_keys), strict=True):
        assert x.dtype == y.dtype and np.array_equal(x, y)


OWNERS = st.lists(st.integers(0, 4), min_size=len(REFS), max_size=len(REFS))


@settings(max_examples=40, deadline=None)
@given(owners=OWNERS, rnd=st.randoms(use_true_random=False))
def test_merged_tensor_metrics_equal_the_single_run(owners, rnd):
    whole = _tensor(list(range(len(REFS))))
    merged = _tensor([])
    for part in _shards(owners, rnd):
        merged.merge(_tensor(part))
    _same_tensor(merged, whole)
    assert whole.samples[0].size == 50 and whole.count == 400


@settings(max_examples=40, deadline=None)
@given(owners=OWNERS, rnd=st.randoms(use_true_random=False))
def test_merged_output_metrics_equal_the_single_run(owners, rnd):
    whole = _outputs(list(range(len(LOGITS))))
    merged = _outputs([])
    for part in _shards(owners, rnd):
        for mine, theirs in zip(merged, _outputs(part), strict=True):
            mine.merge(theirs)
    for a, b in zip(merged, whole, strict=True):
        assert a == b, a.name  # every field (dataclasses): hits, counts, the exact totals, the max
        assert a.result() == b.result()


def test_the_sample_is_the_smallest_keys_in_key_order():
    m = _tensor(list(range(len(REFS))))
    keys = np.concatenate([np.random.default_rng([3, b]).random(40) for b in range(len(REFS))])
    values = np.concatenate(REFS).astype(np.float32)
    order = np.argsort(keys)[:50]
    np.testing.assert_array_equal(m.sample_keys, keys[order])
    np.testing.assert_array_equal(m.samples[0], values[order])


def test_nonfinite_sums_and_nan_maxima_do_not_depend_on_the_order():
    forward, backward = ExactTotal(), ExactTotal()
    terms = [1.0, math.inf, 2.0, -math.inf]
    for t in terms:
        forward.add(t)
    for t in reversed(terms):
        backward.add(t)
    assert math.isnan(forward.value()) and forward == backward
    one, other = MaxAbsError(), MaxAbsError()
    one.update(np.array([0.0]), np.array([math.nan]))
    other.update(np.array([0.0]), np.array([3.0]))
    first, second = copy.deepcopy(one), copy.deepcopy(other)
    first.merge(other)
    second.merge(one)
    assert math.isnan(first.result()) and math.isnan(second.result())


def test_merging_another_tensor_or_another_k_is_refused():
    with pytest.raises(ValueError, match="cannot merge the metrics of tensor 'u'"):
        _tensor([0]).merge(TensorMetrics("u", order=3, sample_size=50))
    with pytest.raises(ValueError, match="cannot merge top5"):
        TopK(1).merge(TopK(5))
