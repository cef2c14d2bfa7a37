"""FixedPointMultiplier: the ops' (multiplier, right_shift, rounding), against the fix-ups it replaced."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_sima.math import (
    INT32_MAX,
    MAX_TOTAL_RIGHT_SHIFT,
    FixedPointMultiplier,
    Quantization,
    RoundingMode,
    multiply_by_quantized_multiplier,
    quantize_multiplier,
    requantize,
    tflite_product_quantization,
    tflite_quantize_multiplier,
    tflite_requantization_constants,
)

#: Requantization scales seen in practice, and the extremes TFLite saturates.
SCALES = st.one_of(st.floats(1e-8, 1e4, allow_nan=False), st.floats(1e-14, 1e-9), st.floats(1e9, 1e12),
                   st.just(0.0), st.just(1.0), st.just(0.5))
INT32 = st.integers(-(2**31), 2**31 - 1)


def _q31_invariants(f: FixedPointMultiplier) -> None:
    m, n = np.atleast_1d(f.multiplier), np.atleast_1d(f.right_shift)
    assert np.all((m == 0) | ((m >= 2**30) & (m <= INT32_MAX)))  # Q31, normalized, or zero
    assert np.all((n >= 1) & (n <= MAX_TOTAL_RIGHT_SHIFT))  # a right shift the ops accept


@given(real=SCALES)
def test_tflite_equals_the_old_31_minus_exponent(real):
    m, e = tflite_quantize_multiplier(real)
    f = FixedPointMultiplier.tflite(real)
    assert (f.multiplier, f.right_shift, f.rounding) == (int(m), 31 - int(e), RoundingMode.TFLITE)
    assert f.tflite_exponent == e
    assert type(f.multiplier) is int and type(f.right_shift) is int
    _q31_invariants(f)


@given(reals=st.lists(SCALES, min_size=1, max_size=6))
def test_tflite_per_channel(reals):
    m, e = tflite_quantize_multiplier(np.asarray(reals))
    f = FixedPointMultiplier.tflite(np.asarray(reals))
    assert f.per_channel
    np.testing.assert_array_equal(f.multiplier, m)
    np.testing.assert_array_equal(f.right_shift, 31 - e)
    assert f.op_args()["shift"] == (31 - e).tolist() and f.op_args()["multiplier"] == m.tolist()
    _q31_invariants(f)


@given(s_in=st.floats(1e-4, 1.0), s_w=st.lists(st.floats(1e-5, 1.0), min_size=1, max_size=4),
       s_out=st.floats(1e-3, 10.0), per_channel=st.booleans())
def test_from_q31_right_shift_equals_the_old_shift_plus_31(s_in, s_w, s_out, per_channel):
    weight = np.ones((len(s_w), 3), dtype=np.int8)  # OI
    product = tflite_product_quantization(s_in, s_w if per_channel else s_w[:1])
    product_q = product if per_channel else product[0]
    _, mult, _, shift = tflite_requantization_constants(weight, None, 0, product_q, Quantization(s_out, 0, 8), True)
    f = FixedPointMultiplier.from_q31_right_shift(mult, shift)
    old = np.asarray(shift) + 31
    assert f.op_args()["shift"] == (old.tolist() if old.ndim else int(old))
    assert f.op_args()["multiplier"] == np.asarray(mult).tolist()
    assert f.per_channel == per_channel
    _q31_invariants(f)


@given(real=st.floats(1e-6, 100.0), count=st.integers(1, 1 << 40))
def test_fold_divisor_equals_the_old_mean_fold(real, count):
    m0, e0 = tflite_quantize_multiplier(real)
    k = min(count.bit_length() - 1, 32, 31 + int(e0))  # the MEAN fold as integer_ops wrote it
    m, e = (int(m0) << k) // count, int(e0) - k
    f = FixedPointMultiplier.tflite(real).fold_divisor(count)
    assert (f.multiplier, f.right_shift) == (m, 31 - e)
    assert 0 <= f.multiplier <= INT32_MAX and 0 <= f.right_shift <= MAX_TOTAL_RIGHT_SHIFT


@given(real=st.floats(1e-6, 100.0), bits=st.sampled_from([31, 24, 16, 15, 8]))
def test_from_scale_is_quantize_multiplier(real, bits):
    m, n = quantize_multiplier(real, bits)
    f = FixedPointMultiplier.from_scale(real, bits, "half_even")
    assert (f.multiplier, f.right_shift, f.rounding) == (m, n, RoundingMode.HALF_EVEN)
    assert abs(f.real - real) <= real * 2.0**-bits


@given(acc=st.lists(INT32, min_size=1, max_size=8), real=st.floats(1e-6, 0.99))
def test_apply_tflite_is_multiply_by_quantized_multiplier(acc, real):
    f = FixedPointMultiplier.tflite(real)
    x = np.asarray(acc, dtype=np.int64)
    expected = np.clip(multiply_by_quantized_multiplier(x, f.multiplier, f.tflite_exponent), -128, 127)
    np.testing.assert_array_equal(f.apply(x), expected)
    np.testing.assert_array_equal(f.apply(x), requantize(x, f.multiplier, f.right_shift, "tflite"))


@pytest.mark.parametrize("multiplier, right_shift", [(1, -1), (1, 63), (-1, 3), (2**31, 3), (1.5, 3),
                                                     (np.array([1, 2]), np.array([3, 4, 5])),
                                                     (np.ones((2, 2), dtype=np.int64), 3)])
def test_rejects_what_the_ops_reject(multiplier, right_shift):
    with pytest.raises(ValueError):
        FixedPointMultiplier(multiplier, right_shift)


def test_from_scale_refuses_a_left_shift():
    with pytest.raises(ValueError, match="left shift"):
        FixedPointMultiplier.from_scale(40000.0, 15)


def test_value_semantics():
    a = FixedPointMultiplier(np.array([3, 4]), np.array([5, 6]), "tflite")
    b = FixedPointMultiplier.from_tflite(np.array([3, 4]), np.array([26, 25]))
    assert a == b and hash(a) == hash(b)
    assert a != FixedPointMultiplier(np.array([3, 4]), np.array([5, 6]), RoundingMode.HALF_UP)
    with pytest.raises(dataclasses.FrozenInstanceError):
        a.right_shift = 1  # type: ignore[misc]
    assert isinstance(a.multiplier, np.ndarray)
    with pytest.raises(ValueError):
        a.multiplier[0] = 7  # read-only: the constants cannot drift after validation
    assert FixedPointMultiplier(1 << 30, 31).real == 0.5
    with pytest.raises(ValueError, match="per-tensor"):
        a.fold_divisor(3)
