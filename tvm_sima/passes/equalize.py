"""Cross-layer equalization (Nagel et al., 2019) of a canonicalized float module, before annotate.

For two convolutions in a chain ``A -> epilogue -> B`` (A's output read by B alone), output channel
``i`` of A and input channel ``i`` of B can trade a factor ``s_i > 0``: A's weights and bias of channel
``i`` divided by ``s_i``, B's weights reading channel ``i`` multiplied by it. The float function is
unchanged when A's epilogue commutes with a positive scale: none (identity), or relu (``relu(z / s) =
relu(z) / s``). With ``r1_i`` the range (max |w|) of A's channel ``i`` and ``r2_i`` that of B's weights
reading it, ``s_i = sqrt(r1_i / r2_i)`` makes both ``sqrt(r1_i r2_i)``: the weight ranges of the two
layers equalized channel by channel, which per-tensor weight grids need most. Depthwise A (its output
channel ``i`` is its row ``i``) and depthwise B (channel ``i`` its own filter) are handled alike, so
depthwise-separable blocks (dw -> pw, pw -> dw) are.

relu6 and other clips with a finite upper bound do not commute with a scale (``min(z / s, 6)`` is not
``min(z, 6) / s`` unless the bound moves to ``6 / s_i`` per channel, which the fused op's per-tensor
clip cannot hold). AIMET replaces relu6 by relu before equalizing, which changes the float model
wherever a pre-activation exceeds 6; here such pairs are left alone, so the float model is always
kept (the price: on EfficientNet-Lite0, whose activations are all relu6, only its identity pairs
qualify). High-bias absorption is not done (it needs the pre-activation statistics that batch norm's
parameters gave the paper; those are folded away by :mod:`~tvm_sima.passes.canonicalize`).

Only NCHW / OIHW convolutions with constant weights are paired; anything else is left as it is.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
import tvm
from tvm import relax

from ..graph import GraphIndex, constant_value, op_name, rebuild_main, remap
from .patterns import Epilogue, epilogue_chain

__all__ = ["Pair", "equalize", "find_pairs"]


@dataclass
class Pair:
    """A to B through A's epilogue; ``scales``: the factor of each channel between them."""

    first: Epilogue
    second: relax.Var
    scales: np.ndarray


def _conv(index: GraphIndex, var: relax.Var) -> Optional[tuple[relax.Call, np.ndarray]]:
    call = index.producer.get(var)
    if op_name(call) != "relax.nn.conv2d":
        return None
    assert isinstance(call, relax.Call)
    a = call.attrs
    weight = constant_value(call.args[1])
    if weight is None or str(a["data_layout"]) != "NCHW" or str(a["kernel_layout"]) != "OIHW" \
            or str(a["out_layout"]) != "NCHW":
        return None
    return call, np.asarray(weight, dtype=np.float64)


def _scales(first: np.ndarray, second: np.ndarray, second_groups: int, channels: int) -> Optional[np.ndarray]:
    r1 = np.abs(first).reshape(channels, -1).max(axis=1)
    if second_groups == 1:
        r2 = np.abs(second).transpose(1, 0, 2, 3).reshape(channels, -1).max(axis=1)
    elif second_groups == channels and second.shape[1] == 1 and second.shape[0] == channels:
        r2 = np.abs(second).reshape(channels, -1).max(axis=1)
    else:
        return None
    scales = np.where((r1 > 0) & (r2 > 0), np.sqrt(r1 / np.where(r2 > 0, r2, 1.0)), 1.0)
    return scales


def find_pairs(func: relax.Function) -> list[Pair]:
    """The conv -> (identity | relu) -> conv pairs of ``func`` (module docstring) and their scales."""
    index = GraphIndex(func)
    pairs, used = [], set()
    for var in index.order:
        conv = _conv(index, var)
        chain = epilogue_chain(index, var) if conv is not None else None
        if conv is None or chain is None or var in used or chain.hi != math.inf or chain.lo not in (0.0, -math.inf):
            continue
        user = index.single_user(chain.output)
        second = _conv(index, user) if user is not None else None
        if second is None or not second[0].args[0].same_as(chain.output) or user in used:
            continue
        assert user is not None
        weight = conv[1] * chain.scale.reshape(-1, 1, 1, 1)
        scales = _scales(weight, second[1], int(second[0].attrs["groups"]), chain.channels)
        if scales is not None:
            pairs.append(Pair(chain, user, scales))
            used.update([var, user])
    return pairs


def equalize(mod: tvm.IRModule) -> tuple[tvm.IRModule, int]:
    """``mod`` with every pair of :func:`find_pairs` equalized (one pass), and the number of pairs."""
    pairs = find_pairs(mod["main"])
    index = GraphIndex(mod["main"])
    outputs = {p.first.output: p for p in pairs}
    seconds = {p.second: p for p in pairs}

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> relax.Expr:
        if var in outputs:
            pair = outputs[var]
            root = index.producer[pair.first.root]
            assert isinstance(root, relax.Call)
            factor = pair.first.scale / pair.scales
            weight = np.asarray(constant_value(root.args[1]), np.float64) * factor.reshape(-1, 1, 1, 1)
            conv = bb.emit(relax.Call(root.op, [remap(root.args[0], mapping), relax.const(weight.astype("float32"))],
                                      root.attrs))
            bias = (pair.first.shift / pair.scales).astype("float32").reshape(1, -1, 1, 1)
            out = relax.op.add(conv, relax.const(bias))
            return relax.op.nn.relu(bb.emit(out)) if pair.first.lo == 0.0 else out
        if var in seconds:
            call = index.producer[var]
            assert isinstance(call, relax.Call)
            scales = seconds[var].scales
            weight = np.asarray(constant_value(call.args[1]), np.float64)
            groups = int(call.attrs["groups"])
            weight = weight * (scales.reshape(1, -1, 1, 1) if groups == 1 else scales.reshape(-1, 1, 1, 1))
            return relax.Call(call.op, [remap(call.args[0], mapping), relax.const(weight.astype("float32"))],
                              call.attrs)
        return remap(value, mapping)

    out = relax.transform.DeadCodeElimination(["main"])(rebuild_main(mod, emit))
    return out, len(pairs)
