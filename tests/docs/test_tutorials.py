"""Every tutorial runs, as a user would run it, and says what it claims."""

from __future__ import annotations

import functools
import os
import pathlib
import re
import shlex
import shutil
import subprocess
import sys
import tempfile

import numpy as np
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
TUTORIALS = sorted((ROOT / "tutorials").glob("[0-9][0-9]_*.py"))
FIXTURES = ROOT / "tests" / "fixtures"


# A command the tutorials run under, e.g. an emulated CPU: `make test-avx2` sets it to QEMU (Haswell).
LAUNCHER = shlex.split(os.environ.get("TVM_SIMA_TUTORIAL_LAUNCHER", ""))


@functools.lru_cache(maxsize=None)  # a tutorial run with the same arguments is shared by the tests that read it
def run(script: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*LAUNCHER, sys.executable, str(script), *args], capture_output=True, text=True,
                          timeout=1800 if LAUNCHER else 600, cwd=ROOT)


@pytest.mark.parametrize("script", TUTORIALS, ids=[t.name for t in TUTORIALS])
def test_tutorial_runs(script):
    result = run(script)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_tutorial_01_reports_bit_exactness():
    result = run(ROOT / "tutorials" / "01_integer_math_on_tflite.py")
    assert "tflite mode 32/32" in result.stdout
    assert "accuracy on 32 held-out digits" in result.stdout


def test_tutorial_01_missing_model_is_one_clear_line(tmp_path):
    result = run(ROOT / "tutorials" / "01_integer_math_on_tflite.py", "--model", str(tmp_path / "none.tflite"))
    assert result.returncode != 0
    assert result.stderr.strip().splitlines()[-1] == f"error: model file {tmp_path / 'none.tflite'} not found"


def test_tutorial_04_main_job_loses_little_accuracy(tmp_path):
    result = run(ROOT / "tutorials" / "04_quantize_a_model.py", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    found = re.search(r"float ([0-9.]+), int8 ([0-9.]+); int8 agrees with float on ([0-9.]+)", result.stdout)
    assert found, result.stdout
    float_acc, int_acc, agree = (float(g) for g in found.groups())
    assert float_acc > 0.85 and abs(float_acc - int_acc) <= 0.01 and agree >= 0.98
    assert "0 ops left in float" in result.stdout and "conv2d_0.input" in result.stdout
    assert {p.name for p in tmp_path.iterdir()} >= {"layers.json", "statistics.npz", "qconfig.json", "report.json"}


def test_tutorial_05_deployed_library_is_bit_exact_with_litert():
    result = run(ROOT / "tutorials" / "05_convert_build_deploy.py")
    assert result.returncode == 0, result.stderr
    assert "16/16 images bit-exact" in result.stdout and "0 op(s) left in float" in result.stdout


def test_bundled_onnx_fixture_regenerates_byte_for_byte(tmp_path):
    result = subprocess.run([sys.executable, str(ROOT / "tools" / "make_onnx_fixture.py"), "--out", str(tmp_path)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 0, result.stderr
    for name in ("digits_cnn_float.onnx", "digits_calib_nchw.npy", "digits_eval_nchw.npz"):
        assert (tmp_path / name).read_bytes() == (FIXTURES / name).read_bytes(), name
    assert (FIXTURES / "digits_cnn_float.onnx").stat().st_size < 32_000


def test_bundled_onnx_model_predicts_as_the_tflite_float_model():
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    data = np.load(FIXTURES / "digits_eval_nchw.npz")
    images, labels = data["image"], data["labels"]
    calib = np.load(FIXTURES / "digits_calib_nchw.npy")
    assert images.shape == (64, 1, 8, 8) and calib.shape == (64, 1, 8, 8) and labels.shape == (64,)
    assert images.dtype == calib.dtype == np.float32 and 0 <= calib.min() and calib.max() <= 1
    session = ort.InferenceSession(str(FIXTURES / "digits_cnn_float.onnx"), providers=["CPUExecutionProvider"])
    onnx_logits = np.concatenate([session.run(None, {"image": x[None]})[0] for x in images])
    litert = Interpreter(model_path=str(FIXTURES / "digits_cnn_float.tflite"))
    litert.allocate_tensors()
    tflite_logits = []
    for x in images:
        litert.set_tensor(litert.get_input_details()[0]["index"], x.reshape(1, 8, 8, 1))
        litert.invoke()
        tflite_logits.append(litert.get_tensor(litert.get_output_details()[0]["index"]))
    tflite_logits = np.concatenate(tflite_logits)
    np.testing.assert_allclose(onnx_logits, tflite_logits, rtol=0, atol=1e-4)
    assert np.array_equal(onnx_logits.argmax(1), tflite_logits.argmax(1))
    assert np.mean(onnx_logits.argmax(1) == labels) > 0.85


def _row(stdout: str, name: str) -> tuple[float, float, str]:
    found = re.search(rf"^  {re.escape(name)} +accuracy ([0-9.]+) +agreement ([0-9.]+) +logits SQNR (.+)$", stdout,
                      re.MULTILINE)
    assert found, (name, stdout)
    return float(found[1]), float(found[2]), found[3]


def test_tutorial_06_onnx_quantization_matches_float_onnxruntime_and_the_command_line():
    result = run(ROOT / "tutorials" / "06_quantize_an_onnx_model.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "fused: conv2d_0, conv2d_1, conv2d_2, matmul_3; 0 op(s) left in float" in out
    float_acc, _, reference = _row(out, "float (TVM)")
    assert float_acc > 0.85 and reference == "(the reference)"
    ort_float, ort_agree, _ = _row(out, "float (onnxruntime)")
    assert ort_float == float_acc and ort_agree == 1.0
    for name in ("int8 tvm-sima", "int8 onnxruntime"):
        accuracy, agreement, sqnr = _row(out, name)
        assert abs(accuracy - float_acc) <= 0.02 and agreement >= 0.97, (name, out)
        assert float(sqnr.removesuffix(" dB")) > 25, (name, out)
    tensors = dict(re.findall(r"^  (\S+) +[0-9.]+ +-?\d+ +[0-9.]+ +([0-9.]+) +[0-9.]+$", out, re.MULTILINE))
    assert list(tensors)[0] == "conv2d_0.input" and "matmul_3.output" in tensors, out
    assert all(float(v) > 25 for v in tensors.values()), tensors
    onnx, calib = "tests/fixtures/digits_cnn_float.onnx", "tests/fixtures/digits_calib_nchw.npy"
    assert f"$ tvm-sima quantize {onnx} --calib {calib} --output " in out
    assert f"$ tvm-sima report {onnx} --calib {calib} --eval tests/fixtures/digits_eval_nchw.npz --output " in out
    assert "vs the Python API's program: 297/297 outputs bit-identical" in out
    assert "the report's per-tensor SQNR and top-1 (int8 and float) are the numbers computed above" in out
    files = pathlib.Path(re.search(r"^files in (.+)$", out, re.MULTILINE)[1])
    try:
        assert (files / "cli_q" / "model.so").is_file() and (files / "cli_r" / "report.html").is_file()
        written = {p.name for p in (files / "python").iterdir()}
        assert {"layers.json", "statistics.npz", "qconfig.json", "report.json"} <= written
    finally:
        if files.parent == pathlib.Path(tempfile.gettempdir()) and files.name.startswith("tvm_sima_tutorial06_"):
            shutil.rmtree(files)


@pytest.mark.parametrize("mode", ["shift", "multiplier_shift"])
def test_tutorial_07_codegen_reads_enough_to_reproduce_the_program(mode):
    args = () if mode == "shift" else ("--requant-mode", mode)
    result = run(ROOT / "tutorials" / "07_read_quantize_info_in_a_codegen.py", *args)
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "1 region(s) for toy_npu; on the host: sima.dequantize, sima.quantize, sima.quantize_info" in out
    ops = re.findall(r"^ +\d+ (\w+) +(\S+) -> (\S+) ", out, re.MULTILINE)
    assert ops == [("conv2d", "conv2d_0.input", "conv2d_1.input"), ("conv2d", "conv2d_1.input", "conv2d_2.input"),
                   ("conv2d", "conv2d_2.input", "conv2d_2.output"),
                   ("permute_dims", "conv2d_2.output", "permute_dims@0.output"),
                   ("reshape", "permute_dims@0.output", "matmul_3.input"),
                   ("dense", "matmul_3.input", "matmul_3.output")], out
    rounding = "half_up" if mode == "shift" else "tflite"
    assert len(re.findall(rf" {rounding} +int8\[", out)) == 4, out
    assert ("folded into the bias" in out) == (mode == "shift")
    assert "64 images: the VM called the toy_npu region(s) 64 time(s) in all" in out
    assert "vs tvm-sima's TIR build: 64/64 outputs bit-exact" in out
    assert re.search(r"of matmul_3.output \(scale [0-9.]+, zero point -?\d+\): max \|difference\| 0.0$", out,
                     re.MULTILINE), out
    assert "tvm_sima.read_quantize_info(executable): 7/7 tensors" in out


def test_tutorial_08_pytorch_module_and_pt2e_model():
    result = run(ROOT / "tutorials" / "08_pytorch_models.py")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    sqnr = float(re.search(r"tvm-sima int8 vs PyTorch float: SQNR ([0-9.]+) dB", out).group(1))
    assert sqnr > 30, out
    assert "conv2d_0=stem, conv2d_1=features.0.conv, conv2d_2=features.1.conv, matmul_3=fc" in out
    assert "9 chain(s) converted to integer ops, 0 op(s) left in float" in out
    found = re.search(r"converted PT2E vs PyTorch's PT2E: outputs ([0-9.]+) exact, max (\d+) output LSB", out)
    assert found and float(found.group(1)) > 0.9 and int(found.group(2)) <= 1, out
