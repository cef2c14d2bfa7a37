"""ONNX ``Pad`` (constant mode) back to ``relax.nn.pad`` after TVM's importer.

TVM's ONNX importer writes a constant Pad as ``call_tir`` of a TOPI ``pad`` PrimFunc, which no
pass can read: annotate, realize and the converter see an opaque call and leave it float (a
channel pad before a residual add among them). This recognizes those PrimFuncs by their one
block, ``out[i] = if_then_else(in bounds, A[i - before], value)``, reads ``before`` from the load's
indices and ``value`` from the else branch (``after`` from the shapes), and writes the Relax op.
"""

from __future__ import annotations

from typing import Optional

import tvm
import tvm_ffi
from tvm import relax, tirx

from ..graph import rebuild_main, remap

__all__ = ["pad_from_te"]


def _before(index: tirx.PrimExpr) -> Optional[int]:
    """``i - b`` -> b, ``i`` -> 0, anything else -> None."""
    if isinstance(index, tirx.Var):
        return 0
    if isinstance(index, tirx.Sub) and isinstance(index.a, tirx.Var) and isinstance(index.b, tirx.IntImm):
        return int(index.b.value)
    return None


def _pad_of(func: tirx.PrimFunc) -> Optional[tuple[list[int], float]]:
    """``(before per axis, pad value)`` of a TOPI constant-pad PrimFunc, or None."""
    stores: list[tirx.BufferStore] = []
    tvm_ffi.structural_walk(func.body, [(tirx.BufferStore, stores.append)])
    if len(stores) != 1:
        return None
    value = stores[0].value
    if isinstance(value, tvm.ir.TensorLoad):
        load, fill = value, 0.0
    elif isinstance(value, tvm.ir.Call) and str(getattr(value.op, "name", "")).endswith("if_then_else") and \
            isinstance(value.args[1], tvm.ir.TensorLoad) and isinstance(value.args[2], (tirx.FloatImm, tirx.IntImm)):
        load, fill = value.args[1], float(value.args[2].value)
    else:
        return None
    before = [_before(i) for i in load.indices]
    if any(b is None or b < 0 for b in before):
        return None
    return [int(b) for b in before if b is not None], fill


def pad_from_te(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with each ``call_tir`` of a TOPI constant pad written as ``relax.nn.pad`` (module docstring)."""

    bindings = [b for block in mod["main"].body.blocks for b in block.bindings]
    pads = [found for b in bindings for found in [_as_pad(mod, b.var, b.value)] if found]
    if not pads:
        return mod
    by_var = {var: (x, widths, fill) for var, x, widths, fill in pads}

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> Optional[relax.Expr]:
        if var not in by_var:
            return remap(value, mapping)
        x, widths, fill = by_var[var]
        return relax.op.nn.pad(remap(x, mapping), widths, "constant", fill)

    return relax.transform.DeadCodeElimination(["main"])(rebuild_main(mod, emit))


def _as_pad(mod: tvm.IRModule, var: relax.Var, value: relax.Expr
            ) -> Optional[tuple[relax.Var, relax.Expr, list[int], float]]:
    if not (isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name == "relax.call_tir"):
        return None
    gvar, args = value.args[0], value.args[1]
    if not isinstance(gvar, tvm.ir.GlobalVar) or not gvar.name_hint.startswith("pad") or \
            not isinstance(args, relax.Tuple) or len(args.fields) != 1 or gvar not in mod.functions:
        return None
    func = mod[gvar]
    found = _pad_of(func) if isinstance(func, tirx.PrimFunc) else None
    try:
        dims_in = [int(d) for d in args.fields[0].ty.shape]  # type: ignore[attr-defined]
        dims_out = [int(d) for d in value.ty.shape]  # type: ignore[attr-defined]
    except (AttributeError, TypeError, ValueError):
        return None
    if found is None or len(found[0]) != len(dims_in):
        return None
    before, fill = found
    after = [o - i - b for o, i, b in zip(dims_out, dims_in, before, strict=True)]
    if any(a < 0 for a in after):
        return None
    widths = [w for pair in zip(before, after, strict=True) for w in pair]
    return var, args.fields[0], widths, fill
