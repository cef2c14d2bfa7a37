"""The NumPy bilinear resize (``tvm_sima.math.resize``) against LiteRT's int8 RESIZE_BILINEAR and float resize.

LiteRT (``BUILTIN_REF``) runs one-op int8 files written by ``helpers.tflite_writer``.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.litert import litert
from helpers.tflite_writer import resize_bilinear_tflite

from tvm_sima import math as sm

RNG = np.random.default_rng(15)
GEOMETRIES = [((1, 4, 4, 2), (8, 8)), ((1, 5, 7, 3), (11, 6)), ((2, 3, 3, 1), (7, 9)), ((1, 7, 5, 2), (3, 2))]
FLAGS = {"asymmetric": (False, False), "align_corners": (True, False), "half_pixel": (False, True)}


@pytest.mark.parametrize("mode", sorted(FLAGS))
@pytest.mark.parametrize("shape,size", GEOMETRIES, ids=[f"{s[1]}x{s[2]}->{z[0]}x{z[1]}" for s, z in GEOMETRIES])
def test_tflite_resize_bilinear_is_litert_bit_for_bit(tmp_path, mode, shape, size):
    align_corners, half_pixel = FLAGS[mode]
    path = resize_bilinear_tflite(tmp_path / "resize.tflite", shape, size, (0.05, 3), align_corners=align_corners,
                                  half_pixel_centers=half_pixel)
    x = RNG.integers(-128, 128, size=shape).astype("int8")
    np.testing.assert_array_equal(sm.tflite_resize_bilinear(x, size, align_corners=align_corners,
                                                            half_pixel_centers=half_pixel), litert(path, x))


def test_litert_rounds_ties_of_negative_codes_away_from_zero(tmp_path):
    # A 2x upsample puts every other output halfway between two codes: an odd negative sum is a tie.
    x = np.array([-3, -6, 5, 8], dtype="int8").reshape(1, 1, 4, 1)
    path = resize_bilinear_tflite(tmp_path / "resize.tflite", x.shape, (1, 8), (0.05, 0))
    taps = [sm.linear_taps(1, 1, "asymmetric", tflite=True), sm.linear_taps(4, 8, "asymmetric", tflite=True)]
    half_up = sm.resize_bilinear(x, taps, (1, 2), 0, sm.FixedPointMultiplier(1, 20, "half_up"), 0, -128, 127)
    expected = sm.tflite_resize_bilinear(x, (1, 8))
    assert expected.ravel().tolist() == [-3, -5, -6, -1, 5, 7, 8, 8]  # -4.5 -> -5, 6.5 -> 7
    assert not np.array_equal(half_up, expected)
    np.testing.assert_array_equal(litert(path, x), expected)


def test_tflite_taps_differ_from_the_exact_ones_where_the_scale_is_not_a_10_bit_number():
    exact, tflite = (sm.linear_taps(3, 7, "asymmetric", tflite=t) for t in (False, True))
    assert exact.w_hi.tolist() != tflite.w_hi.tolist()  # 1024 * 3 / 7 = 438.86 -> 439, drifting with the index
    np.testing.assert_array_equal(tflite.w_lo + tflite.w_hi, 1 << sm.RESIZE_FRACTION_BITS)


@pytest.mark.parametrize("mode", sm.LINEAR_COORDINATE_MODES)
def test_exact_taps_are_the_float_interpolation_within_a_quarter_code(mode):
    # Reference: separable linear interpolation at the real source coordinates, in float64.
    x = RNG.integers(-128, 128, size=(1, 2, 5, 7)).astype("int8")
    taps = [sm.linear_taps(5, 12, mode, tflite=False), sm.linear_taps(7, 3, mode, tflite=False)]
    acc = sm.resize_accumulate(x, taps, (2, 3)) / 2.0 ** (2 * sm.RESIZE_FRACTION_BITS)
    real = x.astype(np.float64)
    for axis, (n_in, n_out) in zip((2, 3), ((5, 12), (7, 3)), strict=True):
        real = np.apply_along_axis(lambda v, n_in=n_in, n_out=n_out: np.interp(_coords(n_in, n_out, mode),
                                                                               np.arange(n_in), v), axis, real)
    assert np.abs(acc - real).max() <= 0.25


def _coords(n_in: int, n_out: int, mode: str) -> np.ndarray:
    o = np.arange(n_out, dtype=np.float64)
    if mode == "align_corners":
        return o * (n_in - 1) / (n_out - 1)
    if mode == "asymmetric":
        return o * n_in / n_out
    return (o + 0.5) * n_in / n_out - 0.5  # half_pixel, pytorch_half_pixel (n_out > 1); np.interp clamps


def test_bad_coordinate_modes_and_sizes_are_refused_by_name():
    with pytest.raises(ValueError, match="tf_crop_and_resize"):
        sm.linear_taps(4, 8, "tf_crop_and_resize", tflite=False)
    with pytest.raises(ValueError, match="pytorch_half_pixel"):
        sm.linear_taps(4, 8, "pytorch_half_pixel", tflite=True)
    with pytest.raises(ValueError, match="at least 1"):
        sm.linear_taps(0, 8, "half_pixel", tflite=False)
