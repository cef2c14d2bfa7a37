"""Small builders for Relax test modules."""

from __future__ import annotations

from typing import Callable

import numpy as np
import tvm
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
