"""Graph helpers shared by passes, converter, codegen and compare (no other tvm_sima import).

* :func:`remap`: an expression with its vars replaced, to rebuild a function binding by binding.
* :func:`rebuild_main` / :func:`rebuild_function`: that rebuild itself, with a callback per binding;
* :class:`GraphIndex` (producer, users and order of every binding), :func:`op_name`,
  :func:`constant_value`, :func:`channel_axis`, :func:`clip_bounds`, :func:`scalar_operand`: graph facts.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import tvm
from tvm import relax

__all__ = ["EmitBinding", "EmitOutput", "GraphIndex", "channel_axis", "clip_bounds", "constant_value", "copy_binding",
           "copy_output", "op_name", "rebuild_function", "rebuild_main", "remap", "scalar_operand", "static_shape"]

#: ``emit_binding(bb, var, value, mapping)`` for each binding ``var = value`` of the old function:
#: return the new value (the rebuild emits it under ``var``'s name and maps ``var`` to it), or
#: None when the callback emitted and mapped what it wanted itself (or drops the binding).
EmitBinding = Callable[[relax.BlockBuilder, relax.Var, relax.Expr, dict], Optional[relax.Expr]]
#: ``emit_output(bb, body, mapping)``: the new function result from the old one (it may emit).
EmitOutput = Callable[[relax.BlockBuilder, relax.Expr, dict], relax.Expr]


def remap(expr: relax.Expr, mapping: dict) -> relax.Expr:
    """``expr`` with its vars replaced through ``mapping`` (vars, tuples, calls, tuple items).

    Parameters
    ----------
    expr : relax.Expr
        A binding's value (or a function's body result).
    mapping : dict
        Old var -> new expression; vars not in it are kept.

    Returns
    -------
    relax.Expr
        The same expression over the new vars (other kinds of expression are returned as they are).
    """
    if isinstance(expr, relax.Var):
        return mapping.get(expr, expr)
    if isinstance(expr, relax.Tuple):
        return relax.Tuple([remap(f, mapping) for f in expr.fields])
    if isinstance(expr, relax.TupleGetItem):
        return relax.TupleGetItem(remap(expr.tuple_value, mapping), expr.index)
    if isinstance(expr, relax.Call):
        return relax.Call(expr.op, [remap(a, mapping) for a in expr.args], expr.attrs, expr.ty_args)
    return expr


def copy_binding(_bb: relax.BlockBuilder, _var: relax.Var, value: relax.Expr, mapping: dict) -> relax.Expr:
    """The default :data:`EmitBinding`: the binding unchanged, over the new vars."""
    return remap(value, mapping)


def copy_output(_bb: relax.BlockBuilder, body: relax.Expr, mapping: dict) -> relax.Expr:
    """The default :data:`EmitOutput`: the old result over the new vars."""
    return remap(body, mapping)


def rebuild_function(
    func: relax.Function,
    emit_binding: EmitBinding = copy_binding,
    *,
    name: str = "main",
    params: Optional[Sequence[relax.Var]] = None,
    attrs: Optional[Mapping[str, Any]] = None,
    mapping: Optional[dict] = None,
    emit_output: EmitOutput = copy_output,
    builder: Optional[relax.BlockBuilder] = None,
    dataflow: bool = True,
) -> relax.Function:
    """A new function built binding by binding from ``func``'s bindings, in their order.

    Parameters
    ----------
    func : relax.Function
        The function to rebuild (its blocks are read in order; it is not changed).
    emit_binding : callable
        See :data:`EmitBinding`; the default copies every binding.
    name : str
        Name of the new function in the builder.
    params : sequence of relax.Var, optional
        Parameters of the new function (default: ``func``'s).
    attrs : mapping, optional
        Attributes of the new function (default: ``func``'s; an empty mapping gives none).
    mapping : dict, optional
        Old var -> new expression, filled as bindings are emitted; pass one to pre-seed it
        (e.g. new parameters) or to share it with the callbacks.
    emit_output : callable
        See :data:`EmitOutput`; the default remaps ``func``'s result.
    builder : relax.BlockBuilder, optional
        The builder to emit into (default: a new one).
    dataflow : bool
        Emit the bindings into one dataflow block (then the result is its output); False for a
        plain binding block (e.g. after ``ToNonDataflow``).

    Returns
    -------
    relax.Function
        The new function, as the builder normalized it.

    Raises
    ------
    NotImplementedError
        For a ``match_cast`` binding (as :class:`tvm_sima.passes.patterns.GraphIndex`).
    """
    bb = relax.BlockBuilder() if builder is None else builder
    mapping = {} if mapping is None else mapping
    new_attrs = (dict(func.attrs) if func.attrs else None) if attrs is None else (dict(attrs) or None)
    with bb.function(name, list(func.params if params is None else params), attrs=new_attrs):
        if dataflow:
            with bb.dataflow():
                _emit_bindings(bb, func, emit_binding, mapping)
                out = bb.emit_output(emit_output(bb, func.body.body, mapping))
        else:
            _emit_bindings(bb, func, emit_binding, mapping)
            out = emit_output(bb, func.body.body, mapping)
        bb.emit_func_output(out)
    return bb.get()[name]


def _emit_bindings(bb: relax.BlockBuilder, func: relax.Function, emit_binding: EmitBinding, mapping: dict) -> None:
    for block in func.body.blocks:
        for binding in block.bindings:
            if not isinstance(binding, relax.VarBinding):  # as GraphIndex: a match_cast would be lost
                raise NotImplementedError(f"{type(binding).__name__} bindings are not supported "
                                          f"({binding.var.name}); quantize a module without match_cast")
            new = emit_binding(bb, binding.var, binding.value, mapping)
            if new is not None:
                mapping[binding.var] = bb.emit(new, name_hint=binding.var.name)


def rebuild_main(
    mod: tvm.IRModule,
    emit_binding: EmitBinding = copy_binding,
    *,
    params: Optional[Sequence[relax.Var]] = None,
    attrs: Optional[Mapping[str, Any]] = None,
    mapping: Optional[dict] = None,
    emit_output: EmitOutput = copy_output,
    builder: Optional[relax.BlockBuilder] = None,
    dataflow: bool = True,
) -> tvm.IRModule:
    """A copy of ``mod`` whose ``main`` is rebuilt by :func:`rebuild_function` (same arguments).

    ::

        def emit(bb, var, value, mapping):
            if op_name(value) == "relax.nn.relu":
                return relax.op.clip(remap(value.args[0], mapping), 0, 6)   # emitted as `var`
            return remap(value, mapping)                                    # copied

        new_mod = rebuild_main(mod, emit)
    """
    new_main = rebuild_function(mod["main"], emit_binding, params=params, attrs=attrs, mapping=mapping,
                                emit_output=emit_output, builder=builder, dataflow=dataflow)
    result = mod.clone()
    result["main"] = new_main
    return result


def op_name(expr: Any) -> Optional[str]:
    """The operator name of a call to a registered op, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return None


def static_shape(expr: Any) -> Optional[list[int]]:
    """The static shape of ``expr`` (its tensor type) as ints, or None."""
    shape = getattr(getattr(expr, "ty", None), "shape", None)
    try:
        return [int(d) for d in shape] if shape is not None else None
    except (TypeError, ValueError):
        return None


def constant_value(expr: Any) -> Optional[np.ndarray]:
    """The array of a Relax constant, or of a scalar PrimValue / IntImm / FloatImm; else None."""
    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    if isinstance(expr, (tvm.tirx.IntImm, tvm.tirx.FloatImm)):
        return np.asarray(expr.value, dtype=np.float64)
    return None


def channel_axis(call: relax.Call) -> int:
    """Output-channel axis of a conv2d / conv2d_transpose (from its out_layout) or matmul (the last)."""
    if op_name(call) in ("relax.nn.conv2d", "relax.nn.conv2d_transpose"):
        return str(call.attrs["out_layout"]).index("C")
    return call.ty.ndim - 1


class GraphIndex:
    """Bindings of a function's blocks: producer of each var, its users, and how often it is used."""

    def __init__(self, func: relax.Function) -> None:
        self.producer: dict[relax.Var, relax.Expr] = {}
        self.users: dict[relax.Var, list[relax.Var]] = {}
        self.order: list[relax.Var] = []
        for block in func.body.blocks:
            for binding in block.bindings:
                if not isinstance(binding, relax.VarBinding):
                    raise NotImplementedError(f"{type(binding).__name__} bindings are not supported "
                                              f"({binding.var.name}); quantize a module without match_cast")
                self.producer[binding.var] = binding.value
                self.order.append(binding.var)
                for used in _vars_in(binding.value):
                    self.users.setdefault(used, []).append(binding.var)
        for used in _vars_in(func.body.body):
            self.users.setdefault(used, []).append(None)  # type: ignore[arg-type]  # the function output

    def single_user(self, var: relax.Var) -> Optional[relax.Var]:
        users = self.users.get(var, [])
        return users[0] if len(users) == 1 and users[0] is not None else None


def _vars_in(expr: relax.Expr) -> list[relax.Var]:
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars_in(f)]
    if isinstance(expr, relax.Call):
        return [v for a in expr.args for v in _vars_in(a)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars_in(expr.tuple_value)
    return []


def scalar_operand(args: Any) -> Optional[tuple[int, float]]:
    """``(index of the tensor operand, the scalar)`` of a binary op with exactly one scalar constant operand."""
    values = [constant_value(a) for a in args]
    if sum(v is not None for v in values) != 1:
        return None
    k = 0 if values[0] is None else 1
    c = values[1 - k]
    assert c is not None
    return None if c.size != 1 else (k, float(c.reshape(())))


def clip_bounds(call: relax.Expr) -> Optional[tuple[relax.Expr, float, float]]:
    """``(tensor operand, lo, hi)`` of relu, relu6, clip with constant bounds, or maximum / minimum
    of a tensor and a scalar constant (either operand order); None for anything else."""
    name = op_name(call)
    if name is None:
        return None
    assert isinstance(call, relax.Call)
    args = list(call.args)
    if name in ("relax.maximum", "relax.minimum") and len(args) == 2:
        found = scalar_operand(args)
        if found is None:
            return None
        k, v = found
        return (args[k], v, math.inf) if name == "relax.maximum" else (args[k], -math.inf, v)
    if name == "relax.clip":
        lo, hi = constant_value(args[1]), constant_value(args[2])
        return None if lo is None or hi is None else (args[0], float(lo), float(hi))
    if name == "relax.nn.relu":
        return (args[0], 0.0, math.inf)
    if name == "relax.nn.relu6":
        return (args[0], 0.0, 6.0)
    return None
