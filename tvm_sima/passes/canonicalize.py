"""Canonicalize a float module before annotate: fold constants, decompose batch norm, undo importer TE calls.

Relax's ONNX importer writes ``Clip`` as ``call_tir`` of TOPI ``maximum`` / ``minimum`` PrimFuncs;
annotate and realize only see Relax ops, so those calls become ``relax.maximum`` /
``relax.minimum`` again (recognized by the PrimFunc's name *and* its body computing ``T.max`` /
``T.min`` of its two inputs). Batch norm becomes per-channel multiply and add
(``DecomposeOpsForInference``), which realize folds into the preceding conv.

Constants are folded by ``FoldConstant``, which compiles every op it folds with LLVM (about 50 ms
each: 9.8 s for the 116 constant reshapes and NaN tests of EfficientNet-Lite0's bias and Clip
bounds). The exact ones of those ops (moves, NaN tests, selections: :data:`NUMPY_FOLDS`) are
folded in NumPy first, giving the same constants bit for bit; ``FoldConstant`` folds the rest.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np
import tvm
from tvm import relax, tirx

from ..graph import op_name

__all__ = ["NUMPY_FOLDS", "canonicalize", "fold_exact_constants", "undo_te_calls"]

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


def _permute(call: relax.Call, x: np.ndarray) -> np.ndarray:
    axes = call.attrs.axes
    return np.transpose(x, None if axes is None else [int(a) for a in axes])


#: Op -> its value on constant operands (NumPy arrays; the call for its attributes, the result shape), for ops
#: whose result is exact: the value TVM's kernel computes, bit for bit.
NUMPY_FOLDS: dict[str, Callable[..., Any]] = {
    "relax.reshape": lambda call, shape, x, _new_shape=None: x.reshape(shape),
    "relax.permute_dims": lambda call, shape, x: _permute(call, x),
    "relax.isnan": lambda call, shape, x: np.isnan(x),
    "relax.where": lambda call, shape, cond, a, b: np.where(cond, a, b),
}


@relax.expr_functor.mutator
class _FoldExact(relax.PyExprMutator):
    """Every :data:`NUMPY_FOLDS` call of constant operands (or of vars bound to constants) -> its constant."""

    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        fold = NUMPY_FOLDS.get(op_name(call) or "")
        operands = self._constant_operands(call) if fold is not None else None
        ty = self.builder_.normalize(call).ty if operands is not None else None
        if fold is None or operands is None or not isinstance(ty, relax.TensorType) or ty.shape is None:
            return call
        shape = tuple(int(d) for d in ty.shape.values)
        result = np.asarray(fold(call, shape, *operands)).astype(str(ty.dtype), copy=False).reshape(shape)
        return relax.const(result, str(ty.dtype))

    def _constant_operands(self, call: relax.Call) -> Optional[list[Any]]:
        """The operands as NumPy arrays (a shape operand as None), or None unless all are constants."""
        values: list[Any] = []
        for arg in call.args:
            bound = self.lookup_binding(arg) if isinstance(arg, relax.Var) else arg
            if isinstance(arg, relax.ShapeExpr):
                values.append(None)
            elif isinstance(bound, tvm.ir.GenericConst):
                values.append(bound.value.numpy())
            else:
                return None
        return values


def fold_exact_constants(mod: tvm.IRModule) -> tvm.IRModule:
    """``main`` with every :data:`NUMPY_FOLDS` op of constant operands (after earlier folds) a constant."""
    out = mod.clone()
    out["main"] = _FoldExact(mod).visit_expr(mod["main"])
    return out


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
    mod = relax.transform.FoldConstant()(fold_exact_constants(mod))
    out = undo_te_calls(mod)
    out = relax.transform.CanonicalizeBindings()(out)  # tuple(...)[i] of a known tuple -> the field
    out = relax.transform.DeadCodeElimination(["main"])(out)
    return relax.transform.FoldConstant()(out)
