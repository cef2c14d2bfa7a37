"""Affine quantization parameters, schemes, and reference quantize / dequantize.

Convention (ONNX, TFLite, PyTorch): ``real = scale * (q - zero_point)``, ``scale > 0``.
"""

from __future__ import annotations

import enum
from typing import Optional, Union

import numpy as np
import numpy.typing as npt

from .qtypes import ACTIVATION_BITS, WEIGHT_BITS, QType, parse_qtype
from .rounding import Rng, RoundingMode, round_real

__all__ = [
    "Granularity",
    "QParams",
    "QScheme",
    "choose_qparams",
    "quantize",
    "QUANTIZE_PRECISIONS",
    "dequantize",
    "bias_qparams",
    "clamp_codes",
    "MIN_SCALE",
]

#: Smallest scale choose_qparams returns: the smallest normal float32, so every scale
#: we produce is representable in the float32 fields of ONNX / TFLite files.
MIN_SCALE: float = float(np.finfo(np.float32).tiny)


class QScheme(str, enum.Enum):
    """How the integer grid is placed over the real range ``[min, max]``.

    For ``n`` bits, signed:

    - SYMMETRIC_FULL: ``zero_point = 0``, codes ``[-2**(n-1), 2**(n-1)-1]``,
      ``scale = amax / ((qmax - qmin) / 2)`` (``amax / 127.5`` for int8, as PyTorch).
    - SYMMETRIC_RESTRICTED: ``zero_point = 0``, codes ``[-(2**(n-1)-1), 2**(n-1)-1]``,
      ``scale = amax / qmax`` (``amax / 127``, as TFLite and ONNX Runtime weights).
    - ASYMMETRIC: ``scale = (max - min) / (qmax - qmin)``,
      ``zero_point = round(qmin - min / scale)``.

    ``amax = max(|min|, |max|)``; the range always includes 0 so that 0 is exact.
    """

    SYMMETRIC_FULL = "symmetric_full"
    SYMMETRIC_RESTRICTED = "symmetric_restricted"
    ASYMMETRIC = "asymmetric"

    @classmethod
    def parse(cls, value: "QScheme | str") -> "QScheme":
        """Accept a member or its value; raise ValueError listing the choices."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"scheme={value!r} is not a quantization scheme; use {names}") from None


class Granularity(str, enum.Enum):
    """How many ``(scale, zero_point)`` pairs a tensor has.

    - PER_TENSOR: one pair for the whole tensor (``QParams.axis is None``).
    - PER_CHANNEL: one pair per slice along a channel axis (``QParams.axis``), as
      ``[qmin, qmax]`` codes of ``scale[c] * (q - zero_point[c])``.
    """

    PER_TENSOR = "per_tensor"
    PER_CHANNEL = "per_channel"

    @classmethod
    def parse(cls, value: "Granularity | str") -> "Granularity":
        """Accept a member or its value; raise ValueError listing the choices."""
        try:
            return cls(value)
        except ValueError:
            names = ", ".join(m.value for m in cls)
            raise ValueError(f"granularity={value!r} is not a quantization granularity; use {names}") from None


def _float_array(value: npt.ArrayLike, argument: str) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{argument}={value!r} is not a number or an array of numbers") from None


class QParams:
    """Quantization parameters of one tensor: ``real = scale * (q - zero_point)``.

    Immutable; ``scale`` is stored as float64 and ``zero_point`` as int64 arrays (0-d for
    per-tensor, 1-D for per-channel).

    Parameters
    ----------
    scale : float or array_like
        Positive, finite step. A scalar for per-tensor quantization, a 1-D array (one
        per channel along ``axis``) for per-channel.
    zero_point : int or array_like
        Integer code of real 0, inside the range of ``dtype``; broadcast to ``scale``.
    dtype : str or QType
        ``"int8"``, ``"uint8"``, ``"int4"``, ``"int16"``, ``"int32"``, ``"int48"``...
    axis : int, optional
        Channel axis of the tensor for per-channel parameters; ``None`` for per-tensor.
    narrow_range : bool
        Use ``[qmin + 1, qmax]`` for signed types (symmetric restricted range).

    Raises
    ------
    ValueError
        Naming the argument: non-finite or non-positive scale, zero point out of range or
        not an integer, per-channel shapes inconsistent, axis missing or given needlessly.
    """

    __slots__ = ("scale", "zero_point", "dtype", "axis", "narrow_range")
    scale: np.ndarray
    zero_point: np.ndarray
    dtype: QType
    axis: Optional[int]
    narrow_range: bool

    def __init__(
        self,
        scale: npt.ArrayLike,
        zero_point: npt.ArrayLike,
        dtype: Union[str, QType, np.dtype, type],
        axis: Optional[int] = None,
        narrow_range: bool = False,
    ) -> None:
        qtype = parse_qtype(dtype)
        scale_arr = _float_array(scale, "scale")
        if scale_arr.ndim > 1:
            raise ValueError(f"scale must be a scalar or 1-D (one per channel), got shape {scale_arr.shape}")
        good = np.isfinite(scale_arr) & (scale_arr > 0)
        if not np.all(good):
            raise ValueError(f"scale must be finite and > 0, got {scale_arr[~good].ravel()[:4].tolist()}")
        zp = _float_array(zero_point, "zero_point")
        if not np.all(zp == np.round(zp)):
            raise ValueError(f"zero_point must hold integers, got {zp.ravel()[:4].tolist()}")
        if zp.ndim > 1 or (zp.ndim == 1 and scale_arr.ndim == 1 and zp.shape != scale_arr.shape):
            raise ValueError(f"zero_point shape {zp.shape} does not match scale shape {scale_arr.shape}")
        if zp.ndim == 1 and scale_arr.ndim == 0:
            raise ValueError("zero_point is per-channel but scale is per-tensor; give one scale per channel")
        if np.any(zp < qtype.qmin) or np.any(zp > qtype.qmax):
            raise ValueError(
                f"zero_point {zp.ravel()[:4].tolist()} outside the range [{qtype.qmin}, {qtype.qmax}] of {qtype}"
            )
        if scale_arr.ndim == 1 and axis is None:
            raise ValueError("axis is required when scale is per-channel (a 1-D array)")
        if scale_arr.ndim == 0 and axis is not None:
            raise ValueError(f"axis={axis} given but scale is a scalar; pass a 1-D scale per channel")
        if narrow_range and not qtype.signed:
            raise ValueError(f"narrow_range applies to signed types only, got {qtype}")
        for name, value in (
            ("scale", scale_arr),
            ("zero_point", np.broadcast_to(zp, scale_arr.shape).astype(np.int64)),
            ("dtype", qtype),
            ("axis", None if axis is None else int(axis)),
            ("narrow_range", bool(narrow_range)),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"QParams is immutable; build a new one instead of setting {name}")

    @property
    def qmin(self) -> int:
        """Smallest code used (``dtype.qmin + 1`` with narrow_range)."""
        return self.dtype.qmin + int(self.narrow_range)

    @property
    def qmax(self) -> int:
        """Largest code used."""
        return self.dtype.qmax

    @property
    def per_channel(self) -> bool:
        """True when scale is one value per channel along :attr:`axis`."""
        return self.axis is not None

    @property
    def num_channels(self) -> int:
        """Number of channels (1 for per-tensor)."""
        return int(self.scale.size)

    def broadcastable(self, values: np.ndarray, ndim: int) -> np.ndarray:
        """Reshape a per-channel vector so it broadcasts along :attr:`axis` of an ``ndim`` tensor."""
        if self.axis is None:
            return values
        shape = [1] * ndim
        shape[self.axis] = -1
        return values.reshape(shape)

    def check_tensor(self, shape: tuple[int, ...], argument: str = "tensor") -> None:
        """Raise ValueError if per-channel parameters do not fit a tensor of ``shape``."""
        axis = self.axis
        if axis is None:
            return
        ndim = len(shape)
        if not -ndim <= axis < ndim:
            raise ValueError(f"axis={axis} is out of range for {argument} of rank {ndim}")
        if shape[axis] != self.num_channels:
            raise ValueError(
                f"{argument} has {shape[axis]} channels along axis {axis} "
                f"but the quantization parameters have {self.num_channels}"
            )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking arrays inside: not hashable

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, QParams)
            and self.dtype == other.dtype
            and self.axis == other.axis
            and self.narrow_range == other.narrow_range
            and np.array_equal(self.scale, other.scale)
            and np.array_equal(self.zero_point, other.zero_point)
        )

    def __repr__(self) -> str:
        scale = self.scale.tolist()
        zp = self.zero_point.tolist()
        extra = f", axis={self.axis}" if self.per_channel else ""
        extra += ", narrow_range=True" if self.narrow_range else ""
        return f"QParams(scale={scale}, zero_point={zp}, dtype='{self.dtype}'{extra})"


def _check_range(min_val: np.ndarray, max_val: np.ndarray) -> None:
    for name, arr in (("min_val", min_val), ("max_val", max_val)):
        if not np.all(np.isfinite(arr)):
            kind = "NaN" if np.any(np.isnan(arr)) else "Inf"
            raise ValueError(
                f"{name} contains {kind}; trim non-finite values from the statistics "
                "(calibration option trim_infinity_before_statistic) before choosing qparams"
            )
    if min_val.shape != max_val.shape:
        raise ValueError(f"min_val shape {min_val.shape} differs from max_val shape {max_val.shape}")
    if np.any(min_val > max_val):
        raise ValueError("min_val is greater than max_val for some channel")


def choose_qparams(
    min_val: npt.ArrayLike,
    max_val: npt.ArrayLike,
    scheme: QScheme | str = QScheme.SYMMETRIC_FULL,
    bits: int = 8,
    *,
    signed: bool = True,
    axis: Optional[int] = None,
    kind: Optional[str] = None,
) -> QParams:
    """Choose scale and zero point so that ``[min_val, max_val]`` (extended to include 0) fits.

    Formulas are given in :class:`QScheme`. A tensor that is all zeros (range ``[0, 0]``)
    gets ``scale = 1`` and the scheme's zero point, so it quantizes to that zero point
    exactly. Scales are never below :data:`MIN_SCALE`.

    Parameters
    ----------
    min_val, max_val : float or array_like
        Observed range; 1-D arrays (with ``axis``) give per-channel parameters.
    scheme : QScheme or str
        ``"symmetric_full"``, ``"symmetric_restricted"`` or ``"asymmetric"``.
    bits : int
        2..16 (weights 2-16, activations 8 or 16) or 32.
    signed : bool
        Signed codes (``int8``) or unsigned (``uint8``).
    axis : int, optional
        Channel axis of the tensor, required for per-channel ranges.
    kind : {"weight", "activation"}, optional
        Checks ``bits`` against what the datapath supports: weights 2..16
        (:data:`WEIGHT_BITS`), activations 8 or 16 (:data:`ACTIVATION_BITS`).

    Raises
    ------
    ValueError
        NaN or Inf in the range, ``min_val > max_val``, ``bits`` out of range (for
        ``kind``), a restricted range on an unsigned type, or inconsistent per-channel arguments.
    """
    scheme = QScheme.parse(scheme)
    if not isinstance(bits, (int, np.integer)) or not (2 <= bits <= 16 or bits == 32):
        raise ValueError(f"bits={bits!r} is out of range; use 2..16 or 32")
    if kind is not None:
        supported = {"weight": WEIGHT_BITS, "activation": ACTIVATION_BITS}.get(kind)
        if supported is None:
            raise ValueError(f"kind={kind!r}: use 'weight', 'activation' or None")
        if bits not in supported:
            raise ValueError(f"bits={bits} is not supported for {kind}s; use one of {list(supported)}")
    qtype = QType(int(bits), bool(signed))
    lo_v = _float_array(min_val, "min_val")
    hi_v = _float_array(max_val, "max_val")
    _check_range(lo_v, hi_v)
    lo_v, hi_v = np.minimum(lo_v, 0.0), np.maximum(hi_v, 0.0)
    narrow = scheme is QScheme.SYMMETRIC_RESTRICTED
    if narrow and not signed:
        raise ValueError("scheme='symmetric_restricted' needs signed=True")
    qmin, qmax = qtype.qmin + int(narrow), qtype.qmax
    if scheme is QScheme.ASYMMETRIC:
        scale = (hi_v - lo_v) / (qmax - qmin)
        safe = np.where(scale > 0, scale, 1.0)
        zp = np.clip(np.rint(qmin - lo_v / safe), qmin, qmax)
    else:
        amax = np.maximum(-lo_v, hi_v)
        scale = amax / (qmax if narrow else (qmax - qmin) / 2.0)
        zp = np.full_like(scale, 0.0 if signed else (qmin + qmax + 1) // 2)
    scale = np.where(scale > 0, np.maximum(scale, MIN_SCALE), 1.0)
    zero_range = (hi_v - lo_v) == 0
    if scheme is QScheme.ASYMMETRIC:
        zp = np.where(zero_range, 0 if signed else qmin, zp)
    if scale.ndim == 0:
        axis = None
    return QParams(scale, zp.astype(np.int64), qtype, axis=axis, narrow_range=narrow)


#: How :func:`quantize` computes ``x / scale``: in float64; in float32 (ONNX, TFLite); or as PyTorch's
#: ``quantized_decomposed.quantize_per_tensor``, ``x * (1 / scale)`` in float32 (``float32_reciprocal``).
QUANTIZE_PRECISIONS = ("float64", "float32", "float32_reciprocal")


def quantize(
    x: npt.ArrayLike,
    qparams: QParams,
    rounding: RoundingMode | str = RoundingMode.HALF_EVEN,
    rng: Rng = None,
    precision: str = "float64",
) -> np.ndarray:
    """Reference quantizer: ``q = clip(round(x / scale) + zero_point, qmin, qmax)``.

    ``x / scale`` is computed in ``precision``: float64 (tvm-sima's own quantizer), or float32
    as ONNX ``QuantizeLinear`` and TFLite's ``QUANTIZE`` compute it (``x`` and ``scale`` rounded
    to float32 first, the quotient rounded to float32 before it is rounded to an integer: an
    input such as ``k / 127.5 - 1`` on the grid ``1 / 127.5`` lands on ties either way, 2 % of
    codes 1 LSB apart). ``float32_reciprocal`` is PyTorch's PT2E ``quantize_per_tensor``:
    ``1 / scale`` in float64 rounded to float32, times ``x`` in float32 (its quotient differs from
    the float32 division's by one float32 ulp on some inputs, a code at ties). HALF_EVEN matches
    ONNX ``QuantizeLinear``, PyTorch's ``torch.round`` and Relax ``relax.quantize``;
    HALF_AWAY_FROM_ZERO / TFLITE match TFLite's ``QUANTIZE``.
    NaN inputs raise; ``+-Inf`` saturate to ``qmax`` / ``qmin``.

    Returns
    -------
    numpy.ndarray
        Codes in the container dtype of ``qparams.dtype`` (``int8`` for int4, ...).
    """
    x = _float_array(x, "x")
    if np.any(np.isnan(x)):
        raise ValueError(f"x contains {int(np.isnan(x).sum())} NaN values; they have no quantized code")
    qparams.check_tensor(x.shape, "x")
    scale = qparams.broadcastable(qparams.scale, x.ndim)
    zp = qparams.broadcastable(qparams.zero_point, x.ndim)
    if precision not in QUANTIZE_PRECISIONS:
        raise ValueError(f"quantize: precision={precision!r}; use one of {QUANTIZE_PRECISIONS}")
    with np.errstate(over="ignore"):
        if precision == "float32":
            quotient = x.astype(np.float32) / np.asarray(scale, np.float32)
            scaled = np.clip(quotient.astype(np.float64), -(2.0**62), 2.0**62)
        elif precision == "float32_reciprocal":
            product = x.astype(np.float32) * np.asarray(1.0 / np.asarray(scale, np.float64), np.float32)
            scaled = np.clip(product.astype(np.float64), -(2.0**62), 2.0**62)
        else:
            scaled = np.clip(x / scale, -(2.0**62), 2.0**62)
    q = round_real(scaled, rounding, rng) + zp
    return np.clip(q, qparams.qmin, qparams.qmax).astype(qparams.dtype.container)


def dequantize(q: npt.ArrayLike, qparams: QParams) -> np.ndarray:
    """Reference dequantizer: ``real = scale * (q - zero_point)``, float64."""
    q = np.asarray(q)
    if not np.issubdtype(q.dtype, np.integer):
        raise ValueError(f"q must hold integer codes, got dtype {q.dtype}")
    qparams.check_tensor(q.shape, "q")
    scale = qparams.broadcastable(qparams.scale, q.ndim)
    zp = qparams.broadcastable(qparams.zero_point, q.ndim)
    return scale * (q.astype(np.int64) - zp).astype(np.float64)


def bias_qparams(input_q: QParams, weight_q: QParams, bits: int = 32) -> QParams:
    """Bias parameters derived from input and weight: ``scale = s_in * s_w``, ``zero_point = 0``.

    Per-channel when the weight is (the bias axis is then 0, the bias vector's only axis).
    ``bits`` is 32 (8-bit activations) or 48 (16-bit activations, held in int64).
    """
    if bits not in (32, 48):
        raise ValueError(f"bits={bits!r} is not a bias width; use 32 or 48")
    if input_q.per_channel:
        raise ValueError("input_q must be per-tensor to derive a bias scale")
    scale = input_q.scale * weight_q.scale
    axis = 0 if weight_q.per_channel else None
    return QParams(scale, np.zeros_like(scale, dtype=np.int64), QType(bits, True), axis=axis)


def clamp_codes(scale: float, zero_point: int, qmin: int, qmax: int, lo: Optional[float],
                hi: Optional[float]) -> tuple[int, int]:
    """The codes of real bounds ``lo`` / ``hi`` (None: unbounded) as TFLite computes them:
    ``zero_point + round(bound / scale)`` in float32, rounded half away from zero, within the type."""
    s = np.float32(scale)
    qlo = qmin if lo is None else max(qmin, zero_point + int(round_real(np.float32(lo) / s, RoundingMode.TFLITE)))
    qhi = qmax if hi is None else min(qmax, zero_point + int(round_real(np.float32(hi) / s, RoundingMode.TFLITE)))
    return qlo, qhi
