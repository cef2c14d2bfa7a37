"""TFLite's int8 HARD_SWISH (LiteRT's reference kernel), bit for bit, in NumPy.

LiteRT does not compute ``quantize(x * relu6(x + 3) / 6)``: it works in int16 fixed point. The
input ``x - zp_x`` is put on a "high-resolution" scale ``s_x / 128`` (a left shift by 7). Two
int16 multipliers (Q15, from TFLite's ``QuantizeMultiplier`` rounded down to 16 bits) take it to

* the output scale (before the final shift): ``x_hi * M_out`` (rounding doubling high mul);
* the "relu-ish" scale ``3 / 32768``, where ``+-3`` is ``+-32768``: ``relu6(x + 3) / 6`` becomes
  ``(r + 2**15) >> 1`` in ``[0, 2**15)`` after a saturating scale (left shifts saturate in int16);

their (non-rounding) doubling high product, divided by ``2**-exponent`` (rounded half away from
zero), plus ``zp_y``, clipped to int8, is the output. The multipliers come from the float32
scales exactly as LiteRT's ``HardSwishPrepare`` computes them. A function of the input code only,
so :func:`tflite_hard_swish` on the 256 codes is the kernel as a table.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from .qparams import QParams
from .requant import tflite_quantize_multiplier

__all__ = ["tflite_hard_swish", "tflite_hard_swish_multipliers"]

_INT16 = (-(2**15), 2**15 - 1)


def _int16_multiplier(real: np.float32) -> tuple[int, int]:
    """``QuantizeMultiplier`` of a float32 real, its Q31 multiplier rounded to Q15 (saturating)."""
    q31, exponent = tflite_quantize_multiplier(np.float64(real))
    q31 = int(q31)
    q15 = _INT16[1] if q31 >= 2**31 - 1 - 2**15 else (q31 + 2**15) >> 16
    return q15, int(exponent)


def tflite_hard_swish_multipliers(s_x: float, s_y: float) -> tuple[tuple[int, int], tuple[int, int]]:
    """``((M_out, exponent_out), (M_relu, exponent_relu))``: int16 multipliers and TFLite exponents.

    Raises
    ------
    ValueError
        If ``s_x / 128 / s_y`` is not below 1 (LiteRT refuses such a model: a positive exponent).
    """
    hires = np.float32(np.float32(1.0 / 128.0) * np.float32(s_x))
    out = _int16_multiplier(np.float32(hires / np.float32(s_y)))
    if out[1] > 0:
        raise ValueError(f"HARD_SWISH with input scale {s_x} and output scale {s_y}: input_scale / 128 / "
                         "output_scale must be below 1 (LiteRT rejects the model)")
    relu = _int16_multiplier(np.float32(hires / np.float32(np.float32(3.0) / np.float32(32768.0))))
    return out, relu


def _sat16(x: np.ndarray) -> np.ndarray:
    return np.clip(x, *_INT16)


def _rounding_doubling_high_mul16(a: np.ndarray, b: int) -> np.ndarray:
    """gemmlowp's int16 ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**15)``, half away from zero."""
    ab = a.astype(np.int64) * b
    nudged = ab + np.where(ab >= 0, 1 << 14, 1 - (1 << 14))
    high = np.where(nudged >= 0, nudged >> 15, -((-nudged) >> 15))  # C division truncates
    return np.where((a == _INT16[0]) & (b == _INT16[0]), _INT16[1], high)


def _doubling_high_mul16(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """TFLite's int16 ``SaturatingDoublingHighMul``: ``a * b / 2**15`` truncated toward zero."""
    ab = a.astype(np.int64) * b.astype(np.int64)
    high = np.where(ab >= 0, ab >> 15, -((-ab) >> 15))
    return np.where((a == _INT16[0]) & (b == _INT16[0]), _INT16[1], high)


def _divide_by_pot(x: np.ndarray, exponent: int) -> np.ndarray:
    """``x / 2**exponent`` rounded half away from zero (gemmlowp's ``RoundingDivideByPOT``)."""
    if exponent == 0:
        return x
    magnitude = (np.abs(x) + (1 << (exponent - 1))) >> exponent
    return np.sign(x) * magnitude


def tflite_hard_swish(codes: npt.ArrayLike, x_q: QParams, y_q: QParams) -> np.ndarray:
    """LiteRT's int8 HARD_SWISH of the input ``codes`` (module docstring), as int64 codes of ``y_q``."""
    s_x, zp_x = float(np.atleast_1d(x_q.scale)[0]), int(np.atleast_1d(x_q.zero_point)[0])
    s_y, zp_y = float(np.atleast_1d(y_q.scale)[0]), int(np.atleast_1d(y_q.zero_point)[0])
    (m_out, e_out), (m_relu, e_relu) = tflite_hard_swish_multipliers(s_x, s_y)
    hires = (np.asarray(codes, dtype=np.int64) - zp_x) * 128  # fits int16 for 8-bit codes
    on_output = _rounding_doubling_high_mul16(hires, m_out)
    relu = hires
    if e_relu > 0:
        relu = _sat16(relu << (e_relu - 1))
    relu = _rounding_doubling_high_mul16(relu, m_relu)
    if e_relu > 0:
        relu = _sat16(relu << 1)
    elif e_relu < 0:
        relu = _divide_by_pot(relu, -e_relu)
    relu = (relu + (1 << 15)) >> 1
    out = _divide_by_pot(_doubling_high_mul16(relu, on_output), -e_out) + zp_y
    return np.clip(out, y_q.qmin, y_q.qmax)
