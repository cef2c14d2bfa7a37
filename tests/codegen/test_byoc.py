"""BYOC: partition_for_sima -> relax.ext.sima -> tvm_sima.build, against the pure-TIR route."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import tvm
from helpers.onnx_models import onnx_model
from helpers.quantize import batches
from tvm import relax

import tvm_sima
from tvm_sima.codegen import load_program, run_program
from tvm_sima.codegen.byoc import offloaded_functions, partition_for_sima
from tvm_sima.converter import HardwareLimits


@pytest.fixture(scope="module")
def quantized_onnx(tmp_path_factory):
    #   float ONNX: x -> Conv -> Relu -> Flatten -> Gemm -> y, quantized by tvm_sima.quantize
    mod, params = tvm_sima.load_model(onnx_model(tmp_path_factory.mktemp("m") / "m.onnx"))
    with tvm_sima.qconfig():
        return tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 16, 1),
                                 work_dir=tmp_path_factory.mktemp("work"))


def run(ex, inputs):
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return [vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs]


def test_offloaded_build_equals_the_tir_build_bit_for_bit(quantized_onnx, tmp_path):
    regions = offloaded_functions(partition_for_sima(quantized_onnx))
    assert len(regions) >= 1  # guard: otherwise both builds are the same TIR and the comparison is empty
    ops = set()
    inputs = batches((1, 3, 8, 8), 6, 3)
    offloaded = run(tvm_sima.build(quantized_onnx, artifact_dir=tmp_path / "art"), inputs)
    host = run(tvm_sima.build(quantized_onnx, offload=False), inputs)
    for a, b in zip(offloaded, host, strict=True):
        np.testing.assert_array_equal(a, b)
    # one artifact per region (region_000, ... ; the region's symbol is the program's name), describing
    # every offloaded op with its quantization parameters
    written = sorted(p.name for p in (tmp_path / "art").iterdir())
    assert written == [f"region_{k:03d}" for k in range(len(regions))]
    programs = [load_program(tmp_path / "art" / name) for name in written]
    assert sorted(program.graph["name"] for program in programs) == sorted(regions)
    for program in programs:
        for op in program.graph["ops"]:
            ops.add(op["op"])
            if op["op"] in ("sima.conv2d", "sima.dense"):
                assert program.graph["tensors"][op["outputs"][0]]["quantization"] is not None
                assert {"shift", "multiplier", "input_zero_point", "qmin", "qmax"} <= set(op["attrs"])
    assert {"sima.conv2d", "sima.dense"} <= ops


def test_exported_library_runs_bit_exactly_in_a_fresh_process(quantized_onnx, tmp_path):
    ex = tvm_sima.build(quantized_onnx)
    path = tmp_path / "model.so"
    ex.export_library(str(path))
    x = batches((1, 3, 8, 8), 1, 9)[0]
    np.save(tmp_path / "x.npy", x)
    expected = run(ex, [x])[0]
    script = (
        "import numpy as np, tvm\n"  # no tvm_sima import: the .so is all a deployment needs
        "from tvm import relax\n"
        f"vm = relax.VirtualMachine(tvm.runtime.load_module({str(path)!r}), tvm.cpu())\n"
        f"y = vm['main'](tvm.runtime.tensor(np.load({str(tmp_path / 'x.npy')!r}))).numpy()\n"
        f"np.save({str(tmp_path / 'y.npy')!r}, y)\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    np.testing.assert_array_equal(np.load(tmp_path / "y.npy"), expected)


def test_whole_model_region_reexecuted_from_its_artifact(fixtures_dir, tmp_path):
    # the int8 MLP converts to dense -> dense: one region, the whole model
    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_mlp_int8.tflite")
    qmod, _ = tvm_sima.convert(mod)
    ex = tvm_sima.build(qmod, artifact_dir=tmp_path)
    (region,) = list(tmp_path.iterdir())
    program = load_program(region)
    assert [op["op"] for op in program.graph["ops"]] == ["sima.dense", "sima.dense"]
    json.loads((region / "program.json").read_text())  # plain JSON on disk
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images"][:8].reshape(-1, 1, 64).astype(np.int8)
    for x, y in zip(images, run(ex, images), strict=True):
        np.testing.assert_array_equal(run_program(program, x)[0], y)
    assert len(tvm_sima.read_quantize_info(ex)) == 2  # the offloaded ops' records survive the build


def test_ops_breaking_a_hardware_limit_stay_on_the_host(quantized_onnx):
    strict = partition_for_sima(quantized_onnx, HardwareLimits(max_kernel=2))
    kinds = [op for f in offloaded_functions(strict).values() for op in _ops(f)]
    assert "sima.dense" in kinds and "sima.conv2d" not in kinds  # the 3x3 conv stays on the host


def test_an_op_left_on_the_host_is_logged_with_the_rule_it_broke(quantized_onnx, caplog):
    with caplog.at_level(logging.DEBUG, logger="tvm_sima.codegen.byoc"):
        partition_for_sima(quantized_onnx, HardwareLimits(max_kernel=2))
    refused = [r.getMessage() for r in caplog.records if "stays on the host" in r.getMessage()]
    assert refused and all(m.startswith("partition_for_sima: sima.conv2d ") for m in refused)
    assert "hardware rule 'kernel-limits'" in refused[0] and "kernel [3, 3], limit 2" in refused[0]


def _ops(func) -> list[str]:
    import tvm_ffi

    found: list[str] = []
    tvm_ffi.structural_walk(func, [(relax.Call, lambda c: found.append(c.op.name)
                                    if isinstance(c.op, tvm.ir.Op) else None)])
    return found


def test_build_refuses_an_artifact_dir_without_offload(quantized_onnx, tmp_path):
    with pytest.raises(ValueError, match="artifact_dir needs offload=True"):
        tvm_sima.build(quantized_onnx, offload=False, artifact_dir=tmp_path)


def test_artifact_directories_are_named_by_region_index_not_by_symbol():
    from tvm_sima.codegen.byoc import region_directory

    assert [region_directory(k, 3) for k in range(3)] == ["region_000", "region_001", "region_002"]
    assert region_directory(0, 1) == "region_000" and region_directory(0, 0) == "region_000"
    names = [region_directory(k, 1200) for k in range(1200)]
    assert names[0] == "region_0000" and names == sorted(names)  # zero-padded: sorted order is region order


def test_wide_weights_stay_in_tir_and_16_bit_activations_offload_bit_exactly(tmp_path):
    # The C++ kernels store int8 weights: 16-bit weights are TIR's (offloading them would truncate them).
    # 16-bit activations with a 48-bit bias are the NPU's 16-bit mode: offloaded, with int64 accumulators
    # where int32 could overflow; an int8-only device (int16_activations=False) keeps them in TIR.
    mod, params = tvm_sima.load_model(onnx_model(tmp_path / "m.onnx"))
    for name, settings in (("w16", dict(weight_bits=16)), ("a16", dict(activation_bits=16, bias_bits=48))):
        with tvm_sima.qconfig(**settings):
            qmod = tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 16, 1), work_dir=tmp_path / name)
        assert (offloaded_functions(partition_for_sima(qmod)) == {}) == (name == "w16"), name
        assert offloaded_functions(partition_for_sima(qmod, HardwareLimits(int16_activations=False))) == {}
        inputs = batches((1, 3, 8, 8), 3, 3)
        for a, b in zip(run(tvm_sima.build(qmod), inputs), run(tvm_sima.build(qmod, offload=False), inputs),
                        strict=True):
            np.testing.assert_array_equal(a, b)


def test_a_16_bit_dense_whose_sums_pass_int32_offloads_with_int64_accumulators(tmp_path):
    # 1200 inputs near the top of the int16 grid (codes about 31000) times equal weights (the shift-only
    # op folds them to 64..127): each sum is past 2^31, so an int32 accumulator would wrap; TIR's is int64.
    from helpers.quantize import graph

    weight = relax.const(np.ones((1200, 4), np.float32) * np.array([1.0, 0.5, 0.25, 2.0], np.float32))
    mod = graph((1, 1200), lambda bb, x: bb.emit(relax.op.matmul(x, weight)))
    rng = np.random.default_rng(0)
    calib = [rng.uniform(0.0, 1.0, (1, 1200)).astype(np.float32) for _ in range(3)] + [np.ones((1, 1200), np.float32)]
    with tvm_sima.qconfig(input_bits=16, activation_bits=16, bias_bits=48):
        qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path)
    assert len(offloaded_functions(partition_for_sima(qmod))) == 1
    inputs = [rng.uniform(0.95, 1.0, (1, 1200)).astype(np.float32) for _ in range(2)]
    offloaded, tir = run(tvm_sima.build(qmod), inputs), run(tvm_sima.build(qmod, offload=False), inputs)
    for a, b in zip(offloaded, tir, strict=True):
        np.testing.assert_array_equal(a, b)
    expected = inputs[0].sum() * np.array([1.0, 0.5, 0.25, 2.0])
    np.testing.assert_allclose(tir[0][0], expected, rtol=0.01)  # the sums, not wrapped ones
