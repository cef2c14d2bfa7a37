"""quantize_info survives FoldConstant, legalization, fusion and compilation; read_quantize_info reads it."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, wildcard

import tvm_sima
import tvm_sima.ops as so
from tvm_sima import math as sm
from tvm_sima.quantize_info import INFO_FUNCTION

IN_Q = sm.QParams(0.05, 2, "int8")
OUT_Q = sm.QParams([0.1, 0.2, 0.05, 0.4], [0, 0, 0, 0], "int8", axis=3)
WEIGHT = np.random.default_rng(0).integers(-127, 128, (3, 3, 3, 4)).astype("int8")
BIAS = np.arange(4, dtype="int32") * 100


def quantized_net() -> tvm.IRModule:
    """x (float) -> quantize -> info(input) -> conv -> info(conv) -> requantize -> info(out) -> dequantize.

    The weight goes through dequantize(const) -> quantize, which FoldConstant folds away.
    """
    x = relax.Var("x", relax.TensorType((1, 6, 6, 3), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            q = bb.emit(so.quantize(x, IN_Q))
            q = bb.emit(so.quantize_info(q, IN_Q, name="input", kind="input"))
            wq = sm.QParams(1.0, 0, "int8")
            w = bb.emit(so.quantize(so.dequantize(relax.const(WEIGHT), wq), wq))
            w = bb.emit(so.quantize_info(w, wq, name="conv.weight", kind="weight"))
            c = bb.emit(so.conv2d(q, w, relax.const(BIAS), shift=[8, 9, 8, 7], padding=1, data_layout="NHWC",
                                  input_zero_point=2))
            c = bb.emit(so.quantize_info(c, OUT_Q, name="conv", clip_min=0.0))
            r = bb.emit(so.requantize(c, multiplier=[3, 5, 7, 9], shift=[2, 3, 4, 5], axis=3))
            r = bb.emit(so.quantize_info(r, OUT_Q, name="out", kind="output"))
            out = bb.emit_output(so.dequantize(r, OUT_Q))
        bb.emit_func_output(out)
    return bb.get()


EXPECTED_NAMES = {"input", "conv.weight", "conv", "out"}


def stages():
    t = relax.transform
    return [("FoldConstant", t.FoldConstant()), ("LegalizeOps", t.LegalizeOps()),
            ("AnnotateTIROpPattern", t.AnnotateTIROpPattern()), ("FoldConstant", t.FoldConstant()),
            ("FuseOps", t.FuseOps()), ("FuseTIR", t.FuseTIR())]


def test_infos_survive_each_stage_with_equal_values():
    mod = quantized_net()
    original = tvm_sima.read_quantize_info(mod)
    assert set(original) == EXPECTED_NAMES
    assert original["conv"].clip_min == 0.0 and original["out"].kind == "output"
    assert original["conv"].qparams == OUT_Q
    with tvm_sima.target():
        for name, stage in stages():
            mod = stage(mod)
            assert tvm_sima.read_quantize_info(mod) == original, f"changed by {name}"
    prim_funcs = [f for f in mod.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    assert prim_funcs, "fusion produced no PrimFunc: the check above read nothing from TIR"
    relax_calls = [f for f in mod.functions.values() if isinstance(f, relax.Function)]
    assert not any("sima.quantize_info" in f.script() for f in relax_calls), "infos must now live in TIR"


def test_infos_survive_the_cpu_schedule():
    from tvm_sima.passes import CPUParallelSchedule

    mod = quantized_net()
    original = tvm_sima.read_quantize_info(mod)
    with tvm_sima.target():
        for _name, stage in stages():
            mod = stage(mod)
    scheduled = CPUParallelSchedule()(mod)
    assert any("T.parallel" in f.script() or "T.vectorized" in f.script() for f in scheduled.functions.values()
               if isinstance(f, tvm.tirx.PrimFunc)), "nothing was scheduled"
    assert tvm_sima.read_quantize_info(scheduled) == original
    assert not any("T.parallel" in f.script() or "T.vectorized" in f.script() for f in mod.functions.values()
                   if isinstance(f, tvm.tirx.PrimFunc)), "the pass modified its input module"


def test_after_compile_and_export(tmp_path):
    mod = quantized_net()
    original = tvm_sima.read_quantize_info(mod)
    ex = tvm.compile(mod, target=tvm_sima.target(), relax_pipeline="sima")
    assert tvm_sima.read_quantize_info(ex) == original
    path = tmp_path / "net.so"
    ex.export_library(str(path))
    script = (
        "import json, sys, tvm\n"
        "from tvm import relax\n"
        f"vm = relax.VirtualMachine(tvm.runtime.load_module(sys.argv[1]), tvm.cpu())\n"
        f"print(str(vm['{INFO_FUNCTION}']()))\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(path)], capture_output=True, text=True, check=True)
    records = {item["name"]: item for item in json.loads(result.stdout)}
    assert set(records) == EXPECTED_NAMES
    assert records["out"]["scale"] == [0.1, 0.2, 0.05, 0.4]


def test_build_runs_and_matches_the_math_reference():
    x = np.random.default_rng(1).standard_normal((1, 6, 6, 3)).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(quantized_net()), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    q = sm.quantize(x, IN_Q)
    acc = sm.conv2d_accumulate(q, WEIGHT.reshape(3, 3, 3, 1, 4), padding=(1, 1, 1, 1), pad_value=2) + BIAS
    c = sm.requantize(acc, 1, np.array([8, 9, 8, 7]), "half_up", 0, axis=3)
    r = sm.requantize(c, np.array([3, 5, 7, 9]), np.array([2, 3, 4, 5]), "half_up", 0, axis=3)
    np.testing.assert_array_equal(got, sm.dequantize(r, OUT_Q).astype("float32"))


def test_read_from_byoc_composite_functions():
    pattern = is_op("sima.quantize_info")(is_op("sima.conv2d")(wildcard(), wildcard(), wildcard()))
    mod = relax.transform.FuseOpsByPattern([("sima.conv2d_info", pattern)], bind_constants=True)(quantized_net())
    composites = [f for f in mod.functions.values()
                  if isinstance(f, relax.Function) and f.attrs and "Composite" in f.attrs]
    assert composites, "the pattern matched nothing: the check below would be vacuous"
    assert tvm_sima.read_quantize_info(mod)["conv"].qparams == OUT_Q


def test_conflicting_records_and_plain_executables_are_errors():
    x = relax.Var("x", relax.TensorType((4,), "int8"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            a = bb.emit(so.quantize_info(x, sm.QParams(0.1, 0, "int8"), name="t"))
            b = bb.emit(so.quantize_info(a, sm.QParams(0.2, 0, "int8"), name="t"))
            out = bb.emit_output(b)
        bb.emit_func_output(out)
    with pytest.raises(ValueError, match="tensor 't' has two different quantize_info records"):
        tvm_sima.read_quantize_info(bb.get())
    plain = tvm.compile(quantized_net(), target=tvm_sima.target())
    with pytest.raises(ValueError, match="build it with tvm_sima.build"):
        tvm_sima.read_quantize_info(plain)
