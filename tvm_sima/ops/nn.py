"""Fused SiMa-style ops: ``sima.conv2d`` and ``sima.dense`` (int8 weight, int32 bias, shift).

On the raw integer input ``x`` (padding uses ``input_zero_point``)::

    acc = sum(x * w) + bias                                   (int32; int64 for 16-bit x or an int64 bias)
    y   = clip(round(acc * M / 2**N) + output_zero_point, qmin, qmax)

Shift-only form (``multiplier=None``, SiMa's ``requantize_qnn_convolution_dense``): ``M = 1``,
``N = shift`` in ``[0, 31]``, HALF_UP rounding (``(acc + 2**(N-1)) >> N``). Multiplier form
(TFLite's ``tflite_requantization_constants``): ``M`` Q31 and ``N = 31 + tflite_shift``, with
TFLITE rounding (or HALF_UP, LiteRT's FULLY_CONNECTED). Both are bit-exact with
:mod:`tvm_sima.math` (tests/ops/test_ops_numeric.py).
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

import numpy as np
from tvm import relax, tirx

from ..math import HW_MAX_RIGHT_SHIFT, RoundingMode, parse_qtype
from ._registry import OpError, define_op, make_call, tensor_type
from .quant import IntOrList, as_int_list, rounding_attr

__all__ = ["conv2d", "dense", "LAYOUTS"]

#: Data layout -> default kernel layout.
LAYOUTS = {"NCHW": "OIHW", "NHWC": "HWIO"}


def _pair(value: Union[int, Sequence[int]], name: str, op: str) -> list[int]:
    vals = [int(value)] * 2 if isinstance(value, (int, np.integer)) else [int(v) for v in value]
    if len(vals) != 2 or min(vals) < 1:
        raise OpError(f"{op}: {name} must be a positive int or a pair, got {value!r}")
    return vals


def _padding(value: Union[int, Sequence[int]], op: str) -> list[int]:
    if isinstance(value, (int, np.integer)):
        vals = [int(value)] * 4
    else:
        vals = [int(v) for v in value]
        vals = vals * 2 if len(vals) == 2 else vals
    if len(vals) != 4 or min(vals) < 0:
        raise OpError(f"{op}: padding must be an int, (pad_h, pad_w) or (top, left, bottom, right) >= 0, "
                      f"got {value!r}")
    return vals


def _requant_attrs(op: str, shift: IntOrList, multiplier: Optional[IntOrList],
                   rounding: Optional[Union[RoundingMode, str]], out_dtype: str,
                   qmin: Optional[int], qmax: Optional[int], output_zero_point: int) -> dict[str, Any]:
    shifts = as_int_list(shift, "shift", op)
    if multiplier is None:
        if min(shifts) < 0 or max(shifts) > HW_MAX_RIGHT_SHIFT:
            raise OpError(f"{op}: shift must be in [0, {HW_MAX_RIGHT_SHIFT}] for the shift-only op, got {shifts[:4]}")
        mults = [1]
        mode = RoundingMode.HALF_UP if rounding is None else RoundingMode.parse(rounding)
    else:
        mults = as_int_list(multiplier, "multiplier", op)
        if min(shifts) < 0 or max(shifts) > 62:
            raise OpError(f"{op}: the total right shift must be in [0, 62], got {shifts[:4]}")
        if min(mults) < 0 or max(mults) > 2**31 - 1:
            raise OpError(f"{op}: multiplier must be in [0, 2**31 - 1], got {mults[:4]}")
        mode = RoundingMode.TFLITE if rounding is None else RoundingMode.parse(rounding)
    out_type = parse_qtype(out_dtype)
    lo = out_type.qmin if qmin is None else int(qmin)
    hi = out_type.qmax if qmax is None else int(qmax)
    if lo > hi:
        raise OpError(f"{op}: qmin={lo} is greater than qmax={hi}")
    return {"shift": shifts, "multiplier": mults, "rounding": rounding_attr(mode, op), "qmin": lo, "qmax": hi,
            "output_zero_point": int(output_zero_point), "out_dtype": out_type.container.name}


def conv2d(
    data: relax.Expr,
    weight: relax.Expr,
    bias: Optional[relax.Expr],
    *,
    shift: IntOrList,
    multiplier: Optional[IntOrList] = None,
    strides: Union[int, Sequence[int]] = 1,
    padding: Union[int, Sequence[int]] = 0,
    dilation: Union[int, Sequence[int]] = 1,
    groups: int = 1,
    data_layout: str = "NCHW",
    kernel_layout: Optional[str] = None,
    input_zero_point: int = 0,
    output_zero_point: int = 0,
    rounding: Optional[Union[RoundingMode, str]] = None,
    qmin: Optional[int] = None,
    qmax: Optional[int] = None,
    out_dtype: str = "int8",
) -> relax.Call:
    """``sima.conv2d``: integer convolution, bias and requantization in one op (module docstring).

    ``data_layout`` NCHW (weights OIHW) or NHWC (weights HWIO); grouped and depthwise
    convolutions through ``groups``. ``shift`` / ``multiplier`` are ints or per-output-channel lists.
    """
    op = "sima.conv2d"
    if data_layout not in LAYOUTS:
        raise OpError(f"{op}: data_layout={data_layout!r}; use NCHW or NHWC")
    kernel_layout = kernel_layout or LAYOUTS[data_layout]
    if kernel_layout != LAYOUTS[data_layout]:
        raise OpError(f"{op}: data_layout {data_layout} needs kernel_layout {LAYOUTS[data_layout]}, "
                      f"got {kernel_layout}")
    if groups < 1:
        raise OpError(f"{op}: groups must be >= 1, got {groups}")
    attrs = _requant_attrs(op, shift, multiplier, rounding, out_dtype, qmin, qmax, output_zero_point)
    attrs.update(strides=_pair(strides, "strides", op), padding=_padding(padding, op),
                 dilation=_pair(dilation, "dilation", op), groups=int(groups), data_layout=data_layout,
                 kernel_layout=kernel_layout, input_zero_point=int(input_zero_point), has_bias=bias is not None)
    args = [data, weight] + ([bias] if bias is not None else [])
    return make_call(op, args, attrs)


def dense(
    data: relax.Expr,
    weight: relax.Expr,
    bias: Optional[relax.Expr],
    *,
    shift: IntOrList,
    multiplier: Optional[IntOrList] = None,
    input_zero_point: int = 0,
    output_zero_point: int = 0,
    rounding: Optional[Union[RoundingMode, str]] = None,
    qmin: Optional[int] = None,
    qmax: Optional[int] = None,
    out_dtype: str = "int8",
) -> relax.Call:
    """``sima.dense``: ``data (N, I) x weight (O, I)^T + bias``, requantized (module docstring)."""
    op = "sima.dense"
    attrs = _requant_attrs(op, shift, multiplier, rounding, out_dtype, qmin, qmax, output_zero_point)
    attrs.update(input_zero_point=int(input_zero_point), has_bias=bias is not None)
    args = [data, weight] + ([bias] if bias is not None else [])
    return make_call(op, args, attrs)


def _static(dim: Any) -> Optional[int]:
    value = getattr(dim, "value", None)
    return int(value) if isinstance(value, int) else None


def _check_int(op: str, ty: relax.TensorType, argument: str, allowed: tuple[str, ...], rank: int) -> None:
    if str(ty.dtype) not in allowed:
        raise OpError(f"{op}: {argument} must be {' or '.join(allowed)}, got {ty.dtype}")
    if ty.ndim != rank:
        raise OpError(f"{op}: {argument} must have rank {rank}, got {ty.ndim}")


def _check_channel_lists(op: str, call: relax.Call, channels: Optional[int], bias_index: int) -> None:
    if channels is None:
        return
    for key in ("shift", "multiplier"):
        count = len(call.attrs[key])
        if count not in (1, channels):
            raise OpError(f"{op}: {key} has {count} values but the op has {channels} output channels")
    if call.attrs["has_bias"]:
        bias = tensor_type(call, bias_index, op, "bias")
        _check_int(op, bias, "bias", ("int32", "int64"), 1)
        if _static(bias.shape[0]) not in (None, channels):
            raise OpError(f"{op}: bias has {_static(bias.shape[0])} values but the op has {channels} output channels")


def _conv_out(size: Any, k: int, stride: int, dilation: int, before: int, after: int) -> Any:
    return (size + before + after - dilation * (k - 1) - 1) // stride + 1


def _infer_conv2d(call: relax.Call, _bb: Any) -> relax.TensorType:
    op, a = "sima.conv2d", call.attrs
    data, weight = tensor_type(call, 0, op, "data"), tensor_type(call, 1, op, "weight")
    _check_int(op, data, "data", ("int8", "uint8", "int16"), 4)
    _check_int(op, weight, "weight", ("int8", "int16"), 4)
    nchw = str(a["data_layout"]) == "NCHW"
    n, c, h, w = (data.shape[i] for i in ((0, 1, 2, 3) if nchw else (0, 3, 1, 2)))
    o, i, kh, kw = (weight.shape[j] for j in ((0, 1, 2, 3) if nchw else (3, 2, 0, 1)))
    groups = int(a["groups"])
    cin = _static(c)
    static_weight = [_static(d) for d in (i, o, kh, kw)]
    if any(d is None for d in static_weight):
        raise OpError(f"{op}: the weight shape must be static, got {weight.shape}")
    ipg, cout, khs, kws = (int(d or 0) for d in static_weight)
    if cout % groups:
        raise OpError(f"{op}: groups={groups} does not divide the {cout} output channels")
    if cin is not None and cin != ipg * groups:
        raise OpError(f"{op}: data has {cin} channels but weight expects groups {groups} x {ipg} = {ipg * groups}")
    _check_channel_lists(op, call, cout, 2)
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilation"], a["padding"]
    h_in = _static(h) if _static(h) is not None else h
    w_in = _static(w) if _static(w) is not None else w
    oh, ow = _conv_out(h_in, khs, sh, dh, pt, pb), _conv_out(w_in, kws, sw, dw, pl, pr)
    for name, dim in (("height", oh), ("width", ow)):
        if isinstance(dim, int) and dim <= 0:
            raise OpError(f"{op}: the kernel does not fit the padded input {name}")
    shape = (n, cout, oh, ow) if nchw else (n, oh, ow, cout)
    return relax.TensorType([tirx.const(d, "int64") if isinstance(d, int) else d for d in shape],
                            str(a["out_dtype"]), data.vdevice)


def _infer_dense(call: relax.Call, _bb: Any) -> relax.TensorType:
    op = "sima.dense"
    data, weight = tensor_type(call, 0, op, "data"), tensor_type(call, 1, op, "weight")
    _check_int(op, data, "data", ("int8", "uint8", "int16"), 2)
    _check_int(op, weight, "weight", ("int8", "int16"), 2)
    features, expected = _static(data.shape[1]), _static(weight.shape[1])
    if features is not None and expected is not None and features != expected:
        raise OpError(f"{op}: data has {features} features but weight expects {expected}")
    cout = _static(weight.shape[0])
    _check_channel_lists(op, call, cout, 2)
    return relax.TensorType([data.shape[0], weight.shape[0]], str(call.attrs["out_dtype"]), data.vdevice)


def _register() -> None:
    from ..topi_ext import nn as legal

    define_op("sima.conv2d", "fused int8 conv2d + bias + requantize", _infer_conv2d, legal.legalize_conv2d)
    define_op("sima.dense", "fused int8 dense + bias + requantize", _infer_dense, legal.legalize_dense)


_register()
