"""The grid check (tvm_sima.calibration.grid_check) on arrays: what collapses, what passes, what is chosen."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.calibration import load_statistics, make_observer, save_statistics
from tvm_sima.calibration.grid_check import MIDDLE_SQNR_DB, check_grid, fit_grid
from tvm_sima.calibration.sampling import SAMPLE_SIZE, ValueSample
from tvm_sima.math import QScheme

ASYM = QScheme.ASYMMETRIC


def observed(values: np.ndarray, strategy: str = "percentile", batches: int = 8, **options):
    obs = make_observer(strategy, "t", percentile=99.99, **options)
    for part in np.array_split(values.astype(np.float32), batches):
        obs.update(part)
    return obs


def verdict_of(obs, scheme=ASYM, bits=8, **kw):
    qp = obs.compute_qparams(scheme, bits)
    lo, hi = obs.clip_range()
    return check_grid("t", obs.sample.values, qp, (float(obs.min_val), float(obs.max_val)),
                      (float(lo), float(hi)), scheme, **kw)


def logit_head(rng: np.random.Generator, n: int = 40000) -> np.ndarray:
    """BlazeFace-like logits: most in (-8, +1.7), a log-uniform tail down to -3600 owning the range."""
    bulk = np.clip(rng.normal(-4.0, 2.5, n), -30, 1.7)
    tail = -np.exp(rng.uniform(np.log(30), np.log(3600), n // 8))
    return rng.permutation(np.concatenate([bulk, tail]))


def test_a_tail_that_owns_the_range_collapses_the_int8_grid_and_16_bits_rescue_it():
    obs = observed(logit_head(np.random.default_rng(0)))
    qp = obs.compute_qparams(ASYM, 8)
    assert int(qp.zero_point) == 127  # the failure mode: real 0 is the top code
    before = fit_grid(obs.sample.values, qp)
    assert before.collapsed and before.middle_codes < 1 and before.middle_sqnr_db < 0
    verdict = verdict_of(obs)
    assert verdict is not None and verdict.rescued
    assert verdict.choice == "16-bit over the calibrated range"
    after = verdict.after
    assert after.qparams.dtype.bits == 16 and after.middle_codes > 50 and after.mse < before.mse
    assert not after.collapsed and after.middle_sqnr_db > 30
    # The positive logits survive: the wide grid covers the calibrated range, not the int8 grid's [.., 0].
    assert after.qparams.scale * (after.qparams.qmax - int(after.qparams.zero_point)) > 1.5
    assert verdict.to_dict()["before"]["zero_point"] == 127


def test_the_whole_tensor_sqnr_does_not_see_the_collapse():
    """Why the check measures the middle half: over all values the tail is the signal (~27 dB for BlazeFace)."""
    values = logit_head(np.random.default_rng(1))
    obs = observed(values)
    qp = obs.compute_qparams(ASYM, 8)
    from tvm_sima.math import dequantize, quantize

    error = dequantize(quantize(values, qp), qp) - values
    assert 10 * np.log10(np.mean(values**2) / np.mean(error**2)) > 20
    assert fit_grid(obs.sample.values, qp).collapsed


def test_a_grid_wider_than_the_data_is_clipped_at_8_bits():
    """global_scale's fixed [-8, 8] on values of spread 0.01: the cheapest rescue, a least-error 8-bit range."""
    obs = observed(np.random.default_rng(2).normal(0, 0.01, 20000), "global_scale", global_scale=8.0)
    verdict = verdict_of(obs)
    assert verdict is not None and verdict.rescued and verdict.choice.startswith("8-bit over [")
    assert verdict.after.qparams.dtype.bits == 8 and verdict.after.middle_codes > 10


@pytest.mark.parametrize("name, values", [
    ("gaussian", np.random.default_rng(3).normal(0, 1, 50000)),
    ("laplacian", np.random.default_rng(4).laplace(0, 1, 50000)),
    ("relu6, 75% zeros", np.where(np.random.default_rng(5).random(50000) < 0.75, 0.0,
                                  np.clip(np.random.default_rng(6).exponential(1.0, 50000), 0, 6))),
    ("saturated relu6", np.where(np.random.default_rng(7).random(50000) < 0.8, 6.0,
                                 np.random.default_rng(8).uniform(0, 6, 50000))),
    ("two values", np.where(np.random.default_rng(9).random(50000) < 0.5, -1.0, 1.0)),
    ("all zeros", np.zeros(1000)),
])
def test_well_calibrated_tensors_pass(name, values):
    obs = observed(values)
    assert verdict_of(obs) is None, name


def test_the_rule_leaves_out_exact_zeros():
    """EfficientNet-Lite0's ReLU6 outputs are 75% zeros: counted, they would fill the middle half (0 dB)."""
    rng = np.random.default_rng(10)
    values = np.where(rng.random(50000) < 0.75, 0.0, np.clip(rng.exponential(0.3, 50000), 0, 6))
    values[:10] = 6.0
    obs = observed(values)
    qp = obs.compute_qparams(ASYM, 8)
    fit = fit_grid(obs.sample.values, qp)
    assert not fit.collapsed and fit.middle_sqnr_db > MIDDLE_SQNR_DB + 10
    zeros_counted = fit_grid(np.where(obs.sample.values == 0, 1e-30, obs.sample.values), qp)
    assert zeros_counted.collapsed


def test_nothing_saves_it_without_wider_codes_and_the_verdict_says_so():
    obs = observed(logit_head(np.random.default_rng(11)))
    verdict = verdict_of(obs, widen=False)
    assert verdict is not None and not verdict.rescued and verdict.after is None
    assert "'t'" in verdict.message() and "constant" in verdict.message()
    assert verdict_of(obs, rescue=False).choice.startswith("rescue disabled")


def test_an_empty_sample_is_not_checked():
    obs = observed(logit_head(np.random.default_rng(12)))
    qp = obs.compute_qparams(ASYM, 8)
    assert check_grid("t", np.zeros(0), qp, (-1.0, 1.0), (-1.0, 1.0), ASYM) is None


@pytest.mark.filterwarnings("error::RuntimeWarning")
def test_a_sample_of_two_values_has_an_empty_middle_half_and_passes():
    # inspect's placeholder observers see two values: the quartiles fall between them
    obs = observed(np.asarray([-1.0, 5.0]), strategy="extrema", batches=1)
    fit = fit_grid(obs.sample.values, obs.compute_qparams(ASYM, 8))
    assert not fit.collapsed and fit.middle_sqnr_db == float("inf")


def test_the_sample_is_uniform_over_batches_of_any_size():
    sample = ValueSample("t", size=1000)
    sample.update(np.zeros(100), 0)
    sample.update(np.ones(100_000), 1)
    assert sample.values.size == 1000
    share = np.mean(sample.values == 0)
    assert share < 0.01  # 100 of 100100 values: ~1 kept in 1000, not half
    again = ValueSample("t", size=1000)
    again.update(np.zeros(100), 0)
    again.update(np.ones(100_000), 1)
    assert np.array_equal(sample.values, again.values)  # seeded by the tensor name


def test_the_sample_is_bounded_and_saved_with_the_statistics(tmp_path):
    obs = observed(np.random.default_rng(13).normal(size=100_000), batches=20)
    assert obs.sample.values.size == SAMPLE_SIZE
    save_statistics(tmp_path / "s.npz", {"t": obs})
    back = load_statistics(tmp_path / "s.npz")["t"]
    assert np.array_equal(back.sample.values, obs.sample.values)
    assert np.array_equal(back.sample.keys, obs.sample.keys)
