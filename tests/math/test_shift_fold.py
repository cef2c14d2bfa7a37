"""The shift search of the shift-only fold starts each channel where its weights allow: the same shifts, weights,
biases and errors as the full descent from ``max_shift`` it replaced (kept here as the reference)."""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.math import Quantization, fold_float_weights_shift, requantize_qnn_convolution_dense, sima


def _descent_from_max(w2, b, ratio, zp_x, zp_y, per_channel, weight_bits, bias_bits, max_shift):
    """The search before the start shifts: every channel from max_shift, down one failing channel at a time."""
    w_max, b_max = 2 ** (weight_bits - 1) - 1, 2 ** (bias_bits - 1) - 1

    def fits(shift):
        w_new, b_new = sima._fold(w2, b, ratio, shift, zp_x, zp_y)
        acc = w2.shape[1] * 128.0 * np.abs(w_new).max(axis=1, initial=0) + np.abs(b_new)
        return (np.abs(w_new).max(axis=1, initial=0) <= w_max) & (np.abs(b_new) <= b_max) & (acc <= b_max)

    shift = np.full(w2.shape[0], max_shift, dtype=np.int64)
    ok = fits(shift)
    while not ok.all():
        if np.any(shift[~ok] == 0):
            raise ValueError(f"output channel {int(np.flatnonzero(~ok & (shift == 0))[0])}:")
        shift = np.where(ok, shift, shift - 1)
        ok = fits(shift)
    if not per_channel:
        shift = np.full(w2.shape[0], shift.min(), dtype=np.int64)
    return (*sima._fold(w2, b, ratio, shift, zp_x, zp_y), shift)


def _case(rng, channels, reduction, spread):
    w2 = rng.standard_normal((channels, reduction)) * 10.0 ** rng.uniform(-spread, spread, (channels, 1))
    w2[0] = 0.0  # an all-zero channel keeps max_shift
    b = rng.standard_normal(channels) * 10.0 ** rng.uniform(0, 4, channels)
    ratio = 10.0 ** rng.uniform(-6, -2, channels)
    return w2, b, ratio


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("per_channel", [True, False])
def test_start_shifts_give_the_full_descents_result(seed, per_channel):
    rng = np.random.default_rng(seed)
    w2, b, ratio = _case(rng, 24, int(rng.integers(1, 300)), spread=2)
    bits = [(8, 32), (4, 32), (16, 48)][seed % 3]
    args = (w2, b, ratio, int(rng.integers(-128, 128)), int(rng.integers(-128, 128)), per_channel, *bits, 31)
    got, want = _outcome(sima._shift_fold, args), _outcome(_descent_from_max, args)
    assert type(got) is type(want)
    if isinstance(want, str):  # both refuse, naming the same channel
        assert got == want
        return
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def _outcome(fold, args):
    """The fold's (weights, bias, shifts), or the 'output channel N:' its error starts with."""
    try:
        return fold(*args)
    except ValueError as err:
        return str(err).split(":")[0]


def test_start_shifts_name_the_same_channel_when_one_cannot_fit():
    rng = np.random.default_rng(3)
    w2, b, ratio = _case(rng, 12, 50, spread=1)
    w2[[4, 9]] *= 1e6  # out of range even at shift 0; with different start shifts (9 more so)
    w2[9] *= 1e3
    args = (w2, b, ratio, 0, 0, True, 8, 32, 31)
    with pytest.raises(ValueError, match="output channel 4:") as want:
        _descent_from_max(*args)
    with pytest.raises(ValueError, match="output channel 4:"):
        sima._shift_fold(*args)
    assert "output channel 4:" in str(want.value)


def test_public_folds_still_agree_with_the_reference():
    rng = np.random.default_rng(11)
    weight = rng.integers(-127, 128, (3, 3, 8, 1, 16)).astype(np.int8)  # HWIGO
    bias = rng.integers(-5000, 5000, 16)
    product = [Quantization(float(s), 0) for s in 10.0 ** rng.uniform(-5, -3, 16)]
    out_q = Quantization(0.05, 3)
    w, bb, shift = requantize_qnn_convolution_dense(weight, bias, 7, product, out_q, is_dense=False)
    w2 = sima.per_channel_weight_view(weight, False).astype(np.float64)
    ratio = np.array([q.scale for q in product]) / out_q.scale
    w_ref, b_ref, s_ref = _descent_from_max(w2, bias.astype(np.float64), ratio, 7, 3, True, 8, 32,
                                            sima.HW_MAX_RIGHT_SHIFT)
    np.testing.assert_array_equal(shift, s_ref)
    np.testing.assert_array_equal(bb, b_ref.astype(np.int32))
    np.testing.assert_array_equal(sima.per_channel_weight_view(w, False), w_ref.astype(np.int8))
    fw, fb = rng.standard_normal((16, 40)) * 0.1, rng.standard_normal(16)
    w, bb, shift = fold_float_weights_shift(fw, fb, Quantization(0.02, -3), out_q, is_dense=True)
    w_ref, b_ref, s_ref = _descent_from_max(fw * (0.02 / 0.05), fb / 0.05, np.ones(16), -3, 3, True, 8, 32,
                                            sima.HW_MAX_RIGHT_SHIFT)
    np.testing.assert_array_equal(shift, s_ref)
    np.testing.assert_array_equal(w, w_ref.astype(np.int8))
    np.testing.assert_array_equal(bb, b_ref.astype(np.int32))
