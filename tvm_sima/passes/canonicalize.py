"""Canonicalize a float module before annotate: fold constants, decompose batch norm, undo importer TE calls.

Relax's ONNX importer writes ``Clip`` as ``call_tir`` of TOPI ``maximum`` / ``minimum`` PrimFuncs;
annotate and realize only see Relax ops, so those calls become ``relax.maximum`` /
``relax.minimum`` again (recognized by the PrimFunc's name *and* its body computing ``T.max`` /
``T.min`` of its two inputs). Batch norm becomes per-channel multiply and add
(``DecomposeOpsForInference``), which realize folds into the preceding conv.
"""

from __future__ import annotations

from typing import Optional

import tvm
from tvm import relax, tirx

__all__ = ["canonicalize", "undo_te_calls"]

_TE_BINARY = {"maximum": (relax.op.maximum, "T.max("), "minimum": (relax.op.minimum, "T.min(")}


def _te_binary(mod: tvm.IRModule, call: relax.Call) -> Optional[relax.Expr]:
    if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.call_tir"):
        return None
    gvar, args = call.args[0], call.args[1]
    if not isinstance(gvar, tvm.ir.GlobalVar) or not isinstance(args, relax.Tuple) or len(args.fields) != 2:
        return None
    base = gvar.name_hint.rstrip("0123456789")
    if base not in _TE_BINARY or gvar not in mod.functions:
        return None
    func = mod[gvar]
    make, marker = _TE_BINARY[base]
    if not isinstance(func, tirx.PrimFunc) or marker not in func.script() or len(func.params) != 3:
        return None
    return make(args.fields[0], args.fields[1])


@relax.expr_functor.mutator
class _UndoTE(relax.PyExprMutator):
    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.mod = mod

    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        rewritten = _te_binary(self.mod, call)
        return call if rewritten is None else rewritten


def undo_te_calls(mod: tvm.IRModule, names: tuple[str, ...] = ("main",)) -> tvm.IRModule:
    """A copy of ``mod`` whose functions ``names`` call ``relax.maximum`` / ``relax.minimum``
    where the importer wrote ``call_tir`` of TOPI ``maximum`` / ``minimum`` (module docstring)."""
    out = mod.clone()
    for name in names:
        out[name] = _UndoTE(mod).visit_expr(mod[name])
    return out


def canonicalize(mod: tvm.IRModule) -> tvm.IRModule:
    """Bound-parameter float module -> the form annotate expects (see the module docstring)."""
    mod = relax.transform.DecomposeOpsForInference()(mod)
    mod = relax.transform.FoldConstant()(mod)
    out = undo_te_calls(mod)
    out = relax.transform.CanonicalizeBindings()(out)  # tuple(...)[i] of a known tuple -> the field
    out = relax.transform.DeadCodeElimination(["main"])(out)
    return relax.transform.FoldConstant()(out)
