"""Small builders for Relax test modules, and readers of what a module contains."""

from __future__ import annotations

import collections
from typing import Callable

import numpy as np
import tvm
import tvm_ffi
from tvm import relax

import tvm_sima


def one_input_module(shape: tuple, dtype: str, body: Callable[[relax.BlockBuilder, relax.Var], relax.Expr]):
    """``main(x) = body(bb, x)`` inside one dataflow block."""
    x = relax.Var("x", relax.TensorType(shape, dtype))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            out = bb.emit_output(body(bb, x))
        bb.emit_func_output(out)
    return bb.get()


def run(mod: tvm.IRModule, *inputs: np.ndarray) -> np.ndarray:
    """Build with the sima pipeline and run ``main``."""
    ex = tvm_sima.build(mod)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs]).numpy()


def op_counts(mod: tvm.IRModule) -> collections.Counter:
    """How many calls of each operator ``main`` makes (by op name; calls of functions are not counted)."""
    counts: collections.Counter = collections.Counter()

    def visit(call: relax.Call) -> None:
        if isinstance(call.op, tvm.ir.Op):
            counts[call.op.name] += 1

    tvm_ffi.structural_walk(mod["main"], [(relax.Call, visit)])
    return counts


def float_bindings(mod) -> list:
    """Names of the variables of ``main`` bound to a call with a float result."""
    found = []
    tvm_ffi.structural_walk(mod["main"], [(relax.VarBinding, lambda b: found.append(b.var.name) if str(
        getattr(b.var.ty, "dtype", "")).startswith("float") and isinstance(b.value, relax.Call) else None)])
    return found


def run_lowered(lowered, *codes: np.ndarray) -> np.ndarray:
    """Build ``main(inputs) = lowered.emit(...)`` (a :class:`tvm_sima.lowering.Lowered`) on inputs of the
    codes' types, without offload, and run it on ``codes``."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"x{i}", relax.TensorType(c.shape, str(c.dtype))) for i, c in enumerate(codes)]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(lowered.emit(bb, params)))
        bb.emit_func_output(out)
    vm = relax.VirtualMachine(tvm_sima.build(bb.get(), offload=False), tvm.cpu())
    return vm["main"](*[tvm.runtime.tensor(c) for c in codes]).numpy()
