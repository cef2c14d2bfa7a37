"""Fixed-point requantization: a real multiplier as ``(multiplier, right_shift)``.

A real factor ``r >= 0`` is represented as ``r ~= M * 2**-N`` with ``M`` an integer of
``bits`` bits and ``N`` a right shift. Requantizing an int32 accumulator is then

    ``y = clip(round((acc * M) / 2**N) + zp_out, qmin, qmax)``

with the rounding named by a :class:`~tvm_sima.math.RoundingMode`. TFLITE mode reproduces
TFLite's ``MultiplyByQuantizedMultiplier`` (two roundings) bit for bit.
"""

from __future__ import annotations

import enum
from typing import Optional, Union

import numpy as np
import numpy.typing as npt

from .qtypes import INT32_MAX, INT32_MIN
from .rounding import Rng, RoundingMode, round_real, rounding_right_shift

__all__ = [
    "REQUANT_MODE_NAMES",
    "normalize_axis",
    "RequantMode",
    "TFLITE_MULTIPLIER_BITS",
    "HW15_MULTIPLIER_BITS",
    "HW15_MAX_MULTIPLIER",
    "HW_MAX_RIGHT_SHIFT",
    "PRODUCT_BITS",
    "multiplier_bits_for",
    "quantize_multiplier",
    "tflite_quantize_multiplier",
    "saturating_rounding_doubling_high_mul",
    "rounding_divide_by_pot",
    "multiply_by_quantized_multiplier",
    "requantize",
]

#: TFLite's multipliers are Q31: ``M in [2**30, 2**31 - 1]`` (int32 registers).
TFLITE_MULTIPLIER_BITS: int = 31
#: 15-bit hardware multipliers (Zhouyi OPT, many DSPs): ``M <= 32767`` fits a signed int16.
HW15_MULTIPLIER_BITS: int = 15
#: Largest multiplier of 15-bit hardware.
HW15_MAX_MULTIPLIER: int = 2**HW15_MULTIPLIER_BITS - 1
#: A right shift of a 32-bit accumulator is a 5-bit field: at most 31.
HW_MAX_RIGHT_SHIFT: int = 31

#: ``acc * M`` is formed in int64 (``sima.requantize``, the fused ops, :func:`requantize`): it must stay
#: below ``2**62`` in magnitude, leaving a bit for the rounding's addend.
PRODUCT_BITS: int = 62

IntOrArray = Union[int, np.ndarray]


class RequantMode(str, enum.Enum):
    """How a fused conv / dense op requantizes its accumulator.

    - SHIFT: SiMa's form, ``y = round(acc / 2**N)`` with only a right shift ``N``: the scale
      correction is folded into the weights and bias
      (:func:`tvm_sima.math.requantize_qnn_convolution_dense`).
    - MULTIPLIER_SHIFT: TFLite's form, ``y = round(acc * M / 2**N)`` with an integer multiplier
      ``M`` (:func:`tvm_sima.math.tflite_requantization_constants`). The converter calls it
      ``"tflite"`` (rounded as LiteRT does), which :meth:`parse` accepts.
    """

    SHIFT = "shift"
    MULTIPLIER_SHIFT = "multiplier_shift"

    @classmethod
    def parse(cls, value: "RequantMode | str") -> "RequantMode":
        """Accept a member, its value, or ``"tflite"`` (the converter's MULTIPLIER_SHIFT).

        Raises
        ------
        ValueError
            Listing the accepted names.
        """
        if value == "tflite":
            return cls.MULTIPLIER_SHIFT
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"requant_mode={value!r} is not a requantization mode; use one of: {names}, "
                             "tflite (= multiplier_shift)") from None


#: Every name a requantization mode is given by: the converter's "tflite" and the members' values.
REQUANT_MODE_NAMES: tuple[str, ...] = ("tflite", *(m.value for m in RequantMode))


def _reals(real: npt.ArrayLike) -> np.ndarray:
    r = np.asarray(real, dtype=np.float64)
    if not np.all(np.isfinite(r)) or np.any(r < 0):
        raise ValueError(f"real multiplier must be finite and >= 0, got {r.ravel()[:4].tolist()}")
    return r


def _scalar_or_array(values: np.ndarray, like: np.ndarray) -> IntOrArray:
    return int(values) if like.ndim == 0 else values.astype(np.int64)


def quantize_multiplier(
    real: npt.ArrayLike,
    bits: int = TFLITE_MULTIPLIER_BITS,
    *,
    max_shift: Optional[int] = None,
    allow_left_shift: bool = True,
    force_shift_positive: bool = False,
) -> tuple[IntOrArray, IntOrArray]:
    """Represent ``real`` as ``multiplier * 2**-right_shift``.

    The multiplier is normalized, ``2**(bits-1) <= M <= 2**bits - 1`` (a mantissa rounded
    half away from zero, renormalized if it rounds up to ``2**bits``), so the relative
    error is at most ``2**-bits``. ``real == 0`` gives ``(0, 0)``.

    Parameters
    ----------
    real : float or array_like
        Non-negative finite factors (an array gives per-channel results).
    bits : int
        Multiplier width: 31 (TFLite, int32), 15 (``M <= 32767``), or any of 1..31.
    max_shift : int, optional
        Largest right shift the hardware accepts (e.g. :data:`HW_MAX_RIGHT_SHIFT`).
        When ``real`` needs more, ``M = round(real * 2**max_shift)`` is denormalized
        (fewer significant bits; 0 when ``real < 2**-(max_shift+1)``). Default:
        ``bits + 31``, TFLite's range.
    allow_left_shift : bool
        If False, a ``real`` that needs ``right_shift < 0`` (``real >= 2**bits``) raises.
    force_shift_positive : bool
        If True, ``right_shift`` is never negative: such reals saturate to
        ``(2**bits - 1, 0)`` instead of raising (Zhouyi OPT's option). Takes precedence
        over ``allow_left_shift``.

    Returns
    -------
    (multiplier, right_shift)
        Python ints for a scalar ``real``, int64 arrays for an array.
    """
    if not isinstance(bits, (int, np.integer)) or not 1 <= bits <= 31:
        raise ValueError(f"bits={bits!r} is out of range; a multiplier has 1..31 bits")
    r = _reals(real)
    limit = bits + 31 if max_shift is None else int(max_shift)
    if limit < 0 or limit > 62:
        raise ValueError(f"max_shift={max_shift!r} is out of range [0, 62]")
    mantissa, exponent = np.frexp(r)  # r = mantissa * 2**exponent, mantissa in [0.5, 1)
    m = np.floor(mantissa * 2.0**bits + 0.5)  # half away from zero; exact, mantissa * 2**bits < 2**31
    carry = m == 2.0**bits
    m = np.where(carry, m / 2, m)
    n = bits - (exponent + carry)
    over = n > limit
    if np.any(over):
        denorm = round_real(r * np.exp2(limit), RoundingMode.HALF_AWAY_FROM_ZERO)
        m = np.where(over, denorm, m)
        n = np.where(over, limit, n)
    left = (n < 0) & (m > 0)
    if np.any(left):
        if force_shift_positive:
            m = np.where(left, 2.0**bits - 1, m)
            n = np.where(left, 0, n)
        elif not allow_left_shift:
            worst = float(np.max(r[left] if r.ndim else r))
            raise ValueError(
                f"real multiplier {worst:g} needs a left shift with a {bits}-bit multiplier; "
                "pass allow_left_shift=True, force_shift_positive=True, or more bits"
            )
    n = np.where(m == 0, 0, n)
    return _scalar_or_array(m.astype(np.int64), r), _scalar_or_array(n.astype(np.int64), r)


def multiplier_bits_for(acc_bound: int, bits: int = TFLITE_MULTIPLIER_BITS) -> int:
    """The widest multiplier, at most ``bits`` bits, whose product with any ``|acc| <= acc_bound`` fits.

    ``|acc| < 2**L`` (``L = acc_bound.bit_length()``) and ``M < 2**b`` give ``|acc * M| < 2**(L + b)``,
    so ``b = min(bits, PRODUCT_BITS - L)``: 8-bit operands keep every bit (``255 * 255`` needs 16),
    the product of two 16-bit operands (``65535**2``, 32 bits) takes a 30-bit multiplier.

    Raises
    ------
    ValueError
        If ``acc_bound`` is negative, or so large that no multiplier of at least 1 bit fits.
    """
    bound = int(acc_bound)
    if bound < 0:
        raise ValueError(f"acc_bound={acc_bound!r} must be >= 0 (a bound on |acc|)")
    fit = PRODUCT_BITS - bound.bit_length()
    if fit < 1:
        raise ValueError(f"an accumulator of {bound.bit_length()} bits leaves no multiplier bits below "
                         f"2**{PRODUCT_BITS}; split the reduction or narrow its operands")
    return min(int(bits), fit)


def tflite_quantize_multiplier(real: npt.ArrayLike) -> tuple[IntOrArray, IntOrArray]:
    """TFLite's ``QuantizeMultiplier``: ``real = q * 2**(shift - 31)``, bit for bit.

    ``q`` is Q31 in ``[2**30, 2**31 - 1]`` (``std::round`` of the mantissa), ``shift``
    TFLite's exponent (positive means a left shift). Exponents below -31 give ``(0, 0)``;
    above 30 saturate to ``(2**31 - 1, 30)``, as in TFLite.
    """
    r = _reals(real)
    mantissa, exponent = np.frexp(r)
    q = np.floor(mantissa * 2.0**31 + 0.5)  # std::round; exact (the sum needs < 53 bits)
    carry = q == 2.0**31
    q = np.where(carry, q / 2, q)
    shift = exponent + carry
    tiny = shift < -31
    q, shift = np.where(tiny, 0, q), np.where(tiny, 0, shift)
    huge = shift > 30
    q, shift = np.where(huge, 2.0**31 - 1, q), np.where(huge, 30, shift)
    shift = np.where(q == 0, 0, shift)
    return _scalar_or_array(q.astype(np.int64), r), _scalar_or_array(shift.astype(np.int64), r)


def _check_int32(x: np.ndarray, argument: str) -> None:
    if x.size and (x.min() < INT32_MIN or x.max() > INT32_MAX):
        raise ValueError(f"{argument} must fit in int32 for TFLite arithmetic, got range [{x.min()}, {x.max()}]")


def saturating_rounding_doubling_high_mul(a: npt.ArrayLike, b: npt.ArrayLike) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` on int32.

    Rounds half away from zero; ``a == b == INT32_MIN`` saturates to ``INT32_MAX``.
    """
    a64 = np.asarray(a, dtype=np.int64)
    b64 = np.asarray(b, dtype=np.int64)
    _check_int32(a64, "a")
    _check_int32(b64, "b")
    ab = a64 * b64
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))  # C division truncates
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int64)


def rounding_divide_by_pot(x: npt.ArrayLike, exponent: npt.ArrayLike) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``x / 2**exponent`` rounded half away from zero."""
    return rounding_right_shift(x, exponent, RoundingMode.TFLITE)


def multiply_by_quantized_multiplier(
    x: npt.ArrayLike, quantized_multiplier: npt.ArrayLike, shift: npt.ArrayLike
) -> np.ndarray:
    """TFLite's ``MultiplyByQuantizedMultiplier(x, M, shift)`` (double rounding), on int64.

    ``x * 2**max(shift, 0)`` wraps to int32 as TFLite's compiled kernels do; then
    ``RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(x', M), max(-shift, 0))``.

    Parameters
    ----------
    x : array_like of int
        int32 accumulators.
    quantized_multiplier : array_like of int
        Q31 multipliers (from :func:`tflite_quantize_multiplier`).
    shift : array_like of int
        TFLite's exponents: positive is a left shift, negative a right shift.
    """
    x64 = np.asarray(x, dtype=np.int64)
    _check_int32(x64, "x")
    s = np.asarray(shift, dtype=np.int64)
    left = np.maximum(s, 0)
    shifted = ((x64 << left) + 2**31) % 2**32 - 2**31  # int32 wrap-around
    high = saturating_rounding_doubling_high_mul(shifted, quantized_multiplier)
    return rounding_divide_by_pot(high, np.maximum(-s, 0))


def normalize_axis(axis: int, ndim: int) -> int:
    """``axis`` (negative counts from the end) as an index in ``[0, ndim)``; 0 for a scalar (``ndim == 0``),
    which has no channels and takes per-tensor parameters only."""
    return int(axis) % ndim if ndim else 0


def _per_channel(values: npt.ArrayLike, ndim: int, axis: Optional[int], argument: str) -> np.ndarray:
    v = np.asarray(values, dtype=np.int64)
    if v.ndim == 0:
        return v
    if v.ndim != 1 or axis is None:
        raise ValueError(f"{argument} is per-channel (shape {v.shape}); give axis= and a 1-D array")
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def requantize(
    acc: npt.ArrayLike,
    multiplier: npt.ArrayLike,
    right_shift: npt.ArrayLike,
    rounding: RoundingMode | str = RoundingMode.HALF_UP,
    zp_out: npt.ArrayLike = 0,
    qmin: int = -128,
    qmax: int = 127,
    *,
    axis: Optional[int] = None,
    rng: Rng = None,
) -> np.ndarray:
    """``y = clip(round(acc * M / 2**N) + zp_out, qmin, qmax)`` in int64.

    Parameters
    ----------
    acc : array_like of int
        Accumulators (int32 range for TFLITE; ``|acc * M| < 2**62`` otherwise).
    multiplier, right_shift : int or 1-D array_like of int
        ``M`` and ``N`` from :func:`quantize_multiplier`; 1-D arrays are per-channel
        along ``axis``. A negative ``N`` is a left shift (exact, no rounding).
    rounding : RoundingMode or str
        How the single division by ``2**N`` rounds. TFLITE instead applies TFLite's
        two roundings: ``MultiplyByQuantizedMultiplier(acc, M, 31 - N)``, which needs a
        Q31 ``M`` (``N = 31 - tflite_shift``).
    zp_out : int or 1-D array_like
        Output zero point, added after rounding.
    qmin, qmax : int
        Output clip range (the output type's range, or a fused activation's).
    axis : int, optional
        Channel axis of ``acc`` for per-channel arguments.
    rng : int or numpy.random.Generator, optional
        Seed or generator for STOCHASTIC rounding.

    Returns
    -------
    numpy.ndarray of int64
    """
    rounding = RoundingMode.parse(rounding)
    a = np.asarray(acc)
    if not np.issubdtype(a.dtype, np.integer):
        raise ValueError(f"acc must be an integer array, got dtype {a.dtype}")
    a = a.astype(np.int64)
    m = _per_channel(multiplier, a.ndim, axis, "multiplier")
    n = _per_channel(right_shift, a.ndim, axis, "right_shift")
    zp = _per_channel(zp_out, a.ndim, axis, "zp_out")
    if np.any(m < 0):
        raise ValueError("multiplier must be >= 0")
    if qmin > qmax:
        raise ValueError(f"qmin={qmin} is greater than qmax={qmax}")
    if rounding is RoundingMode.TFLITE:
        y = multiply_by_quantized_multiplier(a, m, 31 - n)
    else:
        bound = (int(np.abs(a).max()) if a.size else 0) * int(m.max() if m.size else 0)
        lshift = int(max(0, -int(n.min()))) if n.size else 0
        if bound.bit_length() + lshift > 62:
            raise ValueError(
                f"acc * multiplier needs {bound.bit_length() + lshift} bits; the int64 "
                "reference supports 62 (reduce the multiplier's bits)"
            )
        prod = a * m
        y = np.where(n >= 0, rounding_right_shift(prod, np.maximum(n, 0), rounding, rng), prod << np.maximum(-n, 0))
    return np.clip(y + zp, qmin, qmax)

