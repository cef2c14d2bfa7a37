"""The CPU schedule parallelizes and vectorizes, and changes no result."""

from __future__ import annotations

import numpy as np
import tvm
from helpers.relax import one_input_module, run
from tvm import relax

import tvm_sima
import tvm_sima.ops as so
from tvm_sima import math as sm
from tvm_sima.passes import CPUParallelSchedule

W = np.random.default_rng(0).integers(-127, 128, (16, 8, 3, 3)).astype("int8")


def conv_module():
    return one_input_module((1, 8, 12, 16), "int8", lambda bb, v: so.conv2d(
        v, relax.const(W), relax.const(np.arange(16, dtype="int32")), shift=6, padding=1, input_zero_point=5))


def scheduled_script() -> str:
    with tvm_sima.target():
        mod = relax.transform.LegalizeOps()(conv_module())
        mod = CPUParallelSchedule()(mod)
    return "\n".join(f.script() for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def test_conv_gets_parallel_and_vectorized_loops():
    script = scheduled_script()
    assert "T.parallel" in script
    assert "T.vectorized" in script
    assert "sima_conv2d_acc_init" in script  # the reduction's init was split off and vectorized


def test_scheduled_conv_is_bit_exact():
    x = np.random.default_rng(1).integers(-128, 128, (1, 8, 12, 16)).astype("int8")
    acc = sm.conv2d_accumulate(x, sm.oihw_to_hwigo(W), padding=(1, 1, 1, 1), pad_value=5, layout="NCHW")
    expected = sm.requantize(acc + np.arange(16).reshape(1, -1, 1, 1), 1, 6, "half_up", 0)
    np.testing.assert_array_equal(run(conv_module(), x), expected)


def test_odd_extents_fall_back_to_parallel_only():
    x = np.random.default_rng(2).integers(-128, 128, (3, 7)).astype("int32")
    mod = one_input_module(x.shape, "int32", lambda bb, v: so.requantize(v, multiplier=3, shift=2))
    np.testing.assert_array_equal(run(mod, x), sm.requantize(x, 3, 2, "half_up", 0))
