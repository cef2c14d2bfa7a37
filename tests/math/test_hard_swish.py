"""tvm_sima.math.tflite_hard_swish against LiteRT's reference HARD_SWISH kernel (BUILTIN_REF), bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.litert import litert
from helpers.tflite_writer import Op, int8, write_tflite

from tvm_sima import math as sm

CODES = np.arange(-128, 128).astype(np.int8).reshape(1, 256)


def _qp(scale: float, zp: int) -> sm.QParams:
    return sm.QParams(np.float64(scale), np.int64(zp), "int8")


def _hard_swish_model(path, x_q: tuple[float, int], y_q: tuple[float, int]):
    return write_tflite(path, [int8("x", [1, 256], x_q), int8("y", [1, 256], y_q)],
                        [Op("HARD_SWISH", [0], [1])], [0], [1])


def test_every_code_equals_litert_for_random_scales(tmp_path):
    rng = np.random.default_rng(2026)
    for k in range(40):
        s_x = float(np.float32(10 ** rng.uniform(-3, 0)))
        s_y = float(np.float32(s_x * 10 ** rng.uniform(-1.5, 0.5)))
        z_x, z_y = (int(z) for z in rng.integers(-128, 128, size=2))
        path = _hard_swish_model(tmp_path / f"hs{k}.tflite", (s_x, z_x), (s_y, z_y))
        ours = sm.tflite_hard_swish(CODES, _qp(s_x, z_x), _qp(s_y, z_y))
        np.testing.assert_array_equal(ours, litert(path, CODES), err_msg=f"scales {s_x}, {s_y}; zps {z_x}, {z_y}")


def test_it_is_not_the_rounded_function(tmp_path):
    # LiteRT's int16 fixed point differs from quantize(x * relu6(x + 3) / 6) on some codes (by one)
    x_q, y_q = _qp(0.05, -3), _qp(0.03, -100)
    real = sm.dequantize(CODES, x_q)
    exact = sm.quantize(real * np.clip(real + 3, 0, 6) / 6, y_q, "half_away_from_zero")
    ours = sm.tflite_hard_swish(CODES, x_q, y_q)
    diff = np.abs(ours - exact.astype(np.int64))
    assert diff.max() == 1 and 0 < np.count_nonzero(diff) < 16


def test_an_output_scale_litert_refuses_is_an_error():
    with pytest.raises(ValueError, match="LiteRT rejects"):
        sm.tflite_hard_swish(CODES, _qp(1.0, 0), _qp(0.001, 0))  # s_x / 128 / s_y > 1
