"""Observers merge exactly: shards of a dataset, merged in any order, give the single run's state bit for bit."""

from __future__ import annotations

import math

import numpy as np
import pytest
from helpers.observers import assert_same_state
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sima.calibration import OBSERVERS, Observer, make_observer, register_observer
from tvm_sima.calibration.exact_sum import ExactSum

RNG = np.random.default_rng(11)
# Batches of very different magnitudes: float sums of them depend on the order of the additions.
BATCHES = [RNG.standard_normal((2, 3, 4, 4)) * 10.0 ** RNG.uniform(-4, 4) + RNG.uniform(-3, 3) for _ in range(10)]


def _observer(strategy: str) -> Observer:
    axis = 1 if OBSERVERS[strategy].per_channel_ok else None
    return make_observer(strategy, "t", axis=axis, bits=8, histc_bins=256,
                         **({} if axis is not None else {"channel_mean_axis": 1}))


def _fed(strategy: str, batches: list[tuple[int, np.ndarray]]) -> Observer:
    obs = _observer(strategy)
    for index, batch in batches:
        obs.update(batch, batch=index)
    return obs


@pytest.mark.parametrize("strategy", sorted(OBSERVERS))
@settings(max_examples=25, deadline=None)
@given(owners=st.lists(st.integers(0, 4), min_size=len(BATCHES), max_size=len(BATCHES)),
       rnd=st.randoms(use_true_random=False))
def test_merged_shards_equal_the_single_run(strategy, owners, rnd):
    whole = _fed(strategy, list(enumerate(BATCHES)))
    shards: dict[int, list] = {}
    for index, owner in enumerate(owners):
        shards.setdefault(owner, []).append((index, BATCHES[index]))
    parts = [_fed(strategy, batches) for batches in shards.values()]
    rnd.shuffle(parts)
    merged = _observer(strategy)
    for part in parts:
        merged.merge(part)
    assert_same_state(merged.state_dict(), whole.state_dict())
    assert merged.compute_qparams("asymmetric") == whole.compute_qparams("asymmetric")
    if merged.channel_mean is not None:
        assert np.array_equal(merged.channel_mean, whole.channel_mean)


def test_exact_sums_do_not_depend_on_the_order():
    terms = [1e16, 1.0, -1e16, 3.0, 1e-300, 2.5e-308, -1.0]
    forward, backward = ExactSum(), ExactSum()
    for t in terms:
        forward.add(t)
    for t in reversed(terms):
        backward.add(t)
    assert float(forward.value()) == float(backward.value()) == math.fsum(terms) == 3.0 + 1e-300 + 2.5e-308
    assert sum(terms) != math.fsum(terms)  # the float fold would not have given it
    restored = ExactSum.from_state(forward.state())
    assert restored.ints == forward.ints


def test_merging_another_tensors_observer_is_refused():
    with pytest.raises(ValueError, match="cannot merge observer 'extrema' of tensor 'u'"):
        make_observer("extrema", "t").merge(make_observer("extrema", "u"))
    mean = _fed("mean", [(0, BATCHES[0])])
    with pytest.raises(ValueError, match="batch 0 was observed in two merged shards"):
        mean.merge(_fed("mean", [(0, BATCHES[0])]))


def test_an_observer_without_a_merge_says_so():
    @register_observer("unmergeable_test", override=True)
    class Unmergeable(Observer):
        def _update(self, data: np.ndarray) -> None:
            self.last = data

    try:
        with pytest.raises(TypeError, match="'unmergeable_test' keeps statistics of its own .* no _merge_extra"):
            make_observer("unmergeable_test", "t").merge(make_observer("unmergeable_test", "t"))
    finally:
        del OBSERVERS["unmergeable_test"]


@settings(max_examples=30, deadline=None)
@given(owners=st.lists(st.integers(0, 3), min_size=12, max_size=12), rnd=st.randoms(use_true_random=False))
def test_full_samples_merge_into_the_single_runs_sample(owners, rnd):
    """Samples far smaller than the data (the path where a full sample lets only large keys in)."""
    from tvm_sima.calibration.sampling import ValueSample

    batches = [RNG.standard_normal(50 + 7 * k) for k in range(12)]
    whole = ValueSample("t", size=64)
    for index, batch in enumerate(batches):
        whole.update(batch, index)
    parts: dict[int, ValueSample] = {}
    for index, owner in enumerate(owners):
        parts.setdefault(owner, ValueSample("t", size=64)).update(batches[index], index)
    merged = ValueSample("t", size=64)
    shuffled = list(parts.values())
    rnd.shuffle(shuffled)
    for part in shuffled:
        merged.merge(part)
    assert np.array_equal(merged.keys, whole.keys) and np.array_equal(merged.values, whole.values)
    assert merged.values.size == 64
