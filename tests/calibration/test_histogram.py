"""The histogram's bin counting is NumPy's ``np.histogram``, bit for bit, and the fast observer path keeps every
statistic of the NaN-aware one."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.calibration import make_observer
from tvm_sima.calibration.histogram import BLOCK, bin_counts

RNG = np.random.default_rng(7)


def _cases():
    gauss = RNG.standard_normal(3 * BLOCK + 17)
    yield gauss, float(gauss.min()), float(gauss.max()), 2048
    yield gauss, -8.0, 8.0, 2048
    relu6 = np.clip(RNG.standard_normal(50_000) * 3, 0, 6)  # spikes at both ends of the range
    yield relu6, 0.0, 6.0, 2048
    for lo, hi in ((0.1, 0.7), (-5.55, 3.3)):  # values on, just below and just above every bin edge: without
        edges = np.linspace(lo, hi, 2049)     # both index corrections hundreds of them land in the wrong bin
        yield np.concatenate([edges, np.nextafter(edges, -np.inf)[1:], np.nextafter(edges, np.inf)[:-1]]), lo, hi, 2048
    tiny = 1.0 + RNG.random(10_000) * 1e-9  # bins a few ULPs wide: the index corrections matter
    yield tiny, float(tiny.min()), float(tiny.max()), 2048
    codes = RNG.integers(-128, 128, 40_000).astype(np.float64) * 0.0371  # a quantized tensor's values
    yield codes, float(codes.min()), float(codes.max()) + 1e-3, 511


@pytest.mark.parametrize("index", range(7))
def test_bin_counts_equals_numpy_histogram(index):
    x, lo, hi, bins = list(_cases())[index]
    want = np.histogram(x, bins=bins, range=(lo, hi))[0]
    got = bin_counts(x, lo, hi, bins)
    assert got.dtype == want.dtype
    np.testing.assert_array_equal(got, want)


def test_bin_counts_leaves_float32_and_degenerate_ranges_to_numpy():
    x32 = RNG.standard_normal(5000).astype(np.float32)  # NumPy bins float32 data on float32 edges
    np.testing.assert_array_equal(bin_counts(x32, -4.0, 4.0, 1000), np.histogram(x32, 1000, range=(-4.0, 4.0))[0])
    ones = np.ones(10)
    np.testing.assert_array_equal(bin_counts(ones, 1.0, 1.0, 8), np.histogram(ones, 8, range=(1.0, 1.0))[0])


def _nan_aware(batches):
    """The statistics as the observers computed them before the all-finite fast path (NaN-aware reductions)."""
    lo = np.nanmin(np.concatenate([b.ravel() for b in batches]))
    total = total_sq = 0.0
    channel = None
    for b in batches:
        data = np.asarray(b, dtype=np.float64)
        total += float(np.nansum(data))
        total_sq += float(np.nansum(data * data))
        sums = np.nansum(data, axis=(0, 2, 3))
        channel = sums if channel is None else channel + sums
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
    assert fast.sum == total and fast.sum_sq == total_sq  # exactly: the same values summed in the same order
    np.testing.assert_array_equal(fast.channel_sum, channel)
