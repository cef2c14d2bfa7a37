"""QParams validation, choose_qparams schemes, reference quantize / dequantize."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tvm_sima.math import MIN_SCALE, QParams, QType, bias_qparams, choose_qparams, dequantize, parse_qtype, quantize

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(scale=0.0, zero_point=0, dtype="int8"), "scale must be finite and > 0"),
        (dict(scale=-0.1, zero_point=0, dtype="int8"), "scale must be finite and > 0"),
        (dict(scale=float("nan"), zero_point=0, dtype="int8"), "scale must be finite and > 0"),
        (dict(scale=float("inf"), zero_point=0, dtype="int8"), "scale must be finite and > 0"),
        (dict(scale=0.1, zero_point=200, dtype="int8"), "zero_point .* outside the range"),
        (dict(scale=0.1, zero_point=0.5, dtype="int8"), "zero_point must hold integers"),
        (dict(scale=0.1, zero_point=0, dtype="float32"), "dtype='float32' is not a quantized integer type"),
        (dict(scale=0.1, zero_point=0, dtype="int17"), "dtype='int17'"),
        (dict(scale=[0.1, 0.2], zero_point=0, dtype="int8"), "axis is required"),
        (dict(scale=0.1, zero_point=0, dtype="int8", axis=0), "axis=0 given but scale is a scalar"),
        (dict(scale=[0.1, 0.2], zero_point=[0, 0, 0], dtype="int8", axis=0), "zero_point shape"),
        (dict(scale=0.1, zero_point=[0, 1], dtype="int8"), "zero_point is per-channel"),
        (dict(scale=0.1, zero_point=0, dtype="uint8", narrow_range=True), "narrow_range applies"),
        (dict(scale="x", zero_point=0, dtype="int8"), "scale='x'"),
    ],
)
def test_qparams_rejects_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        QParams(**kwargs)


def test_qtypes():
    assert parse_qtype("int4") == QType(4, True) and QType(4, True).container == np.int8
    assert (QType(4, True).qmin, QType(4, True).qmax) == (-8, 7)
    assert (parse_qtype(np.uint8).qmin, parse_qtype("uint8").qmax) == (0, 255)
    assert parse_qtype("int48").container == np.int64
    with pytest.raises(ValueError, match="use int48"):
        parse_qtype("uint48")


def test_per_channel_channel_mismatch_is_reported():
    qp = QParams([0.1, 0.2, 0.3], 0, "int8", axis=0)
    with pytest.raises(ValueError, match="x has 4 channels along axis 0 but the quantization parameters have 3"):
        quantize(np.zeros((4, 2)), qp)


def test_schemes_formulas():
    full = choose_qparams(-1.0, 2.55, "symmetric_full", 8)
    assert full.scale == pytest.approx(2.55 / 127.5) and full.zero_point == 0 and full.qmin == -128
    restricted = choose_qparams(-1.0, 2.54, "symmetric_restricted", 8)
    assert restricted.scale == pytest.approx(2.54 / 127) and restricted.qmin == -127
    asym = choose_qparams(-1.0, 3.0, "asymmetric", 8)
    assert asym.scale == pytest.approx(4.0 / 255) and asym.zero_point == round(-128 + 1.0 / (4.0 / 255))
    unsigned = choose_qparams(0.5, 3.0, "asymmetric", 8, signed=False)
    assert unsigned.zero_point == 0 and unsigned.dtype == QType(8, False)
    uint_sym = choose_qparams(-1.0, 1.0, "symmetric_full", 8, signed=False)
    assert uint_sym.zero_point == 128


def test_zero_range_and_all_zero_tensors():
    for scheme in ("symmetric_full", "symmetric_restricted", "asymmetric"):
        qp = choose_qparams(0.0, 0.0, scheme, 8)
        assert qp.scale == 1.0
        assert quantize(np.zeros(5), qp).tolist() == [int(qp.zero_point)] * 5
    tiny = choose_qparams(-1e-45, 1e-45, "symmetric_full", 8)
    assert tiny.scale == MIN_SCALE


def test_per_channel_choose():
    qp = choose_qparams(np.array([-1.0, 0.0, -4.0]), np.array([1.0, 0.0, 2.0]), "symmetric_restricted", 4, axis=0)
    assert qp.per_channel and qp.num_channels == 3 and qp.qmin == -7
    np.testing.assert_allclose(qp.scale, [1 / 7, 1.0, 4 / 7])


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_choose_refuses_non_finite(bad):
    with pytest.raises(ValueError, match="min_val contains (NaN|Inf)|max_val contains (NaN|Inf)"):
        choose_qparams(bad, 1.0)
    with pytest.raises(ValueError, match="max_val contains"):
        choose_qparams(np.array([0.0, 0.0]), np.array([1.0, bad]), axis=0)


@pytest.mark.parametrize("bits", [1, 17, 64, 2.5])
def test_choose_refuses_bad_bits(bits):
    with pytest.raises(ValueError, match="bits="):
        choose_qparams(-1, 1, bits=bits)


def test_bits_per_kind():
    assert choose_qparams(-1, 1, bits=4, kind="weight").dtype == QType(4, True)
    assert choose_qparams(-1, 1, bits=16, kind="activation").dtype == QType(16, True)
    with pytest.raises(ValueError, match=r"bits=4 is not supported for activations; use one of \[8, 16\]"):
        choose_qparams(-1, 1, bits=4, kind="activation")
    with pytest.raises(ValueError, match="bits=32 is not supported for weights"):
        choose_qparams(-1, 1, bits=32, kind="weight")
    with pytest.raises(ValueError, match="kind='bias'"):
        choose_qparams(-1, 1, kind="bias")


def test_choose_refuses_min_above_max():
    with pytest.raises(ValueError, match="min_val is greater than max_val"):
        choose_qparams(np.array([2.0]), np.array([1.0]), axis=0)


@given(
    lo=finite, hi=finite,
    scheme=st.sampled_from(["symmetric_full", "symmetric_restricted", "asymmetric"]),
    bits=st.integers(2, 16),
)
def test_range_is_covered_and_zero_is_exact(lo, hi, scheme, bits):
    lo, hi = min(lo, hi), max(lo, hi)
    qp = choose_qparams(lo, hi, scheme, bits)
    assert qp.qmin <= int(qp.zero_point) <= qp.qmax
    assert dequantize(quantize(0.0, qp), qp) == 0.0
    # Every value of the range is within half a step of its reconstruction, except
    # the symmetric-full top, which saturates by at most one step.
    xs = np.linspace(min(lo, 0), max(hi, 0), 33)
    err = np.abs(dequantize(quantize(xs, qp), qp) - xs)
    assert np.all(err <= float(qp.scale) * (1.0 if scheme == "symmetric_full" else 0.5) * (1 + 1e-9))


@given(bits=st.integers(2, 16), signed=st.booleans(), scale=st.floats(1e-8, 1e4), data=st.data())
def test_quantize_dequantize_roundtrip_on_grid(bits, signed, scale, data):
    qtype = QType(bits, signed)
    zp = data.draw(st.integers(qtype.qmin, qtype.qmax))
    qp = QParams(scale, zp, qtype)
    codes = np.array(data.draw(st.lists(st.integers(qtype.qmin, qtype.qmax), min_size=1, max_size=20)))
    for mode in ("half_even", "half_up", "half_away_from_zero", "tflite"):
        assert np.array_equal(quantize(dequantize(codes, qp), qp, mode), codes)


def test_quantize_per_channel_and_saturation():
    qp = QParams([0.5, 0.25], [0, 10], "int8", axis=1)
    x = np.array([[1.0, 1.0], [1000.0, -1000.0], [np.inf, -np.inf]])
    assert quantize(x, qp).tolist() == [[2, 14], [127, -128], [127, -128]]
    with pytest.raises(ValueError, match="NaN"):
        quantize(np.array([np.nan]), QParams(1.0, 0, "int8"))
    with pytest.raises(ValueError, match="q must hold integer codes"):
        dequantize(np.array([1.5]), QParams(1.0, 0, "int8"))


def test_bias_qparams_is_derived():
    b = bias_qparams(QParams(0.5, 3, "int8"), QParams([0.1, 0.2], 0, "int8", axis=0))
    np.testing.assert_allclose(b.scale, [0.05, 0.1])
    assert b.dtype == QType(32, True) and b.axis == 0 and not b.zero_point.any()
    assert bias_qparams(QParams(0.5, 0, "int16"), QParams(0.1, 0, "int8"), bits=48).dtype.container == np.int64
    with pytest.raises(ValueError, match="bits=16 is not a bias width"):
        bias_qparams(QParams(0.5, 0, "int8"), QParams(0.1, 0, "int8"), bits=16)
