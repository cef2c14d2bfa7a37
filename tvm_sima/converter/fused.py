"""conv2d / matmul QDQ chains -> ``sima.conv2d`` / ``sima.dense`` (see :mod:`tvm_sima.converter`)."""

from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
from tvm import relax

from .. import math as sm
from .. import ops as so
from ..passes.annotate import remap
from ..passes.patterns import GraphIndex, constant_value, op_name
from . import Match, Tail, dequantized, match_tail, per_tensor, rules
from .rules import HardwareLimits

__all__ = ["match_fused"]

_PATTERN = ("dequantize(int8 x), dequantize(int8 const W) -> conv2d / matmul -> [+ bias] -> "
            "[relu / relu6 / clip] -> quantize")


def _bias(index: GraphIndex, add: relax.Call, current: relax.Var, x_q: sm.QParams,
          w_q: sm.QParams) -> Union[np.ndarray, str]:
    """The int32 bias codes of ``add`` (dequantized int32 constant, or a float constant)."""
    other = add.args[1] if add.args[0].same_as(current) else add.args[0]
    deq = dequantized(index, other, through_reshape=True)
    if deq is not None:
        codes = constant_value(deq[0])
        if codes is None or codes.dtype != np.int32:
            return "the bias is not a dequantized int32 constant"
        return codes.reshape(-1).astype(np.int64)
    value = constant_value(other)
    if value is None and isinstance(other, relax.Var) and op_name(index.producer.get(other)) == "relax.reshape":
        value = constant_value(index.producer[other].args[0])  # type: ignore[union-attr]
    if value is None:
        return "the added operand is neither a constant nor a dequantized int32 constant"
    scales = per_tensor(x_q)[0] * np.atleast_1d(np.asarray(w_q.scale, dtype=np.float64))
    return np.round(value.reshape(-1).astype(np.float64) / scales).astype(np.int64)


class _Chain:
    def __init__(self, root: relax.Var, call: relax.Call, x: relax.Expr, x_q: sm.QParams, w: np.ndarray,
                 w_q: sm.QParams) -> None:
        self.root, self.call, self.x, self.x_q, self.w, self.w_q = root, call, x, x_q, w, w_q
        self.bias: Optional[np.ndarray] = None
        self.tail = Tail()


def match_fused(index: GraphIndex, var: relax.Var, mode: str, limits: HardwareLimits) -> Union[Match, str]:
    """The :class:`Match` of the conv2d / matmul bound to ``var``, or why there is none."""
    call = index.producer[var]
    assert isinstance(call, relax.Call)
    x, w = dequantized(index, call.args[0]), dequantized(index, call.args[1])
    if x is None or w is None:
        return f"not {_PATTERN}: an operand is not dequantized"
    weight = constant_value(w[0])
    if weight is None:
        return "the weight is not a constant (two activations multiplied stay float)"
    bad = rules.check_tensors([str(x[1].dtype)], str(weight.dtype))
    if bad:
        return bad
    chain = _Chain(var, call, x[0], x[1], weight, w[1])
    start = var
    user = index.single_user(var)
    if user is not None and op_name(index.producer[user]) == "relax.add":
        bias = _bias(index, index.producer[user], var, x[1], w[1])  # type: ignore[arg-type]
        if isinstance(bias, str):
            return bias
        chain.bias, start = bias, user
        chain.tail.vars.append(user)
    tail = match_tail(index, start, chain.tail)
    if tail is None:
        return f"not {_PATTERN}"
    if op_name(call) == "relax.nn.conv2d":
        a = call.attrs
        kernel_layout = str(a["kernel_layout"])
        khw = [weight.shape[kernel_layout.index("H")], weight.shape[kernel_layout.index("W")]]
        bad = rules.check_window(limits, khw, [int(s) for s in a["strides"]], [int(d) for d in a["dilation"]])
        if bad:
            return bad
    bad = rules.check_tensors([str(tail.out_q.dtype)])  # type: ignore[union-attr]
    if bad:
        return bad
    try:
        fused_args = _constants(chain, mode)
    except ValueError as err:
        return str(err)
    bad = rules.check_requant(limits, fused_args["shift"], fused_args["multiplier"], fused_args["bias"])
    if bad:
        return bad
    is_dense = op_name(call) == "relax.matmul"
    return Match(var, tail, "sima.dense" if is_dense else "sima.conv2d",
                 lambda bb, mapping: _emit(chain, fused_args, remap(chain.x, mapping)))


def _constants(chain: _Chain, mode: str) -> dict[str, Any]:
    call = chain.call
    is_dense = op_name(call) == "relax.matmul"
    x_q, w_q, out_q = chain.x_q, chain.w_q, chain.tail.out_q
    assert out_q is not None
    zp_x = per_tensor(x_q)[1]
    if is_dense:
        weight = chain.w.T  # (K, O) -> OI
    else:
        a = call.attrs
        kernel_layout, groups = str(a["kernel_layout"]), int(a["groups"])
        hwio = chain.w.transpose([kernel_layout.index(c) for c in "HWIO"])
        weight = hwio.reshape(*hwio.shape[:3], groups, -1)  # HWIGO
    product = sm.tflite_product_quantization(per_tensor(x_q)[0], np.atleast_1d(w_q.scale))
    product_q = product[0] if len(product) == 1 else product
    output = sm.Quantization(*per_tensor(out_q))
    qmin, qmax = chain.tail.codes()
    if mode == "tflite":
        b, mult, zc, shift = sm.tflite_requantization_constants(weight, chain.bias, zp_x, product_q, output, is_dense)
        rounding = sm.RoundingMode.HALF_UP if is_dense else sm.RoundingMode.TFLITE
        w_int, requant = weight, sm.FixedPointMultiplier.from_q31_right_shift(mult, shift, rounding).op_args()
        extra: dict[str, Any] = {**requant, "output_zero_point": int(zc)}
    else:
        w_int, b, folded_shift = sm.requantize_qnn_convolution_dense(weight, chain.bias, zp_x, product_q, output,
                                                                     is_dense)
        total = np.asarray(folded_shift)
        extra = {"shift": total.tolist() if total.ndim else int(total), "multiplier": None, "output_zero_point": 0,
                 "rounding": None}
    return {"weight": w_int, "bias": np.asarray(b, dtype=np.int64), "zp_x": zp_x, "qmin": qmin, "qmax": qmax,
            "out_dtype": str(out_q.dtype), **extra}


def _emit(chain: _Chain, c: dict[str, Any], new_x: relax.Expr) -> relax.Expr:
    call = chain.call
    bias = relax.const(c["bias"].astype("int32"), "int32")
    common = {"shift": c["shift"], "input_zero_point": c["zp_x"], "qmin": c["qmin"], "qmax": c["qmax"],
              "out_dtype": c["out_dtype"], "multiplier": c["multiplier"],
              "output_zero_point": c["output_zero_point"], "rounding": c["rounding"]}
    if op_name(call) == "relax.matmul":
        return so.dense(new_x, relax.const(np.ascontiguousarray(c["weight"]).astype("int8"), "int8"), bias, **common)
    a = call.attrs
    w_int = c["weight"]
    layout = str(a["data_layout"])
    kernel = sm.hwigo_to_oihw(w_int) if layout == "NCHW" else w_int.reshape(*w_int.shape[:3], -1)
    return so.conv2d(new_x, relax.const(np.ascontiguousarray(kernel).astype("int8"), "int8"), bias,
                     strides=[int(v) for v in a["strides"]], padding=[int(v) for v in a["padding"]],
                     dilation=[int(v) for v in a["dilation"]], groups=int(a["groups"]), data_layout=layout, **common)
