"""Integer forms of the QDQ ops around the fused layers (see :mod:`tvm_sima.converter`).

Each matched chain is ``op(dequantize(a) [, dequantize(b)]) -> clip* -> quantize``:

* add / subtract — ``mode="tflite"``: TFLite's int8 ADD / SUB (inputs shifted left by 20, each
  scaled by a Q31 multiplier relative to twice the larger input scale, summed, then scaled to the
  output; every step ``MultiplyByQuantizedMultiplier``'s double rounding). ``mode="shift"``: the
  fixed-point add of :mod:`tvm_sima.math.elementwise` (15-bit multipliers, one final rounding);
* multiply — ``(a - zp_a)(b - zp_b)`` requantized by ``s_a s_b / s_y`` (TFLite's MUL; 15-bit
  multiplier in shift mode);
* avg_pool2d — window sums of the codes divided by the number of in-bounds elements, rounded
  half away from zero (TFLite's AVERAGE_POOL_2D);
* mean over spatial axes — TFLite's int8 MEAN;
* max_pool2d, reshape, flatten, transpose, squeeze, expand_dims, strided_slice, concat — on the
  codes when input and output share their parameters (requantized otherwise);
* relu / relu6 / clip / maximum / minimum with a constant — clips on the codes;
* sigmoid, tanh, exp, gelu, silu, ... (the realize pass's ``LUT_FUNCTIONS``) — a 256-entry table
  ``quantize(f(dequantize(code)))`` indexed by the code (``relax.take``), rounded as the model's
  quantize rounds (half to even for ONNX, half away from zero for TFLite).
"""

from __future__ import annotations

from typing import Union

import numpy as np
from tvm import relax

from .. import math as sm
from .. import ops as so
from ..passes.annotate import remap
from ..passes.patterns import GraphIndex, clip_bounds, op_name
from ..passes.realize import LUT_FUNCTIONS
from . import Match, Tail, dequantized, match_tail, per_tensor, rules, same_qparams
from .rules import HardwareLimits

__all__ = ["INTEGER_OPS", "match_integer"]

_MOVES = ("relax.nn.max_pool2d", "relax.reshape", "relax.flatten", "relax.permute_dims", "relax.squeeze",
          "relax.expand_dims", "relax.strided_slice", "relax.concat")
_ARITHMETIC = ("relax.add", "relax.subtract", "relax.multiply")
INTEGER_OPS = (*_ARITHMETIC, "relax.nn.avg_pool2d", "relax.mean", *_MOVES, *LUT_FUNCTIONS)
_INT32 = (-(2**31), 2**31 - 1)


def _tensor_args(call: relax.Call) -> list[relax.Expr]:
    if op_name(call) == "relax.concat":
        return list(call.args[0].fields)  # type: ignore[attr-defined]
    if op_name(call) in _ARITHMETIC:
        return list(call.args[:2])
    return [call.args[0]]


def match_integer(index: GraphIndex, var: relax.Var, mode: str, limits: HardwareLimits) -> Union[Match, str]:
    """The :class:`Match` of the op bound to ``var`` (an INTEGER_OPS op or a clip), or why there is none."""
    call = index.producer[var]
    assert isinstance(call, relax.Call)
    name = op_name(call) or ""
    bounds = clip_bounds(call)
    args = [bounds[0]] if bounds is not None else _tensor_args(call)
    sources = [dequantized(index, a) for a in args]
    if any(s is None for s in sources):
        return "an input is not dequantized from integers (float producer)"
    ins = [(s[0], s[1]) for s in sources if s is not None]
    if any(qp.per_channel for _, qp in ins):
        return "per-channel activation parameters"
    tail = Tail()
    if bounds is not None:
        tail.lo, tail.hi = bounds[1], bounds[2]
    tail = match_tail(index, var, tail)  # type: ignore[assignment]
    if tail is None:
        return "its result does not reach a quantize (through clips only)"
    assert tail.out_q is not None
    bad = rules.check_tensors([str(qp.dtype) for _, qp in ins] + [str(tail.out_q.dtype)])
    if bad:
        return bad
    if bounds is not None:
        return Match(var, tail, "integer clip", lambda bb, m: _moved(bb, remap(ins[0][0], m), ins[0][1], tail))
    if name in _MOVES:
        if name == "relax.nn.max_pool2d":
            a = call.attrs
            bad = rules.check_window(limits, [int(k) for k in a["pool_size"]], [int(s) for s in a["strides"]],
                                     [int(d) for d in a["dilation"]])
            if bad:
                return bad
        return Match(var, tail, f"integer {name.split('.')[-1]}", lambda bb, m: _move(bb, call, ins, tail, m))
    if name in _ARITHMETIC:
        return _arithmetic(var, call, ins, tail, mode, limits)
    if name == "relax.nn.avg_pool2d":
        return _avg_pool(var, call, ins[0], tail, limits)
    if name in LUT_FUNCTIONS:
        return _lut(index, var, call, ins[0], tail)
    return _mean(var, call, ins[0], tail)


def _clip(bb: relax.BlockBuilder, y: relax.Expr, tail: Tail) -> relax.Expr:
    lo, hi = tail.codes()
    assert tail.out_q is not None
    if (lo, hi) == (tail.out_q.qmin, tail.out_q.qmax):
        return y
    return relax.op.clip(bb.emit(y), lo, hi)


def _requantize(y: relax.Expr, in_q: sm.QParams, tail: Tail) -> relax.Expr:
    """TFLite's int8 -> int8 requantization (QUANTIZE op): ``MultiplyByQuantizedMultiplier`` of ``y - zp``."""
    assert tail.out_q is not None
    s_in, zp_in = per_tensor(in_q)
    s_out, zp_out = per_tensor(tail.out_q)
    fpm = sm.FixedPointMultiplier.tflite(s_in / s_out)
    lo, hi = tail.codes()
    if zp_in:
        y = relax.op.subtract(relax.op.astype(y, "int32"), relax.const(zp_in, "int32"))
    return so.requantize(y, **fpm.op_args(), zp_out=zp_out, qmin=lo, qmax=hi, out_dtype=str(tail.out_q.dtype))


def _moved(bb: relax.BlockBuilder, y: relax.Expr, in_q: sm.QParams, tail: Tail) -> relax.Expr:
    assert tail.out_q is not None
    if same_qparams(in_q, tail.out_q):
        return _clip(bb, y, tail)
    return _requantize(bb.emit(relax.op.astype(y, "int32")), in_q, tail)


def _move(bb: relax.BlockBuilder, call: relax.Call, ins: list, tail: Tail, mapping: dict) -> relax.Expr:
    """Value-moving ops on the codes; inputs with other parameters are requantized first (concat)."""
    assert tail.out_q is not None
    if op_name(call) == "relax.concat":
        parts = [remap(x, mapping) if same_qparams(qp, tail.out_q) else
                 bb.emit(_requantize(bb.emit(relax.op.astype(remap(x, mapping), "int32")), qp,
                                     Tail(out_q=tail.out_q)))
                 for x, qp in ins]
        return _clip(bb, relax.Call(call.op, [relax.Tuple(parts)], call.attrs), tail)
    x, qp = ins[0]
    moved = relax.Call(call.op, [remap(x, mapping), *[remap(a, mapping) for a in call.args[1:]]], call.attrs)
    return _moved(bb, moved, qp, tail)


def _centered(bb: relax.BlockBuilder, x: relax.Expr, zp: int, dtype: str = "int32") -> relax.Expr:
    y = bb.emit(relax.op.astype(x, dtype))
    return bb.emit(relax.op.subtract(y, relax.const(zp, dtype))) if zp else y


def _arithmetic(var: relax.Var, call: relax.Call, ins: list, tail: Tail, mode: str,
                limits: HardwareLimits) -> Union[Match, str]:
    assert tail.out_q is not None
    (a, a_q), (b, b_q) = ins
    s_a, zp_a = per_tensor(a_q)
    s_b, zp_b = per_tensor(b_q)
    s_y, zp_y = per_tensor(tail.out_q)
    lo, hi = tail.codes()
    out_dtype = str(tail.out_q.dtype)
    name = op_name(call) or ""
    if name == "relax.multiply":
        if mode == "tflite":  # TFLite's MUL computes the real multiplier in float32
            fpm = sm.FixedPointMultiplier.tflite(float(np.float32(s_a) * np.float32(s_b) / np.float32(s_y)))
            bad = rules.check_requant(limits, fpm.right_shift, fpm.multiplier)
        else:  # checked before the type: a left shift (n < 0) is a 'shift-range' violation here
            m, n = sm.quantize_multiplier(s_a * s_b / s_y, sm.HW15_MULTIPLIER_BITS)
            bad = rules.check_requant(limits, n, m)
            if not bad:
                fpm = sm.FixedPointMultiplier(m, n, sm.RoundingMode.HALF_UP)
        if bad:
            return bad

        def emit_mul(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
            product = bb.emit(relax.op.multiply(_centered(bb, remap(a, mapping), zp_a),
                                                _centered(bb, remap(b, mapping), zp_b)))
            return so.requantize(product, **fpm.op_args(), zp_out=zp_y, qmin=lo, qmax=hi, out_dtype=out_dtype)

        return Match(var, tail, "integer multiply", emit_mul)
    combine = relax.op.add if name == "relax.add" else relax.op.subtract
    if mode == "tflite":
        twice = 2.0 * max(s_a, s_b)
        f_a, f_b, f_y = (sm.FixedPointMultiplier.tflite(r) for r in
                         (s_a / twice, s_b / twice, twice / ((1 << 20) * s_y)))
        bad = rules.check_requant(limits, [f.right_shift for f in (f_a, f_b, f_y)],
                                  [f.multiplier for f in (f_a, f_b, f_y)])
        if bad:
            return bad

        def emit_tflite(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
            def scaled(x: relax.Expr, zp: int, fpm: sm.FixedPointMultiplier) -> relax.Expr:
                centred = _centered(bb, remap(x, mapping), zp)
                shifted = bb.emit(relax.op.multiply(centred, relax.const(1 << 20, "int32")))
                return bb.emit(so.requantize(shifted, **fpm.op_args(), qmin=_INT32[0], qmax=_INT32[1],
                                             out_dtype="int32"))

            total = bb.emit(combine(scaled(a, zp_a, f_a), scaled(b, zp_b, f_b)))
            return so.requantize(total, **f_y.op_args(), zp_out=zp_y, qmin=lo, qmax=hi, out_dtype=out_dtype)

        return Match(var, tail, f"integer {name.split('.')[-1]}", emit_tflite)
    p = sm.add_params(a_q, b_q, tail.out_q)
    bad = rules.check_requant(limits, [p.n1 + p.n3, p.n1 - p.n2], [p.m1, p.m2, p.m3])
    if bad:
        return bad
    sign = 1 if name == "relax.add" else -1

    def emit_shift(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
        ca, cb = _centered(bb, remap(a, mapping), zp_a, "int64"), _centered(bb, remap(b, mapping), zp_b, "int64")
        if sign < 0:
            cb = bb.emit(relax.op.negative(cb))
        if p.swapped:
            ca, cb = cb, ca
        total = bb.emit(relax.op.add(bb.emit(relax.op.multiply(ca, relax.const(p.m2 << (p.n1 - p.n2), "int64"))),
                                     bb.emit(relax.op.multiply(cb, relax.const(p.m1, "int64")))))
        return so.requantize(total, multiplier=p.m3, shift=p.n1 + p.n3, rounding=sm.RoundingMode.HALF_UP, zp_out=zp_y,
                             qmin=lo,
                             qmax=hi, out_dtype=out_dtype)

    return Match(var, tail, f"integer {name.split('.')[-1]}", emit_shift)


def _window_counts(size: int, pool: int, stride: int, before: int, out: int) -> np.ndarray:
    starts = np.arange(out) * stride - before
    return np.clip(starts + pool, 0, size) - np.clip(starts, 0, size)


def _avg_pool(var: relax.Var, call: relax.Call, x_in: tuple, tail: Tail, limits: HardwareLimits) -> Union[Match, str]:
    a = call.attrs
    layout = str(a["layout"])
    if layout not in ("NHWC", "NCHW") or str(a["out_layout"]) != layout:
        return f"avg_pool2d layout {layout}"
    if bool(a["ceil_mode"]):
        return "avg_pool2d with ceil_mode"
    pool, strides = [int(k) for k in a["pool_size"]], [int(s) for s in a["strides"]]
    dilation, padding = [int(d) for d in a["dilation"]], [int(p) for p in a["padding"]]
    if dilation != [1, 1]:
        return "dilated avg_pool2d"
    if bool(a["count_include_pad"]) and any(padding):
        return "avg_pool2d counting the padding (ONNX count_include_pad=1)"
    bad = rules.check_window(limits, pool, strides)
    if bad:
        return bad
    x, x_q = x_in
    shape = [int(d) for d in x.ty.shape] if hasattr(x, "ty") else None  # type: ignore[attr-defined]
    if shape is None:
        return "avg_pool2d input without a static shape"
    h_axis, w_axis, c_axis = (1, 2, 3) if layout == "NHWC" else (2, 3, 1)
    out_h = (shape[h_axis] + padding[0] + padding[2] - pool[0]) // strides[0] + 1
    out_w = (shape[w_axis] + padding[1] + padding[3] - pool[1]) // strides[1] + 1
    counts = np.outer(_window_counts(shape[h_axis], pool[0], strides[0], padding[0], out_h),
                      _window_counts(shape[w_axis], pool[1], strides[1], padding[1], out_w)).astype(np.int32)
    channels = shape[c_axis]
    if layout == "NHWC":
        counts_t, kernel, kernel_layout = counts[None, :, :, None], np.ones((*pool, 1, channels), np.int32), "HWIO"
    else:
        counts_t, kernel, kernel_layout = counts[None, None], np.ones((channels, 1, *pool), np.int32), "OIHW"
    assert tail.out_q is not None
    out_q = tail.out_q
    same = same_qparams(x_q, out_q)
    zp = per_tensor(x_q)[1]

    def emit(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
        # TFLite sums the raw codes (the zero point averages to itself) when input and output share
        # parameters; otherwise the centred codes are averaged and requantized.
        codes = _centered(bb, remap(x, mapping), 0 if same else zp)
        acc = bb.emit(relax.op.nn.conv2d(codes, relax.const(kernel, "int32"), strides=strides, padding=padding,
                                         groups=channels, data_layout=layout, kernel_layout=kernel_layout,
                                         out_dtype="int32"))
        n = relax.const(counts_t, "int32")
        half = relax.const(counts_t // 2, "int32")
        magnitude = bb.emit(relax.op.floor_divide(bb.emit(relax.op.add(bb.emit(relax.op.abs(acc)), half)), n))
        average = bb.emit(relax.op.multiply(bb.emit(relax.op.sign(acc)), magnitude))
        if same:
            return _clip(bb, relax.op.astype(bb.emit(relax.op.clip(average, out_q.qmin, out_q.qmax)),
                                             str(out_q.dtype)), tail)
        return _requantize(average, sm.QParams(per_tensor(x_q)[0], 0, "int32"), tail)

    return Match(var, tail, "integer avg_pool2d", emit)


def _mean(var: relax.Var, call: relax.Call, x_in: tuple, tail: Tail) -> Union[Match, str]:
    x, x_q = x_in
    shape = [int(d) for d in x.ty.shape] if hasattr(x, "ty") else None  # type: ignore[attr-defined]
    if shape is None:
        return "mean of an input without a static shape"
    axes = [int(a) % len(shape) for a in call.attrs["axis"]] if call.attrs["axis"] is not None \
        else list(range(len(shape)))
    count = int(np.prod([shape[a] for a in axes]))
    keepdims = bool(call.attrs["keepdims"])
    assert tail.out_q is not None
    s_in, zp_in = per_tensor(x_q)
    s_out, zp_out = per_tensor(tail.out_q)
    # TFLite's int8 MEAN (reference_ops::QuantizedMeanOrSum): QuantizeMultiplier(s_in / s_out), the
    # count folded into the multiplier, then MultiplyByQuantizedMultiplier(sum of codes - zp_in * count) + zp_out.
    fpm = sm.FixedPointMultiplier.tflite(s_in / s_out).fold_divisor(count)
    lo, hi = tail.codes()
    out_dtype = str(tail.out_q.dtype)

    def emit(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
        total = bb.emit(relax.op.sum(bb.emit(relax.op.astype(remap(x, mapping), "int32")), axes, keepdims))
        if zp_in:
            total = bb.emit(relax.op.subtract(total, relax.const(zp_in * count, "int32")))
        return so.requantize(total, **fpm.op_args(), zp_out=zp_out, qmin=lo, qmax=hi, out_dtype=out_dtype)

    return Match(var, tail, "integer mean", emit)


def _lut(index: GraphIndex, var: relax.Var, call: relax.Call, x_in: tuple, tail: Tail) -> Union[Match, str]:
    x, x_q = x_in
    out_q = tail.out_q
    assert out_q is not None and tail.out is not None
    if x_q.dtype.bits > 8:
        return "lookup tables need 8-bit inputs"
    rounding = str(index.producer[tail.out].attrs["rounding"])  # type: ignore[union-attr]
    codes = np.arange(x_q.qmin, x_q.qmax + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        real = LUT_FUNCTIONS[op_name(call) or ""](sm.dequantize(codes, x_q), call)
    real = np.nan_to_num(np.asarray(real, dtype=np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
    lo, hi = tail.codes()
    table = np.clip(sm.quantize(real, out_q, rounding), lo, hi).astype(out_q.dtype.container.name)

    def emit(bb: relax.BlockBuilder, mapping: dict) -> relax.Expr:
        offset = bb.emit(relax.op.subtract(relax.op.astype(remap(x, mapping), "int32"),
                                           relax.const(x_q.qmin, "int32")))
        return relax.op.take(relax.const(table), offset, axis=0, mode="clip")  # codes are in range; no warning

    return Match(var, tail, f"lookup table ({(op_name(call) or '').rsplit('.', 1)[-1]})", emit)
