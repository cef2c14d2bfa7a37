"""Multiply-accumulates of a Relax module's conv / dense / matmul calls (``bench_zoo.py``'s MAC columns)."""

from __future__ import annotations

import math
from typing import Any, Iterator, Optional


def _shape(expr: Any) -> list[int]:
    if not hasattr(expr, "ty"):  # a constant: its array
        return [int(d) for d in expr.value.shape]
    return [int(d) for d in expr.ty.shape]


def _dtype(expr: Any) -> str:
    return str(expr.ty.dtype) if hasattr(expr, "ty") else str(expr.value.dtype)


def layer_macs(var: Any, call: Any, op: str) -> Optional[int]:
    """Multiply-accumulates of the conv / dense / matmul call bound to ``var`` (None for other ops)."""
    if op in ("relax.nn.conv1d", "relax.nn.conv2d", "relax.nn.conv3d", "sima.conv2d"):
        weight = _shape(call.args[1])
        out_channels = weight[str(call.attrs.kernel_layout).index("O")]
        return math.prod(_shape(var)) * math.prod(weight) // out_channels
    if op in ("relax.nn.conv1d_transpose", "relax.nn.conv2d_transpose"):
        weight = _shape(call.args[1])
        in_channels = weight[str(call.attrs.kernel_layout).index("I")]
        return math.prod(_shape(call.args[0])) * math.prod(weight) // in_channels
    if op == "sima.dense":
        return math.prod(_shape(var)) * _shape(call.args[1])[1]
    if op == "relax.matmul":
        return math.prod(_shape(var)) * _shape(call.args[0])[-1]
    return None


def _calls(mod: Any) -> Iterator[tuple[Any, Any, str]]:
    """``(var, call, op name)`` of every call bound in ``main``, in order."""
    from tvm import relax

    from tvm_sima.graph import op_name

    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            if isinstance(binding.value, relax.Call):
                yield binding.var, binding.value, op_name(binding.value) or ""


def count_macs(mod: Any) -> tuple[int, int]:
    """(MACs in ``sima.*`` integer ops, MACs in float conv / matmul ops) of ``main``."""
    integer = floating = 0
    for var, call, op in _calls(mod):
        macs = layer_macs(var, call, op)
        if macs is not None:
            integer, floating = (integer + macs, floating) if op.startswith("sima.") else (integer, floating + macs)
    return integer, floating


def wide_macs(mod: Any) -> int:
    """MACs of the ``sima.*`` conv / dense ops of ``main`` with a 16-bit operand (data or weight): the layers
    mixed precision or ``depthwise_input_bits=16`` took out of the int8 ops."""
    return sum(layer_macs(var, call, op) or 0 for var, call, op in _calls(mod)
               if op in ("sima.conv2d", "sima.dense") and any(_dtype(a) in ("int16", "uint16") for a in call.args[:2]))
