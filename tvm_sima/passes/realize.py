"""Realize: turn a calibrated, annotated module into an explicit integer program.

Walks ``main`` binding by binding with a per-op registry of realize functions
(:func:`register_realize_function`, overridable like annotate's); every op of
:data:`tvm_sima.lowering.FAMILIES` without one is lowered by its family, the lowering the
converter shares. Realize only finds the parameters. Each tensor is available as a float value,
a quantized value (integer tensor + :class:`~tvm_sima.math.QParams`), or both, made on demand:

* a ``sima.simulated_quantize`` marks a tensor and names its scale (from its observer); using it
  quantizes a float producer (``sima.quantize``) or requantizes an integer one whose scale differs
  (``sima.requantize``);
* conv2d / matmul with their epilogue (bias, batch norm, relu / relu6 / clip) become one fused
  ``sima.conv2d`` / ``sima.dense`` (int8 weight, int32 bias, shift; per ``requant_mode``); a
  conv2d_transpose becomes zero insertion on the codes and a ``sima.conv2d`` (:mod:`~tvm_sima.lowering.transpose_conv`);
* add / subtract / multiply / concat / mean requantize their inputs in integers;
* layout and selection ops (reshape, transpose, max pool, nearest resize, ...) run on the integers;
* unary non-linear ops (sigmoid, tanh, gelu, ...) become a 2**bits-entry lookup table, and so
  does any element-wise chain of one input (hard-swish as ``x * clip(x + 3, 0, 6) / 6``, ...);
* anything else runs in float behind ``sima.dequantize`` and is listed in the report (and a
  warning): never silently wrong.

Every quantized tensor is followed by ``sima.quantize_info`` carrying its name and parameters.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .. import lowering
from .. import math as sm
from .. import ops as so
from ..calibration import Observer
from ..calibration.grid_check import GridVerdict
from ..config import LayerInfo, QConfig
from ..graph import GraphIndex, constant_value, op_name, rebuild_main, static_shape
from ..source_names import SourceNames, tensor_sources
from .annotate import is_float_tensor
from .grids import log_verdict, tensor_grid, tensor_qparams
from .patterns import Epilogue, epilogue_chain

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
    """What realize did: fused layers, integer ops by type, ops left in float and why.

    ``sources``: the model's own name (:mod:`tvm_sima.source_names`) of each layer, tensor and
    float op's tensor named here, when the module carries them; ``layer_outputs``: the fused
    layer computing each tensor a fused op outputs.
    """

    fused: list[str] = field(default_factory=list)
    integer_ops: Counter = field(default_factory=Counter)
    float_ops: list[tuple[str, str, str]] = field(default_factory=list)  # (op, tensor, reason)
    notes: list[str] = field(default_factory=list)
    sources: dict[str, str] = field(default_factory=dict)
    layer_outputs: dict[str, str] = field(default_factory=dict)
    grids: list[dict] = field(default_factory=list)  # GridVerdict.to_dict() of each collapsed tensor

    def named(self, tensor: str) -> str:
        """``tensor`` after its source name, ``p2o.Add.3 (add@3.output)``, when it has one."""
        return f"{self.sources[tensor]} ({tensor})" if self.sources.get(tensor) else tensor

    def summary(self) -> str:
        lines = [f"fused conv/dense layers: {len(self.fused)}",
                 "integer ops: " + ", ".join(f"{k} x{v}" for k, v in sorted(self.integer_ops.items()))]
        if self.float_ops:
            lines.append(f"left in float ({len(self.float_ops)}):")
            lines += [f"  {op} -> {self.named(tensor)}: {reason}" for op, tensor, reason in self.float_ops]
        for grid in self.grids:
            verb = "re-gridded" if grid["rescued"] else "COLLAPSED, not rescued"
            lines.append(f"{verb}: {self.named(grid['tensor'])}: {grid['problem']}; {grid['choice']}")
        lines += [f"note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"fused": list(self.fused), "integer_ops": dict(self.integer_ops),
                "float_ops": [{"op": o, "tensor": t, "source": self.sources.get(t, ""), "reason": r}
                              for o, t, r in self.float_ops],
                "notes": list(self.notes), "sources": {k: v for k, v in self.sources.items() if v},
                "layer_outputs": dict(self.layer_outputs),
                "rescued": [g for g in self.grids if g["rescued"]],
                "collapsed": [g for g in self.grids if not g["rescued"]]}


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
        self.numerics = lowering.Numerics.for_config(config)
        self.layers = {layer.name: layer for layer in layers}
        self.report = RealizeReport(sources={**{la.name: la.source for la in layers if la.source},
                                             **tensor_sources(func)})
        self.source_names = SourceNames(func)
        self.fval: dict[relax.Var, relax.Expr] = {p: p for p in func.params}
        self.qval: dict[relax.Var, QValue] = {}
        self.sq: dict[relax.Var, tuple[relax.Expr, str, Any]] = {}
        self.sq_of: dict[relax.Var, relax.Var] = {}
        self.consumed: set = set()
        self._qparams: dict[str, sm.QParams] = {}
        fused: set = set()
        for var in self.index.order:
            epilogue = epilogue_chain(self.index, var)
            if epilogue is not None:
                fused.update([epilogue.root, *epilogue.vars])
        #: first member -> element-wise chain of one input (annotate left its inside unquantized)
        self.chains = {c.members[0]: c for c in lowering.find_chains(self.index, exclude=fused)}
        self.verdicts: dict[str, GridVerdict] = {}  # the grid checks of collapsed tensors
        self.emitted: dict[str, sm.QParams] = {}  # each quantize_info's parameters, by name
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
            qp, verdict = tensor_grid(self.observers[tensor], self.config_of(tensor),
                                      model_input=tensor in self.model_inputs)
            self._qparams[tensor] = qp
            if verdict is not None:
                self.verdicts[tensor] = verdict
        return self._qparams[tensor]

    def grid_verdicts(self) -> list[GridVerdict]:
        """The verdicts of the collapsed tensors the program carries on their own grid (a value-moving op's
        output keeps its input's grid, and its own verdict does not apply)."""
        return [v for name, v in self.verdicts.items() if name in self.emitted
                and _same(self.emitted[name], v.after.qparams if v.after is not None else v.before.qparams)]

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
            call = so.requantize(src.expr, input_q=src.qparams, output_q=qp, rounding=sm.RoundingMode.HALF_UP,
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
        info = self.bb.emit(so.quantize_info(out, qp, name=name, source=self.report.sources.get(name, "")),
                            name_hint=f"{var.name}_qi")
        self.emitted[name] = qp
        value = QValue(info, qp)
        self.qval[var] = value
        if aliased:
            assert sq is not None
            self.qval[sq] = value
        return value


# --------------------------------------------------------------------------- conv2d / dense


def _weight_spec(config: QConfig) -> lowering.WeightSpec:
    return lowering.WeightSpec(config.weight_granularity is sm.Granularity.PER_CHANNEL, config.weight_scheme,
                               config.weight_bits, config.bias_bits, config.weight_scale == "power2")


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


def _fused_constants(ctx: RealizeContext, layer: str, config: QConfig, weight: np.ndarray, bias: np.ndarray,
                     xq: QValue, yq: sm.QParams, is_dense: bool, mean_of: relax.Expr,
                     groups: int = 1, mean_scale: float = 1.0) -> Union[str, lowering.FusedConstants]:
    """The layer's constants (bias-corrected when configured), or why the accumulator could overflow.

    ``mean_scale``: the fraction of the fused op's input positions that hold ``mean_of``'s values
    (the rest are inserted zeros: a transposed convolution's stride).
    """
    mean = ctx.input_mean(mean_of) if config.bias_correction else None
    consts, notes = lowering.corrected_float_weights(
        weight, bias, xq.qparams, yq, is_dense, _weight_spec(config), config.requant,
        None if mean is None else mean * mean_scale, groups)
    ctx.report.notes.extend(f"{layer}: {note}" for note in notes)
    return lowering.accumulator_overflow(consts, xq.qparams, is_dense) or consts


def _emit_fused(ctx: RealizeContext, chain: Epilogue, fused: relax.Expr, yq: sm.QParams, name: str, layer: str,
                op: str) -> None:
    """Bind the fused op as the epilogue's output; the epilogue's own bindings are consumed."""
    ctx.set_q(chain.output, fused, yq, name)
    ctx.consumed.update(chain.vars)
    ctx.report.fused.append(layer)
    ctx.report.layer_outputs[name] = layer
    ctx.report.integer_ops[op] += 1


def _layer_of_weight(ctx: RealizeContext, weight_name: str) -> tuple[str, QConfig]:
    layer = weight_name.rsplit(".", 1)[0]
    return layer, ctx.config_of(weight_name)


#: ``emit(x, constants, output codes, output dtype) -> the fused op``.
_ConvEmit = Callable[[QValue, lowering.FusedConstants, tuple[int, int], str], relax.Expr]


def _fused_conv(ctx: RealizeContext, var: relax.Var, call: relax.Call, to_hwigo: Callable[[np.ndarray], np.ndarray],
                groups: int, emit: _ConvEmit, mean_scale: float = 1.0) -> Optional[str]:
    """A conv-like layer and its epilogue as one ``sima.conv2d``: ``to_hwigo`` makes the HWIGO float weight."""
    found = ctx.weight(call.args[1])
    if found is None:
        return "weight not annotated (skipped layer)"
    weight, wname = found
    layer, config = _layer_of_weight(ctx, wname)
    io = _fused_io(ctx, var, call)
    if isinstance(io, str):
        return io
    xq, chain, yq, name = io
    hwigo = to_hwigo(weight) * chain.scale.reshape(1, 1, 1, groups, -1)
    consts = _fused_constants(ctx, layer, config, hwigo, chain.shift, xq, yq, False, call.args[0], groups,
                              mean_scale)
    if isinstance(consts, str):
        return consts
    fused = emit(xq, consts, ctx.numerics.clip_codes(yq, chain.lo, chain.hi), yq.dtype.container.name)
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.conv2d")
    return None


@register_realize_function("relax.nn.conv2d")
def _realize_conv2d(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    a = call.attrs
    layout, kernel_layout, out_layout = str(a["data_layout"]), str(a["kernel_layout"]), str(a["out_layout"])
    if layout not in so.LAYOUTS or out_layout != layout or sorted(kernel_layout) != sorted("OIHW"):
        return f"layouts {layout}/{kernel_layout}->{out_layout} (sima.conv2d takes NCHW or NHWC data)"
    groups = int(a["groups"])

    def to_hwigo(weight: np.ndarray) -> np.ndarray:
        # Any kernel layout (TFLite's depthwise HWOI, OHWI, ...) is transposed to the op's own.
        w = weight.transpose([kernel_layout.index(c) for c in so.LAYOUTS[layout]])
        return sm.oihw_to_hwigo(w, groups) if layout == "NCHW" else w.reshape(*w.shape[:3], groups, -1)

    def emit(xq: QValue, consts: lowering.FusedConstants, codes: tuple[int, int], out_dtype: str) -> relax.Expr:
        return lowering.emit_conv2d(xq.expr, consts, _zp(xq.qparams), codes, out_dtype,
                                    strides=[int(s) for s in a["strides"]], padding=[int(p) for p in a["padding"]],
                                    dilation=[int(d) for d in a["dilation"]], groups=groups, layout=layout)

    return _fused_conv(ctx, var, call, to_hwigo, groups, emit)


@register_realize_function("relax.nn.conv2d_transpose")
def _realize_conv2d_transpose(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """A transposed convolution: zero insertion (a move of the codes), then the fused ``sima.conv2d``."""
    shape, tc = static_shape(call.args[0]), lowering.transpose_conv(call)
    if shape is None or isinstance(tc, str):
        return tc if isinstance(tc, str) else "input without a static shape"

    def emit(xq: QValue, consts: lowering.FusedConstants, codes: tuple[int, int], out_dtype: str) -> relax.Expr:
        assert shape is not None and not isinstance(tc, str)
        return lowering.emit_conv2d_transpose(ctx.bb, xq.expr, shape, consts, _zp(xq.qparams), codes, out_dtype, tc)

    # The inserted zeros are part of the fused op's input: the real values fill 1 / (s_h s_w) of it.
    return _fused_conv(ctx, var, call, tc.hwigo, tc.groups, emit, mean_scale=1.0 / (tc.strides[0] * tc.strides[1]))


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
    consts = _fused_constants(ctx, layer, config, weight.T * chain.scale[:, None], chain.shift, xq, yq, True,
                              call.args[0])
    if isinstance(consts, str):
        return consts
    codes = ctx.numerics.clip_codes(yq, chain.lo, chain.hi)
    fused = lowering.emit_dense(ctx.bb, xq.expr, consts, _zp(xq.qparams), codes, yq.dtype.container.name,
                                [int(d) for d in call.args[0].ty.shape], [int(d) for d in call.ty.shape])
    _emit_fused(ctx, chain, fused, yq, name, layer, "sima.dense")
    return None


# --------------------------------------------------------------------------- the shared families


def _realize_family(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """Any op of :data:`tvm_sima.lowering.FAMILIES`: quantized operands in, the family's integer ops out."""
    op = op_name(call) or ""
    family = lowering.FAMILIES[op]
    operands = [ctx.quantized(a) for a in family.operands(call)]
    keeps = family.keeps(call)
    out = None if keeps else ctx.output_qparams(var)
    if any(q is None for q in operands) or (out is None and not keeps):
        return "an input or the output is not quantized"
    qs = [q for q in operands if q is not None]
    yq = out[0] if out is not None else (qs[0].qparams if qs else sm.QParams(1.0, 0, "int8"))
    lowered = family.lower(lowering.Request(call, [q.qparams for q in qs], yq, ctx.numerics))
    if isinstance(lowered, str):
        return lowered
    result = lowered.emit(ctx.bb, [q.expr for q in qs])
    if keeps:
        own = ctx.output_qparams(var)
        ctx.set_q(var, result, yq, own[1] if own else f"{var.name}.output", fixed=family.moves_values)
    else:
        assert out is not None
        ctx.set_q(var, result, yq, out[1])
    if lowered.requantizes:
        ctx.report.integer_ops["sima.requantize"] += lowered.requantizes
    ctx.report.integer_ops[lowered.tally or op] += 1
    return None


def _realize_chain(ctx: RealizeContext, chain: lowering.Chain) -> Optional[str]:
    """An element-wise chain of one input (``lowering.chains``): one table, bound as the chain's output."""
    xq, out = ctx.quantized(chain.source), ctx.output_qparams(chain.output)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    lowered = lowering.lower_chain(chain, lowering.Request(chain.calls[-1], [xq.qparams], out[0], ctx.numerics))
    if isinstance(lowered, str):
        return lowered
    ctx.set_q(chain.output, lowered.emit(ctx.bb, [xq.expr]), out[0], out[1])
    ctx.consumed.update(chain.members)
    ctx.report.integer_ops[lowered.tally or "lut(chain)"] += 1
    return None


def _realize_with_constant(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    """add / subtract / multiply / divide with a constant (any shape): a table per constant value."""
    found = lowering.binary_with_constant(call)
    if found is None:
        return "a constant divided by a tensor, or a division by a constant that holds 0"
    index, constant, fn = found
    xq, out = ctx.quantized(call.args[index]), ctx.output_qparams(var)
    if xq is None or out is None:
        return "the input or the output is not quantized"
    yq, name = out
    short = (op_name(call) or "").rsplit(".", 1)[-1]
    lowered = lowering.lower_by_constant(xq.qparams, yq, sm.RoundingMode.HALF_UP, (yq.qmin, yq.qmax), constant, fn,
                                         f"lookup table ({short})", f"lut({short})")
    if isinstance(lowered, str):
        return lowered
    ctx.set_q(var, lowered.emit(ctx.bb, [xq.expr]), yq, name)
    ctx.report.integer_ops[lowered.tally or short] += 1
    return None


def _realize_arithmetic(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    if any(constant_value(arg) is not None for arg in call.args):
        return _realize_with_constant(ctx, var, call)
    return _realize_family(ctx, var, call)


@register_realize_function("relax.divide")
def _realize_divide(ctx: RealizeContext, var: relax.Var, call: relax.Call) -> Optional[str]:
    if constant_value(call.args[1]) is not None:
        return _realize_with_constant(ctx, var, call)
    return "division by a tensor"


for _op in ("relax.add", "relax.subtract", "relax.multiply"):
    register_realize_function(_op)(_realize_arithmetic)


# --------------------------------------------------------------------------- driver


def realize(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
            layers: Optional[list[LayerInfo]] = None, *, warn: bool = True) -> tuple[tvm.IRModule, RealizeReport]:
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
    warn : bool
        Log the ops left in float (a dry run, :func:`tvm_sima.ptq.quantize_plan`, does not).
    """
    bb = relax.BlockBuilder()
    ctx = RealizeContext(amod["main"], observers, config, layers or [], bb)
    new_mod = rebuild_main(amod, lambda _bb, var, value, _m: _realize_binding(ctx, var, value), mapping=ctx.fval,
                           emit_output=lambda _bb, body, _m: ctx.as_float(body), builder=bb)
    new_mod = relax.transform.DeadCodeElimination(["main"])(new_mod)
    for verdict in ctx.grid_verdicts():
        if warn:
            log_verdict(verdict)
        ctx.report.grids.append(verdict.to_dict())
    if ctx.report.float_ops and warn:
        LOG.warning("realize: %d ops stay in float:\n%s", len(ctx.report.float_ops),
                    "\n".join(f"  {o} -> {ctx.report.named(t)}: {r}" for o, t, r in ctx.report.float_ops))
    return new_mod, ctx.report


def _realize_binding(ctx: RealizeContext, var: relax.Var, value: relax.Expr) -> Optional[relax.Expr]:
    """Realize one binding; None when done (or dropped), else the float expression to bind."""
    op = op_name(value)
    if var in ctx.consumed or op == "sima.simulated_quantize":
        return None
    if var in ctx.chains and ctx.config.debug_enabled_ops is None and _realize_chain(ctx, ctx.chains[var]) is None:
        return None
    fn = REALIZE_FUNCTIONS.get(op or "") or (_realize_family if op in lowering.FAMILIES else None)
    enabled = ctx.config.debug_enabled_ops
    reason = "no realize function" if fn is None else None
    if fn is not None and enabled is not None and op not in enabled:
        reason = "not in debug_enabled_ops"
    elif fn is not None:
        assert isinstance(value, relax.Call)
        reason = fn(ctx, var, value)
        if reason is None:
            return None
    if isinstance(value, relax.Call) and any(isinstance(a, relax.Var) and a in ctx.sq for a in _flat(value.args)):
        sq = ctx.sq_of.get(var)
        tensor = ctx.sq[sq][1] if sq is not None else var.name  # the tensor's name, else the Relax var's
        ctx.report.sources[tensor] = ctx.report.sources.get(tensor) or ctx.source_names.of(var)
        ctx.report.float_ops.append((op or type(value).__name__, tensor, reason or ""))
    return _float_call(ctx, value)


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
