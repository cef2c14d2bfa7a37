"""Calibration observers: formulas, streaming, non-finite values, persistence, registry."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.calibration import (
    OBSERVERS,
    Observer,
    StreamingHistogram,
    load_statistics,
    make_observer,
    register_observer,
    save_statistics,
)
from tvm_sima.config import CALIBRATION_STRATEGIES
from tvm_sima.math import dequantize, quantize

RNG = np.random.default_rng(0)
GAUSS = RNG.standard_normal(100_000)


def feed(obs: Observer, data: np.ndarray, batches: int = 10) -> Observer:
    for chunk in np.array_split(data, batches):
        obs.update(chunk)
    return obs


def test_every_qconfig_strategy_is_registered():
    assert set(CALIBRATION_STRATEGIES) <= set(OBSERVERS)


def test_extrema_streaming_equals_batch_and_per_channel():
    x = RNG.standard_normal((64, 3)) * np.array([1.0, 5.0, 0.1])
    obs = feed(make_observer("extrema", "w", axis=1), x, 7)
    np.testing.assert_array_equal(obs.min_val, x.min(axis=0))
    np.testing.assert_array_equal(obs.max_val, x.max(axis=0))
    qp = obs.compute_qparams("symmetric_restricted", 8)
    assert qp.axis == 1 and qp.num_channels == 3
    np.testing.assert_allclose(qp.scale, np.maximum(-x.min(0), x.max(0)) / 127)


def test_percentile_matches_numpy_within_a_bin():
    obs = feed(make_observer("percentile", "a", percentile=99.0, histc_bins=2048), GAUSS)
    lo, hi = obs.clip_range()
    width = obs.hist.width
    assert abs(float(hi) - np.percentile(GAUSS, 99.0)) <= 2 * width
    assert abs(float(lo) - np.percentile(GAUSS, 1.0)) <= 2 * width


def test_histogram_widening_keeps_every_count():
    hist = StreamingHistogram(64)
    hist.update(np.linspace(0, 1, 1000))
    hist.update(np.linspace(-5, 10, 500))
    assert hist.counts.sum() == 1500 and hist.lo <= -5.0 and hist.hi > 10.0  # aligned bins: the range holds both


def test_mean_nstd_global_scale_formulas():
    batches = [np.array([-1.0, 1.0]), np.array([-3.0, 2.0])]
    mean_obs = make_observer("mean", "a", running_statistic_momentum=0.5)
    for b in batches:
        mean_obs.update(b)
    assert [float(v) for v in mean_obs.clip_range()] == [-2.0, 1.5]  # 0.5 * first + 0.5 * second
    nstd = feed(make_observer("nstd", "a", nstd=2.0), GAUSS)
    lo, hi = nstd.clip_range()
    assert float(hi) == pytest.approx(GAUSS.mean() + 2 * GAUSS.std(), rel=1e-6)
    assert [float(v) for v in make_observer("global_scale", "a", global_scale=4.0).clip_range()] == [-4.0, 4.0]


def test_kl_and_aciq_clip_gaussian_tails_reasonably():
    kl = feed(make_observer("kl_divergence", "a", bits=8), GAUSS)
    t = float(kl.clip_range()[1])
    assert 3.0 < t < 5.0  # TensorRT-style thresholds for N(0, 1) at 8 bits
    gauss = feed(make_observer("aciq_gauss", "a", bits=4), GAUSS)
    assert float(gauss.clip_range()[1]) == pytest.approx(2.55 * GAUSS.std() + GAUSS.mean(), rel=1e-3)


def _real_mse(name: str, data: np.ndarray) -> float:
    qp = feed(make_observer(name, "a", scheme="asymmetric"), data).compute_qparams("asymmetric")
    return float(np.mean((dequantize(quantize(data, qp), qp) - data) ** 2))


@pytest.mark.parametrize("kind", ["student_t2", "gauss_plus_outlier", "laplace"])
def test_mse_is_the_best_range_by_the_real_quantizer(kind):
    rng = np.random.default_rng(1)
    data = {"student_t2": rng.standard_t(2, 100_000), "gauss_plus_outlier": np.concatenate([GAUSS, [60.0]]),
            "laplace": rng.laplace(size=100_000)}[kind]
    others = [_real_mse(name, data) for name in ("extrema", "percentile", "nstd", "aciq_laplace")]
    assert _real_mse("mse", data) <= 1.02 * min(others)  # 2%: the search runs on histogram bin centers


def test_non_finite_values_raise_or_are_trimmed():
    bad = np.array([1.0, np.nan, np.inf, -2.0])
    with pytest.raises(ValueError, match="tensor 'conv1.out' has 2 NaN values"):
        make_observer("extrema", "conv1.out").update(bad)
    obs = make_observer("percentile", "conv1.out", trim_infinity=True)
    obs.update(bad)
    assert obs.trimmed == 2 and [float(v) for v in (obs.min_val, obs.max_val)] == [-2.0, 1.0]
    with pytest.raises(ValueError, match="tensor 'x' has no calibration statistics"):
        make_observer("extrema", "x").compute_qparams()


def test_trimmed_values_keep_the_per_channel_sums_per_channel():
    # bias correction's channel means (channel_mean_axis) over a batch with NaN: the sums stay one per channel
    obs = make_observer("percentile", "conv1.in", trim_infinity=True, channel_mean_axis=1)
    good = np.arange(24, dtype=np.float64).reshape(1, 3, 2, 4)
    obs.update(good)
    bad = good.copy()
    bad[0, 1, 0, 0] = np.nan
    obs.update(bad)
    assert obs.trimmed == 1 and obs.channel_sum.shape == (3,)
    np.testing.assert_array_equal(obs.channel_sum, good.sum(axis=(0, 2, 3)) * 2 - [0, good[0, 1, 0, 0], 0])
    assert np.isfinite(obs.sample.values).all() and obs.count == 47


def test_state_is_bounded_and_round_trips(tmp_path):
    observers = {name: feed(make_observer(name, f"t.{name}", bits=8), GAUSS, 50) for name in sorted(OBSERVERS)}
    assert observers["percentile"].hist.counts.size == 2048  # no growth with the number of batches
    path = tmp_path / "stats.npz"
    save_statistics(path, observers)
    restored = load_statistics(path)
    assert set(restored) == set(observers)
    for name, obs in observers.items():
        assert restored[name].compute_qparams("asymmetric") == obs.compute_qparams("asymmetric"), name
    restored["extrema"].update(np.array([100.0]))  # keeps accumulating after a reload
    assert float(restored["extrema"].max_val) == 100.0
    (tmp_path / "junk.npz").write_bytes(b"not an npz")
    with pytest.raises(ValueError, match="junk.npz: not a tvm-sima statistics file"):
        load_statistics(tmp_path / "junk.npz")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(ValueError, match="other.npz: not a tvm-sima statistics file"):
        load_statistics(tmp_path / "other.npz")


def test_registry_is_extensible_and_strict():
    @register_observer("fixed_unit_test")
    class Fixed(Observer):
        def clip_range(self):
            return np.asarray(-1.0), np.asarray(1.0)

    try:
        assert OBSERVERS["fixed_unit_test"] is Fixed
        assert make_observer("fixed_unit_test", "t").compute_qparams("symmetric_restricted").scale == 1 / 127
        with pytest.raises(ValueError, match="already registered"):
            register_observer("fixed_unit_test")(Fixed)
    finally:
        del OBSERVERS["fixed_unit_test"]
    with pytest.raises(ValueError, match="unknown calibration strategy 'kl'"):
        make_observer("kl", "t")
    with pytest.raises(ValueError, match="observer 'percentile' is per-tensor"):
        make_observer("percentile", "t", axis=0)


def test_kl_divergence_ignores_the_zero_spike_of_relu_outputs():
    # 80% exact zeros (a relu) and a half-normal tail: counting the zeros pulled TensorRT's
    # threshold to a fraction of the tail (0.74 of 6.0 on EfficientNet-Lite0's relu6 outputs).
    rng = np.random.default_rng(0)
    data = np.where(rng.random(200_000) < 0.8, 0.0, np.abs(rng.standard_normal(200_000)))
    obs = make_observer("kl_divergence", "relu_out", bits=8)
    for chunk in np.array_split(data, 10):
        obs.update(chunk)
    lo, hi = obs.clip_range()
    assert float(lo) == 0.0  # cut to the observed range: no codes wasted on negatives
    assert 2.5 < float(hi) <= data.max()
    zeros = make_observer("kl_divergence", "dead", bits=8)
    zeros.update(np.zeros(64))
    assert zeros.compute_qparams("asymmetric").scale == 1.0  # an all-zero tensor still gets parameters


@pytest.mark.parametrize("value", [-6.5, 0.0, 1e-30, 3e38, -3e38])
def test_every_observer_calibrates_a_constant_tensor(value):
    # hand_landmark_lite has a one-element tensor: its histogram range was [v, v + 1e-12], which
    # float64 cannot cut into 2048 bins at |v| = 6.5 ("Too many bins for data range").
    for name in sorted(OBSERVERS):
        obs = make_observer(name, "t")
        for _ in range(3):
            obs.update(np.full((1, 1), value, np.float32))
        q = obs.compute_qparams()
        scale = np.asarray(q.scale, np.float64)
        assert np.all(np.isfinite(scale)) and np.all(scale > 0), (name, value, q)
        if abs(value) < 1e30:  # the constant itself survives the round trip within one step
            back = dequantize(quantize(np.float32(value), q), q)
            assert abs(float(back) - value) <= float(scale.max()) * 0.5 + 1e-6 * abs(value), (name, value, q)


def test_load_statistics_refuses_what_is_not_a_statistics_file(tmp_path):
    np.save(tmp_path / "a.npy", np.zeros(3))
    np.savez(tmp_path / "b.npz", x=np.zeros(3))
    (tmp_path / "c.npz").write_bytes(b"PK\x03\x04 truncated")
    for name, why in (("a.npy", "an array, not a statistics.npz"), ("b.npz", "no index"), ("c.npz", "")):
        with pytest.raises(ValueError, match=f"not a tvm-sima statistics file \\({why}"):
            load_statistics(tmp_path / name)
