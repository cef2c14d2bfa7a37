"""Chains of layout moves between a dequantize and a quantize: run them on the codes.

Importers write one model op as several Relax moves — ONNX DepthToSpace / SpaceToDepth (and
TFLite's, in the float importer) are ``reshape -> permute_dims -> reshape`` — so a QDQ model holds
``dequantize -> reshape -> permute_dims -> reshape -> quantize``. The converter matches one op
between a dequantize and a quantize; here every layout move whose result does not reach a
quantize is moved above the dequantize::

    reshape(dequantize(x, q))  ->  dequantize(reshape(x), q)

which is exact for per-tensor parameters (a layout move selects values, the dequantize maps
each one alone; dequantized constants, the weights, stay as they are). The last move of the
chain then meets the quantize and converts as usual.
"""

from __future__ import annotations

from typing import Optional

import tvm
from tvm import relax

from .. import math as sm
from .. import ops as so
from ..graph import GraphIndex, constant_value, op_name, rebuild_main, remap
from ..ops import qparams_from_attrs
from .chains import match_tail

__all__ = ["LAYOUT_MOVES", "sink_dequantize"]

#: Ops that only rearrange values (no arithmetic, no fill value): they commute with a per-tensor dequantize.
LAYOUT_MOVES = ("relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims", "relax.flatten",
                "relax.strided_slice")


def _moved(index: GraphIndex) -> dict[relax.Var, tuple[relax.Var, sm.QParams]]:
    """Each layout move to run on the codes -> (the var holding its float input, the parameters)."""
    found: dict[relax.Var, tuple[relax.Var, sm.QParams]] = {}
    dequantized: dict[relax.Var, sm.QParams] = {}
    for var in index.order:
        value = index.producer[var]
        name = op_name(value)
        if name == "sima.dequantize":
            qp = qparams_from_attrs(value.attrs)  # type: ignore[union-attr]
            weight = constant_value(value.args[0]) is not None  # type: ignore[union-attr]
            if not qp.per_channel and not weight:  # dequantized weights stay as they are
                dequantized[var] = qp
            continue
        if name not in LAYOUT_MOVES:
            continue
        source = value.args[0]  # type: ignore[union-attr]
        if not isinstance(source, relax.Var) or source not in dequantized:
            continue
        if any(isinstance(a, relax.Var) for a in value.args[1:]) or match_tail(index, var) is not None:  # type: ignore
            continue
        found[var] = (source, dequantized[source])
        dequantized[var] = dequantized[source]
    return found


def sink_dequantize(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the layout moves of the module docstring run on the codes (the same module if none)."""
    index = GraphIndex(mod["main"])
    moved = _moved(index)
    if not moved:
        return mod
    codes: dict[relax.Var, relax.Expr] = {}  # var -> its integer value (for dequantized vars)

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> Optional[relax.Expr]:
        if op_name(value) == "sima.dequantize":
            codes[var] = remap(value.args[0], mapping)  # type: ignore[union-attr]
        if var not in moved:
            return remap(value, mapping)
        source, qp = moved[var]
        call = value
        assert isinstance(call, relax.Call)
        codes[var] = bb.emit(relax.Call(call.op, [codes[source], *call.args[1:]], call.attrs, call.ty_args),
                             name_hint=f"{var.name}_codes")
        return so.dequantize(codes[var], qp)

    return rebuild_main(mod, emit)
