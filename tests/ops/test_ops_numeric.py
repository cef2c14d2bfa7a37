"""Every sima op, built with the sima pipeline, bit-exact with the tvm_sima.math references."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.relax import one_input_module, run
from tvm import relax

import tvm_sima.ops as so
from tvm_sima import math as sm
from tvm_sima.testing import random_case

RNG = np.random.default_rng(42)
PER_CHANNEL = sm.QParams([0.1, 0.03, 0.007], [0, 5, -9], "int8", axis=1)
PER_TENSOR = sm.QParams(0.02, -4, "int8")


def real_input(shape):
    x = (RNG.standard_normal(shape) * 2).astype("float32")
    x.flat[:4] = [0.5 * 0.02, -0.5 * 0.02, 2.5 * 0.02, 1e6]  # ties and saturation
    return x


@pytest.mark.parametrize("qp", [PER_TENSOR, PER_CHANNEL], ids=["per_tensor", "per_channel"])
@pytest.mark.parametrize("rounding", ["half_even", "half_up", "half_away_from_zero"])
def test_quantize_dequantize(qp, rounding):
    x = real_input((2, 3, 5))
    mod = one_input_module(x.shape, "float32", lambda bb, v: so.quantize(v, qp, rounding))
    q = run(mod, x)
    np.testing.assert_array_equal(q, sm.quantize(x, qp, rounding))
    mod = one_input_module(x.shape, "int8", lambda bb, v: so.dequantize(v, qp))
    np.testing.assert_array_equal(run(mod, q), sm.dequantize(q, qp).astype("float32"))


def _pixels_on_a_half_lsb_grid() -> tuple[np.ndarray, sm.QParams]:
    """Every 8-bit pixel normalised as PP-OCR does, ``(k / 255 - 0.5) / 0.5`` in float32, on the grid
    ``2 / 255``: the exact quotients are ``k - 127.5``, ties that float32 rounding moves either way."""
    k = np.arange(256, dtype=np.float32)
    x = ((k / np.float32(255) - np.float32(0.5)) / np.float32(0.5)).reshape(4, 64)
    return x, sm.QParams(float(np.float32(2 / 255)), 0, "int8")


@pytest.mark.parametrize("rounding", ["half_even", "half_away_from_zero"])
def test_quantize_in_float32_divides_as_onnx_and_is_bit_exact_with_math(rounding):
    x, qp = _pixels_on_a_half_lsb_grid()
    single = run(one_input_module(x.shape, "float32", lambda bb, v: so.quantize(v, qp, rounding, "float32")), x)
    quotient = (x / np.float32(qp.scale)).astype(np.float64)  # float32 division, as ONNX's reference computes it
    want = np.clip(sm.round_real(quotient, rounding), -128, 127).astype(np.int8)
    np.testing.assert_array_equal(single, want)
    np.testing.assert_array_equal(single, sm.quantize(x, qp, rounding, precision="float32"))
    double = run(one_input_module(x.shape, "float32", lambda bb, v: so.quantize(v, qp, rounding)), x)
    np.testing.assert_array_equal(double, sm.quantize(x, qp, rounding))
    assert (double != single).sum() > 10  # the two precisions do differ on these ties
    with pytest.raises(ValueError, match="precision"):
        sm.quantize(x, qp, rounding, precision="float16")


@pytest.mark.parametrize("rounding", ["half_up", "half_even", "half_away_from_zero", "tflite"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_requantize(rounding, per_channel):
    acc = RNG.integers(-(2**31), 2**31 - 1, (2, 3, 7), dtype=np.int64).astype("int32")
    acc.flat[:3] = [2**31 - 1, -(2**31), 0]
    reals = np.array([3e-6, 0.02, 0.7]) if per_channel else np.array(0.013)
    m, n = sm.quantize_multiplier(reals, 31)
    kwargs = dict(multiplier=m, shift=n, rounding=rounding, zp_out=3, axis=1 if per_channel else None)
    mod = one_input_module(acc.shape, "int32", lambda bb, v: so.requantize(v, **kwargs))
    expected = sm.requantize(acc, m, n, rounding, 3, -128, 127, axis=1 if per_channel else None)
    np.testing.assert_array_equal(run(mod, acc), expected)


def test_requantize_from_qparams():
    q = RNG.integers(-128, 128, (4, 9)).astype("int8")
    in_q, out_q = sm.QParams(0.05, 7, "int8"), sm.QParams(0.11, -20, "int8")
    mod = one_input_module(q.shape, "int8", lambda bb, v: so.requantize(v, input_q=in_q, output_q=out_q))
    m, n = sm.quantize_multiplier(0.05 / 0.11, 31)
    expected = sm.requantize(q.astype(np.int64) - 7, m, n, "half_up", -20)
    np.testing.assert_array_equal(run(mod, q), expected)


def test_simulated_quantize_matches_quantize_then_dequantize():
    x = real_input((3, 8))
    scale = 0.03
    mod = one_input_module(x.shape, "float32", lambda bb, v: so.simulated_quantize(
        v, kind="activation", dom_scale=scale, clip_min=-127, clip_max=127))
    qp = sm.QParams(scale, 0, "int8", narrow_range=True)
    np.testing.assert_array_equal(run(mod, x), sm.dequantize(sm.quantize(x, qp), qp).astype("float32"))


def test_quantize_info_is_identity():
    x = RNG.integers(-128, 128, (2, 3, 4)).astype("int8")
    mod = one_input_module(x.shape, "int8", lambda bb, v: so.quantize_info(v, PER_CHANNEL, name="t"))
    np.testing.assert_array_equal(run(mod, x), x)


def _fused_call(case, mode, v):
    if mode == "shift":
        _, w, b, shift = case.fused_shift()
        mult, zp_out = None, 0
    else:
        b, mult, zp_out, tfl_shift = sm.tflite_requantization_constants(
            case.weight, case.bias, case.zp_x, case.product_q(), case.output_q, case.is_dense)
        w, shift = case.weight, np.asarray(tfl_shift) + 31
    common = dict(shift=shift, multiplier=mult, input_zero_point=case.zp_x, output_zero_point=zp_out)
    bias = relax.const(np.asarray(b, dtype="int32"))
    if case.is_dense:
        return so.dense(v, relax.const(w.astype("int8")), bias, **common)
    c, (kh, kw) = case.conv, w.shape[:2]
    spatial = case.x.shape[1:3] if c["layout"] == "NHWC" else case.x.shape[2:4]
    if c["padding"] == "same":
        pairs = zip(spatial, (kh, kw), c["strides"], strict=True)
        (t, bt), (lf, rt) = (sm.same_padding(size, k, st) for size, k, st in pairs)
        pad = (t, lf, bt, rt)
    else:
        pad = (0, 0, 0, 0)
    kernel = sm.hwigo_to_oihw(w) if c["layout"] == "NCHW" else w.reshape(kh, kw, w.shape[2], -1)
    return so.conv2d(v, relax.const(kernel.astype("int8")), bias, strides=c["strides"], padding=pad,
                     groups=w.shape[3], data_layout=c["layout"], **common)


@pytest.mark.parametrize("mode", ["shift", "tflite"])
@pytest.mark.parametrize("is_dense", [False, True], ids=["conv2d", "dense"])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per_tensor", "per_channel"])
def test_fused_conv_dense_bit_exact(mode, is_dense, per_channel):
    rng = np.random.default_rng(7 + 4 * is_dense + 2 * per_channel + (mode == "tflite"))
    layouts = set()
    for _ in range(3 if is_dense else 6):
        case = random_case(rng, is_dense, per_channel)
        expected = case.fused_shift()[0] if mode == "shift" else case.fused_tflite()
        mod = one_input_module(case.x.shape, "int8", lambda bb, v, c=case: _fused_call(c, mode, v))
        np.testing.assert_array_equal(run(mod, case.x).astype(np.int64), expected)
        layouts.add(case.conv.get("layout"))
    assert is_dense or layouts == {"NCHW", "NHWC"}


@pytest.mark.parametrize("mode", ["tflite", "half_up", "half_even", "half_away_from_zero"])
def test_requantize_expr_on_runtime_values(mode):
    """Multiplier and shift loaded from buffers (nothing for the simplifier to fold), 20000 draws.

    This is the test that caught TVM's simplifier turning min((1 << n) >> 1, 1) into (1 << n) >> 1.
    """
    import tvm
    from tvm import te

    from tvm_sima.topi_ext.rounding import requantize_expr

    rng = np.random.default_rng(3)
    n_items = 20000
    acc = rng.integers(-(2**31), 2**31 - 1, n_items, dtype=np.int64)
    m, n = sm.quantize_multiplier(np.exp(rng.uniform(np.log(1e-6), np.log(0.99), n_items)), 31)
    a, mm, s = (te.placeholder((n_items,), "int64", name=k) for k in "ams")
    y = te.compute((n_items,), lambda i: requantize_expr(a[i], mm[i], s[i], sm.RoundingMode.parse(mode)), name="y")
    lib = tvm.compile(tvm.IRModule({"main": te.create_prim_func([a, mm, s, y])}), target="llvm")
    out = tvm.runtime.tensor(np.zeros(n_items, np.int64))
    lib["main"](*(tvm.runtime.tensor(v) for v in (acc, m, n)), out)
    np.testing.assert_array_equal(out.numpy(), sm.requantize(acc, m, n, mode, 0, -(2**62), 2**62, axis=0))


def test_simulated_quantize_stochastic_is_unbiased_and_reproducible():
    """Each value rounds to a neighbour on the grid; on average to itself; the same seed repeats."""
    scale = 0.25
    x = np.full((64, 128), 0.3 * scale, "float32")  # 0.3 of a step: up with probability 0.3
    x[1::2] = -1.7 * scale  # -1.7 steps: to -2 with probability 0.7
    mod = one_input_module(x.shape, "float32", lambda bb, v: so.simulated_quantize(
        v, kind="activation", dom_scale=scale, clip_min=-127, clip_max=127, rounding="stochastic", seed=5))
    a, b = run(mod, x), run(mod, x)
    np.testing.assert_array_equal(a, b)
    steps = a / scale
    assert set(np.unique(steps[0::2])) == {0.0, 1.0} and set(np.unique(steps[1::2])) == {-2.0, -1.0}
    assert abs(steps[0::2].mean() - 0.3) < 0.02 and abs(steps[1::2].mean() + 1.7) < 0.02


@pytest.mark.parametrize("is_dense", [False, True], ids=["conv2d", "dense"])
def test_16_bit_data_accumulates_past_int32(is_dense):
    # 16-bit codes near the top of their range times int8 weights near 127, summed over 4096 products:
    # about 1.7e10, far past int32. The op accumulates in int64 (the NPU's 48-bit accumulator) for
    # 16-bit data / an int64 bias, and matches the exact NumPy sum bit for bit; it is not offloaded
    # (the C++ kernels are int8 with an int32 bias), so `run` (offload on) checks the TIR route.
    rng = np.random.default_rng(3)
    x = rng.integers(30000, 32767, size=(1, 4096) if is_dense else (1, 1024, 2, 2), dtype=np.int16)
    w = rng.integers(120, 127, size=(3, 4096) if is_dense else (3, 1024, 2, 2), dtype=np.int8)
    bias = np.array([2**40, -(2**40), 7], dtype=np.int64)
    shift = 30
    acc = (sm.dense_accumulate(x, w) if is_dense else
           sm.dense_accumulate(x.reshape(1, -1), w.reshape(3, -1)).reshape(1, 3, 1, 1))
    assert np.abs(acc).max() > 2**31  # int32 accumulation would wrap
    expected = sm.requantize(acc + bias.reshape((1, 3) if is_dense else (1, 3, 1, 1)), 1, shift,
                             sm.RoundingMode.HALF_UP, 0, -(2**15), 2**15 - 1)
    common = dict(shift=shift, multiplier=None, input_zero_point=0, output_zero_point=0, out_dtype="int16")

    def body(bb, v):
        if is_dense:
            return so.dense(v, relax.const(w), relax.const(bias, "int64"), **common)
        return so.conv2d(v, relax.const(w), relax.const(bias, "int64"), strides=(1, 1), padding=(0, 0, 0, 0), groups=1,
                         data_layout="NCHW", **common)

    out = run(one_input_module(x.shape, "int16", body), x)
    np.testing.assert_array_equal(out.astype(np.int64), expected)
