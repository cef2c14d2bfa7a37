"""Realize: turn a calibrated, annotated module into an explicit integer program.

Walks ``main`` binding by binding with a per-op registry of realize functions
(:func:`register_realize_function`, overridable like annotate's). Each tensor is available as a
float value, a quantized value (integer tensor + :class:`~tvm_sima.math.QParams`), or both, made
on demand:

* a ``sima.simulated_quantize`` marks a tensor and names its scale (from its observer); using it
  quantizes a float producer (``sima.quantize``) or requantizes an integer one whose scale differs
  (``sima.requantize``);
* conv2d / matmul with their epilogue (bias, batch norm, relu / relu6 / clip) become one fused
  ``sima.conv2d`` / ``sima.dense`` (int8 weight, int32 bias, shift; per ``requant_mode``);
* add / subtract / multiply / concat / mean requantize their inputs in integers;
* layout and selection ops (reshape, transpose, max pool, nearest resize, ...) run on the integers;
* unary non-linear ops (sigmoid, tanh, gelu, ...) become a 2**bits-entry lookup table;
* anything else runs in float behind ``sima.dequantize`` and is listed in the report (and a
  warning): never silently wrong.

Every quantized tensor is followed by ``sima.quantize_info`` carrying its name and parameters.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .. import math as sm
from .. import ops as so
from ..calibration import Observer
from ..config import LayerInfo, QConfig
from .annotate import is_float_tensor
from .patterns import Epilogue, GraphIndex, clip_bounds, constant_value, epilogue_chain, op_name, scalar_operand

__all__ = ["REALIZE_FUNCTIONS", "RealizeContext", "RealizeReport", "QValue", "realize",
           "register_realize_function", "tensor_qparams"]

LOG = logging.getLogger(__name__)

#: Returns None when realized, else the reason the op stays float.
RealizeFunction = Callable[["RealizeContext", relax.Var, relax.Call], Optional[str]]
REALIZE_FUNCTIONS: dict[str, RealizeFunction] = {}


def register_realize_function(op_name_: str, override: bool = False) -> Callable[[RealizeFunction], RealizeFunction]:
    """Decorator registering ``fn(ctx, var, call) -> None | reason`` for ``op_name_``."""

    def wrap(fn: RealizeFunction) -> RealizeFunction:
        if op_name_ in REALIZE_FUNCTIONS and not override:
            raise ValueError(f"{op_name_} already has a realize function; pass override=True to replace it")
        REALIZE_FUNCTIONS[op_name_] = fn
        return fn

    return wrap


@dataclass
class QValue:
    """An integer tensor and its quantization parameters."""

    expr: relax.Expr
    qparams: sm.QParams


@dataclass
class RealizeReport:
    """What realize did: fused layers, integer ops by type, ops left in float and why."""

    fused: list[str] = field(default_factory=list)
    integer_ops: Counter = field(default_factory=Counter)
    float_ops: list[tuple[str, str, str]] = field(default_factory=list)  # (op, tensor, reason)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        lines = [f"fused conv/dense layers: {len(self.fused)}",
                 "integer ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.integer_ops.items()))]
        if self.float_ops:
            lines.append(f"left in float ({len(self.float_ops)}):")
            lines += [f"  {op} -> {tensor}: {reason}" for op, tensor, reason in self.float_ops]
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"fused": list(self.fused), "integer_ops": dict(self.integer_ops),
                "float_ops": [{"op": o, "tensor": t, "reason": r} for o, t, r in self.float_ops],
                "notes": list(self.notes)}


def _scheme(method: str) -> str:
    return method.split("_", 2)[2]


def tensor_qparams(observer: Observer, config: QConfig, model_input: bool = False) -> sm.QParams:
    """Per-tensor activation parameters of one observed tensor under ``config``.

    A model input uses ``input_bits`` (Relay's ``nbit_input``), any other tensor ``activation_bits``.
    """
    bits = config.input_bits if model_input else config.activation_bits
    return observer.compute_qparams(_scheme(config.quantize_method_for_activation), bits)


def _same(a: sm.QParams, b: sm.QParams) -> bool:
    return (a.dtype == b.dtype and np.array_equal(np.asarray(a.scale), np.asarray(b.scale))
            and np.array_equal(np.asarray(a.zero_point), np.asarray(b.zero_point)))


def _zp(qp: sm.QParams) -> int:
    return int(np.atleast_1d(qp.zero_point)[0])


def _scale(qp: sm.QParams) -> float:
    return float(np.atleast_1d(qp.scale)[0])


class RealizeContext:
    """State of one realize run; realize functions read and extend it."""

    def __init__(self, func: relax.Function, observers: dict[str, Observer], config: QConfig,
                 layers: list[LayerInfo], builder: relax.BlockBuilder) -> None:
        self.index = GraphIndex(func)
        self.observers, self.config, self.bb = observers, config, builder
        self.layers = {layer.name: layer for layer in layers}
        self.report = RealizeReport()
        self.fval: dict[relax.Var, relax.Expr] = {p: p for p in func.params}
        self.qval: dict[relax.Var, QValue] = {}
        self.sq: dict[relax.Var, tuple[relax.Expr, str, Any]] = {}
        self.sq_of: dict[relax.Var, relax.Var] = {}
        self.consumed: set = set()
        self._qparams: dict[str, sm.QParams] = {}
        params = set(func.params)
        self.model_inputs: set[str] = set()
        for var in self.index.order:
            value = self.index.producer[var]
            if op_name(value) == "sima.simulated_quantize":
                assert isinstance(value, relax.Call)
                self.sq[var] = (value.args[0], str(value.attrs["name"]), value.attrs)
                if value.args[0] in params:
                    self.model_inputs.add(str(value.attrs["name"]))
                if isinstance(value.args[0], relax.Var):
                    self.sq_of.setdefault(value.args[0], var)

    # Configuration.
    def config_of(self, tensor: str) -> QConfig:
        """The configuration of the layer that owns ``tensor`` (``<layer>.<role>``)."""
        layer = self.layers.get(tensor.rsplit(".", 1)[0])
        return self.config.for_layer(layer)[0] if layer is not None else self.config

    def qparams(self, tensor: str) -> sm.QParams:
        """The activation parameters of ``tensor`` (computed once: some observers search)."""
        if tensor not in self._qparams:
            if tensor not in self.observers:
                raise ValueError(f"no calibration statistics for tensor {tensor!r}; calibrate the annotated "
                                 "module (or load statistics saved from it)")
            self._qparams[tensor] = tensor_qparams(self.observers[tensor], self.config_of(tensor),
                                                   model_input=tensor in self.model_inputs)
        return self._qparams[tensor]

    # Values.
    def as_float(self, expr: relax.Expr) -> relax.Expr:
        """The float value of an (annotated-graph) expression, dequantizing if only integers exist."""
        if isinstance(expr, relax.Tuple):
            return relax.Tuple([self.as_float(f) for f in expr.fields])
        if not isinstance(expr, relax.Var):
            return expr
        if expr in self.fval:
            return self.fval[expr]
        if expr in self.sq:
            out = self.as_float(self.sq[expr][0])
        elif expr in self.qval:
            q = self.qval[expr]
            out = self.bb.emit(so.dequantize(q.expr, q.qparams), name_hint=f"{expr.name}_dq")
            self.report.integer_ops["sima.dequantize"] += 1
        else:
            raise ValueError(f"realize: {expr.name} has no value (internal error: binding order)")
        self.fval[expr] = out
        return out

    def quantized(self, expr: relax.Expr) -> Optional[QValue]:
        """The integer value of ``expr``, quantizing / requantizing at a simulated_quantize; else None."""
        if not isinstance(expr, relax.Var):
            return None
        if expr in self.qval:
            return self.qval[expr]
        if expr not in self.sq:
            return None
        source, name, _ = self.sq[expr]
        if not is_float_tensor(source):
            return None
        qp = self.qparams(name)
        src = self.quantized(source)
        if src is not None:
            if _same(src.qparams, qp):
                self.qval[expr] = src
                return src
            call = so.requantize(src.expr, input_q=src.qparams, output_q=qp, rounding="half_up",
                                 out_dtype=qp.dtype.container.name, multiplier_bits=self.config.multiplier_bits)
            self.report.integer_ops["sima.requantize"] += 1
        else:
            call = so.quantize(self.as_float(source), qp, self.config.rounding)
            self.report.integer_ops["sima.quantize"] += 1
        return self.set_q(expr, call, qp, name)

    def weight(self, expr: relax.Expr) -> Optional[tuple[np.ndarray, str]]:
        """``(float array, tensor name)`` of a simulated_quantize around a constant weight."""
        if isinstance(expr, relax.Var) and expr in self.sq:
            source, name, attrs = self.sq[expr]
            value = constant_value(source)
            if value is not None and str(attrs["kind"]) == "weight":
                return np.asarray(value, dtype=np.float64), name
        return None

    def input_mean(self, expr: relax.Expr) -> Optional[np.ndarray]:
        """Per-channel calibration means of the tensor a simulated_quantize marks, if tracked."""
        if isinstance(expr, relax.Var) and expr in self.sq:
            observer = self.observers.get(self.sq[expr][1])
            return None if observer is None else observer.channel_mean
        return None

    def output_qparams(self, var: relax.Var) -> Optional[tuple[sm.QParams, str]]:
        """Parameters and name of the simulated_quantize that wraps ``var``, if one does."""
        sq = self.sq_of.get(var)
        if sq is None:
            return None
        name = self.sq[sq][1]
        return self.qparams(name), name

    def set_q(self, var: relax.Var, call: relax.Expr, qp: sm.QParams, name: str, fixed: bool = False) -> QValue:
        """Emit ``call`` as the integer value of ``var`` (with its quantize_info) and record it.

        ``fixed``: the op preserves values (reshape, max pool, ...), so the tensor keeps its input's
        scale even where its own observer suggests a slightly different one.
        """
        sq = self.sq_of.get(var)
        aliased = sq is not None and (fixed or _same(self.qparams(self.sq[sq][1]), qp))
        if sq is not None and name == self.sq[sq][1] and not aliased:
            name = f"{name}.pre"  # this tensor is requantized to the named one's scale before use
        out = self.bb.emit(call, name_hint=f"{var.name}_q")
        info = self.bb.emit(so.quantize_info(out, qp, name=name), name_hint=f"{var.name}_qi")
        value = QValue(info, qp)
        self.qval[var] = value
        if aliased:
            assert sq is not None
            self.qval[sq] = value
        return value

    def rescale(self, q: QValue, real: float, zp_out: int, out_dtype: str, qmin: Optional[int] = None,
                qmax: Optional[int] = None) -> relax.Expr:
        """``clip(round((q - zp) * real) + zp_out)`` in integers (a ``sima.requantize``)."""
        m, n = sm.quantize_multiplier(real, self.config.multiplier_bits,
                                      force_shift_positive=self.config.force_shift_positive)
        x = q.expr
        if _zp(q.qparams) != 0:
            x = self.bb.emit(relax.op.subtract(relax.op.astype(x, "int32"),
                                               relax.const(_zp(q.qparams), "int32")))
        self.report.integer_ops["sima.requantize"] += 1
        return so.requantize(x, multiplier=int(m), shift=int(n), zp_out=zp_out, rounding="half_up",
                             out_dtype=out_dtype, qmin=qmin, qmax=qmax)


def _clip_codes(qp: sm.QParams, lo: float, hi: float) -> tuple[int, int]:
    """Integer bounds equal to quantizing ``clip(x, lo, hi)``: ``zp + round(bound / scale)``."""
    s, zp = _scale(qp), _zp(qp)
    qmin = qp.qmin if lo == -math.inf else max(qp.qmin, min(qp.qmax, zp + int(sm.round_real(lo / s, "half_up"))))
    qmax = qp.qmax if hi == math.inf else min(qp.qmax, max(qp.qmin, zp + int(sm.round_real(hi / s, "half_up"))))
    return qmin, max(qmin, qmax)


# --------------------------------------------------------------------------- conv2d / dense


def _fused_constants(ctx: RealizeContext, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                     xq: sm.QParams, yq: sm.QParams, is_dense: bool, layer: str) -> dict:
    """Integer weight (HWIGO / OI), bias and requantization of a fused op, per ``requant_mode``."""
    per_channel = config.quantize_method_for_weight.startswith("per_channel")
    data_q = sm.Quantization(_scale(xq), _zp(xq), xq.dtype.bits)
    out_q = sm.Quantization(_scale(yq), _zp(yq), yq.dtype.bits)
    if config.requant_mode == "shift":
        try:
            w, b, shift = sm.fold_float_weights_shift(weight, bias, data_q, out_q, is_dense, per_channel=per_channel,
                                                      weight_bits=config.weight_bits, bias_bits=config.bias_bits)
            w_rows = sm.per_channel_weight_view(w, is_dense)
            shifts = np.broadcast_to(np.asarray(shift, dtype=np.float64), (w_rows.shape[0],))
            effective = w_rows * (_scale(yq) / _scale(xq)) / np.exp2(shifts)[:, None]
            return {"weight": w, "bias": b, "shift": shift, "multiplier": None, "output_zero_point": 0,
                    "rounding": None, "effective": effective}
        except ValueError as err:
            ctx.report.notes.append(f"{layer}: shift-only fold impossible ({err}); used multiplier_shift")
    view = sm.per_channel_weight_view(weight, is_dense)
    lo, hi = (view.min(axis=1), view.max(axis=1)) if per_channel else (view.min(), view.max())
    wq = sm.choose_qparams(lo, hi, _scheme(config.quantize_method_for_weight), config.weight_bits,
                           axis=0 if per_channel else None)
    scales = np.broadcast_to(np.asarray(wq.scale, dtype=np.float64), (view.shape[0],))
    # A bias must fit its int32 at the product scale (with room for the zero-point fold): channels
    # with tiny weights and a large bias get a coarser weight scale (onnxruntime does the same).
    scales = np.maximum(scales, np.abs(bias) / (_scale(xq) * 2.0**30))
    if config.weight_scale == "power2":
        scales = np.exp2(np.ceil(np.log2(scales)))
    w_view = np.clip(sm.round_real(view / scales[:, None], "half_away_from_zero"), wq.qmin, wq.qmax)
    w_int = sm.per_channel_weight_unview(w_view, weight.shape, is_dense).astype(np.int8 if config.weight_bits <= 8
                                                                                 else np.int16)
    product = sm.tflite_product_quantization(_scale(xq), scales if per_channel else scales[:1])
    bias_int = np.clip(sm.round_real(bias / (np.float32(_scale(xq)) * scales.astype(np.float32).astype(np.float64)),
                                     "half_away_from_zero"), -(2**31), 2**31 - 1).astype(np.int64)
    b, mult, zc, shift = sm.tflite_requantization_constants(w_int, bias_int, _zp(xq),
                                                            product if per_channel else product[0], out_q, is_dense)
    requant = sm.FixedPointMultiplier.from_q31_right_shift(mult, shift, sm.RoundingMode.TFLITE)
    return {"weight": w_int, "bias": b, **requant.op_args(), "output_zero_point": int(zc),
            "effective": w_view * scales[:, None]}


def _corrected_constants(ctx: RealizeContext, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                         xq: sm.QParams, yq: sm.QParams, is_dense: bool, layer: str,
                         input_mean: Optional[np.ndarray], groups: int = 1) -> dict:
    """:func:`_fused_constants`, then with the bias corrected for the weights' rounding error.

    Bias correction (Nagel et al., 2019): rounding the weights shifts each output channel's mean
    by ``sum((W_int - W) * E[x])``; with the per-channel input means from calibration, that shift
    is subtracted from the bias and the constants are made again.
    """
    consts = _fused_constants(ctx, config, weight, bias, xq, yq, is_dense, layer)
    if not config.bias_correction or input_mean is None:
        return consts
    view = sm.per_channel_weight_view(weight, is_dense)
    error = consts["effective"] - view
    rows = view.shape[0]
    if is_dense:
        if input_mean.shape != (view.shape[1],):
            return consts
        means = np.broadcast_to(input_mean, view.shape)
    else:
        kh, kw, per_group = weight.shape[:3]
        if input_mean.shape != (per_group * groups,):
            return consts
        per_row_group = np.arange(rows) // (rows // groups)
        means = np.stack([np.tile(input_mean[g * per_group:(g + 1) * per_group], kh * kw) for g in per_row_group])
    correction = (error * means).sum(axis=1)
    return _fused_constants(ctx, config, weight, bias - correction, xq, yq, is_dense, layer)


def _accumulator_overflow(consts: dict, xq: sm.QParams, is_dense: bool) -> Optional[str]:
    """Why the int32 accumulator of the fused op could overflow for some input, else None."""
    rows = sm.per_channel_weight_view(consts["weight"], is_dense).astype(np.int64)
    worst = np.abs(rows).sum(axis=1).max(initial=0) * max(abs(xq.qmin), abs(xq.qmax)) + \
        np.abs(np.asarray(consts["bias"], dtype=np.int64)).max(initial=0)
    if worst > 2**31 - 1:
        return (f"the int32 accumulator could overflow with {xq.dtype.bits}-bit inputs (worst case {worst:.3g}); "
                "use 8-bit activations for this layer")
    return None


def _fused_io(ctx: RealizeContext, var: relax.Var,
              call: relax.Call) -> Union[str, tuple[QValue, Epilogue, sm.QParams, str]]:
    """A conv / matmul's quantized input, its epilogue and the epilogue output's parameters and name,
    or why the layer cannot be fused."""
    xq = ctx.quantized(call.args[0])
    if xq is None:
        return "input is not quantized"
    chain = epilogue_chain(ctx.index, var)
    assert chain is not None
    out = ctx.output_qparams(chain.output)
    if out is None:
        return "output has no calibrated scale"
    return xq, chain, out[0], out[1]


def _requant_kwargs(consts: dict, xq: QValue, yq: sm.QParams, chain: Epilogue) -> dict:
    """The requantization arguments ``sima.conv2d`` and ``sima.dense`` share."""
    qmin, qmax = _clip_codes(yq, chain.lo, chain.hi)
    return {"shift": consts["shift"], "multiplier": consts["multiplier"], "input_zero_point": _zp(xq.qparams),
            "output_zero_point": consts["output_zero_point"], "rounding": consts["rounding"], "qmin": qmin,
            "qmax": qmax, "out_dtype": yq.dtype.container.name}


def _emit_fused(ctx: RealizeContext, chain: Epilogue, fused: relax.Expr, yq: sm.QParams, name: str, layer: str,
                op: str) -> None:
    """Bind the fused op as the epilogue's output; the epilogue's own bindings are consumed."""
    ctx.set_q(chain.output, fused, yq, name)
    ctx.consumed.update(chain.vars)
    ctx.report.fused.append(layer)
    ctx.report.integer_ops[op] += 1


def _layer_of_weight(ctx: RealizeContext, weight_name: str) -> tuple[str, QConfig]:
    layer = weight_name.rsplit(".", 1)[0]
    return layer, ctx.config_of(weight_name)


@register_realize_function("relax.nn.conv2d")
def _realize_conv2d(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    found = ctx.weight(call.args[1])
    if found is None:
        return "weight not annotated (skipped layer)"
    weight, wname = found
    layer, config = _layer_of_weight(ctx, wname)
    a = call.attrs
    layout, kernel_layout, out_layout = str(a["data_layout"]), str(a["kernel_layout"]), str(a["out_layout"])
    if layout not in so.LAYOUTS or out_layout != layout or sorted(kernel_layout) != sorted("OIHW"):
        return f"layouts {layout}/{kernel_layout}->{out_layout} (sima.conv2d takes NCHW or NHWC data)"
    # Any kernel layout (TFLite's depthwise HWOI, OHWI, ...) is transposed to the op's own.
    weight = weight.transpose([kernel_layout.index(c) for c in so.LAYOUTS[layout]])
    io = _fused_io(ctx, var, call)
    if isinstance(io, str):
        return io
    xq, chain, yq, name = io
    groups = int(a["groups"])
    hwigo = sm.oihw_to_hwigo(weight, groups) if layout == "NCHW" else \
        weight.reshape(*weight.shape[:3], groups, -1)
    hwigo = hwigo * chain.scale.reshape(1, 1, 1, groups, -1)
    consts = _corrected_constants(ctx, config, hwigo, chain.shift, xq.qparams, yq, False, layer,
                                  ctx.input_mean(call.args[0]), groups)
    overflow = _accumulator_overflow(consts, xq.qparams, False)
    if overflow:
        return overflow
    w = consts["weight"]
    kernel = sm.hwigo_to_oihw(w) if layout == "NCHW" else w.reshape(*w.shape[:3], -1)
    fused = so.conv2d(xq.expr, relax.const(kernel), relax.const(np.asarray(consts["bias"]).astype("int32")),
                      strides=[int(s) for s in a["strides"]], padding=[int(p) for p in a["padding"]],
                      dilation=[int(d) for d in a["dilation"]], groups=groups, data_layout=layout,
                      **_requant_kwargs(consts, xq, yq, chain))
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.conv2d")
    return None


@register_realize_function("relax.matmul")
def _realize_matmul(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    found = ctx.weight(call.args[1])
    if found is None:
        return "right operand is not a constant weight (or the layer is skipped)"
    weight, wname = found
    if weight.ndim != 2:
        return f"weight of rank {weight.ndim} (sima.dense takes a 2-D weight)"
    layer, config = _layer_of_weight(ctx, wname)
    io = _fused_io(ctx, var, call)
    if isinstance(io, str):
        return io
    xq, chain, yq, name = io
    oi = weight.T * chain.scale[:, None]
    consts = _corrected_constants(ctx, config, oi, chain.shift, xq.qparams, yq, True, layer,
                                  ctx.input_mean(call.args[0]))
    overflow = _accumulator_overflow(consts, xq.qparams, True)
    if overflow:
        return overflow
    data = xq.expr
    in_shape = [int(d) for d in call.args[0].ty.shape]
    out_shape = [int(d) for d in call.ty.shape]
    if len(in_shape) != 2:
        data = ctx.bb.emit(relax.op.reshape(data, (-1, in_shape[-1])))
    fused: relax.Expr = so.dense(data, relax.const(consts["weight"]),
                                 relax.const(np.asarray(consts["bias"]).astype("int32")),
                                 **_requant_kwargs(consts, xq, yq, chain))
    if len(in_shape) != 2:
        fused = relax.op.reshape(ctx.bb.emit(fused), out_shape)
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.dense")
    return None


# --------------------------------------------------------------------------- elementwise


def _both(ctx: RealizeContext, call: relax.Call) -> Optional[tuple[QValue, QValue]]:
    a, b = ctx.quantized(call.args[0]), ctx.quantized(call.args[1])
    return (a, b) if a is not None and b is not None else None


def _realize_add_sub(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    if any(constant_value(arg) is not None for arg in call.args):
        return _realize_unary_lut(ctx, var, call)
    pair, out = _both(ctx, call), ctx.output_qparams(var)
    if pair is None or out is None:
        return "an input or the output is not quantized"
    yq, name = out
    # Both inputs to a common scale 256x finer than the output's, add in int32, round once more.
    fine = _scale(yq) / 256.0
    a32, b32 = (ctx.bb.emit(ctx.rescale(q, _scale(q.qparams) / fine, 0, "int32")) for q in pair)
    total = ctx.bb.emit(relax.op.add(a32, b32) if op_name(call) == "relax.add" else relax.op.subtract(a32, b32))
    final = so.requantize(total, multiplier=1, shift=8, zp_out=_zp(yq), rounding="half_up",
                          out_dtype=yq.dtype.container.name)
    ctx.report.integer_ops["sima.requantize"] += 1
    ctx.set_q(var, final, yq, name)
    ctx.report.integer_ops[op_name(call) or ""] += 1
    return None


register_realize_function("relax.add")(_realize_add_sub)
register_realize_function("relax.subtract")(_realize_add_sub)


@register_realize_function("relax.divide")
def _realize_divide(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    if constant_value(call.args[1]) is not None:
        return _realize_unary_lut(ctx, var, call)
    return "division by a tensor"


@register_realize_function("relax.multiply")
def _realize_multiply(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    if any(constant_value(arg) is not None for arg in call.args):
        return _realize_unary_lut(ctx, var, call)
    pair, out = _both(ctx, call), ctx.output_qparams(var)
    if pair is None or out is None:
        return "an input or the output is not quantized"
    yq, name = out
    centered = [ctx.bb.emit(relax.op.subtract(relax.op.astype(q.expr, "int32"), relax.const(_zp(q.qparams), "int32")))
                for q in pair]
    product = QValue(ctx.bb.emit(relax.op.multiply(*centered)), sm.QParams(1.0, 0, "int32"))
    real = _scale(pair[0].qparams) * _scale(pair[1].qparams) / _scale(yq)
    ctx.set_q(var, ctx.rescale(product, real, _zp(yq), yq.dtype.container.name), yq, name)
    ctx.report.integer_ops["relax.multiply"] += 1
    return None


@register_realize_function("relax.concat")
def _realize_concat(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    fields = call.args[0].fields if isinstance(call.args[0], relax.Tuple) else None
    out = ctx.output_qparams(var)
    if fields is None or out is None:
        return "inputs are not a tuple or the output is not quantized"
    yq, name = out
    parts = []
    for f in fields:
        q = ctx.quantized(f)
        if q is None:
            return "an input is not quantized"
        if not _same(q.qparams, yq):
            q = QValue(ctx.bb.emit(ctx.rescale(q, _scale(q.qparams) / _scale(yq), _zp(yq), yq.dtype.container.name)),
                       yq)
        parts.append(q.expr)
    ctx.set_q(var, relax.op.concat(parts, axis=int(call.attrs["axis"])), yq, name)
    ctx.report.integer_ops["relax.concat"] += 1
    return None


# --------------------------------------------------------------------------- value-preserving ops

#: Ops that only move, select or replicate values: they run on the integers, scale unchanged.
PASSTHROUGH = ("relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims", "relax.flatten",
               "relax.nn.max_pool2d", "relax.strided_slice", "relax.image.resize2d", "relax.nn.pad")


def _realize_passthrough(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    op = op_name(call)
    xq = ctx.quantized(call.args[0])
    if xq is None:
        return "input is not quantized"
    attrs = call.attrs
    if op == "relax.image.resize2d" and str(attrs["method"]) != "nearest_neighbor":
        return f"{attrs['method']} resize interpolates (only nearest_neighbor runs on integers)"
    args = [xq.expr, *(ctx.as_float(a) for a in call.args[1:])]
    if op == "relax.nn.pad":
        if str(attrs["pad_mode"]) != "constant":
            return f"pad_mode {attrs['pad_mode']}"
        value = float(attrs["pad_value"])
        code = _zp(xq.qparams) + int(sm.round_real(value / _scale(xq.qparams), "half_up"))
        if not xq.qparams.qmin <= code <= xq.qparams.qmax:
            return f"pad value {value} is outside the quantized range"
        new: relax.Expr = relax.op.nn.pad(xq.expr, [int(p) for p in attrs["pad_width"]], "constant", float(code))
    else:
        new = relax.Call(call.op, args, attrs, call.ty_args)
    name = ctx.output_qparams(var)
    ctx.set_q(var, new, xq.qparams, name[1] if name else f"{var.name}.output", fixed=True)
    ctx.report.integer_ops[op or ""] += 1
    return None


for _op in PASSTHROUGH:
    register_realize_function(_op)(_realize_passthrough)


def _realize_clip(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    bounds = clip_bounds(call)
    if bounds is None:
        return "maximum / minimum of two tensors, or clip bounds that are not constants"
    source, lo, hi = bounds
    xq = ctx.quantized(source)
    if xq is None:
        return "input is not quantized"
    qmin, qmax = _clip_codes(xq.qparams, lo, hi)
    name = ctx.output_qparams(var)
    ctx.set_q(var, relax.op.clip(xq.expr, qmin, qmax), xq.qparams, name[1] if name else f"{var.name}.output")
    ctx.report.integer_ops[op_name(call) or ""] += 1
    return None


for _op in ("relax.nn.relu", "relax.nn.relu6", "relax.clip", "relax.maximum", "relax.minimum"):
    register_realize_function(_op)(_realize_clip)


# --------------------------------------------------------------------------- reductions


def _reduced_count(in_shape: list[int], axes: list[int]) -> int:
    return int(np.prod([in_shape[a] for a in axes])) if axes else int(np.prod(in_shape))


@register_realize_function("relax.mean")
def _realize_mean(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    xq, out = ctx.quantized(call.args[0]), ctx.output_qparams(var)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    yq, name = out
    shape = [int(d) for d in call.args[0].ty.shape]
    axis = call.attrs["axis"]
    axes = [int(a) % len(shape) for a in axis] if axis is not None else list(range(len(shape)))
    count = _reduced_count(shape, axes)
    total = ctx.bb.emit(relax.op.sum(relax.op.astype(xq.expr, "int32"), axes, bool(call.attrs["keepdims"])))
    summed = QValue(total, sm.QParams(1.0, _zp(xq.qparams) * count, "int32"))
    ctx.set_q(var, ctx.rescale(summed, _scale(xq.qparams) / (count * _scale(yq)), _zp(yq), yq.dtype.container.name),
              yq, name)
    ctx.report.integer_ops["relax.mean"] += 1
    return None


@register_realize_function("relax.nn.adaptive_avg_pool2d")
def _realize_global_pool(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    a = call.attrs
    layout = str(a["layout"])
    size = [int(s) for s in a["output_size"]] if a["output_size"] is not None else None
    if size not in ([1, 1], [1]) or layout not in ("NCHW", "NHWC") or str(a["out_layout"]) != layout:
        return "adaptive pooling to a size other than 1x1"
    axes = [2, 3] if layout == "NCHW" else [1, 2]
    fake = relax.op.mean(call.args[0], axes, keepdims=True)
    return _realize_mean(ctx, var, fake)  # type: ignore[arg-type]


@register_realize_function("relax.nn.avg_pool2d")
def _realize_avg_pool2d(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """A depthwise ``sima.conv2d`` with all-one weights: window sums, one requantization by ``1 / window``."""
    a = call.attrs
    layout = str(a["layout"])
    padding = [int(p) for p in a["padding"]]
    if layout not in so.LAYOUTS or str(a["out_layout"]) != layout or bool(a["ceil_mode"]):
        return f"avg_pool2d with layout {layout} / ceil_mode (sima.conv2d takes NCHW or NHWC, floor mode)"
    if any(padding) and not bool(a["count_include_pad"]):
        return "padded avg_pool2d that excludes the padding from the count (the divisor varies per position)"
    xq, out = ctx.quantized(call.args[0]), ctx.output_qparams(var)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    yq, name = out
    kh, kw = (int(k) for k in a["pool_size"])
    channels = int(call.args[0].ty.shape[layout.index("C")])
    ones = np.ones((kh, kw, 1, channels, 1), dtype=np.int8)  # HWIGO, depthwise
    product = sm.Quantization(_scale(xq.qparams) / (kh * kw), 0, 32)
    bias, mult, zc, shift = sm.tflite_requantization_constants(
        ones, None, _zp(xq.qparams), product, sm.Quantization(_scale(yq), _zp(yq), yq.dtype.bits), False)
    kernel = sm.hwigo_to_oihw(ones) if layout == "NCHW" else ones.reshape(kh, kw, 1, channels)
    requant = sm.FixedPointMultiplier.from_q31_right_shift(mult, shift, sm.RoundingMode.TFLITE)
    fused = so.conv2d(xq.expr, relax.const(kernel), relax.const(np.asarray(bias, dtype="int32")),
                      **requant.op_args(), strides=[int(v) for v in a["strides"]],
                      padding=padding, dilation=[int(v) for v in a["dilation"]], groups=channels,
                      data_layout=layout, input_zero_point=_zp(xq.qparams), output_zero_point=int(zc),
                      out_dtype=yq.dtype.container.name)
    ctx.set_q(var, fused, yq, name)
    ctx.report.integer_ops["relax.nn.avg_pool2d"] += 1
    return None


#: Fraction bits of the softmax exponential table.
SOFTMAX_EXP_BITS = 15


@register_realize_function("relax.nn.softmax")
def _realize_softmax(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """Integer softmax: ``e = EXP[max(x) - x]`` (a table in Q15), ``y = round(e / (sum(e) * s_y)) + zp_y``."""
    xq, out = ctx.quantized(call.args[0]), ctx.output_qparams(var)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    if xq.qparams.dtype.bits > 8:
        return "softmax tables need 8-bit inputs"
    yq, name = out
    axis = int(call.attrs["axis"])
    span = xq.qparams.qmax - xq.qparams.qmin
    table = np.round(np.exp(-np.arange(span + 1) * _scale(xq.qparams)) * 2**SOFTMAX_EXP_BITS).astype("int64")
    x64 = ctx.bb.emit(relax.op.astype(xq.expr, "int64"))
    top = ctx.bb.emit(relax.op.max(x64, axis=[axis], keepdims=True))
    # top - x is in [0, span]: mode="clip" changes no index (the default "fast" mode makes TVM warn)
    e = ctx.bb.emit(relax.op.astype(relax.op.take(relax.const(table, "int64"),
                                                  ctx.bb.emit(relax.op.subtract(top, x64)), axis=0, mode="clip"),
                                    "int64"))
    total = ctx.bb.emit(relax.op.sum(e, axis=[axis], keepdims=True))
    # q = floor(e * K / 2**16 / total + 1/2) with K = round(2**16 / s_y): all in int64.
    k = int(round(2**16 / _scale(yq)))
    numerator = ctx.bb.emit(relax.op.add(relax.op.multiply(e, relax.const(k, "int64")),
                                         relax.op.multiply(total, relax.const(2**15, "int64"))))
    codes = ctx.bb.emit(relax.op.floor_divide(numerator, relax.op.multiply(total, relax.const(2**16, "int64"))))
    shifted = ctx.bb.emit(relax.op.add(codes, relax.const(_zp(yq), "int64")))
    result = relax.op.astype(relax.op.clip(shifted, yq.qmin, yq.qmax), yq.dtype.container.name)
    ctx.set_q(var, result, yq, name)
    ctx.report.integer_ops["softmax(lut)"] += 1
    return None


# --------------------------------------------------------------------------- lookup tables


def _gelu(x: np.ndarray) -> np.ndarray:
    erf = np.vectorize(math.erf)
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


#: Unary float functions realized as a table over every input code.
LUT_FUNCTIONS: dict[str, Callable[[np.ndarray, relax.Call], np.ndarray]] = {
    "relax.sigmoid": lambda x, c: 1.0 / (1.0 + np.exp(-x)),
    "relax.tanh": lambda x, c: np.tanh(x),
    "relax.exp": lambda x, c: np.exp(x),
    "relax.erf": lambda x, c: np.vectorize(math.erf)(x),
    "relax.nn.gelu": lambda x, c: _gelu(x),
    "relax.nn.gelu_tanh": lambda x, c: 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))),
    "relax.nn.silu": lambda x, c: x / (1.0 + np.exp(-x)),
    "relax.nn.leakyrelu": lambda x, c: np.where(x >= 0, x, float(c.attrs["alpha"]) * x),
    "relax.nn.softplus": lambda x, c: np.log1p(np.exp(x)),
    "relax.sqrt": lambda x, c: np.sqrt(np.maximum(x, 0)),
    "relax.abs": lambda x, c: np.abs(x),
    "relax.negative": lambda x, c: -x,
}


def _binary_with_constant(call: relax.Call) -> Optional[tuple[int, Callable[[np.ndarray], np.ndarray]]]:
    """(index of the tensor operand, unary function) of add / subtract / multiply with a scalar constant."""
    found = scalar_operand(call.args)
    if found is None:
        return None
    k, v = found
    op = op_name(call)
    if op == "relax.add":
        return k, lambda x: x + v
    if op == "relax.multiply":
        return k, lambda x: x * v
    if op == "relax.divide":
        if k != 0 or v == 0:
            return None
        return k, lambda x: x / v
    return k, (lambda x: x - v) if k == 0 else (lambda x: v - x)


def _realize_unary_lut(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    op = op_name(call) or ""
    if op in LUT_FUNCTIONS:
        index, fn = 0, (lambda x: LUT_FUNCTIONS[op](x, call))
    else:
        found = _binary_with_constant(call)
        if found is None:
            return "a constant operand that is not a scalar"
        index, fn = found
    xq, out = ctx.quantized(call.args[index]), ctx.output_qparams(var)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    if xq.qparams.dtype.bits > 8:
        return "lookup tables need 8-bit inputs"
    yq, name = out
    codes = np.arange(xq.qparams.qmin, xq.qparams.qmax + 1)
    with np.errstate(over="ignore", invalid="ignore"):
        real = fn(sm.dequantize(codes, xq.qparams))
    real = np.nan_to_num(np.asarray(real, dtype=np.float64), nan=0.0, posinf=1e30, neginf=-1e30)
    table = sm.quantize(real, yq, "half_up").astype(yq.dtype.container.name)
    offset = relax.op.subtract(relax.op.astype(xq.expr, "int32"), relax.const(xq.qparams.qmin, "int32"))
    # codes - qmin is in [0, len(table)): mode="clip" changes no index (the default "fast" mode warns)
    ctx.set_q(var, relax.op.take(relax.const(table), ctx.bb.emit(offset), axis=0, mode="clip"), yq, name)
    ctx.report.integer_ops[f"lut({op.rsplit('.', 1)[-1]})"] += 1
    return None


for _op in LUT_FUNCTIONS:
    register_realize_function(_op)(_realize_unary_lut)


# --------------------------------------------------------------------------- driver


def realize(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
            layers: Optional[list[LayerInfo]] = None) -> tuple[tvm.IRModule, RealizeReport]:
    """The integer program of an annotated module, and a report of what was realized how.

    Parameters
    ----------
    amod : IRModule
        Output of :func:`~tvm_sima.passes.annotate`.
    observers : dict
        Output of :func:`~tvm_sima.passes.calibrate` (or :func:`~tvm_sima.calibration.load_statistics`).
    config : QConfig
        The configuration annotate used.
    layers : list of LayerInfo, optional
        Annotate's layers (their per-layer overrides apply).
    """
    func = amod["main"]
    bb = relax.BlockBuilder()
    ctx = RealizeContext(func, observers, config, layers or [], bb)
    enabled = config.debug_enabled_ops
    with bb.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        with bb.dataflow():
            for var in ctx.index.order:
                value = ctx.index.producer[var]
                op = op_name(value)
                if var in ctx.consumed or op == "sima.simulated_quantize":
                    continue
                fn = REALIZE_FUNCTIONS.get(op or "")
                reason = "no realize function" if fn is None else None
                if fn is not None and enabled is not None and op not in enabled:
                    reason = "not in debug_enabled_ops"
                elif fn is not None:
                    assert isinstance(value, relax.Call)
                    reason = fn(ctx, var, value)
                    if reason is None:
                        continue
                annotated = isinstance(value, relax.Call) and any(
                    isinstance(a, relax.Var) and a in ctx.sq for a in _flat(value.args))
                new = _float_call(ctx, value)
                ctx.fval[var] = bb.emit(new, name_hint=var.name)
                if annotated:
                    ctx.report.float_ops.append((op or type(value).__name__, var.name, reason or ""))
            result = ctx.as_float(func.body.body)
            out = bb.emit_output(result)
        bb.emit_func_output(out)
    new_mod = amod.clone()
    new_mod["main"] = bb.get()["main"]
    new_mod = relax.transform.DeadCodeElimination(["main"])(new_mod)
    if ctx.report.float_ops:
        LOG.warning("realize: %d ops stay in float:\n%s", len(ctx.report.float_ops),
                    "\n".join(f"  {o} -> {t}: {r}" for o, t, r in ctx.report.float_ops))
    return new_mod, ctx.report


def _flat(args: list) -> list:
    out = []
    for a in args:
        out.extend(_flat(list(a.fields)) if isinstance(a, relax.Tuple) else [a])
    return out


def _float_call(ctx: RealizeContext, value: relax.Expr) -> relax.Expr:
    if isinstance(value, relax.Call):
        return relax.Call(value.op, [ctx.as_float(a) for a in value.args], value.attrs, value.ty_args)
    if isinstance(value, relax.TupleGetItem):
        return relax.TupleGetItem(ctx.as_float(value.tuple_value), value.index)
    return ctx.as_float(value)
