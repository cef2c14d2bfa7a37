"""16-bit codes in the shared lowering: products and sums past int32, bit for bit with their NumPy model.

The 8-bit forms keep their int32 accumulators and 31-bit multipliers (checked here too: the
constants of an 8-bit op are the ones it had before wide accumulators existed).
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.relax import run_lowered
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm
from tvm_sima.lowering.arithmetic import fine_grid_bits, lower_add, lower_multiply
from tvm_sima.lowering.pooling import lower_mean
from tvm_sima.lowering.prelu import lower_prelu
from tvm_sima.lowering.resize import lower_resize

RNG = np.random.default_rng(1616)
FLOAT_ROUTE = lowering.Numerics.for_config(tvm_sima.QConfig())
INT32 = (sm.INT32_MIN, sm.INT32_MAX)


def q16(scale: float, zp: int) -> sm.QParams:
    return sm.QParams(scale, zp, "int16")


def test_the_multiplier_leaves_room_for_the_accumulator():
    assert sm.multiplier_bits_for(255 * 255) == 31  # 8-bit products: every bit
    assert sm.multiplier_bits_for(65535 * 65535) == 30  # 32-bit product + 30-bit multiplier < 2**62
    assert sm.multiplier_bits_for(2**40, 15) == 15
    with pytest.raises(ValueError, match="no multiplier bits"):
        sm.multiplier_bits_for(2**62)


@pytest.mark.parametrize("numerics", [FLOAT_ROUTE, lowering.Numerics.tflite()], ids=["float-route", "tflite"])
def test_a_product_of_two_16_bit_tensors_is_int64(numerics):
    # [0, max] grids: zp = qmin, so (a - zp_a)(b - zp_b) reaches 65535**2, past int32 (and int64 with
    # a 31-bit multiplier)
    a_q, b_q, y_q = q16(0.001, -32768), q16(0.0007, -32768), q16(0.02, -32768)
    a = np.full((4, 8), 32767, np.int16)
    a[1] = RNG.integers(-32768, 32768, size=8)
    b = np.full((4, 8), 32767, np.int16)
    b[2] = RNG.integers(-32768, 32768, size=8)
    lowered = lower_multiply(a_q, b_q, y_q, (y_q.qmin, y_q.qmax), "int16", numerics)
    assert lowered.multipliers[0] < 2**30  # 30 bits: 2**32 * 2**30 stays below 2**62
    fpm = sm.FixedPointMultiplier(lowered.multipliers[0], lowered.shifts[0],
                                  "half_up" if numerics is FLOAT_ROUTE else "half_away_from_zero")
    product = (a.astype(np.int64) + 32768) * (b.astype(np.int64) + 32768)
    expected = fpm.apply(product, -32768, -32768, 32767)
    got = run_lowered(lowered, a, b)
    np.testing.assert_array_equal(got, expected)
    exact = np.clip(np.round(0.001 * 0.0007 / 0.02 * product) - 32768, -32768, 32767)
    assert np.abs(got.astype(np.int64) - exact).max() <= 1  # within one code of the real product


def test_the_8_bit_multiply_and_add_keep_their_constants():
    a_q, b_q, y_q = sm.QParams(0.013, 4, "int8"), sm.QParams(0.21, -9, "int8"), sm.QParams(0.05, 1, "int8")
    multiply = lower_multiply(a_q, b_q, y_q, None, "int8", FLOAT_ROUTE)
    assert (multiply.multipliers, multiply.shifts) == ([FLOAT_ROUTE.multiplier(0.013 * 0.21 / 0.05).multiplier],
                                                       [FLOAT_ROUTE.multiplier(0.013 * 0.21 / 0.05).right_shift])
    assert lower_add(a_q, b_q, y_q, None, "int8", FLOAT_ROUTE).shifts[-1] == 8
    assert fine_grid_bits(a_q, b_q, y_q) == 8


def test_a_16_bit_mean_of_many_codes_sums_in_int64():
    # 2 x 65536 codes, most at qmin: the int32 sum (and zp * count) wrap
    x_q, y_q = q16(0.0001, -32768), q16(0.00002, -32768)
    x = np.full((1, 2, 256, 256), -32768, np.int16)
    x[0, 1, :16] = RNG.integers(-32768, 32768, size=(16, 256))
    lowered = lower_mean(list(x.shape), [2, 3], True, x_q, y_q, (y_q.qmin, y_q.qmax), "int16", FLOAT_ROUTE)
    fpm = sm.FixedPointMultiplier(lowered.multipliers[0], lowered.shifts[0])
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True) + 32768 * 65536
    np.testing.assert_array_equal(run_lowered(lowered, x), fpm.apply(total, -32768, -32768, 32767))


def test_a_16_bit_subtract_of_nearly_equal_tensors_takes_a_coarser_fine_grid():
    # s_a / s_y = 500: on a grid 256x finer than the output, a's codes reach 2**32; 64x finer, the sum
    # of both stays below 2**31
    a_q, b_q, y_q = q16(0.5, 0), q16(0.5, 0), q16(0.001, 0)
    assert fine_grid_bits(a_q, b_q, y_q) == 6
    a = RNG.integers(-32768, 32768, size=(64,)).astype(np.int16)
    b = np.clip(a.astype(np.int64) + RNG.integers(-60, 61, size=64), -32768, 32767).astype(np.int16)
    got = run_lowered(lower_add(a_q, b_q, y_q, None, "int16", FLOAT_ROUTE, subtract=True), a, b)
    np.testing.assert_array_equal(got, np.clip((a.astype(np.int64) - b) * 500, -32768, 32767))


@pytest.mark.parametrize("rescaled", [False, True], ids=["same-grid", "rescaled"])
def test_a_16_bit_bilinear_resize_takes_14_bit_taps_in_int64(rescaled):
    x = relax.Var("x", relax.TensorType((1, 2, 5, 7), "float32"))
    call = relax.BlockBuilder().normalize(relax.op.image.resize2d(x, (11, 13), None, "NCHW", "linear", "half_pixel",
                                                                  ""))
    x_q = q16(0.001, -32768)  # [0, max]: |code - zp| up to 65535, times 2**28 of the weights
    y_q = q16(0.0013, -30000) if rescaled else x_q
    lowered = lower_resize(lowering.Request(call, [x_q], y_q, FLOAT_ROUTE))
    assert not isinstance(lowered, str), lowered
    taps = [sm.linear_taps(n, m, "half_pixel", tflite=False, fraction_bits=14) for n, m in ((5, 11), (7, 13))]
    base = FLOAT_ROUTE.multiplier(0.001 / 0.0013, 65535 << 28) if rescaled else sm.FixedPointMultiplier(1, 0)
    fpm = sm.FixedPointMultiplier(base.multiplier, base.right_shift + 28)
    q = RNG.integers(-32768, 32768, size=(1, 2, 5, 7)).astype(np.int16)
    want = sm.resize_bilinear(q, taps, (2, 3), -32768, fpm, int(y_q.zero_point), -32768, 32767)
    np.testing.assert_array_equal(run_lowered(lowered, q), want)


def test_a_16_bit_prelu_is_two_requantizations_not_a_table_per_channel():
    slopes = np.array([0.25, -0.1, 0.0, 1.5, -2.0], dtype="float32")
    x = relax.Var("x", relax.TensorType((1, 5, 3, 4), "float32"))
    call = relax.BlockBuilder().normalize(relax.op.nn.prelu(x, relax.const(slopes), axis=1))
    x_q, y_q = q16(0.0003, -1000), q16(0.0005, 2000)
    lowered = lower_prelu(lowering.Request(call, [x_q], y_q, FLOAT_ROUTE))
    assert not isinstance(lowered, str) and lowered.label == "integer prelu", lowered
    q = RNG.integers(-32768, 32768, size=(1, 5, 3, 4)).astype(np.int16)
    c = q.astype(np.int64) + 1000
    positive = FLOAT_ROUTE.multiplier(0.0003 / 0.0005, 33767)
    per_channel = [FLOAT_ROUTE.multiplier(abs(float(a)) * 0.0003 / 0.0005, 33767) for a in slopes]
    fpm = sm.FixedPointMultiplier(np.array([f.multiplier for f in per_channel]),
                                  np.array([f.right_shift for f in per_channel]))
    negative = np.minimum(c, 0) * np.where(slopes < 0, -1, 1).reshape(1, 5, 1, 1)
    want = np.clip(positive.apply(np.maximum(c, 0), 0, *INT32) + fpm.apply(negative, 0, *INT32, axis=1) + 2000,
                   -32768, 32767)
    got = run_lowered(lowered, q)
    np.testing.assert_array_equal(got, want)
    real = np.where(c >= 0, c, slopes.reshape(1, 5, 1, 1).astype(np.float64) * c) * 0.0003
    assert np.abs(sm.dequantize(got, y_q) - np.clip(real, *sm.dequantize(np.array([-32768, 32767]), y_q))).max() \
        <= 0.0005 / 2 * 1.001  # within half a code of the real prelu


@pytest.mark.parametrize("op", ["add", "subtract_from", "multiply", "divide"])
def test_a_16_bit_op_with_a_constant_tensor_is_one_rounding_of_an_int64_affine_form(op):
    c = np.linspace(-1.5, 2.5, 64).astype("float32").reshape(1, 64, 1, 1)
    build = {"add": relax.op.add, "multiply": relax.op.multiply, "divide": relax.op.divide,
             "subtract_from": lambda x, k: relax.op.subtract(k, x)}[op]
    x = relax.Var("x", relax.TensorType((1, 64, 2, 3), "float32"))
    call = relax.BlockBuilder().normalize(build(x, relax.const(c)))
    x_q, y_q = q16(0.0002, 300), q16(0.0003, -700)
    k, constant, fn = lowering.binary_with_constant(call)
    lowered = lowering.lower_by_constant(x_q, y_q, "half_up", None, constant, fn, "t", "t",
                                         affine=lowering.affine_with_constant(call))
    assert not isinstance(lowered, str) and lowered.label == "integer affine op with a constant"
    q = RNG.integers(-32768, 32768, size=(1, 64, 2, 3)).astype(np.int16)
    got = run_lowered(lowered, q)
    exact = sm.quantize(fn(sm.dequantize(q, x_q), constant.astype(np.float64)), y_q, "half_up")
    assert np.abs(got.astype(np.int64) - exact).max() <= 1  # the int64 constants' rounding: within one code
    assert np.mean(got == exact) > 0.99
