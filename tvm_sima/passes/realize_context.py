"""Realize's state: the registry of per-op realize functions, :class:`QValue` and :class:`RealizeContext`.

The context holds each annotated tensor's float and integer values (made on demand: quantize at a
``sima.simulated_quantize``, requantize where the scale differs), its parameters (from the observers,
via :mod:`~tvm_sima.passes.grids`) and the run's :class:`~tvm_sima.passes.realize_report.RealizeReport`.
The realize functions (:mod:`~tvm_sima.passes.realize`, :mod:`~tvm_sima.passes.realize_fused`) read and
extend it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np
from tvm import relax

from .. import lowering
from .. import math as sm
from .. import ops as so
from ..calibration import Observer
from ..calibration.grid_check import GridVerdict
from ..config import LayerInfo, QConfig
from ..graph import GraphIndex, constant_value, op_name
from ..lowering.base import same_qparams
from ..source_names import SourceNames, tensor_sources
from .annotate import is_float_tensor
from .grids import output_bounds, tensor_grid
from .patterns import epilogue_chain
from .realize_report import RealizeReport

__all__ = ["REALIZE_FUNCTIONS", "QValue", "RealizeContext", "RealizeFunction", "register_realize_function"]

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
    """An integer tensor and its quantization parameters (``name``: its ``quantize_info``'s)."""

    expr: relax.Expr
    qparams: sm.QParams
    name: str = ""



def _zp(qp: sm.QParams) -> int:
    return int(np.atleast_1d(qp.zero_point)[0])


class RealizeContext:
    """State of one realize run; realize functions read and extend it."""

    def __init__(self, func: relax.Function, observers: dict[str, Observer], config: QConfig,
                 layers: list[LayerInfo], builder: relax.BlockBuilder,
                 samples: Optional[dict[str, np.ndarray]] = None,
                 quantized_samples: Optional[dict[str, np.ndarray]] = None) -> None:
        self.index = GraphIndex(func)
        self.samples = samples or {}
        #: a first integer program's tensors on the same batches, dequantized, by quantize_info name (AdaRound's x~)
        self.quantized_samples = quantized_samples or {}
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
        self.bounds = output_bounds(self.index)  # model outputs of sigmoid / softmax / tanh: their fixed interval
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
        """:meth:`QConfig.for_tensor`: the configuration of the layer owning ``tensor`` (``<layer>.<role>``), then
        the tensor's own overrides."""
        return self.config.for_tensor(tensor, self.layers)

    def qparams(self, tensor: str) -> sm.QParams:
        """The activation parameters of ``tensor`` (computed once: some observers search)."""
        if tensor not in self._qparams:
            if tensor not in self.observers:
                raise ValueError(f"no calibration statistics for tensor {tensor!r}; calibrate the annotated "
                                 "module (or load statistics saved from it)")
            qp, verdict = tensor_grid(self.observers[tensor], self.config_of(tensor),
                                      model_input=tensor in self.model_inputs, bounds=self.bounds.get(tensor))
            self._qparams[tensor] = qp
            if verdict is not None:
                self.verdicts[tensor] = verdict
        return self._qparams[tensor]

    def grid_verdicts(self) -> list[GridVerdict]:
        """The verdicts of the collapsed tensors the program carries on their own grid (a value-moving op's
        output keeps its input's grid, and its own verdict does not apply)."""
        return [v for name, v in self.verdicts.items() if name in self.emitted
                and same_qparams(self.emitted[name], v.after.qparams if v.after is not None else v.before.qparams)]

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
            if same_qparams(src.qparams, qp):
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

    def float_sample(self, expr: relax.Expr) -> Optional[np.ndarray]:
        """The float values, on a few calibration batches, of the tensor a simulated_quantize marks (the scale
        search's ``samples``), if kept."""
        if isinstance(expr, relax.Var) and expr in self.sq:
            return self.samples.get(self.sq[expr][1])
        return None

    def choose_qparams(self, tensor: str, qp: sm.QParams) -> None:
        """Replace ``tensor``'s calibrated parameters (a search chose others) before anything uses them."""
        if tensor in self.emitted:
            raise ValueError(f"realize: {tensor} is already emitted with its calibrated parameters (internal error)")
        self._qparams[tensor] = qp

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
        aliased = sq is not None and (fixed or same_qparams(self.qparams(self.sq[sq][1]), qp))
        if sq is not None and name == self.sq[sq][1] and not aliased:
            name = f"{name}.pre"  # this tensor is requantized to the named one's scale before use
        out = self.bb.emit(call, name_hint=f"{var.name}_q")
        info = self.bb.emit(so.quantize_info(out, qp, name=name, source=self.report.sources.get(name, "")),
                            name_hint=f"{var.name}_qi")
        self.emitted[name] = qp
        value = QValue(info, qp, name)
        self.qval[var] = value
        if aliased:
            assert sq is not None
            self.qval[sq] = value
        return value
