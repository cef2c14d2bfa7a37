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


# --- the float rules: register tile, fused epilogue, depthwise channel vectors -------------------------------------

FW = np.random.default_rng(3).standard_normal((3, 3, 16, 32)).astype("float32")  # HWIO
FB = np.random.default_rng(4).standard_normal((1, 1, 1, 32)).astype("float32")
DW = np.random.default_rng(5).standard_normal((3, 3, 1, 32)).astype("float32")  # HWIO, depthwise


def nhwc_conv(bb, v, weight, groups, clip=True):
    y = relax.op.nn.conv2d(v, relax.const(weight), padding=1, groups=groups, data_layout="NHWC", kernel_layout="HWIO")
    y = relax.op.add(y, relax.const(FB))
    return relax.op.clip(y, 0.0, 6.0) if clip else y


def fused_and_scheduled(mod):
    """(scheduled module, the pass's decisions) after the sima pipeline's legalize + fuse steps."""
    schedule = CPUParallelSchedule(tvm_sima.target())
    with tvm_sima.target():
        for step in (relax.transform.LegalizeOps(), relax.transform.AnnotateTIROpPattern(),
                     relax.transform.FuseOps(), relax.transform.FuseTIR()):
            mod = step(mod)
        mod = schedule(mod)
    return mod, [d for ds in schedule.decisions.values() for d in ds]


def reference_nhwc_conv(x, weight, groups):
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))  # n h w c kh kw
    if groups == 1:
        y = np.einsum("nhwcij,ijco->nhwo", windows, weight)
    else:
        y = np.einsum("nhwcij,ijc->nhwc", windows, weight[:, :, 0, :])
    return np.clip(y + FB, 0.0, 6.0)


def test_float_conv_gets_a_register_tile_with_bias_and_clip_in_its_write_back():
    mod = one_input_module((1, 10, 12, 16), "float32", lambda bb, v: nhwc_conv(bb, v, FW, 1))
    scheduled, decisions = fused_and_scheduled(mod)
    (conv,) = [f for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc) and "conv" in f.script()]
    script = conv.script()
    tiles = [done for _name, done in decisions if done.startswith("tile(")]
    assert tiles and "scalar" not in tiles[0] and "u=None" not in tiles[0], decisions
    assert 'scope="local"' in script and "T.unroll" in script and "T.vectorized" in script and "T.parallel" in script
    # bias and clip inlined into the write-back, the padding computed per tile (inside the parallel loop)
    assert [name for name, _ in decisions] == ["conv2d_nhwc"], decisions
    assert script.index('T.sblock("pad_temp")') > script.index("T.parallel")
    x = np.random.default_rng(6).standard_normal((1, 10, 12, 16)).astype("float32")
    np.testing.assert_allclose(run(mod, x), reference_nhwc_conv(x, FW, 1), rtol=1e-4, atol=1e-4)


def test_depthwise_conv_vectorizes_its_channels():
    mod = one_input_module((1, 10, 12, 32), "float32", lambda bb, v: nhwc_conv(bb, v, DW, 32))
    _scheduled, decisions = fused_and_scheduled(mod)
    tiles = [done for _name, done in decisions if done.startswith("tile(")]
    assert tiles and "scalar" not in tiles[0], decisions
    x = np.random.default_rng(7).standard_normal((1, 10, 12, 32)).astype("float32")
    np.testing.assert_allclose(run(mod, x), reference_nhwc_conv(x, DW, 32), rtol=1e-4, atol=1e-4)


def test_scheduled_nhwc_integer_conv_is_bit_exact():
    w = np.random.default_rng(8).integers(-127, 128, (24, 16, 3, 3)).astype("int8")
    shifts = [6 + (i % 3) for i in range(24)]
    mod = one_input_module((1, 9, 10, 16), "int8", lambda bb, v: so.conv2d(
        v, relax.const(np.ascontiguousarray(w.transpose(2, 3, 1, 0))), relax.const(np.arange(24, dtype="int32")),
        shift=shifts, padding=1,
        data_layout="NHWC", input_zero_point=-3))
    _scheduled, decisions = fused_and_scheduled(mod)
    assert any(done.startswith("tile(") for _name, done in decisions), decisions
    x = np.random.default_rng(9).integers(-128, 128, (1, 9, 10, 16)).astype("int8")
    acc = sm.conv2d_accumulate(x, sm.oihw_to_hwigo(w), padding=(1, 1, 1, 1), pad_value=-3, layout="NHWC")
    expected = np.stack([sm.requantize(acc[..., c] + c, 1, shifts[c], "half_up", 0) for c in range(24)], axis=-1)
    np.testing.assert_array_equal(run(mod, x), expected)


def test_tiles_sharing_a_weight_slice_run_one_after_another():
    """A 1x1 conv whose weights (64 x 512) outweigh its input (4 x 4 x 64): output channels outermost."""
    w = np.random.default_rng(10).standard_normal((1, 1, 64, 512)).astype("float32")
    mod = one_input_module((1, 4, 4, 64), "float32", lambda bb, v: relax.op.nn.conv2d(
        v, relax.const(w), data_layout="NHWC", kernel_layout="HWIO"))
    scheduled, _decisions = fused_and_scheduled(mod)
    script = "\n".join(f.script() for f in scheduled.functions.values() if isinstance(f, tvm.tirx.PrimFunc))
    (parallel,) = [line for line in script.splitlines() if "T.parallel" in line]
    assert parallel.strip().startswith("for ff_0_"), parallel
    x = np.random.default_rng(11).standard_normal((1, 4, 4, 64)).astype("float32")
    np.testing.assert_allclose(run(mod, x), np.einsum("nhwc,co->nhwo", x, w[0, 0]), rtol=1e-4, atol=1e-4)


def test_nchw_integer_conv_at_14x14_vectorizes_its_channels_and_is_bit_exact():
    """Width 14 has no vector width: the accumulators become a vector of output channels instead."""
    mod = one_input_module((1, 8, 14, 14), "int8", lambda bb, v: so.conv2d(
        v, relax.const(W), relax.const(np.arange(16, dtype="int32")), shift=6, padding=1, input_zero_point=5))
    _scheduled, decisions = fused_and_scheduled(mod)
    assert ("sima_conv2d_acc", "channel vector(16)") in decisions or ("sima_conv2d_acc", "channel vector(8)") in \
        decisions, decisions
    x = np.random.default_rng(12).integers(-128, 128, (1, 8, 14, 14)).astype("int8")
    acc = sm.conv2d_accumulate(x, sm.oihw_to_hwigo(W), padding=(1, 1, 1, 1), pad_value=5, layout="NCHW")
    expected = sm.requantize(acc + np.arange(16).reshape(1, -1, 1, 1), 1, 6, "half_up", 0)
    np.testing.assert_array_equal(run(mod, x), expected)
