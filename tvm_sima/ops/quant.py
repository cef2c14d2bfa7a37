"""Quantization ops: ``sima.quantize``, ``sima.dequantize``, ``sima.requantize``,
``sima.quantize_info`` and ``sima.simulated_quantize``.

Quantization parameters travel as call attributes (plain ints, floats, strings and lists),
so they survive every pass that keeps the call, and the legalizations copy them onto the TIR
blocks (see :mod:`tvm_sima.topi_ext`). Conventions are :mod:`tvm_sima.math`'s:
``real = scale * (q - zero_point)``; requantization ``round(acc * M / 2**N)`` with a
non-negative right shift ``N`` and a named rounding.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from tvm import relax

from ..math import QUANTIZE_PRECISIONS, QParams, RoundingMode, parse_qtype, quantize_multiplier
from ._registry import OpError, define_op, make_call, tensor_type

__all__ = [
    "KINDS",
    "as_int_list",
    "qparams_attrs",
    "qparams_from_attrs",
    "quantize",
    "dequantize",
    "requantize",
    "quantize_info",
    "rounding_attr",
    "simulated_quantize",
]

#: What a quantized tensor is, for annotation and reports.
KINDS = ("input", "weight", "activation", "bias", "output")

IntOrList = Union[int, Sequence[int], np.ndarray]


def qparams_attrs(qp: QParams) -> dict[str, Any]:
    """Attributes describing ``qp``: scale / zero_point lists, axis (-1 per-tensor), dtype, qmin, qmax."""
    return {
        "scale": [float(s) for s in np.atleast_1d(qp.scale)],
        "zero_point": [int(z) for z in np.atleast_1d(qp.zero_point)],
        "axis": -1 if qp.axis is None else int(qp.axis),
        "dtype": qp.dtype.name,
        "qmin": int(qp.qmin),
        "qmax": int(qp.qmax),
    }


def qparams_from_attrs(attrs: Any) -> QParams:
    """The :class:`~tvm_sima.math.QParams` that :func:`qparams_attrs` wrote (the inverse).

    ``attrs`` is a call's attributes or a dict of them (``scale``, ``zero_point``, ``axis``,
    ``dtype``): per-tensor ``QParams(float, int, dtype)`` when there is one scale, else per-channel
    arrays along ``axis``. ``qmin`` / ``qmax`` are not read back, so ``narrow_range`` is False
    (the ops clip to the ``qmin`` / ``qmax`` attributes themselves).
    """
    scale = np.asarray([float(s) for s in attrs["scale"]])
    zp = np.asarray([int(z) for z in attrs["zero_point"]])
    if scale.size == 1:
        return QParams(float(scale[0]), int(zp[0]), str(attrs["dtype"]))
    return QParams(scale, zp, str(attrs["dtype"]), axis=int(attrs["axis"]))


def as_int_list(value: IntOrList, argument: str, op: str) -> list[int]:
    """``value`` (an int or a 1-D sequence of ints) as a list attribute; OpError naming ``argument`` if not."""
    arr = np.atleast_1d(np.asarray(value))
    if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
        raise OpError(f"{op}: {argument} must be an int or a 1-D list of ints, got {value!r}")
    return [int(v) for v in arr]


def _check_channels(op: str, argument: str, count: int, ty: relax.TensorType, axis: int) -> None:
    """Per-channel lists must match the tensor's extent along ``axis`` (when it is static)."""
    if count == 1:
        return
    if axis < 0 or axis >= ty.ndim:
        raise OpError(f"{op}: axis {axis} is out of range for a tensor of rank {ty.ndim}")
    extent = ty.shape[axis] if ty.shape is not None else None
    if extent is not None and isinstance(getattr(extent, "value", None), int) and extent.value != count:
        raise OpError(f"{op}: {argument} has {count} values but the tensor has {extent.value} channels on axis {axis}")


def _float_input(call: relax.Call, op: str) -> relax.TensorType:
    ty = tensor_type(call, 0, op, "data")
    if not str(ty.dtype).startswith(("float", "bfloat")):
        raise OpError(f"{op}: data must be a float tensor, got {ty.dtype}")
    return ty


def _int_input(call: relax.Call, op: str) -> relax.TensorType:
    ty = tensor_type(call, 0, op, "data")
    if not str(ty.dtype).startswith(("int", "uint")):
        raise OpError(f"{op}: data must be an integer tensor, got {ty.dtype}")
    return ty


def _infer_quantize(call: relax.Call, _bb: Any) -> relax.TensorType:
    ty = _float_input(call, "sima.quantize")
    _check_channels("sima.quantize", "scale", len(call.attrs["scale"]), ty, int(call.attrs["axis"]))
    return relax.TensorType(ty.shape, str(call.attrs["out_dtype"]), ty.vdevice)


def _infer_dequantize(call: relax.Call, _bb: Any) -> relax.TensorType:
    ty = _int_input(call, "sima.dequantize")
    _check_channels("sima.dequantize", "scale", len(call.attrs["scale"]), ty, int(call.attrs["axis"]))
    return relax.TensorType(ty.shape, str(call.attrs["out_dtype"]), ty.vdevice)


def _infer_requantize(call: relax.Call, _bb: Any) -> relax.TensorType:
    ty = _int_input(call, "sima.requantize")
    axis = int(call.attrs["axis"])
    for key in ("multiplier", "shift"):
        _check_channels("sima.requantize", key, len(call.attrs[key]), ty, axis)
    return relax.TensorType(ty.shape, str(call.attrs["out_dtype"]), ty.vdevice)


def _infer_identity(call: relax.Call, _bb: Any) -> relax.TensorType:
    ty = tensor_type(call, 0, "sima.quantize_info", "data")
    _check_channels("sima.quantize_info", "scale", len(call.attrs["scale"]), ty, int(call.attrs["axis"]))
    return ty


def _infer_simulated(call: relax.Call, _bb: Any) -> relax.TensorType:
    ty = _float_input(call, "sima.simulated_quantize")
    _check_channels("sima.simulated_quantize", "dom_scale", len(call.attrs["dom_scale"]), ty,
                    int(call.attrs["axis"]))
    return ty


def _axis(axis: Optional[int], ndim: Optional[int]) -> int:
    if axis is None:
        return -1
    return axis + ndim if axis < 0 and ndim is not None else axis


def _ndim(x: relax.Expr) -> Optional[int]:
    ty = getattr(x, "ty", None)
    return ty.ndim if isinstance(ty, relax.TensorType) and ty.ndim >= 0 else None


def rounding_attr(rounding: Union[RoundingMode, str], op: str, integer_kernel: bool = True) -> str:
    """The ``rounding`` attribute value of a mode; STOCHASTIC only where ``integer_kernel`` is False."""
    mode = RoundingMode.parse(rounding)
    if integer_kernel and mode is RoundingMode.STOCHASTIC:
        raise OpError(f"{op}: stochastic rounding is simulation-only; use it in sima.simulated_quantize")
    return mode.value


def quantize(x: relax.Expr, qparams: QParams,
             rounding: Union[RoundingMode, str] = RoundingMode.HALF_EVEN, precision: str = "float64") -> relax.Call:
    """``sima.quantize``: ``clip(round(x / scale) + zero_point, qmin, qmax)``, float -> int.

    ``x / scale`` in ``precision``: float64, or float32 as a pre-quantized model's own quantize
    (ONNX ``QuantizeLinear``, TFLite ``QUANTIZE``) computes it (the attribute ``precision``).
    Bit-exact with :func:`tvm_sima.math.quantize` either way.
    """
    if precision not in QUANTIZE_PRECISIONS:
        raise OpError(f"sima.quantize: precision={precision!r}; use one of {QUANTIZE_PRECISIONS}")
    attrs = qparams_attrs(qparams)
    attrs["axis"] = _axis(qparams.axis, _ndim(x))
    attrs.update(out_dtype=qparams.dtype.container.name, rounding=rounding_attr(rounding, "sima.quantize"),
                 precision=precision)
    return make_call("sima.quantize", [x], attrs)


def dequantize(x: relax.Expr, qparams: QParams, out_dtype: str = "float32") -> relax.Call:
    """``sima.dequantize``: ``scale * (q - zero_point)``, int -> float (computed in float64)."""
    attrs = qparams_attrs(qparams)
    attrs["axis"] = _axis(qparams.axis, _ndim(x))
    attrs["out_dtype"] = out_dtype
    return make_call("sima.dequantize", [x], attrs)


def requantize(
    x: relax.Expr,
    *,
    multiplier: Optional[IntOrList] = None,
    shift: Optional[IntOrList] = None,
    input_q: Optional[QParams] = None,
    output_q: Optional[QParams] = None,
    rounding: Union[RoundingMode, str] = RoundingMode.HALF_UP,
    zp_out: int = 0,
    qmin: Optional[int] = None,
    qmax: Optional[int] = None,
    out_dtype: str = "int8",
    axis: Optional[int] = None,
    multiplier_bits: int = 31,
) -> relax.Call:
    """``sima.requantize``: ``clip(round(x * M / 2**N) + zp_out, qmin, qmax)``, int -> int.

    Give either ``multiplier`` and ``shift`` (ints, or lists per channel along ``axis``), or
    ``input_q`` and ``output_q``, from which ``M, N = quantize_multiplier(s_in / s_out,
    multiplier_bits)`` and ``zp_out`` come (the input zero point is subtracted first). The
    shift must be in ``[0, 62]``; TFLITE rounding means TFLite's double rounding.
    """
    op = "sima.requantize"
    out_type = parse_qtype(out_dtype)
    zp_in = 0
    if input_q is not None or output_q is not None:
        if input_q is None or output_q is None or multiplier is not None or shift is not None:
            raise OpError(f"{op}: give both input_q and output_q, or multiplier and shift, not a mix")
        if input_q.per_channel or output_q.per_channel:
            raise OpError(f"{op}: input_q and output_q must be per-tensor; pass per-channel multiplier and shift")
        multiplier, shift = quantize_multiplier(input_q.scale / output_q.scale, multiplier_bits)
        zp_in, zp_out = int(np.atleast_1d(input_q.zero_point)[0]), int(np.atleast_1d(output_q.zero_point)[0])
        qmin = output_q.qmin if qmin is None else qmin
        qmax = output_q.qmax if qmax is None else qmax
    if multiplier is None or shift is None:
        raise OpError(f"{op}: multiplier and shift (or input_q and output_q) are required")
    mult, shifts = as_int_list(multiplier, "multiplier", op), as_int_list(shift, "shift", op)
    if min(shifts) < 0 or max(shifts) > 62:
        raise OpError(f"{op}: shift must be in [0, 62] (a right shift), got {shifts[:4]}; fold a left shift "
                      "into the multiplier")
    if min(mult) < 0 or max(mult) > 2**31 - 1:
        raise OpError(f"{op}: multiplier must be in [0, 2**31 - 1], got {mult[:4]}")
    if (len(mult) > 1 or len(shifts) > 1) and axis is None:
        raise OpError(f"{op}: per-channel multiplier / shift need axis=")
    lo = out_type.qmin if qmin is None else int(qmin)
    hi = out_type.qmax if qmax is None else int(qmax)
    if lo > hi:
        raise OpError(f"{op}: qmin={lo} is greater than qmax={hi}")
    attrs = {
        "multiplier": mult, "shift": shifts, "rounding": rounding_attr(rounding, op), "zp_in": zp_in,
        "zp_out": int(zp_out), "qmin": lo, "qmax": hi, "axis": _axis(axis, _ndim(x)),
        "out_dtype": out_type.container.name,
    }
    return make_call(op, [x], attrs)


def quantize_info(
    x: relax.Expr,
    qparams: QParams,
    *,
    name: str,
    kind: str = "activation",
    clip_min: Optional[float] = None,
    clip_max: Optional[float] = None,
    source: str = "",
) -> relax.Call:
    """``sima.quantize_info``: identity whose attributes describe ``x``'s quantization.

    Attributes: ``scale``, ``zero_point``, ``axis``, ``dtype``, ``qmin``, ``qmax``, ``clip_min``,
    ``clip_max`` (real range, defaulting to the representable one), ``kind`` and ``name`` (the
    tensor or layer name, the key of :func:`tvm_sima.read_quantize_info`), and, when known,
    ``source``: the model file's own name of the node computing the tensor.
    """
    if kind not in KINDS:
        raise OpError(f"sima.quantize_info: kind={kind!r}; use one of {KINDS}")
    if not name:
        raise OpError("sima.quantize_info: name is required (it keys read_quantize_info)")
    attrs = qparams_attrs(qparams)
    attrs["axis"] = _axis(qparams.axis, _ndim(x))
    lo = float(np.min(qparams.scale * (qparams.qmin - qparams.zero_point)))
    hi = float(np.max(qparams.scale * (qparams.qmax - qparams.zero_point)))
    attrs.update(
        clip_min=lo if clip_min is None else float(clip_min),
        clip_max=hi if clip_max is None else float(clip_max),
        kind=kind,
        name=name,
    )
    if source:
        attrs["source"] = str(source)
    return make_call("sima.quantize_info", [x], attrs)


def simulated_quantize(
    x: relax.Expr,
    *,
    kind: str,
    dom_scale: Union[float, Sequence[float]],
    clip_min: float,
    clip_max: float,
    sign: bool = True,
    rounding: Union[RoundingMode, str] = RoundingMode.HALF_EVEN,
    axis: Optional[int] = None,
    seed: int = 0,
    name: str = "",
) -> relax.Call:
    """``sima.simulated_quantize`` (relay's): ``clip(round(x / dom_scale), clip_min, clip_max) * dom_scale``.

    Float in, float out: the fake quantization used while calibrating. ``clip_min`` /
    ``clip_max`` are in integer units (e.g. -127 and 127). STOCHASTIC rounding draws from a
    counter-based hash of the element index and ``seed`` (reproducible, unbiased; not NumPy's
    generator, so not bit-identical to :func:`tvm_sima.math.round_real`). Needs a static shape.
    ``name`` is the quantized tensor's identity (calibration statistics are keyed by it).
    """
    op = "sima.simulated_quantize"
    if kind not in KINDS:
        raise OpError(f"{op}: kind={kind!r}; use one of {KINDS}")
    scales = [float(s) for s in np.atleast_1d(dom_scale)]
    if not all(np.isfinite(scales)) or min(scales) <= 0:
        raise OpError(f"{op}: dom_scale must be finite and > 0, got {scales[:4]}")
    if clip_min > clip_max:
        raise OpError(f"{op}: clip_min={clip_min} is greater than clip_max={clip_max}")
    if len(scales) > 1 and axis is None:
        raise OpError(f"{op}: a per-channel dom_scale needs axis=")
    attrs = {"kind": kind, "dom_scale": scales, "clip_min": float(clip_min), "clip_max": float(clip_max),
             "sign": bool(sign), "rounding": rounding_attr(rounding, op, integer_kernel=False),
             "axis": _axis(axis, _ndim(x)), "seed": int(seed), "name": str(name)}
    return make_call(op, [x], attrs)


def _register() -> None:
    from ..topi_ext import quant as legal

    define_op("sima.quantize", "float -> int affine quantization", _infer_quantize, legal.legalize_quantize)
    define_op("sima.dequantize", "int -> float affine dequantization", _infer_dequantize, legal.legalize_dequantize)
    define_op("sima.requantize", "int -> int fixed-point requantization", _infer_requantize,
              legal.legalize_requantize)
    define_op("sima.quantize_info", "identity carrying quantization parameters", _infer_identity,
              legal.legalize_quantize_info)
    define_op("sima.simulated_quantize", "float fake quantization", _infer_simulated,
              legal.legalize_simulated_quantize)


_register()
