"""Graph helpers shared by passes, converter, codegen and compare (no other tvm_sima import).

* :func:`remap`: an expression with its vars replaced, to rebuild a function binding by binding.
* :func:`rebuild_main` / :func:`rebuild_function`: that rebuild itself, with a callback per binding.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Optional, Sequence

import tvm
from tvm import relax

__all__ = ["EmitBinding", "EmitOutput", "copy_binding", "copy_output", "rebuild_function", "rebuild_main", "remap"]

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
