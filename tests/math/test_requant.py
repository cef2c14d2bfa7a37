"""Fixed-point multipliers and requantization against exact rational arithmetic."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tvm_sima.math import (
    HW15_MAX_MULTIPLIER,
    HW_MAX_RIGHT_SHIFT,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    tflite_quantize_multiplier,
)

INT32 = st.integers(-(2**31), 2**31 - 1)
SCALES = st.floats(1e-8, 1e4, allow_nan=False)


def c_div(a: int, b: int) -> int:
    """C integer division (truncates toward zero)."""
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def srdhm_c(a: int, b: int) -> int:
    """gemmlowp SaturatingRoundingDoublingHighMul, transcribed on Python ints."""
    if a == b == -(2**31):
        return 2**31 - 1
    ab = a * b
    nudge = (1 << 30) if ab >= 0 else 1 - (1 << 30)
    return c_div(ab + nudge, 1 << 31)


def rdbpot_c(x: int, exponent: int) -> int:
    """gemmlowp RoundingDivideByPOT on Python ints (two's complement & and >>)."""
    mask = (1 << exponent) - 1
    remainder = x & mask
    threshold = (mask >> 1) + (1 if x < 0 else 0)
    return (x >> exponent) + (1 if remainder > threshold else 0)


def tflite_qm_c(real: float) -> tuple[int, int]:
    """TFLite QuantizeMultiplier on Python floats (std::frexp, std::round)."""
    if real == 0:
        return 0, 0
    q, shift = math.frexp(real)
    q_fixed = int(math.floor(q * 2**31 + 0.5))
    if q_fixed == 2**31:
        q_fixed //= 2
        shift += 1
    if shift < -31:
        return 0, 0
    if shift > 30:
        return 2**31 - 1, 30
    return q_fixed, shift


@given(a=INT32, b=INT32)
def test_srdhm_matches_c_semantics(a, b):
    assert int(saturating_rounding_doubling_high_mul(a, b)) == srdhm_c(a, b)


def test_srdhm_saturates():
    assert int(saturating_rounding_doubling_high_mul(-(2**31), -(2**31))) == 2**31 - 1


@given(x=INT32, e=st.integers(0, 31))
def test_rdbpot_matches_c_semantics(x, e):
    assert int(rounding_divide_by_pot(x, e)) == rdbpot_c(x, e)


@given(real=st.one_of(SCALES, st.floats(1e-14, 1e-9), st.floats(1e9, 1e12), st.just(0.0), st.just(1.0)))
def test_tflite_quantize_multiplier_matches_reference(real):
    assert tuple(map(int, tflite_quantize_multiplier(real))) == tflite_qm_c(real)


@given(real=SCALES, bits=st.sampled_from([31, 24, 16, 15, 8]))
def test_quantize_multiplier_is_normalized_and_accurate(real, bits):
    m, n = quantize_multiplier(real, bits)
    assert 2 ** (bits - 1) <= m <= 2**bits - 1
    assert abs(Fraction(m, 1) * Fraction(2) ** -n - Fraction(real)) <= Fraction(real) * Fraction(1, 2**bits)


def test_quantize_multiplier_limits():
    m, n = quantize_multiplier(1e-7, 15, max_shift=HW_MAX_RIGHT_SHIFT)
    assert n == HW_MAX_RIGHT_SHIFT and m == round(1e-7 * 2**31)  # denormalized
    assert quantize_multiplier(1e-12, 15, max_shift=HW_MAX_RIGHT_SHIFT) == (0, 0)
    assert quantize_multiplier(0.0) == (0, 0)
    assert quantize_multiplier(1e6, 15) == (round(1e6 / 2**5), -5)  # left shift allowed
    with pytest.raises(ValueError, match="needs a left shift"):
        quantize_multiplier(1e6, 15, allow_left_shift=False)
    assert quantize_multiplier(1e6, 15, force_shift_positive=True) == (HW15_MAX_MULTIPLIER, 0)
    m, n = quantize_multiplier(np.array([0.5, 0.25, 0.0]), 15)
    assert m.tolist() == [16384, 16384, 0] and n.tolist() == [15, 16, 0]
    for bad in (-1.0, np.nan, np.inf):
        with pytest.raises(ValueError, match="finite and >= 0"):
            quantize_multiplier(bad)
    with pytest.raises(ValueError, match="bits=32"):
        quantize_multiplier(0.5, 32)


@given(acc=INT32, real=SCALES, bits=st.sampled_from([31, 15]),
       mode=st.sampled_from(["half_up", "half_even", "half_away_from_zero"]), zp=st.integers(-128, 127))
def test_requantize_within_bound_of_exact(acc, real, bits, mode, zp):
    """|y - (acc * real + zp)| <= 1/2 + |acc * real| * 2**-bits (no clipping)."""
    m, n = quantize_multiplier(real, bits)
    y = int(requantize(acc, m, n, mode, zp, -(2**62), 2**62))
    exact = Fraction(acc) * Fraction(real) + zp
    assert abs(y - exact) <= Fraction(1, 2) + abs(Fraction(acc) * Fraction(real)) / 2**bits


@given(acc=INT32, real=st.floats(1e-8, 0.999))
def test_requantize_tflite_mode_is_multiply_by_quantized_multiplier(acc, real):
    q, shift = tflite_quantize_multiplier(real)
    y = int(requantize(acc, q, 31 - shift, "tflite", 0, -(2**40), 2**40))
    expected = rdbpot_c(srdhm_c(acc, q), -shift) if shift <= 0 else None
    assume(expected is not None)
    assert y == expected == int(multiply_by_quantized_multiplier(acc, q, shift))
    exact = Fraction(acc) * Fraction(real)
    assert abs(y - exact) <= 1 + abs(exact) / 2**31  # two roundings


def test_requantize_per_channel_and_clip():
    acc = np.array([[100, 100], [-100, 1000]])
    y = requantize(acc, np.array([1, 3]), np.array([1, 2]), "half_up", np.array([0, 5]), -10, 20, axis=1)
    assert y.tolist() == [[20, 20], [-10, 20]]  # [50, 80], [-50, 755] clipped
    y = requantize(np.array([5, -5, 6]), 1, 1, "half_even", 0)
    assert y.tolist() == [2, -2, 3]


def test_requantize_stochastic_is_unbiased():
    y = requantize(np.full(100_000, 3), 1, 2, "stochastic", 0, rng=7)  # 0.75
    assert set(np.unique(y)) == {0, 1} and abs(y.mean() - 0.75) < 0.01


def test_requantize_errors():
    with pytest.raises(ValueError, match="acc must be an integer array"):
        requantize(np.array([1.5]), 1, 0)
    with pytest.raises(ValueError, match="multiplier is per-channel .* give axis="):
        requantize(np.zeros((2, 2), np.int32), np.array([1, 2]), 0)
    with pytest.raises(ValueError, match="needs 6[0-9] bits"):
        requantize(np.array([2**31 - 1]), 2**31 - 1, -4)
    with pytest.raises(ValueError, match="x must fit in int32"):
        requantize(np.array([2**40]), 2**30, 31, "tflite")
    with pytest.raises(ValueError, match="qmin=5 is greater than qmax=1"):
        requantize(np.array([1]), 1, 0, qmin=5, qmax=1)
