"""The seed API: correction_factors, the shift-only fold and the TFLite constants."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_sima.math import (
    Quantization,
    correction_factors,
    folded_error_bound,
    requantize_qnn_convolution_dense,
    tflite_requantization_constants,
)
from tvm_sima.testing import random_case

quant = st.builds(
    Quantization,
    scale=st.floats(1e-6, 1e3),
    zero_point=st.integers(-128, 127),
)


@given(a=quant, b=quant, q=st.integers(-128, 127))
def test_correction_factors_invariants(a, b, q):
    sc, zc, n = correction_factors(a, b)
    assert 0.5 <= sc < 1
    assert math.ldexp(sc, -n) == pytest.approx(a.scale / b.scale, rel=1e-15)
    # Moving a code preserves its real value: exact rational comparison, tolerance of a
    # few float64 roundings relative to the terms involved.
    moved = (q * Fraction(sc) + Fraction(zc)) * Fraction(2) ** -n
    exact = Fraction(q - a.zero_point) * Fraction(a.scale) / Fraction(b.scale) + b.zero_point
    magnitude = (abs(q) + abs(a.zero_point)) * Fraction(a.scale) / Fraction(b.scale) + abs(b.zero_point)
    assert abs(moved - exact) <= magnitude * Fraction(1, 2**50)


def test_correction_factors_identity():
    # ratio 1 = 0.5 * 2**1: n = -1, and zc = 3 * 2**-1 - 3 * 0.5 = 0, so output = q.
    assert correction_factors(Quantization(0.1, 3), Quantization(0.1, 3)) == (0.5, 0.0, -1)
    sc, zc, n = correction_factors(Quantization(0.5, 0), Quantization(0.25, 10))
    assert (sc, zc, n) == (0.5, 10 * 2**-2, -2)  # output = (q * 0.5 + 2.5) * 4 = 2q + 10


@pytest.mark.parametrize("is_dense", [True, False], ids=["dense", "conv"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_shift_fold_error_bound_holds(is_dense, per_channel):
    """Fused shift-only op vs the exact 3-op result: |y - clip(y*)| <= 1/2 + delta."""
    rng = np.random.default_rng(1234 + 2 * is_dense + per_channel)
    for _ in range(60):
        case = random_case(rng, is_dense, per_channel)
        y, w, b, shift = case.fused_shift()
        assert w.dtype == np.int8 and b.dtype == np.int32 and w.shape == case.weight.shape
        assert isinstance(shift, int) != per_channel
        assert np.all((np.asarray(shift) >= 0) & (np.asarray(shift) <= 31))
        exact = np.clip(case.exact(), -128, 127)
        n = np.asarray(shift).reshape([-1 if a == case.channel_axis % y.ndim else 1 for a in range(y.ndim)]) \
            if np.ndim(shift) else shift
        delta = folded_error_bound(case.receptive_abs_sum(), n)
        assert np.all(np.abs(y - exact) <= 0.5 + delta + 1e-6)


def test_shift_fold_keeps_most_weight_bits():
    """The chosen shift is maximal: max|w'| lands in (63, 127] when weights span int8."""
    rng = np.random.default_rng(5)
    for _ in range(40):
        case = random_case(rng, is_dense=True, per_channel=True)
        w, _, shift = requantize_qnn_convolution_dense(
            case.weight, None, case.zp_x, case.product_q(), case.output_q, True)
        top = np.abs(w.astype(int)).max(axis=1)
        assert np.all(top <= 127)
        assert np.all((top > 63) | (np.asarray(shift) == 31))


@pytest.mark.parametrize("is_dense", [True, False], ids=["dense", "conv"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_tflite_constants_close_to_exact(is_dense, per_channel):
    """Multiplier-and-shift keeps the weights: within 1 LSB of the exact result (two roundings)."""
    rng = np.random.default_rng(99 + 2 * is_dense + per_channel)
    for _ in range(60):
        case = random_case(rng, is_dense, per_channel)
        y = case.fused_tflite()
        assert np.all(np.abs(y - np.clip(case.exact(), -128, 127)) <= 1 + 1e-6)


def test_tflite_constants_shapes_and_values():
    w = np.array([[1, 2], [3, -4]], np.int8)  # OI
    q = [Quantization(0.01 * 0.5, 0, 32), Quantization(0.01 * 0.25, 0, 32)]
    b, sc, zc, shift = tflite_requantization_constants(w, np.array([10, 20]), 5, q, Quantization(0.1, -3), True)
    assert b.tolist() == [10 - 5 * 3, 20 - 5 * (-1)] and b.dtype == np.int32
    assert zc == -3 and isinstance(sc, np.ndarray) and sc.shape == (2,)
    for s, mult, real in zip(shift, sc, [0.05, 0.025], strict=True):
        assert Fraction(int(mult)) / 2**31 * Fraction(2) ** int(-s) == pytest.approx(real, rel=2**-30)
    b, sc, zc, shift = tflite_requantization_constants(w, None, 0, q[0], Quantization(0.001), True)
    assert isinstance(sc, int) and isinstance(shift, int) and shift == -3  # 5.0 = 0.625 * 2**3: a left shift


def test_shift_only_hwigo_per_channel_order():
    """Output channel g * O + o of an HWIGO weight gets the (g * O + o)-th product scale."""
    w = np.zeros((1, 1, 1, 2, 2), np.int8)
    w[..., 0, 0], w[..., 0, 1], w[..., 1, 0], w[..., 1, 1] = 100, 100, 100, 100
    q = [Quantization(s, 0, 32) for s in (0.1, 0.2, 0.4, 0.8)]
    w2, _, shift = requantize_qnn_convolution_dense(w, None, 0, q, Quantization(1.0), False)
    # Equal folded weights after normalization; the shift drops by one per doubling.
    assert np.diff(shift).tolist() == [-1, -1, -1]
    assert len({int(v) for v in w2.ravel()}) == 1


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: requantize_qnn_convolution_dense(np.zeros((2, 3), np.int8), None, 0, Quantization(1e-3),
                                                  Quantization(0.1), False), "rank 5 in layout HWIGO"),
        (lambda: requantize_qnn_convolution_dense(np.zeros((1, 1, 1, 1, 2), np.int8), None, 0, Quantization(1e-3),
                                                  Quantization(0.1), True), "rank 2 in layout OI"),
        (lambda: requantize_qnn_convolution_dense(np.zeros((3, 4), np.int8), None, 0,
                                                  [Quantization(1e-3)] * 2, Quantization(0.1), True),
         "product_q has 2 entries but the weight has 3 output channels"),
        (lambda: requantize_qnn_convolution_dense(np.zeros((3, 4), np.int8), np.zeros(2, np.int32), 0,
                                                  Quantization(1e-3), Quantization(0.1), True), "bias has shape"),
        (lambda: requantize_qnn_convolution_dense(np.zeros((3, 4), np.float32), None, 0,
                                                  Quantization(1e-3), Quantization(0.1), True), "integer array"),
        (lambda: requantize_qnn_convolution_dense(np.full((1, 4), 100, np.int8), None, 0,
                                                  Quantization(1.0), Quantization(0.1), True),
         r"output channel 0: the scale ratio 10 times max\|weight\| = 100 .* even with shift 0"),
        (lambda: requantize_qnn_convolution_dense(np.zeros((3, 4), np.int8), None, 0,
                                                  Quantization(1e-3, 4), Quantization(0.1), True),
         "zero point must be 0"),
        (lambda: tflite_requantization_constants(np.zeros((3, 4), np.int8), None, 0,
                                                 [Quantization(1e-3)] * 4, Quantization(0.1), True),
         "input_q has 4 entries but the weight has 3"),
        (lambda: tflite_requantization_constants(np.full((1, 4), 127, np.int8), np.array([2**31 - 1]), -128,
                                                 Quantization(1e-3), Quantization(0.1), True), "overflows int32"),
        (lambda: Quantization(0.0), "scale must be finite and > 0"),
        (lambda: Quantization(float("nan")), "scale must be finite and > 0"),
        (lambda: Quantization(0.1, 300), "zero_point .* outside the range"),
        (lambda: Quantization(0.1, 0, bits=40), "bits=40 is out of range"),
    ],
)
def test_bad_input_is_named(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def _float_case(rng, is_dense):
    """A layer with float weights, its int8 input and scales."""
    if is_dense:
        w = rng.standard_normal((8, 48)) * 0.05
        x = rng.integers(-128, 128, (4, 48))
    else:
        w = rng.standard_normal((3, 3, 4, 1, 8)) * 0.05  # HWIGO
        x = rng.integers(-128, 128, (1, 7, 7, 4))
    b = rng.standard_normal(8) * 0.1
    data_q = Quantization(float(rng.uniform(0.01, 0.05)), int(rng.integers(-20, 20)))
    return w, b, x, data_q


def _float_reference(w, b, x, data_q, out_q, is_dense, acc_fn):
    real_in = (x.astype(np.float64) - data_q.zero_point) * data_q.scale
    return acc_fn(real_in, w) / out_q.scale + b / out_q.scale + out_q.zero_point


@pytest.mark.parametrize("is_dense", [True, False], ids=["dense", "conv"])
def test_float_weight_fold_is_one_rounding_and_beats_two(is_dense):
    """fold_float_weights_shift vs (int8 per-channel weights, then the fold): closer to the float layer."""
    from tvm_sima.math import (
        choose_qparams,
        conv2d_accumulate,
        dense_accumulate,
        fold_float_weights_shift,
        quantize,
        requantize,
    )

    def float_acc(real_in, w):
        if is_dense:
            return real_in @ w.T
        out = np.zeros((1, 7, 7, 8))
        padded = np.pad(real_in, ((0, 0), (1, 1), (1, 1), (0, 0)))
        for i in range(3):
            for j in range(3):
                out += np.einsum("nhwc,co->nhwo", padded[:, i:i + 7, j:j + 7, :], w[i, j, :, 0, :])
        return out

    def run(w_int, b_int, shift, x, zp_x):
        if is_dense:
            acc = dense_accumulate(x, w_int)
        else:
            acc = conv2d_accumulate(x, w_int, padding=(1, 1, 1, 1), pad_value=zp_x)
        return requantize(acc + b_int, 1, np.asarray(shift), "half_up", 0, -128, 127, axis=acc.ndim - 1)

    rng = np.random.default_rng(11)
    err_one, err_two = [], []
    for _ in range(40):
        w, b, x, data_q = _float_case(rng, is_dense)
        exact_unclipped = _float_reference(w, b, x, data_q, Quantization(1.0), is_dense, float_acc)
        out_q = Quantization(float(np.abs(exact_unclipped).max() / 100), 3)
        exact = np.clip(_float_reference(w, b, x, data_q, out_q, is_dense, float_acc), -128, 127)
        w1, b1, s1 = fold_float_weights_shift(w, b, data_q, out_q, is_dense)
        y1 = run(w1, b1, s1, x, data_q.zero_point)
        # the two-rounding path: per-channel int8 weights first, bias at the product scale, then the fold
        axis = 0 if is_dense else 4
        amax = np.abs(w).max(axis=tuple(i for i in range(w.ndim) if i != axis))
        w_q = choose_qparams(-amax, amax, "symmetric_restricted", 8, axis=axis)
        w_int = quantize(w, w_q)
        product = [Quantization(data_q.scale * float(s), 0, 32) for s in np.ravel(w_q.scale)]
        b_int = np.round(b / (data_q.scale * np.ravel(w_q.scale))).astype(np.int64)
        w2, b2, s2 = requantize_qnn_convolution_dense(w_int, b_int, data_q.zero_point, product, out_q, is_dense)
        y2 = run(w2, b2, s2, x, data_q.zero_point)
        err_one.append(np.abs(y1 - exact).mean())
        err_two.append(np.abs(y2 - exact).mean())
        receptive = np.abs(x.astype(np.int64) - data_q.zero_point)
        if is_dense:
            total = receptive.sum(axis=1, keepdims=True)
        else:
            total = conv2d_accumulate(receptive, np.ones((3, 3, 4, 1, 8), np.int64), padding=(1, 1, 1, 1))
        assert np.all(np.abs(y1 - exact) <= 0.5 + folded_error_bound(total, np.asarray(s1)) + 1e-6)
    print(f"mean |y - y*| LSB: one rounding {np.mean(err_one):.4f}, two roundings {np.mean(err_two):.4f}")
    assert np.mean(err_one) < np.mean(err_two)
