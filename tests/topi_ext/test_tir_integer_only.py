"""The integer ops lower to integer-only TIR: a walk over every expression finds no float."""

from __future__ import annotations

import numpy as np
import pytest
import tvm
import tvm_ffi
from helpers.relax import one_input_module
from tvm import relax

import tvm_sima.ops as so
from tvm_sima import math as sm


def float_nodes(func: tvm.tirx.PrimFunc) -> list[str]:
    """Every node of the PrimFunc whose type is floating point (expressions, vars, buffers)."""
    found: list[str] = []

    def visit(node: object) -> None:
        for attr in ("ty", "dtype"):
            value = getattr(node, attr, None)
            if value is not None and "float" in str(value):
                found.append(f"{type(node).__name__}: {str(node)[:60]}")
                return

    tvm_ffi.structural_walk(func, visit)
    return found


def legalized_prim_funcs(mod: tvm.IRModule) -> list[tvm.tirx.PrimFunc]:
    with tvm.target.Target({"kind": "llvm"}):
        legal = relax.transform.LegalizeOps()(mod)
    funcs = [f for f in legal.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert funcs, "nothing was legalized"
    return funcs


W = np.random.default_rng(0).integers(-127, 128, (4, 3, 3, 3)).astype("int8")
CASES = {
    "requantize_tflite_per_channel": ((2, 4), "int32", lambda v: so.requantize(
        v, multiplier=[2**30, 2**30 + 5, 2**31 - 1, 1], shift=[33, 34, 40, 31], rounding="tflite", axis=1)),
    "requantize_half_even": ((2, 4), "int32", lambda v: so.requantize(v, multiplier=3, shift=5, rounding="half_even")),
    "conv2d_shift": ((1, 3, 6, 6), "int8", lambda v: so.conv2d(
        v, relax.const(W), relax.const(np.arange(4, dtype="int32")), shift=[3, 4, 5, 6], padding=1,
        input_zero_point=-3)),
    "conv2d_multiplier": ((1, 6, 6, 3), "int8", lambda v: so.conv2d(
        v, relax.const(W.transpose(2, 3, 1, 0)), None, shift=35, multiplier=2**30 + 7, data_layout="NHWC")),
    "dense": ((2, 6), "int8", lambda v: so.dense(
        v, relax.const(np.ones((3, 6), "int8")), relax.const(np.zeros(3, "int32")), shift=[1, 2, 3])),
    "quantize_info_int8": ((2, 3), "int8", lambda v: so.quantize_info(v, sm.QParams(0.1, 0, "int8"), name="t")),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_no_float_in_integer_kernels(name):
    shape, dtype, make = CASES[name]
    for func in legalized_prim_funcs(one_input_module(shape, dtype, lambda bb, v: make(v))):
        assert float_nodes(func) == []


def test_the_walk_does_see_floats():
    """Guard: the checker flags the float arithmetic of sima.quantize (so the test above can fail)."""
    mod = one_input_module((2, 3), "float32", lambda bb, v: so.quantize(v, sm.QParams(0.1, 0, "int8")))
    assert any(float_nodes(f) for f in legalized_prim_funcs(mod))
