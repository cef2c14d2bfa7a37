"""TE computes and FLegalize functions of the quantization ops.

Every legalized block carries the op's attributes as ``T.sblock_attr`` entries named
``sima.<attribute>`` (plus ``sima.op``), which survive FuseOps and FuseTIR: this is how a
``quantize_info`` reaches the fused kernels. Per-channel parameters become constant
arguments of the PrimFunc, indexed by the channel axis.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
from tvm import relax, te, tirx
from tvm.ir.expr import Expr as PrimExpr

from ..math import RoundingMode
from .rounding import i64, requantize_expr, round_real_expr, stochastic_round_expr, uniform_hash_expr

__all__ = [
    "Channel",
    "block_attrs",
    "clip_expr",
    "legalize_quantize",
    "legalize_dequantize",
    "legalize_requantize",
    "legalize_quantize_info",
    "legalize_simulated_quantize",
]


def block_attrs(op: str, attrs: Any) -> dict[str, Any]:
    """``{"sima.op": op, "sima.<key>": value, ...}`` from a call's attributes."""
    out: dict[str, Any] = {"sima.op": op}
    for key, value in attrs.items():
        out[f"sima.{key}"] = list(value) if not isinstance(value, (str, int, float, bool)) else value
    return out


class Channel:
    """Per-tensor scalars or per-channel constant vectors, as TE values at an index."""

    def __init__(self, values: Any, dtype: str, axis: int) -> None:
        self.values = np.asarray(list(values), dtype=dtype)
        self.dtype, self.axis = dtype, axis

    @property
    def per_channel(self) -> bool:
        return self.values.size > 1

    def arg(self) -> list[relax.Expr]:
        return [relax.const(self.values, self.dtype)] if self.per_channel else []

    def at(self, tensor: Any, idx: tuple) -> PrimExpr:
        if self.per_channel:
            return tensor[idx[self.axis]]
        return tirx.const(self.values[0].item(), self.dtype)


def _elementwise(bb: Any, call: relax.Call, name: str, channels: list[Channel],
                 body: Callable[..., PrimExpr], out_dtype: str, with_index: bool = False) -> relax.Expr:
    """Legalize a one-input element-wise op whose constants may be per-channel."""
    extra = [arg for c in channels for arg in c.arg()]
    attrs = block_attrs(name, call.attrs)

    def compute(x: te.Tensor, *consts: te.Tensor) -> te.Tensor:
        def element(*idx: PrimExpr) -> PrimExpr:
            it = iter(consts)
            vals = [c.at(next(it) if c.per_channel else None, idx) for c in channels]
            value = body(x[idx], vals, idx) if with_index else body(x[idx], vals)
            return value.astype(out_dtype)

        return te.compute(x.shape, element, name=name.replace(".", "_"), attrs=attrs)

    return bb.call_te(compute, call.args[0], *extra, primfunc_name_hint=name.replace(".", "_"))


def clip_expr(value: PrimExpr, lo: int, hi: int, dtype: str) -> PrimExpr:
    """``min(max(value, lo), hi)`` with the bounds as ``dtype`` constants."""
    return tirx.min(tirx.max(value, tirx.const(lo, dtype)), tirx.const(hi, dtype))


def _affine_channels(a: Any) -> list[Channel]:
    """Scale (float64) and zero point (int64), per tensor or per channel."""
    axis = int(a["axis"])
    return [Channel(a["scale"], "float64", axis), Channel(a["zero_point"], "int64", axis)]


def legalize_quantize(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    mode = RoundingMode.parse(str(a["rounding"]))
    chans = _affine_channels(a)

    precision = str(a["precision"])

    def body(x: PrimExpr, v: list) -> PrimExpr:
        if precision == "float32":  # x / scale rounded to float32, as ONNX / TFLite compute it
            quotient = (x.astype("float32") / v[0].astype("float32")).astype("float64")
        elif precision == "float32_reciprocal":  # x * float32(1 / scale), as PyTorch's quantize_per_tensor
            quotient = (x.astype("float32") * (tirx.const(1.0, "float64") / v[0]).astype("float32")).astype("float64")
        else:
            quotient = x.astype("float64") / v[0]
        q = round_real_expr(quotient, mode) + v[1].astype("float64")
        return clip_expr(q, int(a["qmin"]), int(a["qmax"]), "float64")

    return _elementwise(bb, call, "sima.quantize", chans, body, str(a["out_dtype"]))


def legalize_dequantize(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    chans = _affine_channels(a)

    def body(x: PrimExpr, v: list) -> PrimExpr:
        return v[0] * (x.astype("int64") - v[1]).astype("float64")

    return _elementwise(bb, call, "sima.dequantize", chans, body, str(a["out_dtype"]))


def legalize_requantize(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    mode = RoundingMode.parse(str(a["rounding"]))
    axis = int(a["axis"])
    chans = [Channel(a["multiplier"], "int64", axis), Channel(a["shift"], "int64", axis)]

    def body(x: PrimExpr, v: list) -> PrimExpr:
        y = requantize_expr(i64(x) - int(a["zp_in"]), v[0], v[1], mode) + int(a["zp_out"])
        return clip_expr(y, int(a["qmin"]), int(a["qmax"]), "int64")

    return _elementwise(bb, call, "sima.requantize", chans, body, str(a["out_dtype"]))


def legalize_quantize_info(bb: Any, call: relax.Call) -> relax.Expr:
    """An identity PrimFunc ``(data, tag: int64) -> copy`` whose block carries the info.

    The scalar ``tag`` (passed as a ``PrimValue``) is what keeps the info alive: FoldConstant
    only evaluates a ``call_tir`` whose arguments are all tensor constants, so without it the
    quantize_info of a weight would be folded away together with its attributes.
    """
    ty = call.args[0].ty
    if not isinstance(ty.shape, relax.ShapeExpr):
        raise ValueError("sima.quantize_info: the input's shape must be known (static or symbolic), not unknown")
    shape = list(ty.shape.values)
    data = te.placeholder(shape, str(ty.dtype), name="data")
    tag = tirx.Var("sima_info_tag", "int64")
    attrs = block_attrs("sima.quantize_info", call.attrs)
    out = te.compute(shape, lambda *idx: data[idx], name="sima_quantize_info", attrs=attrs)
    func = te.create_prim_func([data, tag, out], "int64").without_attr("global_symbol")
    gvar = bb.add_func(func, "sima_quantize_info")
    tag_value = relax.prim_value(tirx.IntImm("int64", 0))
    return relax.call_tir(gvar, [call.args[0], tag_value], relax.TensorType(ty.shape, ty.dtype))


def legalize_simulated_quantize(bb: Any, call: relax.Call) -> relax.Expr:
    a = call.attrs
    mode = RoundingMode.parse(str(a["rounding"]))
    axis = int(a["axis"])
    chans = [Channel(a["dom_scale"], "float64", axis)]
    lo, hi = float(a["clip_min"]), float(a["clip_max"])
    dtype = str(call.args[0].ty.dtype)
    seed = int(a["seed"])
    shape = [int(d) for d in call.args[0].ty.shape.values] if mode is RoundingMode.STOCHASTIC else []

    def body(x: PrimExpr, v: list, idx: tuple) -> PrimExpr:
        scaled = x.astype("float64") / v[0]
        if mode is RoundingMode.STOCHASTIC:
            flat = i64(0)
            for i, extent in zip(idx, shape, strict=True):
                flat = flat * extent + i64(i)
            q = stochastic_round_expr(scaled, uniform_hash_expr(flat, seed))
        else:
            q = round_real_expr(scaled, mode)
        q = tirx.min(tirx.max(q, tirx.const(lo, "float64")), tirx.const(hi, "float64"))
        return q * v[0]

    return _elementwise(bb, call, "sima.simulated_quantize", chans, body, dtype, with_index=True)
