"""Chains of layout moves between a dequantize and a quantize: run them on the codes.

Importers write one model op as several Relax moves — ONNX DepthToSpace / SpaceToDepth (and
TFLite's, in the float importer) are ``reshape -> permute_dims -> reshape`` — so a QDQ model holds
``dequantize -> reshape -> permute_dims -> reshape -> quantize``. The converter matches one op
between a dequantize and a quantize; here every layout move whose result does not reach a
quantize is moved above the dequantize::

    reshape(dequantize(x, q))  ->  dequantize(reshape(x), q)

which is exact for per-tensor parameters (a layout move selects values, the dequantize maps
each one alone; dequantized constants, the weights, stay as they are). The last move of the
chain then meets the quantize and converts as usual. Before that, :func:`hoist_zero_pads` puts a
zero pad of a clip's result before the clip (``dequantize -> relu6 -> pad -> quantize`` becomes
``dequantize -> pad -> relu6 -> quantize``: a pad of the codes, then an integer clip).
"""

from __future__ import annotations

from typing import Optional

import tvm
from tvm import relax

from .. import math as sm
from .. import ops as so
from ..graph import GraphIndex, clip_bounds, constant_value, op_name, rebuild_main, remap
from ..ops import qparams_from_attrs
from .chains import match_tail

__all__ = ["LAYOUT_MOVES", "hoist_zero_pads", "sink_dequantize"]

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


def _hoistable(index: GraphIndex) -> dict[relax.Var, relax.Var]:
    """Each zero ``pad`` of a clip's result (the clip keeping 0, read by the pad alone) -> that clip's var."""
    found = {}
    for var in index.order:
        value = index.producer[var]
        if op_name(value) != "relax.nn.pad" or str(value.attrs["pad_mode"]) != "constant" or \
                float(value.attrs["pad_value"]) != 0.0:  # type: ignore[union-attr]
            continue
        clipped = value.args[0]  # type: ignore[union-attr]
        bounds = clip_bounds(index.producer.get(clipped)) if isinstance(clipped, relax.Var) else None
        if bounds is not None and bounds[1] <= 0.0 <= bounds[2] and index.single_user(clipped) == var:
            found[var] = clipped
    return found


def hoist_zero_pads(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with every ``pad(clip(x), 0)`` written ``clip(pad(x, 0))`` (the same module if none).

    Exact when the clip keeps 0 (relu, relu6, ``clip(lo <= 0 <= hi)``): the padded zeros pass the clip
    unchanged. PT2E models hold ``dequantize -> hardtanh -> pad -> quantize`` before each depthwise
    convolution with TensorFlow padding (EfficientNet-Lite: the XNNPACK quantizer annotates no pad); the
    pad then meets the dequantize and the clip the quantize, one integer pad + clip.
    """
    index = GraphIndex(mod["main"])
    pads = _hoistable(index)
    if not pads:
        return mod
    clips = set(pads.values())

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> Optional[relax.Expr]:
        if var in clips:
            return None  # emitted after its pad
        if var not in pads:
            return remap(value, mapping)
        clip = index.producer[pads[var]]
        operand = clip_bounds(clip)[0]  # type: ignore[index]
        padded = bb.emit(relax.Call(value.op, [remap(operand, mapping)], value.attrs),  # type: ignore[union-attr]
                         name_hint=f"{var.name}_pad")
        assert isinstance(clip, relax.Call)
        return relax.Call(clip.op, [padded if a.same_as(operand) else remap(a, mapping) for a in clip.args], clip.attrs)

    return rebuild_main(mod, emit)
