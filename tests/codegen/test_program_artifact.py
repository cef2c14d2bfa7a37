"""The sima program artifact: write / read round trip, its NumPy interpreter, and bad files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from tvm import relax

import tvm_sima
from tvm_sima.codegen import ProgramError, load_program, program_from_function, run_program, write_program


@pytest.fixture(scope="module", params=["digits_int8", "digits_mlp_int8", "digits_ops_int8"])
def converted(request, fixtures_dir):
    mod, _ = tvm_sima.load_model(fixtures_dir / f"{request.param}.tflite")
    qmod, _ = tvm_sima.convert(mod)
    return qmod


def test_round_trip_loses_nothing_and_the_interpreter_is_bit_exact(converted, tmp_path, fixtures_dir):
    program = program_from_function(converted["main"])
    ops = [op["op"] for op in program.graph["ops"]]
    assert "sima.quantize_info" not in ops and {"sima.conv2d", "sima.dense"} & set(ops)
    # every fused op's output carries the quantization its quantize_info gave it
    infos = tvm_sima.read_quantize_info(converted)
    for op in program.graph["ops"]:
        if op["op"] in ("sima.conv2d", "sima.dense"):
            assert program.graph["tensors"][op["outputs"][0]]["quantization"] is not None
    quantized = [t["quantization"] for t in program.graph["tensors"].values() if t["quantization"]]
    assert sorted(q["name"] for q in quantized) == sorted(infos)  # every quantize_info, none lost
    for q in quantized:
        assert q["scale"] == pytest.approx(list(infos[q["name"]].scale))
        assert q["zero_point"] == list(infos[q["name"]].zero_point)
    path = write_program(program, tmp_path / "artifact")
    again = load_program(path.parent)
    assert again.graph == json.loads(json.dumps(program.graph))  # same JSON
    assert sorted(again.weights) == sorted(program.weights)
    for key, value in program.weights.items():
        np.testing.assert_array_equal(again.weights[key], value)
        assert again.weights[key].dtype == value.dtype
    shape = program.graph["tensors"][program.graph["inputs"][0]]["shape"]
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images"]
    inputs = [i.reshape(shape).astype(np.int8) for i in images[:16]] + [
        np.random.default_rng(2).integers(-128, 128, shape).astype(np.int8) for _ in range(8)]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    for x in inputs:
        np.testing.assert_array_equal(run_program(again, x)[0], vm["main"](tvm.runtime.tensor(x)).numpy())


def test_bad_artifacts_give_clear_errors(converted, tmp_path):
    path = write_program(program_from_function(converted["main"]), tmp_path / "a")
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(ProgramError, match="not valid JSON .* truncated or corrupt"):
        load_program(path)
    graph = json.loads(text)
    path.write_text(json.dumps({**graph, "version": 99}))
    with pytest.raises(ProgramError, match="program version 99; this tvm-sima reads version 1"):
        load_program(path)
    path.write_text(json.dumps({**graph, "format": "other"}))
    with pytest.raises(ProgramError, match="not a tvm-sima program"):
        load_program(path)
    path.write_text(text)
    (path.parent / "weights.npz").unlink()
    with pytest.raises(ProgramError, match="weights file .* is missing"):
        load_program(path)
    with pytest.raises(ProgramError, match="no such program file"):
        load_program(tmp_path / "nowhere")


def test_wrong_input_and_unknown_op(converted, tmp_path):
    program = program_from_function(converted["main"])
    with pytest.raises(ProgramError, match="input .* must be int8"):
        run_program(program, np.zeros((1, 2), np.float32))
    program.graph["ops"][0]["op"] = "sima.mystery"
    with pytest.raises(ProgramError, match=r"no NumPy implementation for \['sima.mystery'\]"):
        shape = program.graph["tensors"][program.graph["inputs"][0]]["shape"]
        run_program(program, np.zeros(shape, np.int8))


def test_the_documented_example_runs():
    import pathlib
    import re
    import subprocess
    import sys

    root = pathlib.Path(__file__).resolve().parents[2]
    blocks = re.findall(r"```python\n(.*?)```", (root / "docs" / "program_artifact.md").read_text(), flags=re.S)
    assert blocks
    for block in blocks:
        result = subprocess.run([sys.executable, "-c", block], cwd=root, capture_output=True, text=True)
        assert result.returncode == 0, result.stderr[-2000:]


def test_a_scalar_requantize_offloads_and_its_artifact_replays(tmp_path):
    # onnxruntime's quantize_static writes rank-0 QDQ tensors (PP-OCR); their sima.requantize once
    # crashed the C++ codegen and the artifact interpreter with a modulo by zero (axis % rank).
    from helpers.relax import one_input_module

    from tvm_sima import ops as so

    mod = one_input_module((), "int32", lambda bb, x: so.requantize(x, multiplier=1 << 30, shift=33, zp_out=3,
                                                                    out_dtype="int8"))
    values = (-1000, -12, -4, 0, 11, 990, 2**20)
    xs = [np.array(v, dtype="int32") for v in values]
    expected = [int(np.clip(np.floor(v / 8 + 0.5) + 3, -128, 127)) for v in values]  # half up
    results = {}
    for offload in (False, True):
        vm = relax.VirtualMachine(tvm_sima.build(mod, offload=offload, **({"artifact_dir": tmp_path} if offload
                                                                           else {})), tvm.cpu())
        results[offload] = [int(vm["main"](tvm.runtime.tensor(x)).numpy()) for x in xs]
    program = load_program(tmp_path / "region_000")
    assert [op["op"] for op in program.graph["ops"]] == ["sima.requantize"]
    assert results[False] == results[True] == [int(run_program(program, x)[0]) for x in xs] == expected
