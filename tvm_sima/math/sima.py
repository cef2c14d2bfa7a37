"""The SiMa-style requantization API (the seed's ``afe.tvm_converter.quantization``).

Scale convention
----------------
Everything here uses ``real = scale * (q - zero_point)``, like ONNX and TFLite. SiMa's
documentation writes the scale the other way round (``q = real * scale + zero_point``,
i.e. its scale is our ``1 / scale``). The functions keep their meaning; only the number
stored in :attr:`Quantization.scale` is inverted with respect to those documents.

The two ways to requantize a conv / dense
-----------------------------------------
With ``x`` the raw int8 input, ``w`` int8 weights, ``b`` the int32 bias at the product
scale ``s_p = s_x * s_w`` and ``r = s_p / s_y``, the exact output code is

    ``y* = r * (sum((x - zp_x) * w) + b) + zp_y``.

``tflite_requantization_constants`` (multiplier and shift, exact in the weights)::

    y = clip(MultiplyByQuantizedMultiplier(sum(x * w) + b', sc, -shift) + zc)
    b' = b - zp_x * sum(w)

``requantize_qnn_convolution_dense`` (shift only: the scale is folded into the weights)::

    y = clip((sum(x * w') + b' + 2**(shift - 1)) >> shift)
    w' = round(w * r * 2**shift)          (still int8)
    b' = round(b * r * 2**shift) - zp_x * sum(w') + zp_y * 2**shift

Both pad convolutions with ``zp_x`` (a padded position contributes real 0).

Precision lost by folding. Writing ``w' = w r 2**shift + e`` and
``round(b r 2**shift) = b r 2**shift + e_b`` (``|e|, |e_b| <= 1/2``), the value rounded
by the fused op is ``y* + delta`` with

    ``|delta| <= (sum(|x - zp_x|) / 2 + 1/2) / 2**shift``      (:func:`folded_error_bound`)

so ``|y - y*| <= 1/2 + |delta|`` before clipping (clipping never increases it). The
shift is the largest that keeps ``w'`` in int8, so ``max|w'|`` lands in ``(63, 127]``
when the weights allow: the fold costs at most one bit of weight precision, and the
bound shrinks as ``2**-shift``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np
import numpy.typing as npt

from .kernels import check_weight, output_channels, per_channel_weight_unview, per_channel_weight_view
from .qparams import QParams
from .qtypes import QType
from .requant import HW_MAX_RIGHT_SHIFT, tflite_quantize_multiplier
from .rounding import RoundingMode, round_real

__all__ = [
    "Quantization",
    "correction_factors",
    "requantize_qnn_convolution_dense",
    "tflite_requantization_constants",
    "tflite_product_quantization",
    "folded_error_bound",
    "fold_float_weights_shift",
]


@dataclass(frozen=True)
class Quantization:
    """Per-tensor quantization of the seed API: ``real = scale * (q - zero_point)``.

    SiMa's documents write ``q = real * scale + zero_point`` (the inverse scale); see
    the module docstring.

    Parameters
    ----------
    scale : float
        Finite and > 0.
    zero_point : int
        Inside the range of the type.
    bits : int
        2..16 or 32.
    signed : bool
        Two's complement codes.
    """

    scale: float
    zero_point: int = 0
    bits: int = 8
    signed: bool = True

    def __post_init__(self) -> None:
        # QParams validates scale, zero point and bits, and names the argument.
        self.to_qparams()

    def to_qparams(self) -> QParams:
        """The equivalent per-tensor :class:`~tvm_sima.math.QParams`."""
        if not isinstance(self.bits, (int, np.integer)) or not (2 <= self.bits <= 16 or self.bits == 32):
            raise ValueError(f"bits={self.bits!r} is out of range; use 2..16 or 32")
        return QParams(self.scale, self.zero_point, QType(int(self.bits), bool(self.signed)))

    @property
    def qmin(self) -> int:
        """Smallest code."""
        return QType(self.bits, self.signed).qmin

    @property
    def qmax(self) -> int:
        """Largest code."""
        return QType(self.bits, self.signed).qmax


ProductQ = Union[Quantization, Sequence[Quantization]]


def correction_factors(input_q: Quantization, output_q: Quantization) -> tuple[float, float, int]:
    """Factors that move a code from ``input_q`` to ``output_q``.

    ``output = (input * sc + zc) * 2**-n`` with ``0.5 <= sc < 1``, which is the exact
    ``output = input * s_in / s_out + zp_out - zp_in * s_in / s_out``. So
    ``sc * 2**-n = s_in / s_out`` and ``zc = zp_out * 2**n - zp_in * sc``.

    Returns
    -------
    (sc, zc, n) : (float, float, int)
        ``n`` is negative when ``s_in / s_out >= 1``.
    """
    ratio = float(input_q.scale) / float(output_q.scale)
    sc, exponent = math.frexp(ratio)
    n = -exponent
    zc = math.ldexp(float(output_q.zero_point), n) - float(input_q.zero_point) * sc
    return sc, zc, n


def _product_scales(product_q: ProductQ, channels: int, argument: str) -> tuple[np.ndarray, bool]:
    """Scales of the accumulator, one per output channel, and whether it was per-channel."""
    if isinstance(product_q, Quantization):
        items, per_channel = [product_q], False
    else:
        items, per_channel = list(product_q), True
        if not all(isinstance(q, Quantization) for q in items):
            raise ValueError(f"{argument} must be a Quantization or a list of Quantization")
        if len(items) != channels:
            raise ValueError(f"{argument} has {len(items)} entries but the weight has {channels} output channels")
    if any(q.zero_point != 0 for q in items):
        raise ValueError(f"{argument} is the accumulator's quantization; its zero point must be 0")
    scales = np.array([float(q.scale) for q in items], dtype=np.float64)
    return np.broadcast_to(scales, (channels,)).copy(), per_channel


def _bias_vector(bias: Optional[npt.ArrayLike], channels: int) -> np.ndarray:
    if bias is None:
        return np.zeros(channels, dtype=np.int64)
    b = np.asarray(bias)
    if not np.issubdtype(b.dtype, np.integer):
        raise ValueError(f"bias must be an integer array (the int32 bias), got dtype {b.dtype}")
    if b.shape != (channels,):
        raise ValueError(f"bias has shape {b.shape}, expected ({channels},) (one per output channel)")
    return b.astype(np.int64)


def _check_zero_point(data_zero_point: int) -> int:
    if not isinstance(data_zero_point, (int, np.integer)):
        raise ValueError(f"data_zero_point={data_zero_point!r} must be an int")
    return int(data_zero_point)


def tflite_product_quantization(input_scale: float, weight_scales: npt.ArrayLike) -> list[Quantization]:
    """Accumulator quantizations ``s_in * s_w[c]`` computed as TFLite does (in double).

    The product of two float32 scales is exact in float64, so passing the result to
    :func:`tflite_requantization_constants` reproduces TFLite's multipliers bit for bit.
    """
    s_in = float(np.float32(input_scale))
    return [Quantization(s_in * float(np.float32(s)), 0, 32) for s in np.ravel(weight_scales)]


def tflite_requantization_constants(
    weight: npt.ArrayLike,
    bias: Optional[npt.ArrayLike],
    data_zero_point: int,
    input_q: ProductQ,
    output_q: Quantization,
    is_dense: bool,
) -> tuple[np.ndarray, Union[int, np.ndarray], int, Union[int, np.ndarray]]:
    """TFLite-style constants: bias with the input zero point folded in, Q31 multiplier, shift.

    The fused op computes, on the raw int8 input ``x``::

        y = clip(MultiplyByQuantizedMultiplier(sum(x * w) + b', sc, -shift) + zc, qmin, qmax)

    (padding with ``data_zero_point``), which equals TFLite's integer CONV_2D /
    DEPTHWISE_CONV_2D / FULLY_CONNECTED bit for bit; the weights are unchanged.

    Parameters
    ----------
    weight : array_like of int
        HWIGO for a convolution, OI for dense (``is_dense``).
    bias : array_like of int, optional
        int32 bias at the accumulator scale, one per output channel.
    data_zero_point : int
        Zero point of the input data.
    input_q : Quantization or list of Quantization
        Quantization of the accumulator (``s_data * s_weight``, zero point 0): one for
        per-tensor weights, one per output channel otherwise. Build it with
        :func:`tflite_product_quantization` to match TFLite's arithmetic.
    output_q : Quantization
        Output quantization.
    is_dense : bool
        Weight layout OI (True) or HWIGO (False).

    Returns
    -------
    (bias, sc, zc, shift)
        ``b' = b - data_zero_point * sum(w)`` (int32 array); ``sc`` the Q31 multiplier of
        TFLite's ``QuantizeMultiplier``; ``zc`` the output zero point; ``shift`` TFLite's
        exponent negated, a right shift (negative only when ``s_p / s_y >= 1``). Ints for a
        per-tensor ``input_q``, int64 arrays (one per output channel) otherwise.
    """
    w = np.asarray(weight)
    check_weight(w, is_dense)
    channels = output_channels(w, is_dense)
    scales, per_channel = _product_scales(input_q, channels, "input_q")
    b = _bias_vector(bias, channels)
    zp = _check_zero_point(data_zero_point)
    folded = b - zp * per_channel_weight_view(w, is_dense).astype(np.int64).sum(axis=1)
    if folded.min() < -(2**31) or folded.max() > 2**31 - 1:
        raise ValueError("bias - data_zero_point * sum(weight) overflows int32; check the bias and zero point")
    real = scales / float(output_q.scale)
    sc, exponent = tflite_quantize_multiplier(real if per_channel else real[0])
    shift = -exponent if per_channel else -int(exponent)
    return folded.astype(np.int32), sc, int(output_q.zero_point), shift


def _fold(w2: np.ndarray, b: np.ndarray, ratio: np.ndarray, shift: np.ndarray, zp_x: int, zp_y: int):
    scale = ratio * np.exp2(shift)
    w_new = round_real(w2 * scale[:, None], RoundingMode.HALF_AWAY_FROM_ZERO)
    b_scaled = round_real(b * scale, RoundingMode.HALF_AWAY_FROM_ZERO)
    b_new = b_scaled - zp_x * w_new.sum(axis=1) + zp_y * np.exp2(shift)
    return w_new, b_new


def requantize_qnn_convolution_dense(
    weight: npt.ArrayLike,
    bias: Optional[npt.ArrayLike],
    data_zero_point: int,
    product_q: ProductQ,
    output_q: Quantization,
    is_dense: bool,
    *,
    weight_bits: int = 8,
    bias_bits: int = 32,
    max_shift: int = HW_MAX_RIGHT_SHIFT,
) -> tuple[np.ndarray, np.ndarray, Union[int, np.ndarray]]:
    """Fold the requantization scale into weight and bias, so the op needs only a shift.

    The fused op computes, on the raw int8 input ``x`` (padding with ``data_zero_point``)::

        y = clip((sum(x * w') + b' + 2**(shift - 1)) >> shift, output range)

    with ``w' = round(w * r * 2**shift)``, ``b' = round(b * r * 2**shift) -
    data_zero_point * sum(w') + zp_out * 2**shift`` and ``r = s_product / s_out``
    (half away from zero). The precision lost is bounded by :func:`folded_error_bound`
    (module docstring).

    The shift of each channel is the largest in ``[0, max_shift]`` that keeps ``w'``
    within ``weight_bits`` (symmetric range), ``b'`` within ``bias_bits`` and
    ``|sum(x * w')| + |b'|`` within the accumulator for any int8 ``x``. A per-tensor
    ``product_q`` gives one shift for all channels (the smallest).

    Parameters
    ----------
    weight : array_like of int
        HWIGO (conv) or OI (dense).
    bias : array_like of int, optional
        Bias at the product scale, one per output channel.
    data_zero_point : int
        Zero point of the input.
    product_q : Quantization or list of Quantization
        Accumulator quantization ``s_data * s_weight`` (zero point 0); a list is per-channel.
    output_q : Quantization
        Output quantization (its zero point is folded into ``b'``).
    is_dense : bool
        Weight layout OI (True) or HWIGO (False).
    weight_bits, bias_bits : int
        Widths of ``w'`` (2..16) and ``b'`` (32 or 48).
    max_shift : int
        Largest right shift of the hardware (:data:`~tvm_sima.math.HW_MAX_RIGHT_SHIFT`).

    Returns
    -------
    (weight, bias, shift)
        ``w'`` in the input layout (int8, or int16 for wider weights), ``b'`` (int32, or
        int64 for 48 bits), and the shift: an int for per-tensor ``product_q``, an int64
        array (one per output channel) for per-channel.

    Raises
    ------
    ValueError
        If a channel cannot be represented even with shift 0 (``r * max|w|`` exceeds
        the weight range: the output scale is too small for a shift-only op; use the
        TFLite-style multiplier instead), or on malformed arguments.
    """
    w = np.asarray(weight)
    check_weight(w, is_dense)
    if not np.issubdtype(w.dtype, np.integer):
        raise ValueError(f"weight must be an integer array, got dtype {w.dtype}")
    if not 2 <= weight_bits <= 16 or bias_bits not in (32, 48):
        raise ValueError(f"weight_bits={weight_bits} must be 2..16 and bias_bits={bias_bits} 32 or 48")
    if not 0 <= max_shift <= 62:
        raise ValueError(f"max_shift={max_shift} is out of range [0, 62]")
    channels = output_channels(w, is_dense)
    scales, per_channel = _product_scales(product_q, channels, "product_q")
    b = _bias_vector(bias, channels).astype(np.float64)
    zp_x = _check_zero_point(data_zero_point)
    zp_y = int(output_q.zero_point)
    w2 = per_channel_weight_view(w, is_dense).astype(np.float64)
    ratio = scales / float(output_q.scale)
    w_new, b_new, shift = _shift_fold(w2, b, ratio, zp_x, zp_y, per_channel, weight_bits, bias_bits, max_shift)
    w_out = per_channel_weight_unview(w_new, w.shape, is_dense).astype(np.int8 if weight_bits <= 8 else np.int16)
    b_out = b_new.astype(np.int32 if bias_bits == 32 else np.int64)
    return w_out, b_out, (shift if per_channel else int(shift[0]))


def _highest_possible_shifts(w2: np.ndarray, ratio: np.ndarray, w_max: int, max_shift: int) -> np.ndarray:
    """Per channel, the largest shift in ``[0, max_shift]`` its weights do not rule out.

    Above it ``max|w2 * ratio| * 2**shift >= w_max + 1`` (the product by a power of two is exact),
    so the folded weight rounds beyond ``w_max`` whatever the rounding of the rest: the shift
    search of :func:`_shift_fold` would only step down through those shifts, one weight fold each.
    """
    peak = np.abs(w2 * ratio[:, None]).max(axis=1, initial=0.0)
    shift = np.full(w2.shape[0], max_shift, dtype=np.int64)
    over = (peak * np.exp2(shift) >= w_max + 1) & (shift > 0)
    while over.any():
        shift[over] -= 1
        over = (peak * np.exp2(shift) >= w_max + 1) & (shift > 0)
    return shift


def _shift_fold(w2: np.ndarray, b: np.ndarray, ratio: np.ndarray, zp_x: int, zp_y: int, per_channel: bool,
                weight_bits: int, bias_bits: int, max_shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Largest per-channel shifts that keep ``round(w2 * ratio * 2**shift)`` and the bias in range."""
    w_max, b_max = 2 ** (weight_bits - 1) - 1, 2 ** (bias_bits - 1) - 1
    reduction = w2.shape[1]

    def fits(shift: np.ndarray) -> np.ndarray:
        w_new, b_new = _fold(w2, b, ratio, shift, zp_x, zp_y)
        acc = reduction * 128.0 * np.abs(w_new).max(axis=1, initial=0) + np.abs(b_new)
        return (np.abs(w_new).max(axis=1, initial=0) <= w_max) & (np.abs(b_new) <= b_max) & (acc <= b_max)

    def descend(shift: np.ndarray) -> Optional[np.ndarray]:
        """Lower each failing channel's shift by one until all fit; None when one fails at shift 0."""
        ok = fits(shift)
        while not ok.all():
            if np.any(shift[~ok] == 0):
                return None
            shift = np.where(ok, shift, shift - 1)
            ok = fits(shift)
        return shift

    # Channels are independent and each takes the first shift that fits, going down from max_shift:
    # starting each below the shifts its weights rule out (_highest_possible_shifts) skips only failures.
    found = descend(_highest_possible_shifts(w2, ratio, w_max, max_shift))
    if found is None:  # the channel named is the one the full descent from max_shift stops at
        shift = np.full(w2.shape[0], max_shift, dtype=np.int64)
        ok = fits(shift)
        while not (~ok & (shift == 0)).any():
            shift = np.where(ok, shift, shift - 1)
            ok = fits(shift)
        bad = int(np.flatnonzero(~ok & (shift == 0))[0])
        raise ValueError(
            f"output channel {bad}: the scale ratio {ratio[bad]:.6g} times max|weight| = "
            f"{np.abs(w2[bad]).max():.6g} (or the bias) exceeds the {weight_bits}-bit weight / "
            f"{bias_bits}-bit bias range even with shift 0; a shift-only op cannot represent it "
            "(use tflite_requantization_constants, i.e. requant_mode='multiplier_shift')"
        )
    shift = found
    if not per_channel:
        shift = np.full(w2.shape[0], shift.min(), dtype=np.int64)
    w_new, b_new = _fold(w2, b, ratio, shift, zp_x, zp_y)
    return w_new, b_new, shift


def fold_float_weights_shift(
    weight: npt.ArrayLike,
    bias: Optional[npt.ArrayLike],
    data_q: Quantization,
    output_q: Quantization,
    is_dense: bool,
    *,
    per_channel: bool = True,
    weight_bits: int = 8,
    bias_bits: int = 32,
    max_shift: int = HW_MAX_RIGHT_SHIFT,
) -> tuple[np.ndarray, np.ndarray, Union[int, np.ndarray]]:
    """The shift-only fused op's ``(w', b', shift)`` straight from *float* weights: one rounding.

    ``w' = round(W * s_x / s_y * 2**shift)`` and ``b' = round(B / s_y * 2**shift) - zp_x * sum(w')
    + zp_y * 2**shift``, with the shift search of :func:`requantize_qnn_convolution_dense`. Going
    through int8 weights first (quantize, then fold) rounds the weights twice; this rounds them
    once, so the error bound of :func:`folded_error_bound` holds against the float layer itself.

    Parameters
    ----------
    weight : array_like of float
        HWIGO (conv) or OI (dense), real values.
    bias : array_like of float, optional
        Real bias, one per output channel.
    data_q, output_q : Quantization
        Input and output quantization.
    is_dense : bool
        Weight layout OI (True) or HWIGO (False).
    per_channel : bool
        One shift per output channel (True) or one for the layer.
    """
    w = np.asarray(weight, dtype=np.float64)
    check_weight(w, is_dense)
    if not np.all(np.isfinite(w)):
        raise ValueError("weight contains NaN or Inf")
    channels = output_channels(w, is_dense)
    b = np.zeros(channels) if bias is None else np.asarray(bias, dtype=np.float64)
    if b.shape != (channels,):
        raise ValueError(f"bias has shape {b.shape}, expected ({channels},) (one per output channel)")
    s_x, s_y = float(data_q.scale), float(output_q.scale)
    w2 = per_channel_weight_view(w, is_dense) * (s_x / s_y)
    w_new, b_new, shift = _shift_fold(w2, b / s_y, np.ones(channels), int(data_q.zero_point),
                                      int(output_q.zero_point), per_channel, weight_bits, bias_bits, max_shift)
    w_out = per_channel_weight_unview(w_new, w.shape, is_dense).astype(np.int8 if weight_bits <= 8 else np.int16)
    b_out = b_new.astype(np.int32 if bias_bits == 32 else np.int64)
    return w_out, b_out, (shift if per_channel else int(shift[0]))


def folded_error_bound(centered_input_abs_sum: npt.ArrayLike, shift: npt.ArrayLike) -> np.ndarray:
    """Bound on ``|delta|``, the error the weight fold adds before the final rounding.

    ``|delta| <= (sum(|x - zp_x|) / 2 + 1/2) / 2**shift`` in output LSB, where the sum
    runs over the inputs of one output (its receptive field). The fused output then
    satisfies ``|y - y*| <= 1/2 + |delta|`` against the exact real result ``y*``.
    """
    total = np.asarray(centered_input_abs_sum, dtype=np.float64)
    return (total / 2.0 + 0.5) / np.exp2(np.asarray(shift, dtype=np.float64))
