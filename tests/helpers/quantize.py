"""Tiny float graphs and random batches for the quantize tests.

``RNG`` is one generator for every ``const`` of every test module that imports it, as when these
lived in test_quantize_ops.py and test_quantize_flow.py imported them from there: the weights a
test draws depend on the ``const`` calls that ran before it in the session.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tvm
from tvm import relax

import tvm_sima
from helpers.relax import one_input_module
from tvm_sima.compare import sqnr_db

RNG = np.random.default_rng(2026)


def const(shape, scale=0.3, positive=False):
    value = RNG.standard_normal(shape).astype("float32") * scale
    return relax.const(np.abs(value) if positive else value)


def graph(shape, body: Callable[[relax.BlockBuilder, relax.Var], relax.Expr]) -> tvm.IRModule:
    """``main(x: float32[shape]) = body(bb, x)`` (see helpers.relax.one_input_module)."""
    return one_input_module(shape, "float32", body)


def batches(shape, n, seed):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype("float32") for _ in range(n)]


def run(mod, xs):
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    return [vm["main"](tvm.runtime.tensor(x)).numpy() for x in xs]


def total_sqnr(ref, out):
    return sqnr_db(np.concatenate([r.ravel() for r in ref]), np.concatenate([o.ravel() for o in out]))


def quantize_uniform(mod, shape, low, high, rng, work_dir):
    """``tvm_sima.quantize(mod)`` calibrated on 8 batches drawn uniformly in ``[low, high)`` from ``rng``
    (the test module's generator, so its later draws stay the same); ``(qmod, report, quantize infos)``."""
    calib = [rng.uniform(low, high, size=shape).astype("float32") for _ in range(8)]
    qmod = tvm_sima.quantize(mod, None, calib, work_dir=work_dir)
    return qmod, tvm_sima.quantize_report(qmod), tvm_sima.read_quantize_info(qmod)


def fused_calls(qmod: tvm.IRModule, op: str = "sima.conv2d") -> list[relax.Call]:
    """The calls of ``op`` in ``qmod``'s main, in program order."""
    found: list[relax.Call] = []

    def visit(expr: relax.Expr) -> None:
        if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and expr.op.name == op:
            found.append(expr)

    relax.analysis.post_order_visit(qmod["main"], visit)
    return found


def fused_conv_weight(qmod: tvm.IRModule) -> np.ndarray:
    """The weights of the one ``sima.conv2d`` of ``qmod`` (as the fused op stores them)."""
    found = fused_calls(qmod)
    assert len(found) == 1
    return found[0].args[1].value.numpy()
