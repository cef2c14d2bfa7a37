"""The histogram's bins are exact (``floor(v / 2**e)``), its state a function of the set of values (so shards
merge into it bit for bit), and the fast observer path keeps every statistic of the NaN-aware one."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tvm_sima.calibration import StreamingHistogram, make_observer
from tvm_sima.calibration.histogram import bin_exponent

RNG = np.random.default_rng(7)


def _exact_counts(values, exponent, offset, bins):
    """Each value's bin by rational arithmetic: ``floor(v / 2**e) - offset``."""
    counts = np.zeros(bins)
    for v in values:
        counts[math.floor(Fraction(float(v)) / Fraction(2) ** exponent) - offset] += 1
    return counts


@pytest.mark.parametrize("case", ["gauss", "edges", "constant", "tiny_range", "relu6_include_zero"])
def test_bins_are_exact_and_cover_every_value(case):
    values = {"gauss": RNG.standard_normal(3000),
              "edges": np.concatenate([np.arange(-64, 64) * 0.125, np.nextafter(np.arange(-64, 64) * 0.125, -1)]),
              "constant": np.full(50, 0.3),
              "tiny_range": 1.0 + RNG.random(500) * 1e-12,
              "relu6_include_zero": np.clip(RNG.standard_normal(2000) * 3, 0, 6)}[case]
    hist = StreamingHistogram(256, include_zero=case.endswith("include_zero"))
    for part in np.array_split(values, 7):
        hist.update(part)
    np.testing.assert_array_equal(hist.counts, _exact_counts(values, hist.exponent, hist.offset, 256))
    assert hist.lo <= values.min() and values.max() < hist.hi
    if values.max() > values.min():  # the smallest width that holds them: half of it would not
        assert math.floor(values.max() / hist.width * 2) - math.floor(values.min() / hist.width * 2) >= 256 or \
            hist.exponent == bin_exponent(0.0, float(np.abs(values).max()), 1)  # or float64's resolution bound


def test_the_range_used_is_between_half_and_all_of_the_bins():
    for scale in (1e-3, 1.0, 7.5, 1e6):
        hist = StreamingHistogram(2048)
        data = RNG.standard_normal(10_000) * scale
        hist.update(data)
        used = math.floor(data.max() / hist.width) - math.floor(data.min() / hist.width) + 1
        assert 1024 <= used <= 2048, (scale, used)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 5), min_size=1, max_size=12), st.randoms(use_true_random=False),
       st.sampled_from([False, True]))
def test_merged_shards_equal_the_whole_histogram(owners, rnd, include_zero):
    batches = [RNG.standard_normal(200) * 10.0 ** RNG.uniform(-3, 3) + RNG.uniform(-5, 5) for _ in owners]
    if include_zero:
        batches = [np.abs(b) for b in batches]
    whole = StreamingHistogram(128, include_zero)
    for b in batches:
        whole.update(b)
    shards = {}
    for owner, b in zip(owners, batches, strict=True):
        shards.setdefault(owner, StreamingHistogram(128, include_zero)).update(b)
    order = list(shards.values())
    rnd.shuffle(order)
    merged = StreamingHistogram(128, include_zero)
    for shard in order:
        merged.merge(shard)
    assert (merged.exponent, merged.offset, merged.vmin, merged.vmax) == (whole.exponent, whole.offset,
                                                                          whole.vmin, whole.vmax)
    np.testing.assert_array_equal(merged.counts, whole.counts)


def test_histograms_of_other_shapes_do_not_merge():
    with pytest.raises(ValueError, match="cannot merge a histogram of 64 bins"):
        StreamingHistogram(128).merge(StreamingHistogram(64))


def _nan_aware(batches):
    """The statistics as the observers computed them before the all-finite fast path (NaN-aware reductions)."""
    lo = np.nanmin(np.concatenate([b.ravel() for b in batches]))
    data = [np.asarray(b, dtype=np.float64) for b in batches]
    total = math.fsum(float(np.nansum(d)) for d in data)  # the batches' sums, added exactly and rounded once
    total_sq = math.fsum(float(np.nansum(d * d)) for d in data)
    sums = np.stack([np.nansum(d, axis=(0, 2, 3)) for d in data])
    channel = np.asarray([math.fsum(sums[:, c]) for c in range(sums.shape[1])])
    return lo, total, total_sq, channel


@pytest.mark.parametrize("strategy", ["percentile", "kl_divergence", "extrema"])
def test_fast_path_statistics_are_the_nan_aware_ones(strategy):
    # float64 values over ten decades: their float64 sums round, so a changed summation order would show
    batches = [RNG.standard_normal((1, 8, 9, 9)) * 10.0 ** RNG.uniform(-5, 5, (1, 8, 9, 9)) for _ in range(4)]
    fast = make_observer(strategy, "t", channel_mean_axis=1)
    for b in batches:
        fast.update(b)
    lo, total, total_sq, channel = _nan_aware(batches)
    assert fast.min_val == lo and fast.count == sum(b.size for b in batches)
    assert fast.sum == total and fast.sum_sq == total_sq  # exactly: the same batch sums, added exactly
    np.testing.assert_array_equal(fast.channel_sum, channel)


def test_quantiles_stay_within_the_extrema():
    values = np.clip(RNG.standard_normal(20_000) * 3, 0, 6)  # relu6: mass on 6.0 itself
    hist = StreamingHistogram(2048, include_zero=True)
    hist.update(values)
    assert hist.hi > 6.0  # the aligned last bin overhangs the maximum
    assert hist.quantile(0.9999) == 6.0 and hist.quantile(1.0) == 6.0 and hist.quantile(0.0) == 0.0
