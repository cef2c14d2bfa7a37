"""Fused ``sima.conv2d`` / ``sima.dense``: integer weight, int32 bias and requantization, then the op.

Constants come from one of three entrances, all returning :class:`FusedConstants`:

* :func:`from_product` — integer weights and bias with the accumulator's quantization given
  (TFLite's Q31 multiplier and right shift, ``math.tflite_requantization_constants``);
* :func:`from_integer_weights` — a pre-quantized layer's int8 weights and int32 bias (``convert``),
  multiplier+shift (as LiteRT) or shift-only (``math.requantize_qnn_convolution_dense``);
* :func:`from_float_weights` — a float layer's weights and bias (``quantize``), shift-only
  (``math.fold_float_weights_shift``, one rounding) or quantized weights + multiplier+shift, with
  bias correction (:func:`corrected_float_weights`).

:func:`emit_conv2d` / :func:`emit_dense` build the op from the constants.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
from tvm import relax

from .. import math as sm
from ..ops import conv2d as sima_conv2d
from ..ops import dense as sima_dense
from .base import Codes
from .numerics import Numerics

__all__ = ["FusedConstants", "WeightGrid", "WeightSpec", "accumulator_bits", "accumulator_overflow",
           "corrected_float_weights", "emit_conv2d", "emit_dense", "float_weight_grid", "from_float_weights",
           "from_integer_weights", "from_product"]


@dataclass(frozen=True, eq=False)
class FusedConstants:
    """What a fused op stores: integer weight (HWIGO or OI), bias codes and its requantization.

    ``multiplier is None``: shift-only (the output scale is folded into the weights, no zero point).
    ``accumulator_bits``: 32, or 48 for 16-bit inputs or a 48-bit bias (the op then gets an int64 bias
    and accumulates in int64; the guard, :func:`accumulator_overflow`, holds it to 48 bits).
    """

    weight: np.ndarray
    bias: np.ndarray
    shift: Any
    multiplier: Any = None
    rounding: Optional[sm.RoundingMode] = None
    output_zero_point: int = 0
    accumulator_bits: int = 32

    def requant_args(self) -> dict[str, Any]:
        return {"shift": self.shift, "multiplier": self.multiplier, "rounding": self.rounding,
                "output_zero_point": self.output_zero_point}


@dataclass(frozen=True)
class WeightSpec:
    """How a float layer's weights are quantized (from its layer's QConfig)."""

    per_channel: bool
    scheme: sm.QScheme
    bits: int
    bias_bits: int
    power2_scale: bool


def accumulator_bits(x_q: sm.QParams, bias_bits: int = 32) -> int:
    """The fused op's accumulator: 48 bits for inputs wider than 8 bits or a 48-bit bias, else 32."""
    return 48 if x_q.dtype.bits > 8 or bias_bits == 48 else 32


def as_quantization(qp: sm.QParams) -> sm.Quantization:
    """``qp``'s per-tensor scale and zero point, width and sign, as the fused-op folds take them."""
    return sm.Quantization(float(np.atleast_1d(qp.scale)[0]), int(np.atleast_1d(qp.zero_point)[0]), qp.dtype.bits,
                           qp.dtype.signed)


def from_product(weight: np.ndarray, bias: Optional[np.ndarray], zp_x: int, product_q: Any, y_q: sm.Quantization,
                 is_dense: bool, rounding: sm.RoundingMode) -> FusedConstants:
    """Multiplier+shift constants for integer ``weight`` / ``bias`` at the accumulator quantization ``product_q``."""
    b, mult, zc, shift = sm.tflite_requantization_constants(weight, bias, zp_x, product_q, y_q, is_dense)
    requant = sm.FixedPointMultiplier.from_q31_right_shift(mult, shift, rounding).op_args()
    return FusedConstants(weight, np.asarray(b), requant["shift"], requant["multiplier"], requant["rounding"], int(zc))


def from_integer_weights(weight: np.ndarray, bias: Optional[np.ndarray], x_q: sm.QParams, w_q: sm.QParams,
                         y_q: sm.QParams, is_dense: bool, numerics: Numerics) -> FusedConstants:
    """A pre-quantized layer: int8 ``weight`` (HWIGO / OI), int32 ``bias`` codes, per ``numerics.fused``."""
    zp_x = int(np.atleast_1d(x_q.zero_point)[0])
    product = sm.tflite_product_quantization(float(np.atleast_1d(x_q.scale)[0]), np.atleast_1d(w_q.scale))
    product_q = product[0] if len(product) == 1 else product
    output = as_quantization(y_q)
    if numerics.fused is sm.RequantMode.MULTIPLIER_SHIFT:
        rounding = numerics.dense_rounding if is_dense else sm.RoundingMode.TFLITE
        consts = from_product(weight, bias, zp_x, product_q, output, is_dense, rounding)
        return FusedConstants(np.asarray(weight).astype("int8"), consts.bias.astype(np.int64), consts.shift,
                              consts.multiplier, consts.rounding, consts.output_zero_point, accumulator_bits(x_q))
    w_int, b, folded_shift = sm.requantize_qnn_convolution_dense(weight, bias, zp_x, product_q, output, is_dense)
    total = np.asarray(folded_shift)
    return FusedConstants(np.asarray(w_int).astype("int8"), np.asarray(b, dtype=np.int64),
                          total.tolist() if total.ndim else int(total), accumulator_bits=accumulator_bits(x_q))


def _multiplier_from_float(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                           spec: WeightSpec) -> tuple[FusedConstants, "WeightGrid"]:
    s_x = float(np.atleast_1d(x_q.scale)[0])
    acc_bits = accumulator_bits(x_q, spec.bias_bits)
    view = sm.per_channel_weight_view(weight, is_dense)
    lo, hi = (view.min(axis=1), view.max(axis=1)) if spec.per_channel else (view.min(), view.max())
    wq = sm.choose_qparams(lo, hi, spec.scheme, spec.bits, axis=0 if spec.per_channel else None)
    scales = np.broadcast_to(np.asarray(wq.scale, dtype=np.float64), (view.shape[0],))
    # A bias must fit its accumulator at the product scale (with room for the zero-point fold): channels
    # with tiny weights and a large bias get a coarser weight scale (onnxruntime does the same).
    scales = np.maximum(scales, np.abs(bias) / (s_x * 2.0 ** (acc_bits - 2)))
    if spec.power2_scale:
        scales = np.exp2(np.ceil(np.log2(scales)))
    w_view = np.clip(sm.round_real(view / scales[:, None], sm.RoundingMode.HALF_AWAY_FROM_ZERO), wq.qmin, wq.qmax)
    w_int = sm.per_channel_weight_unview(w_view, weight.shape, is_dense).astype(np.int8 if spec.bits <= 8
                                                                                 else np.int16)
    top = 2 ** (acc_bits - 1)
    bias_int = np.clip(sm.round_real(bias / (np.float32(s_x) * scales.astype(np.float32).astype(np.float64)),
                                     sm.RoundingMode.HALF_AWAY_FROM_ZERO), -top, top - 1).astype(np.int64)
    zp_x = int(np.atleast_1d(x_q.zero_point)[0])
    if acc_bits > 32:
        consts = _wide_product(w_int, bias_int, zp_x, s_x * (scales if spec.per_channel else scales[:1]), y_q,
                               is_dense)
    else:
        product = sm.tflite_product_quantization(s_x, scales if spec.per_channel else scales[:1])
        consts = from_product(w_int, bias_int, zp_x, product if spec.per_channel else product[0],
                              as_quantization(y_q), is_dense, sm.RoundingMode.TFLITE)
    return consts, WeightGrid(scales, int(wq.qmin), int(wq.qmax))


def _wide_product(weight: np.ndarray, bias: np.ndarray, zp_x: int, product_scales: np.ndarray, y_q: sm.QParams,
                  is_dense: bool) -> FusedConstants:
    """Multiplier+shift constants of a 48-bit accumulator: the input zero point folded into an int64 bias, and
    one half-up rounding by a multiplier narrow enough that ``acc * M < 2**62`` (TFLite's double rounding
    wraps its accumulator to int32, so it is not used here)."""
    rows = sm.per_channel_weight_view(weight, is_dense).astype(np.int64)
    folded = np.asarray(bias, dtype=np.int64) - zp_x * rows.sum(axis=1)
    if np.abs(folded).max(initial=0) > 2**47 - 1:
        raise ValueError("bias - data_zero_point * sum(weight) overflows the 48-bit accumulator")
    real = np.asarray(product_scales, dtype=np.float64) / float(np.atleast_1d(y_q.scale)[0])
    m, n = sm.quantize_multiplier(real if real.size > 1 else float(real[0]), sm.multiplier_bits_for(2**47))
    args = sm.FixedPointMultiplier(m, n, sm.RoundingMode.HALF_UP).op_args()
    return FusedConstants(weight, folded, args["shift"], args["multiplier"], args["rounding"],
                          int(np.atleast_1d(y_q.zero_point)[0]), accumulator_bits=48)


@dataclass(frozen=True)
class WeightGrid:
    """The grid a fused op stores a float layer's weights on: row ``c`` of the weight view
    (:func:`tvm_sima.math.per_channel_weight_view`) holds codes in ``[qmin, qmax]`` standing for
    ``code * step[c]`` in the float weights' units (shift mode: ``step = s_y / (s_x 2**n_c)``, the
    power-of-two grid of the fold; multiplier_shift: the int8 weight scale)."""

    step: np.ndarray
    qmin: int
    qmax: int


def _fold_float(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                spec: WeightSpec, mode: sm.RequantMode) -> tuple[FusedConstants, WeightGrid, Optional[str]]:
    """The constants, their weight grid and a note (why shift mode fell back to multiplier_shift)."""
    if mode is sm.RequantMode.SHIFT:
        try:
            w, b, shift = sm.fold_float_weights_shift(weight, bias, as_quantization(x_q), as_quantization(y_q),
                                                      is_dense, per_channel=spec.per_channel, weight_bits=spec.bits,
                                                      bias_bits=spec.bias_bits)
            rows = sm.per_channel_weight_view(w, is_dense).shape[0]
            shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (rows,))
            ratio = float(np.atleast_1d(y_q.scale)[0]) / float(np.atleast_1d(x_q.scale)[0])
            top = 2 ** (spec.bits - 1) - 1
            grid = WeightGrid(ratio / np.exp2(shifts), -top, top)
            return FusedConstants(w, b, shift, accumulator_bits=accumulator_bits(x_q, spec.bias_bits)), grid, None
        except ValueError as err:
            consts, grid = _multiplier_from_float(weight, bias, x_q, y_q, is_dense, spec)
            return consts, grid, f"shift-only fold impossible ({err}); used multiplier_shift"
    consts, grid = _multiplier_from_float(weight, bias, x_q, y_q, is_dense, spec)
    return consts, grid, None


def from_float_weights(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                       spec: WeightSpec, mode: sm.RequantMode) -> tuple[FusedConstants, np.ndarray, Optional[str]]:
    """A float layer's constants, the effective (dequantized, output-scale) weights and a note.

    ``mode`` SHIFT falls back to MULTIPLIER_SHIFT when no shift fits; the note says why.
    """
    consts, grid, note = _fold_float(weight, bias, x_q, y_q, is_dense, spec, mode)
    codes = sm.per_channel_weight_view(consts.weight, is_dense).astype(np.float64)
    return consts, codes * grid.step[:, None], note


def float_weight_grid(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                      spec: WeightSpec, mode: sm.RequantMode) -> WeightGrid:
    """The :class:`WeightGrid` :func:`from_float_weights` rounds ``weight`` onto (AdaRound chooses on it)."""
    return _fold_float(weight, bias, x_q, y_q, is_dense, spec, mode)[1]


def corrected_float_weights(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                            spec: WeightSpec, mode: sm.RequantMode, input_mean: Optional[np.ndarray],
                            groups: int = 1, stored: Optional[np.ndarray] = None) -> tuple[FusedConstants, list[str]]:
    """:func:`from_float_weights`, then with the bias corrected for the weights' rounding error.

    Bias correction (Nagel et al., 2019): rounding the weights shifts each output channel's mean
    by ``sum((W_int - W) * E[x])``; with the per-channel input means from calibration (None: no
    correction), that shift is subtracted from the bias and the constants are made again.
    ``stored``: weights already on the op's grid (AdaRound's choice, :mod:`tvm_sima.passes.adaround`),
    folded instead of ``weight``; the error corrected is still the one against the float ``weight``.
    """
    folded = weight if stored is None else stored
    consts, effective, note = from_float_weights(folded, bias, x_q, y_q, is_dense, spec, mode)
    notes = [note] if note else []
    if input_mean is None:
        return consts, notes
    view = sm.per_channel_weight_view(weight, is_dense)
    error = effective - view
    rows = view.shape[0]
    if is_dense:
        if input_mean.shape != (view.shape[1],):
            return consts, notes
        means = np.broadcast_to(input_mean, view.shape)
    else:
        kh, kw, per_group = weight.shape[:3]
        if input_mean.shape != (per_group * groups,):
            return consts, notes
        per_row_group = np.arange(rows) // (rows // groups)
        means = np.stack([np.tile(input_mean[g * per_group:(g + 1) * per_group], kh * kw) for g in per_row_group])
    correction = (error * means).sum(axis=1)
    consts, _, note = from_float_weights(folded, bias - correction, x_q, y_q, is_dense, spec, mode)
    return consts, notes + ([note] if note else [])


def accumulator_overflow(consts: FusedConstants, x_q: sm.QParams, is_dense: bool) -> Optional[str]:
    """Why the fused op's accumulator (``consts.accumulator_bits``) could overflow for some input, else None."""
    rows = sm.per_channel_weight_view(consts.weight, is_dense).astype(np.int64)
    worst = np.abs(rows).sum(axis=1).max(initial=0) * max(abs(x_q.qmin), abs(x_q.qmax)) + \
        np.abs(np.asarray(consts.bias, dtype=np.int64)).max(initial=0)
    bits = consts.accumulator_bits
    if worst > 2 ** (bits - 1) - 1:
        return (f"the {bits}-bit accumulator could overflow with {x_q.dtype.bits}-bit inputs (worst case "
                f"{worst:.3g}); use narrower activations or weights for this layer")
    return None


def _bias_const(consts: FusedConstants) -> relax.Constant:
    """The bias as the op takes it: int32, or int64 with a 48-bit accumulator (which the op then uses)."""
    dtype = "int64" if consts.accumulator_bits > 32 else "int32"
    return relax.const(np.asarray(consts.bias).astype(dtype), dtype)  # without dtype, relax.const makes int64 int32


def _common(consts: FusedConstants, zp_x: int, codes: Codes, out_dtype: str) -> dict[str, Any]:
    lo, hi = codes if codes is not None else (None, None)
    return {**consts.requant_args(), "input_zero_point": int(zp_x), "qmin": lo, "qmax": hi, "out_dtype": out_dtype}


def emit_conv2d(x: relax.Expr, consts: FusedConstants, zp_x: int, codes: Codes, out_dtype: str, *,
                strides: Sequence[int], padding: Sequence[int], dilation: Sequence[int], groups: int,
                layout: str) -> relax.Call:
    """``sima.conv2d`` of ``x`` (NCHW or NHWC) with the HWIGO constants (transposed to the layout's kernel)."""
    w = consts.weight
    kernel = sm.hwigo_to_oihw(w) if layout == "NCHW" else w.reshape(*w.shape[:3], -1)
    return sima_conv2d(x, relax.const(np.ascontiguousarray(kernel)), _bias_const(consts),
                     strides=list(strides), padding=list(padding), dilation=list(dilation), groups=groups,
                     data_layout=layout, **_common(consts, zp_x, codes, out_dtype))


def emit_dense(bb: relax.BlockBuilder, x: relax.Expr, consts: FusedConstants, zp_x: int, codes: Codes,
               out_dtype: str, in_shape: Optional[Sequence[int]] = None,
               out_shape: Optional[Sequence[int]] = None) -> relax.Expr:
    """``sima.dense`` of ``x``; an input of rank other than 2 (``in_shape``; None: 2-D) is flattened to
    ``(-1, K)`` and the result reshaped to ``out_shape``."""
    flatten = in_shape is not None and len(in_shape) != 2
    if flatten:
        assert in_shape is not None and out_shape is not None
        x = bb.emit(relax.op.reshape(x, (-1, in_shape[-1])))
    fused: relax.Expr = sima_dense(x, relax.const(np.ascontiguousarray(consts.weight)),
                                 _bias_const(consts),
                                 **_common(consts, zp_x, codes, out_dtype))
    if flatten:
        assert out_shape is not None
        fused = relax.op.reshape(bb.emit(fused), list(out_shape))
    return fused
