"""ONNX ``Max`` / ``Min`` of several tensors as TVM's importer writes them, back to pairwise ops.

The importer writes ``Max(a, b)`` as ``max(stack([broadcast_to(a, s), broadcast_to(b, s)]), axis=0)``;
:func:`pairwise_extrema` makes it ``maximum(a, b)`` (``minimum`` for ``Min``, folded left for more
inputs): the same values, since both broadcast to ``s``, and one op both routes lower
(``lowering.extrema``) instead of a stack and a reduction that stay float.
"""

from __future__ import annotations

import functools
from typing import Optional

import tvm
from tvm import relax

__all__ = ["pairwise_extrema"]

_STACKED = {"relax.max": relax.op.maximum, "relax.min": relax.op.minimum}


def _op(expr: Optional[relax.Expr]) -> Optional[str]:
    return str(expr.op.name) if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) else None


def _bound(mutator: relax.PyExprMutator, expr: relax.Expr) -> Optional[relax.Expr]:
    return mutator.lookup_binding(expr) if isinstance(expr, relax.Var) else expr


def _pairwise(mutator: relax.PyExprMutator, call: relax.Call) -> Optional[relax.Expr]:
    """``max`` / ``min`` over axis 0 of a stack of (broadcast) tensors: the pairwise maximum / minimum."""
    make = _STACKED.get(_op(call) or "")
    axis = call.attrs["axis"] if make is not None else None
    if make is None or axis is None or [int(a) for a in axis] != [0] or bool(call.attrs["keepdims"]):
        return None
    stack = _bound(mutator, call.args[0])
    if _op(stack) != "relax.stack" or int(stack.attrs["axis"]) != 0:  # type: ignore[union-attr]
        return None
    fields = _bound(mutator, stack.args[0])  # type: ignore[union-attr]
    if not isinstance(fields, relax.Tuple) or len(fields.fields) < 2:
        return None
    parts = []
    for field in fields.fields:
        value = _bound(mutator, field)
        parts.append(value.args[0] if _op(value) == "relax.broadcast_to" else field)  # type: ignore[union-attr]
    return functools.reduce(make, parts)


@relax.expr_functor.mutator
class _Pairwise(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        rewritten = _pairwise(self, call)
        return call if rewritten is None else rewritten


def pairwise_extrema(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the importer's stacked Max / Min of ``main`` rewritten pairwise (module docstring)."""
    out = mod.clone()
    out["main"] = _Pairwise(mod).visit_expr(mod["main"])
    return relax.transform.DeadCodeElimination(["main"])(out)
