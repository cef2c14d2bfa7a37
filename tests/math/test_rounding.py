"""Rounding modes against an exact fractions.Fraction reference."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_sima.math import RoundingMode, round_real, rounding_right_shift

DETERMINISTIC = [RoundingMode.HALF_UP, RoundingMode.HALF_AWAY_FROM_ZERO, RoundingMode.HALF_EVEN, RoundingMode.TFLITE]


def exact_round(value: Fraction, mode: RoundingMode) -> int:
    """The definition of each mode on an exact rational."""
    floor = math.floor(value)
    frac = value - floor
    if frac != Fraction(1, 2):
        return floor + (frac > Fraction(1, 2))
    if mode is RoundingMode.HALF_UP:
        return floor + 1
    if mode is RoundingMode.HALF_EVEN:
        return floor + (floor % 2)
    return floor + 1 if value > 0 else floor  # away from zero (HALF_AWAY_FROM_ZERO, TFLITE)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@given(x=st.integers(-(2**61), 2**61), n=st.integers(0, 62))
def test_right_shift_matches_fraction(mode, x, n):
    assert int(rounding_right_shift(x, n, mode)) == exact_round(Fraction(x, 2**n), mode)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@given(q=st.integers(-(2**20), 2**20), n=st.integers(1, 20))
def test_right_shift_ties(mode, q, n):
    """Exact ties (x = (q + 1/2) * 2**n) are where the modes differ."""
    x = q * 2**n + 2 ** (n - 1)
    assert int(rounding_right_shift(x, n, mode)) == exact_round(Fraction(x, 2**n), mode)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@given(num=st.integers(-(2**40), 2**40), den_log=st.integers(0, 12))
def test_round_real_matches_fraction_on_dyadics(mode, num, den_log):
    value = Fraction(num, 2**den_log)  # exactly representable in float64, many exact ties
    assert int(round_real(float(value), mode)) == exact_round(value, mode)


@pytest.mark.parametrize("mode", DETERMINISTIC)
@given(x=st.floats(-(2.0**52), 2.0**52, allow_nan=False))
def test_round_real_matches_fraction_on_any_float(mode, x):
    assert int(round_real(x, mode)) == exact_round(Fraction(x), mode)


@pytest.mark.parametrize("mode", DETERMINISTIC)
def test_round_real_just_below_half(mode):
    """0.49999999999999994 + 0.5 == 1.0 in float64: rounding must not add 0.5 first."""
    below = np.nextafter(0.5, 0.0)
    assert round_real(below, mode) == 0.0 and round_real(-below, mode) == 0.0
    assert round_real(2.5 - 2**-51, mode) == 2.0


def test_modes_differ_only_on_ties():
    x = np.array([-5, -3, -1, 1, 3, 5]) * 1  # x / 2 are ties
    assert rounding_right_shift(x, 1, "half_up").tolist() == [-2, -1, 0, 1, 2, 3]
    assert rounding_right_shift(x, 1, "half_away_from_zero").tolist() == [-3, -2, -1, 1, 2, 3]
    assert rounding_right_shift(x, 1, "half_even").tolist() == [-2, -2, 0, 0, 2, 2]


def test_per_channel_shift_broadcasts():
    x = np.array([[7, 7, 7]])
    assert rounding_right_shift(x, np.array([0, 1, 2]), "half_up").tolist() == [[7, 4, 2]]


@given(x=st.integers(-(2**40), 2**40), n=st.integers(0, 30), seed=st.integers(0, 2**32))
def test_stochastic_is_floor_or_ceil_and_exact_on_multiples(x, n, seed):
    y = int(rounding_right_shift(x, n, "stochastic", rng=seed))
    value = Fraction(x, 2**n)
    assert y in (math.floor(value), math.ceil(value))


def test_stochastic_is_seeded_and_unbiased():
    x = np.full(200_000, 5)  # 5 / 8 = 0.625
    a = rounding_right_shift(x, 3, "stochastic", rng=1)
    b = rounding_right_shift(x, 3, "stochastic", rng=1)
    assert np.array_equal(a, b)
    assert abs(a.mean() - 0.625) < 0.005
    r = round_real(np.full(200_000, -2.25), "stochastic", rng=3)
    assert set(np.unique(r)) == {-3.0, -2.0} and abs(r.mean() + 2.25) < 0.005


def test_tvm_names_and_bad_names():
    assert RoundingMode.parse("UPWARD") is RoundingMode.HALF_UP
    assert RoundingMode.parse("TONEAREST") is RoundingMode.HALF_AWAY_FROM_ZERO
    with pytest.raises(ValueError, match="rounding='nearest'"):
        RoundingMode.parse("nearest")


def test_negative_shift_rejected():
    with pytest.raises(ValueError, match="shift must be in"):
        rounding_right_shift(4, -1)
