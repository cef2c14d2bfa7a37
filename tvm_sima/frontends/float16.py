"""Float16 weights behind DEQUANTIZE (TFLite's float16-quantized models) as float32 constants.

TVM's TFLite importer writes each such weight as ``astype(float16 constant, "float32")``;
:func:`float32_constants` replaces each by the float32 constant of the same values (exact: every
float16 is a float32), in NumPy: no TVM constant folding at import (which builds and runs a
kernel per weight; BlazeFace's 74 took 14 s).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

__all__ = ["float32_constants"]


@relax.expr_functor.mutator
class _Widen(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.astype" and \
                isinstance(call.args[0], tvm.ir.GenericConst) and str(call.args[0].ty.dtype) == "float16" and \
                str(call.attrs["dtype"]) == "float32":
            return relax.const(call.args[0].value.numpy().astype(np.float32))
        return call


def float32_constants(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every ``astype(float16 constant, float32)`` of ``main`` a float32 constant."""
    out = mod.clone()
    out["main"] = _Widen(mod).visit_expr(mod["main"])
    return out
