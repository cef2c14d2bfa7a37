"""A real factor as the sima ops take it: ``(multiplier, right_shift, rounding)``.

:class:`FixedPointMultiplier` is the one place where TFLite's conventions (a Q31 multiplier
with an exponent, positive meaning a left shift) become the ops' convention (a multiplier and a
non-negative **right** shift of the product). Callers build it with a constructor and read its
fields; none of them adds or subtracts 31.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

import numpy as np
import numpy.typing as npt

from .qtypes import INT32_MAX
from .requant import TFLITE_MULTIPLIER_BITS, IntOrArray, quantize_multiplier, requantize, tflite_quantize_multiplier
from .rounding import Rng, RoundingMode

__all__ = ["MAX_TOTAL_RIGHT_SHIFT", "FixedPointMultiplier"]

#: The ops shift a 64-bit product ``acc * M`` right: at most 62 (``sima.requantize``, fused ops).
MAX_TOTAL_RIGHT_SHIFT: int = 62

#: TFLite's MEAN shifts the multiplier left by at most 32 bits before dividing by the count.
_MEAN_MAX_FOLD_SHIFT: int = 32

IntOrList = Union[int, list]


def _field(values: npt.ArrayLike, name: str, lo: int, hi: int) -> IntOrArray:
    v = np.asarray(values)
    if not np.issubdtype(v.dtype, np.integer) or v.ndim > 1:
        raise ValueError(f"{name} must be an int or a 1-D integer array (per channel), got {values!r}")
    if v.size and (v.min() < lo or v.max() > hi):
        raise ValueError(f"{name} must be in [{lo}, {hi}], got {v.ravel()[:4].tolist()}")
    if v.ndim == 0:
        return int(v)
    out = v.astype(np.int64)
    out.flags.writeable = False
    return out


@dataclass(frozen=True, eq=False)
class FixedPointMultiplier:
    """A non-negative real factor ``r ~= multiplier * 2**-right_shift``, applied as

        ``y = round((x * multiplier) / 2**right_shift)``, i.e. ``(x * multiplier) >> right_shift``

    with the rounding named by ``rounding``. TFLITE means TFLite's
    ``MultiplyByQuantizedMultiplier(x, multiplier, 31 - right_shift)`` (two roundings, a Q31
    ``multiplier``); every other mode rounds the single division once.

    Parameters
    ----------
    multiplier : int or 1-D array of int
        ``M`` in ``[0, 2**31 - 1]``; an array is one per output channel.
    right_shift : int or 1-D array of int
        ``N`` in ``[0, 62]`` (:data:`MAX_TOTAL_RIGHT_SHIFT`): the ops' ``shift`` attribute.
    rounding : RoundingMode or str
        Parsed with :meth:`RoundingMode.parse`.
    """

    multiplier: IntOrArray
    right_shift: IntOrArray
    rounding: RoundingMode = RoundingMode.HALF_UP

    def __post_init__(self) -> None:
        m = _field(self.multiplier, "multiplier", 0, INT32_MAX)
        n = _field(self.right_shift, "right_shift", 0, MAX_TOTAL_RIGHT_SHIFT)
        if isinstance(m, np.ndarray) and isinstance(n, np.ndarray) and m.shape != n.shape:
            raise ValueError(f"multiplier {m.shape} and right_shift {n.shape} have different channel counts")
        object.__setattr__(self, "multiplier", m)
        object.__setattr__(self, "right_shift", n)
        object.__setattr__(self, "rounding", RoundingMode.parse(self.rounding))

    @classmethod
    def from_scale(
        cls,
        real: npt.ArrayLike,
        bits: int = TFLITE_MULTIPLIER_BITS,
        rounding: Union[RoundingMode, str] = RoundingMode.HALF_UP,
        *,
        max_shift: Optional[int] = None,
    ) -> "FixedPointMultiplier":
        """``real ~= M * 2**-N`` with a normalized ``bits``-bit ``M`` (:func:`quantize_multiplier`).

        Raises
        ------
        ValueError
            If ``real`` needs a left shift (``real >= 2**bits``) or is negative / not finite.
        """
        m, n = quantize_multiplier(real, bits, max_shift=max_shift, allow_left_shift=False)
        return cls(m, n, RoundingMode.parse(rounding))

    @classmethod
    def from_tflite(cls, multiplier: IntOrArray, exponent: IntOrArray,
                    rounding: Union[RoundingMode, str] = RoundingMode.TFLITE) -> "FixedPointMultiplier":
        """From TFLite's ``(quantized_multiplier, shift)``: ``r = M * 2**(exponent - 31)``.

        ``exponent`` is TFLite's ``shift`` (positive is a left shift), as returned by
        :func:`tflite_quantize_multiplier`; the right shift is ``31 - exponent``.
        """
        e = np.asarray(exponent, dtype=np.int64)
        return cls(multiplier, TFLITE_MULTIPLIER_BITS - (int(e) if e.ndim == 0 else e), RoundingMode.parse(rounding))

    @classmethod
    def from_q31_right_shift(cls, multiplier: IntOrArray, shift: IntOrArray,
                             rounding: Union[RoundingMode, str] = RoundingMode.TFLITE) -> "FixedPointMultiplier":
        """From a Q31 multiplier and a right shift after it: ``r = M * 2**-31 * 2**-shift``.

        ``shift`` is TFLite's exponent negated, as returned by
        :func:`~tvm_sima.math.tflite_requantization_constants`.
        """
        s = np.asarray(shift, dtype=np.int64)
        return cls.from_tflite(multiplier, -int(s) if s.ndim == 0 else -s, rounding)

    @classmethod
    def tflite(cls, real: npt.ArrayLike, rounding: Union[RoundingMode, str] = RoundingMode.TFLITE
               ) -> "FixedPointMultiplier":
        """TFLite's ``QuantizeMultiplier(real)`` (:func:`tflite_quantize_multiplier`), bit for bit."""
        return cls.from_tflite(*tflite_quantize_multiplier(real), rounding)

    @property
    def per_channel(self) -> bool:
        """True when the multiplier or the shift is one per channel."""
        return isinstance(self.multiplier, np.ndarray) or isinstance(self.right_shift, np.ndarray)

    @property
    def tflite_exponent(self) -> IntOrArray:
        """TFLite's ``shift`` for this multiplier: ``31 - right_shift`` (positive is a left shift)."""
        return TFLITE_MULTIPLIER_BITS - self.right_shift

    @property
    def real(self) -> Union[float, np.ndarray]:
        """The factor represented, ``multiplier * 2**-right_shift`` (float64)."""
        r = np.asarray(self.multiplier, dtype=np.float64) * np.exp2(-np.asarray(self.right_shift, dtype=np.float64))
        return float(r) if r.ndim == 0 else r

    def fold_divisor(self, count: int) -> "FixedPointMultiplier":
        """``r / count`` with the division inside the multiplier, as TFLite's int8 MEAN does.

        ``k = min(floor(log2(count)), 32, 62 - N)``, ``M' = floor(M * 2**k / count)`` (truncating)
        and ``N' = N + k``: TFLite's ``shift = min(63 - clz(count), 32, 31 + output_shift)`` in
        right-shift terms. Per-tensor only.
        """
        if self.per_channel:
            raise ValueError("fold_divisor takes a per-tensor multiplier")
        if not isinstance(count, (int, np.integer)) or count < 1:
            raise ValueError(f"count={count!r} must be a positive int")
        n = int(self.right_shift)
        k = min(int(count).bit_length() - 1, _MEAN_MAX_FOLD_SHIFT, MAX_TOTAL_RIGHT_SHIFT - n)
        return FixedPointMultiplier((int(self.multiplier) << k) // int(count), n + k,
                                    self.rounding)

    def op_args(self) -> dict[str, Any]:
        """``multiplier``, ``shift`` and ``rounding`` as the sima ops take them (ints or lists)."""
        return {"multiplier": _attr(self.multiplier), "shift": _attr(self.right_shift), "rounding": self.rounding}

    def apply(self, acc: npt.ArrayLike, zp_out: npt.ArrayLike = 0, qmin: int = -128, qmax: int = 127, *,
              axis: Optional[int] = None, rng: Rng = None) -> np.ndarray:
        """``clip(round(acc * M / 2**N) + zp_out, qmin, qmax)``: :func:`~tvm_sima.math.requantize`."""
        return requantize(acc, self.multiplier, self.right_shift, self.rounding, zp_out, qmin, qmax, axis=axis,
                          rng=rng)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, FixedPointMultiplier):
            return NotImplemented
        return (self.rounding is other.rounding and np.array_equal(self.multiplier, other.multiplier)
                and np.array_equal(self.right_shift, other.right_shift))

    def __hash__(self) -> int:
        return hash((_key(self.multiplier), _key(self.right_shift), self.rounding))


def _attr(v: IntOrArray) -> IntOrList:
    return v.tolist() if isinstance(v, np.ndarray) else int(v)


def _key(v: IntOrArray) -> Union[int, tuple]:
    return tuple(v.tolist()) if isinstance(v, np.ndarray) else v
