"""Annotate: mark what to quantize with ``sima.simulated_quantize``, by a per-op registry.

In the shape of Relay's ``relay.quantize`` annotate step: each quantizable op has an annotate
function, registered with :func:`register_annotate_function` (users override them), that
receives the call and returns it with :func:`attach_simulated_quantize` around its inputs and
weights. The pass numbers the quantizable layers in program order and names every quantized
tensor ``<layer>.<role>`` (``conv2d_0.input``, ``conv2d_0.weight``): calibration statistics and
the per-layer configuration are keyed by these names, never by traversal position.

The ``simulated_quantize`` calls carry ``dom_scale=1`` until calibration sets the real scales;
an annotated module is a template for calibrate and realize, not a program to run as is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import tvm
from tvm import relax

from .. import ops as so
from ..config import LayerInfo, QConfig, current_qconfig
from ..graph import GraphIndex, op_name, rebuild_function, remap
from ..lowering.chains import find_chains
from ..math import QScheme, RoundingMode
from ..source_names import TENSOR_SOURCES, SourceNames
from .patterns import epilogue_chain

__all__ = [
    "ANNOTATE_FUNCTIONS",
    "AnnotateContext",
    "register_annotate_function",
    "attach_simulated_quantize",
    "annotate",
    "is_float_tensor",
]

AnnotateFunction = Callable[[relax.Call, "AnnotateContext"], relax.Expr]
ANNOTATE_FUNCTIONS: dict[str, AnnotateFunction] = {}


def register_annotate_function(op_name: str, override: bool = False) -> Callable[[AnnotateFunction], AnnotateFunction]:
    """Decorator registering ``fn(call, ctx) -> expr`` for ``op_name``; returns ``fn`` unchanged.

    Raises
    ------
    ValueError
        If ``op_name`` already has a function and ``override`` is False.
    """

    def wrap(fn: AnnotateFunction) -> AnnotateFunction:
        if op_name in ANNOTATE_FUNCTIONS and not override:
            raise ValueError(f"{op_name} already has an annotate function; pass override=True to replace it")
        ANNOTATE_FUNCTIONS[op_name] = fn
        return fn

    return wrap


@dataclass
class AnnotateContext:
    """What an annotate function knows about the layer it annotates.

    ``shared`` maps a tensor (a Relax var) to the ``simulated_quantize`` already wrapping it, so a
    tensor read by several ops is quantized once, under one name (its first consumer's).
    ``source_of(var)`` is the source name of a tensor (the model's node producing it; a layer's
    for a layer's output); ``tensor_sources`` collects ``{tensor name: source name}`` (a weight's
    is its layer's).
    """

    layer: LayerInfo
    config: QConfig
    tensors: list[str] = field(default_factory=list)
    builder: Optional[relax.BlockBuilder] = None
    shared: dict = field(default_factory=dict)
    source_of: Optional[Callable[[relax.Expr], str]] = None
    tensor_sources: dict = field(default_factory=dict)

    def tensor_name(self, role: str) -> str:
        """``<layer name>.<role>``, recorded as one of this layer's quantized tensors."""
        name = f"{self.layer.name}.{role}"
        self.tensors.append(name)
        return name


def _clip_range(config: QConfig, kind: str, sign: bool) -> tuple[int, int]:
    bits = {"weight": config.weight_bits, "bias": config.bias_bits, "input": config.input_bits}.get(
        kind, config.activation_bits)
    restricted = kind == "weight" and config.weight_scheme is QScheme.SYMMETRIC_RESTRICTED
    lo = -(2 ** (bits - 1)) + int(restricted) if sign else 0
    hi = 2 ** (bits - 1) - 1 if sign else 2**bits - 1
    return lo, hi


def attach_simulated_quantize(expr: relax.Expr, kind: str, ctx: AnnotateContext, role: Optional[str] = None,
                              sign: bool = True, rounding: Optional[RoundingMode | str] = None,
                              axis: Optional[int] = None) -> relax.Expr:
    """Wrap ``expr`` in ``sima.simulated_quantize`` for a tensor of ``kind`` (input / weight / activation / bias).

    The clip range comes from the layer's bit width for ``kind``; ``rounding`` defaults to the
    configuration's; ``axis`` is the output-channel axis of a weight (for per-channel scales).
    A tensor already wrapped (read by an earlier op) keeps its first wrapping and name.
    """
    if isinstance(expr, relax.Var) and expr in ctx.shared:
        return ctx.shared[expr]
    lo, hi = _clip_range(ctx.config, kind, sign)
    name = ctx.tensor_name(role or kind)
    ctx.tensor_sources[name] = ctx.layer.source if kind == "weight" or ctx.source_of is None else ctx.source_of(expr)
    call = so.simulated_quantize(expr, kind=kind, dom_scale=1.0, clip_min=lo, clip_max=hi, sign=sign,
                                 rounding=rounding or ctx.config.rounding_mode, name=name, axis=axis)
    if ctx.builder is None or not isinstance(expr, relax.Var):
        return call
    var = ctx.builder.emit(call, name_hint=f"{expr.name}_sq")
    ctx.shared[expr] = var
    return var


def _is_constant(expr: relax.Expr) -> bool:
    return isinstance(expr, tvm.ir.GenericConst)


@register_annotate_function("relax.nn.conv2d")
@register_annotate_function("relax.nn.conv2d_transpose")
def _annotate_conv2d(call: relax.Call, ctx: AnnotateContext) -> relax.Expr:
    # The input's axis is its channel axis: calibration then keeps per-channel means (bias correction).
    data = attach_simulated_quantize(call.args[0], "activation", ctx, "input",
                                     axis=str(call.attrs["data_layout"]).index("C"))
    out_axis = str(call.attrs["kernel_layout"]).index("O")
    weight = attach_simulated_quantize(call.args[1], "weight", ctx, axis=out_axis)
    return relax.Call(call.op, [data, weight], call.attrs, call.ty_args)


@register_annotate_function("relax.matmul")
def _annotate_matmul(call: relax.Call, ctx: AnnotateContext) -> relax.Expr:
    data = attach_simulated_quantize(call.args[0], "activation", ctx, "input", axis=call.args[0].ty.ndim - 1)
    if _is_constant(call.args[1]):
        weight = attach_simulated_quantize(call.args[1], "weight", ctx, axis=call.args[1].ty.ndim - 1)
    else:
        weight = attach_simulated_quantize(call.args[1], "activation", ctx, "rhs")
    return relax.Call(call.op, [data, weight], call.attrs, call.ty_args)


def _short(op_name: str) -> str:
    return op_name.rsplit(".", 1)[-1]


def is_float_tensor(expr: relax.Expr) -> bool:
    ty = getattr(expr, "ty", None)
    return isinstance(ty, relax.TensorType) and str(ty.dtype).startswith(("float", "bfloat"))


class _Annotator:
    """Rebuild ``main`` binding by binding, wrapping what each op needs quantized.

    Ops with an annotate function are the *layers* (numbered in program order). Every other op
    gets its float tensor inputs wrapped as activations, and so do the function's outputs: realize
    needs the scale of every tensor that crosses between ops. Tensors inside a conv / matmul
    epilogue (bias, batch norm, relu) are never wrapped: the fused op does not materialize them,
    nor are those inside an element-wise chain of one input (``lowering.chains``): it is one table.
    """

    def __init__(self, mod: tvm.IRModule, config: QConfig) -> None:
        self.mod, self.config = mod, config
        self.layers: list[LayerInfo] = []
        self.shared: dict[relax.Var, relax.Var] = {}
        self.counts: dict[str, int] = {}
        self.builder = relax.BlockBuilder()
        self.sources = SourceNames(mod["main"])
        self.tensor_sources: dict[str, str] = {}
        self.layer_sources: dict[str, str] = {}  # layer name -> its source name
        self.output_sources: dict[str, str] = {}  # a layer's (epilogue) output var name -> the layer's source

    def source_of(self, var: relax.Expr) -> str:
        """The source name of a tensor: its layer's for a layer's output, else its producer's (by var name:
        the rebuilt graph keeps the names)."""
        name = getattr(var, "name", None)
        return self.output_sources.get(name, "") if name in self.output_sources else self.sources.of(var)

    def _value_name(self, original: relax.Expr, producer_names: dict) -> str:
        if isinstance(original, relax.Var) and original in producer_names:
            return producer_names[original]
        return f"{getattr(original, 'name', 'value')}.input"

    def run(self) -> relax.Function:
        func = self.mod["main"]
        index = GraphIndex(func)
        internal: set = set()
        chain_owner: dict[relax.Var, relax.Var] = {}  # epilogue output -> root
        fused: set = set()
        for var in index.order:
            chain = epilogue_chain(index, var)
            if chain is not None:
                internal.update(chain.internal)
                fused.update([chain.root, *chain.vars])
                chain_owner[chain.output] = var
        # an element-wise chain of one input is one table
        internal.update(m for c in find_chains(index, exclude=fused) for m in c.members[:-1])
        producer_names: dict[relax.Var, str] = {p: f"{p.name}.input" for p in func.params}
        layer_of: dict[relax.Var, str] = {}

        def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> None:
            new_value = self._annotate(value, mapping, internal, producer_names, var, layer_of)
            mapping[var] = bb.emit(new_value, name_hint=var.name)
            self._name_output(var, value, chain_owner.get(var, var), producer_names, layer_of)

        def output(_bb: relax.BlockBuilder, body: relax.Expr, mapping: dict) -> relax.Expr:
            return self._wrap_outputs(body, mapping, producer_names, index)

        return rebuild_function(func, emit, emit_output=output, builder=self.builder)

    def _name_output(self, var: relax.Var, value: relax.Expr, root: relax.Var, producer_names: dict,
                     layer_of: dict) -> None:
        """The tensor name of ``var``: its layer's output, the k-th output of its op, or its own."""
        op = op_name(value)
        if root in layer_of:
            producer_names[var] = f"{layer_of[root]}.output"
            self.output_sources[var.name] = self.layer_sources[layer_of[root]]
        elif op is not None:
            count = self.counts.get(op, 0)
            self.counts[op] = count + 1
            producer_names[var] = f"{_short(op)}@{count}.output"
        else:
            producer_names[var] = f"{var.name}.output"

    def _default_context(self) -> AnnotateContext:
        layer = LayerInfo(-1, "", "", -1)
        return AnnotateContext(layer, self.config, builder=self.builder, shared=self.shared,
                               source_of=self.source_of, tensor_sources=self.tensor_sources)

    def _wrap_value(self, original: relax.Expr, new: relax.Expr, producer_names: dict) -> relax.Expr:
        if not isinstance(new, relax.Var) or not is_float_tensor(new):
            return new
        if new in self.shared:
            return self.shared[new]
        name = self._value_name(original, producer_names)
        self.tensor_sources[name] = self.source_of(original)
        ctx = self._default_context()
        lo, hi = _clip_range(self.config, "activation", True)
        call = so.simulated_quantize(new, kind="activation", dom_scale=1.0, clip_min=lo, clip_max=hi,
                                     rounding=self.config.rounding_mode, name=name)
        var = self.builder.emit(call, name_hint=f"{new.name}_sq")
        ctx.shared[new] = var
        return var

    def _wrap_outputs(self, body: relax.Expr, mapping: dict, producer_names: dict, index: GraphIndex) -> relax.Expr:
        """The function result with every float tensor in it wrapped, through the bindings that only
        gather the outputs (``gv = (a, b)``, ``gv1 = gv``: importers write them), so that the ops
        producing graph outputs get a calibrated scale too."""
        value = index.producer.get(body) if isinstance(body, relax.Var) else None
        if isinstance(value, (relax.Tuple, relax.Var)):
            return self._wrap_outputs(value, mapping, producer_names, index)
        if isinstance(body, relax.Tuple):
            return relax.Tuple([self._wrap_outputs(f, mapping, producer_names, index) for f in body.fields])
        return self._wrap_value(body, remap(body, mapping), producer_names)

    def _annotate(self, value: relax.Expr, mapping: dict, internal: set, producer_names: dict,
                  var: relax.Var, layer_of: dict) -> relax.Expr:
        op = op_name(value)
        new_value = remap(value, mapping)
        if op is None:
            return new_value
        assert isinstance(value, relax.Call) and isinstance(new_value, relax.Call)
        if op in ANNOTATE_FUNCTIONS:
            index = len(self.layers)
            op_index = sum(1 for seen in self.layers if seen.op == op)
            layer = LayerInfo(index, f"{_short(op)}_{index}", op, op_index, self.sources.of(var))
            self.layers.append(layer)
            layer_of[var] = layer.name
            self.layer_sources[layer.name] = layer.source
            config, skip = self.config.for_layer(layer)
            if skip:
                return new_value
            ctx = AnnotateContext(layer, config, builder=self.builder, shared=self.shared, source_of=self.source_of,
                                  tensor_sources=self.tensor_sources)
            return ANNOTATE_FUNCTIONS[op](new_value, ctx)
        if op == "sima.simulated_quantize":
            return new_value

        def wrap(original: relax.Expr, new: relax.Expr) -> relax.Expr:
            if isinstance(original, relax.Tuple):
                return relax.Tuple([wrap(o, n) for o, n in zip(original.fields, new.fields, strict=True)])
            if isinstance(original, relax.Var) and original in internal:
                return new
            return self._wrap_value(original, new, producer_names)

        args = [wrap(o, n) for o, n in zip(value.args, new_value.args, strict=True)]
        return relax.Call(new_value.op, args, new_value.attrs, new_value.ty_args)


def annotate(mod: tvm.IRModule, config: Optional[QConfig] = None) -> tuple[tvm.IRModule, list[LayerInfo]]:
    """Annotate ``main``: returns the annotated module and every quantizable layer, in program order.

    Constant subgraphs are folded first, so weights computed from constants are seen as weights.

    Skipped layers (``skip_conv_layers``, ``skip_dense_layer``, overrides with ``skip``) are listed
    but stay float; ``config.for_layer(layer)`` tells which.

    Tensor names: a layer's inputs and weights are ``<layer>.<role>`` (``conv2d_0.input``); any
    other tensor is named after its producer: ``<layer>.output`` for a layer's (epilogue) output,
    ``<op>@<k>.output`` for the k-th output of another op, ``<param>.input`` for a model input.
    A tensor read by several ops is wrapped once, under the name its first reader gave it.
    """
    mod = relax.transform.FoldConstant()(mod)
    annotator = _Annotator(mod, config or current_qconfig())
    out = mod.clone()
    main = annotator.run()
    out["main"] = main.with_attr(TENSOR_SOURCES, annotator.tensor_sources) if annotator.sources else main
    return out, annotator.layers
