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

This module is the driver and the non-fused realize functions; the registry, :class:`QValue` and
:class:`RealizeContext` are in :mod:`~tvm_sima.passes.realize_context`, the fused conv / dense ones in
:mod:`~tvm_sima.passes.realize_fused`, the report in :mod:`~tvm_sima.passes.realize_report` (all
importable from here).
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np
import tvm
from tvm import relax

from .. import lowering
from .. import math as sm
from ..calibration import Observer
from ..config import LayerInfo, QConfig
from ..graph import constant_value, op_name, rebuild_main
from . import realize_fused  # noqa: F401 - registers the conv2d / conv2d_transpose / matmul realize functions
from .grids import log_verdict, tensor_qparams
from .realize_context import REALIZE_FUNCTIONS, QValue, RealizeContext, register_realize_function
from .realize_report import RealizeReport

__all__ = ["REALIZE_FUNCTIONS", "RealizeContext", "RealizeReport", "QValue", "realize",
           "register_realize_function", "tensor_qparams"]

LOG = logging.getLogger(__name__)


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
                                         f"lookup table ({short})", f"lut({short})",
                                         affine=lowering.affine_with_constant(call))
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
            layers: Optional[list[LayerInfo]] = None, *, warn: bool = True,
            samples: Optional[dict[str, np.ndarray]] = None,
            quantized_samples: Optional[dict[str, np.ndarray]] = None) -> tuple[tvm.IRModule, RealizeReport]:
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
    samples : dict, optional
        Float values of the activations on a few calibration batches, by tensor name
        (:func:`~tvm_sima.passes.scale_search.float_taps`): ``scale_search`` needs them (without
        them the calibrated scales stay).
    quantized_samples : dict, optional
        A first integer program's tensors on the same batches, dequantized, by name
        (:func:`~tvm_sima.compare.integer_taps`): ``adaround``'s quantized inputs.
    """
    bb = relax.BlockBuilder()
    ctx = RealizeContext(amod["main"], observers, config, layers or [], bb, samples, quantized_samples)
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
