"""conv2d / matmul QDQ chains -> ``sima.conv2d`` / ``sima.dense`` (see :mod:`tvm_sima.converter`)."""

from __future__ import annotations

from typing import Optional, Union

import numpy as np
from tvm import relax

from .. import lowering
from .. import math as sm
from ..graph import GraphIndex, constant_value, op_name, remap, static_shape
from ..lowering.base import per_tensor
from . import rules
from .chains import Match, Tail, dequantized, match_tail
from .rules import HardwareLimits

__all__ = ["match_fused"]

_PATTERN = ("dequantize(int8 x), dequantize(int8 const W) -> conv2d / conv2d_transpose / matmul -> [+ bias] -> "
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


def _transposed_weight(index: GraphIndex, expr: relax.Expr) -> Optional[tuple[np.ndarray, sm.QParams]]:
    """``(codes, qparams)`` of ``permute_dims(dequantize(int8 constant))`` (ONNX ``Gemm`` with ``transB=1``).

    The codes come back transposed, and a per-channel axis follows its dimension.
    """
    value = index.producer.get(expr) if isinstance(expr, relax.Var) else None
    if op_name(value) != "relax.permute_dims":
        return None
    assert isinstance(value, relax.Call)
    deq = dequantized(index, value.args[0])
    codes = constant_value(deq[0]) if deq is not None else None
    if deq is None or codes is None:
        return None
    axes = [int(a) for a in value.attrs["axes"]] if value.attrs["axes"] is not None else \
        list(range(codes.ndim))[::-1]
    qp = deq[1]
    if qp.per_channel and qp.axis is not None:
        qp = sm.QParams(qp.scale, qp.zero_point, qp.dtype, axis=axes.index(int(qp.axis) % codes.ndim),
                        narrow_range=qp.narrow_range)
    return codes.transpose(axes), qp


class _Chain:
    def __init__(self, root: relax.Var, call: relax.Call, x: relax.Expr, x_q: sm.QParams, w: np.ndarray,
                 w_q: sm.QParams) -> None:
        self.root, self.call, self.x, self.x_q, self.w, self.w_q = root, call, x, x_q, w, w_q
        self.bias: Optional[np.ndarray] = None
        self.tail = Tail()
        self.transpose: Optional[lowering.TransposeConv] = None


def _transpose_conv(chain: _Chain, limits: HardwareLimits) -> Optional[str]:
    """Set ``chain.transpose`` (a conv2d_transpose's equivalent convolution), or say why there is none."""
    tc = lowering.transpose_conv(chain.call)
    if isinstance(tc, str):
        return tc
    if static_shape(chain.call.args[0]) is None:
        return "conv2d_transpose input without a static shape"
    out_axis, channels = tc.kernel_layout.index("O"), chain.w.shape[tc.kernel_layout.index("O")] * tc.groups
    scales = np.atleast_1d(chain.w_q.scale)
    axis = chain.w_q.axis % chain.w.ndim if chain.w_q.axis is not None else None
    if scales.size > 1 and (axis != out_axis or scales.size * tc.groups != channels):
        return (f"per-channel weight scales along axis {chain.w_q.axis} of the {tc.kernel_layout} weight, not its "
                "output channels")
    if scales.size > 1 and tc.groups > 1:  # one scale per filter of a group, the same in every group
        chain.w_q = sm.QParams(np.tile(scales, tc.groups), np.tile(np.atleast_1d(chain.w_q.zero_point), tc.groups),
                               str(chain.w_q.dtype), axis=0)
    chain.transpose = tc
    khw = [chain.w.shape[tc.kernel_layout.index("H")], chain.w.shape[tc.kernel_layout.index("W")]]
    return rules.check_window(limits, khw, [1, 1], list(tc.dilation))


def match_fused(index: GraphIndex, var: relax.Var, numerics: lowering.Numerics,
                limits: HardwareLimits) -> Union[Match, str]:
    """The :class:`Match` of the conv2d / matmul bound to ``var``, or why there is none."""
    call = index.producer[var]
    assert isinstance(call, relax.Call)
    x, w = dequantized(index, call.args[0]), dequantized(index, call.args[1])
    transposed = _transposed_weight(index, call.args[1]) if w is None else None
    if x is None or (w is None and transposed is None):
        return f"not {_PATTERN}: an operand is not dequantized"
    weight, w_q = transposed if transposed is not None else (constant_value(w[0]), w[1])  # type: ignore[index]
    if weight is None:
        return "the weight is not a constant (two activations multiplied stay float)"
    bad = rules.check_tensors([str(x[1].dtype)], str(weight.dtype))
    if bad:
        return bad
    if op_name(call) == "relax.matmul" and (static_shape(call.args[0]) is None or static_shape(var) is None):
        return "matmul without static shapes (sima.dense flattens its data to 2-D)"
    chain = _Chain(var, call, x[0], x[1], weight, w_q)
    bad = _transpose_conv(chain, limits) if op_name(call) == "relax.nn.conv2d_transpose" else None
    if bad:
        return bad
    start = var
    user = index.single_user(var)
    if user is not None and op_name(index.producer[user]) == "relax.add":
        bias = _bias(index, index.producer[user], var, x[1], chain.w_q)  # type: ignore[arg-type]
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
        consts = _constants(chain, numerics)
    except ValueError as err:
        return str(err)
    bad = rules.check_requant(limits, consts.shift, consts.multiplier, consts.bias)
    if bad:
        return bad
    is_dense = op_name(call) == "relax.matmul"
    return Match(var, tail, "sima.dense" if is_dense else "sima.conv2d",
                 lambda bb, mapping: _emit(bb, chain, consts, remap(chain.x, mapping)))


def _constants(chain: _Chain, numerics: lowering.Numerics) -> lowering.FusedConstants:
    call = chain.call
    is_dense = op_name(call) == "relax.matmul"
    assert chain.tail.out_q is not None
    if is_dense:
        weight = chain.w.T  # (K, O) -> OI
    elif chain.transpose is not None:
        weight = chain.transpose.hwigo(chain.w)
    else:
        a = call.attrs
        kernel_layout, groups = str(a["kernel_layout"]), int(a["groups"])
        hwio = chain.w.transpose([kernel_layout.index(c) for c in "HWIO"])
        weight = hwio.reshape(*hwio.shape[:3], groups, -1)  # HWIGO
    return lowering.from_integer_weights(weight, chain.bias, chain.x_q, chain.w_q, chain.tail.out_q, is_dense,
                                         numerics)


def _emit(bb: relax.BlockBuilder, chain: _Chain, consts: lowering.FusedConstants, new_x: relax.Expr) -> relax.Expr:
    call = chain.call
    assert chain.tail.out_q is not None
    zp_x, codes, out_dtype = per_tensor(chain.x_q)[1], chain.tail.codes(), str(chain.tail.out_q.dtype)
    if op_name(call) == "relax.matmul":  # sima.dense takes 2-D data: other ranks are flattened around it
        return lowering.emit_dense(bb, new_x, consts, zp_x, codes, out_dtype, static_shape(call.args[0]),
                                   static_shape(chain.root))
    if chain.transpose is not None:
        shape = static_shape(call.args[0])
        assert shape is not None  # checked by _transpose_conv
        return lowering.emit_conv2d_transpose(bb, new_x, shape, consts, zp_x, codes, out_dtype, chain.transpose)
    a = call.attrs
    return lowering.emit_conv2d(new_x, consts, zp_x, codes, out_dtype, strides=[int(v) for v in a["strides"]],
                                padding=[int(v) for v in a["padding"]], dilation=[int(v) for v in a["dilation"]],
                                groups=int(a["groups"]), layout=str(a["data_layout"]))
