"""Fixed-point element-wise arithmetic and LUTs against float references."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_sima.math import (
    HW15_MAX_MULTIPLIER,
    QParams,
    add_params,
    apply_lut,
    build_lut,
    clip_bounds,
    dequantize,
    fixed_point_add,
    fixed_point_max,
    fixed_point_min,
    fixed_point_mul,
    fixed_point_relu,
    fixed_point_relu6,
    fixed_point_sub,
    pad_value,
    quantize,
)

qp8 = st.builds(lambda s, z: QParams(s, z, "int8"), st.floats(1e-3, 1.0), st.integers(-128, 127))
codes = np.arange(-128, 128)


def exact_codes(real: np.ndarray, q: QParams) -> np.ndarray:
    return real / float(q.scale) + int(q.zero_point)


@given(a_q=qp8, b_q=qp8, y_q=qp8)
def test_add_sub_within_documented_bound(a_q, b_q, y_q):
    """|y - y*| <= 1/2 + 2**-14 * (|A*| + |B*|): each term carries two 15-bit factors."""
    a, b = np.meshgrid(codes[::5], codes[::3])
    p = add_params(a_q, b_q, y_q)
    assert all(0 <= m <= HW15_MAX_MULTIPLIER for m in (p.m1, p.m2, p.m3)) and p.n1 >= p.n2
    term_a = (a - int(a_q.zero_point)) * float(a_q.scale) / float(y_q.scale)
    term_b = (b - int(b_q.zero_point)) * float(b_q.scale) / float(y_q.scale)
    bound = 0.5 + 2.0**-14 * (1 + 1e-6) * (np.abs(term_a) + np.abs(term_b)) + 1e-9
    for fn, sign in ((fixed_point_add, 1), (fixed_point_sub, -1)):
        exact = np.clip(term_a + sign * term_b + int(y_q.zero_point), -128, 127)
        assert np.all(np.abs(fn(a, b, a_q, b_q, y_q) - exact) <= bound)


@given(a_q=qp8, b_q=qp8, y_q=qp8)
def test_mul_max_min(a_q, b_q, y_q):
    """One 15-bit factor each: |y - y*| <= 1/2 + 2**-15 * |y* - zp_y| (before clipping)."""
    a, b = np.meshgrid(codes[::7], codes[::5])
    ra, rb = dequantize(a, a_q), dequantize(b, b_q)
    for fn, real in ((fixed_point_mul, np.multiply), (fixed_point_max, np.maximum), (fixed_point_min, np.minimum)):
        unclipped = exact_codes(real(ra, rb), y_q)
        bound = 0.5 + 2.0**-15 * (1 + 1e-6) * np.abs(unclipped - int(y_q.zero_point)) + 1e-9
        assert np.all(np.abs(fn(a, b, a_q, b_q, y_q) - np.clip(unclipped, -128, 127)) <= bound)


def test_add_example_and_swap():
    a_q, b_q, y_q = QParams(0.02, 5, "int8"), QParams(0.1, 0, "int8"), QParams(0.2, -3, "int8")
    p = add_params(a_q, b_q, y_q)
    assert p.swapped  # 1/0.1 = 20480 / 2**11 needs a larger shift than 1/0.02 = 25600 / 2**9
    y = fixed_point_add(np.array([55, 105]), np.array([10, -50]), a_q, b_q, y_q)
    assert y.tolist() == [round((1.0 + 1.0) / 0.2) - 3, round((-5.0 + 2.0) / 0.2) - 3]


def test_activations_and_pad():
    q = QParams(0.05, -10, "int8")
    assert clip_bounds(0.0, 6.0, q) == (-10, 110)
    assert fixed_point_relu(np.array([-128, -11, -10, 50]), q).tolist() == [-10, -10, -10, 50]
    assert fixed_point_relu6(np.array([-128, 100, 127]), q).tolist() == [-10, 100, 110]
    assert clip_bounds(None, None, q) == (-128, 127)
    assert pad_value(0.0, q) == -10 and pad_value(1.0, q) == 10
    with pytest.raises(ValueError, match="pad value 100.0 is outside the representable range"):
        pad_value(100.0, q)
    with pytest.raises(ValueError, match="lower bound 2 is greater than upper bound 1"):
        clip_bounds(2, 1, q)
    with pytest.raises(ValueError, match="a_q must be per-tensor"):
        add_params(QParams([0.1, 0.2], 0, "int8", axis=0), q, q)


@pytest.mark.parametrize("fn", [np.tanh, lambda x: 1 / (1 + np.exp(-x)), np.exp])
def test_exact_lut_equals_float_then_quantize(fn):
    in_q, out_q = QParams(0.05, 3, "int8"), QParams(1 / 128, -20, "int8")
    lut = build_lut(fn, in_q, out_q)
    assert lut.table.size == 256 and lut.index_shift == 0
    expected = quantize(fn(dequantize(codes, in_q)), out_q)
    assert np.array_equal(apply_lut(codes, lut), expected)


def test_interpolated_lut_int16_sigmoid():
    """A 2**10-entry table for int16 input: within 1 LSB of exact on every code (measured)."""
    in_q, out_q = QParams(8.0 / 32768, 0, "int16"), QParams(1.0 / 32768, -32768, "int16")
    sigmoid = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    lut = build_lut(sigmoid, in_q, out_q, lut_items_in_bits=10)
    assert lut.table.size == 2**10 + 1 and lut.index_shift == 6
    allq = np.arange(-32768, 32768)
    exact = np.clip(exact_codes(sigmoid(dequantize(allq, in_q)), out_q), -32768, 32767)
    err = np.abs(apply_lut(allq, lut) - exact)
    assert err.max() <= 1.0 + 1e-9


def test_lut_errors():
    q = QParams(0.1, 0, "int8")
    with pytest.raises(ValueError, match="fn returned NaN"):
        build_lut(np.log, q, q)
    with pytest.raises(ValueError, match="per-tensor"):
        build_lut(np.tanh, QParams([0.1], 0, "int8", axis=0), q)
    with pytest.raises(ValueError, match="codes outside the range of int8"):
        apply_lut(np.array([300]), build_lut(np.tanh, q, q))
