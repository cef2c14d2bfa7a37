"""TE computes of ``sima.conv2d`` and ``sima.dense``: int32 accumulation, integer requantization.

Three stages per op: padding with the input zero point (conv only), the int32 reduction
``sum(x * w)`` (int64 for 16-bit data or an int64 bias: :func:`accumulator_dtype`), and the
epilogue ``clip(round((acc + bias) * M / 2**N) + zp_out)`` in int64, cast to the output type.
The epilogue block carries the op's attributes (``sima.*``).
"""

from __future__ import annotations

from typing import Any, Optional

import tvm
from tvm import relax, te, tirx

from ..math import RoundingMode
from .quant import Channel, block_attrs, clip_expr
from .rounding import i64, requantize_expr

__all__ = ["accumulator_dtype", "legalize_conv2d", "legalize_dense"]


def _epilogue(acc: te.Tensor, bias: Any, a: Any, chans: list[Channel], consts: tuple, channel_axis: int,
              name: str) -> te.Tensor:
    mode = RoundingMode.parse(str(a["rounding"]))
    out_dtype = str(a["out_dtype"])
    attrs = block_attrs(name, a)

    def element(*idx: Any) -> Any:
        it = iter(consts)
        mult, shift = (c.at(next(it) if c.per_channel else None, idx) for c in chans)
        total = i64(acc[idx])
        if bias is not None:
            total = total + i64(bias[idx[channel_axis]])
        y = requantize_expr(total, mult, shift, mode) + int(a["output_zero_point"])
        return clip_expr(y, int(a["qmin"]), int(a["qmax"]), "int64").astype(out_dtype)

    return te.compute(acc.shape, element, name=name.replace(".", "_"), attrs=attrs)


def _requant_channels(a: Any, channel_axis: int) -> list[Channel]:
    return [Channel(a["multiplier"], "int64", channel_axis), Channel(a["shift"], "int64", channel_axis)]


def accumulator_dtype(data: te.Tensor, bias: Optional[te.Tensor]) -> str:
    """int64 for data wider than 8 bits or an int64 bias (the NPU's 48-bit accumulator), else int32."""
    wide = tvm.DataType(str(data.dtype)).bits > 8 or (bias is not None and str(bias.dtype) == "int64")
    return "int64" if wide else "int32"


def legalize_conv2d(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    nchw = str(a["data_layout"]) == "NCHW"
    channel_axis = 1 if nchw else 3
    chans = _requant_channels(a, channel_axis)
    extra = [arg for c in chans for arg in c.arg()]
    (sh, sw), (dh, dw), (pt, pl, pb, pr) = a["strides"], a["dilation"], a["padding"]
    zp_in = int(a["input_zero_point"])
    has_bias = bool(a["has_bias"])

    def compute(data: te.Tensor, weight: te.Tensor, *rest: te.Tensor) -> te.Tensor:
        bias, consts = (rest[0], rest[1:]) if has_bias else (None, rest)
        if nchw:
            n, c, h, w = data.shape
            cout, ipg, kh, kw = weight.shape
        else:
            n, h, w, c = data.shape
            kh, kw, ipg, cout = weight.shape
        opg = cout // int(a["groups"])
        ph, pw = h + pt + pb, w + pl + pr
        dtype = str(data.dtype)

        def padded(*idx: Any) -> Any:
            y, x = (idx[2], idx[3]) if nchw else (idx[1], idx[2])
            inside = tirx.all(y >= pt, y < pt + h, x >= pl, x < pl + w)
            src = (idx[0], idx[1], y - pt, x - pl) if nchw else (idx[0], y - pt, x - pl, idx[3])
            return tirx.if_then_else(inside, data[src], tirx.const(zp_in, dtype))

        pad_shape = (n, c, ph, pw) if nchw else (n, ph, pw, c)
        pad = te.compute(pad_shape, padded, name="sima_pad")
        oh = (ph - dh * (kh - 1) - 1) // sh + 1
        ow = (pw - dw * (kw - 1) - 1) // sw + 1
        ric = te.reduce_axis((0, ipg), name="ric")
        acc_dtype = accumulator_dtype(data, bias)
        rkh = te.reduce_axis((0, kh), name="rkh")
        rkw = te.reduce_axis((0, kw), name="rkw")

        def mac(*idx: Any) -> Any:
            o = idx[1] if nchw else idx[3]
            y, x = (idx[2], idx[3]) if nchw else (idx[1], idx[2])
            ci = (o // opg) * ipg + ric
            iy, ix = y * sh + rkh * dh, x * sw + rkw * dw
            xv = pad[idx[0], ci, iy, ix] if nchw else pad[idx[0], iy, ix, ci]
            wv = weight[o, ric, rkh, rkw] if nchw else weight[rkh, rkw, ric, o]
            return te.sum(xv.astype(acc_dtype) * wv.astype(acc_dtype), axis=[ric, rkh, rkw])

        acc_shape = (n, cout, oh, ow) if nchw else (n, oh, ow, cout)
        acc = te.compute(acc_shape, mac, name="sima_conv2d_acc")
        return _epilogue(acc, bias, a, chans, consts, channel_axis, "sima.conv2d")

    return bb.call_te(compute, *call.args, *extra, primfunc_name_hint="sima_conv2d")


def legalize_dense(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    chans = _requant_channels(a, 1)
    extra = [arg for c in chans for arg in c.arg()]
    has_bias = bool(a["has_bias"])

    def compute(data: te.Tensor, weight: te.Tensor, *rest: te.Tensor) -> te.Tensor:
        bias, consts = (rest[0], rest[1:]) if has_bias else (None, rest)
        k = te.reduce_axis((0, weight.shape[1]), name="k")
        acc_dtype = accumulator_dtype(data, bias)
        acc = te.compute(
            (data.shape[0], weight.shape[0]),
            lambda i, o: te.sum(data[i, k].astype(acc_dtype) * weight[o, k].astype(acc_dtype), axis=k),
            name="sima_dense_acc",
        )
        return _epilogue(acc, bias, a, chans, consts, 1, "sima.dense")

    return bb.call_te(compute, *call.args, *extra, primfunc_name_hint="sima_dense")
