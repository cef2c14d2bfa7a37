"""The tvm-sima command line: inspect and convert, exit codes, one-line errors."""

from __future__ import annotations

import json
import pathlib
import subprocess
import sys

import numpy as np
import pytest
import tvm
from tvm import relax

from tvm_sima.cli import main


def test_console_script_is_installed_and_helps():
    script = pathlib.Path(sys.executable).parent / "tvm-sima"
    assert script.is_file(), "pip install -e . installs the tvm-sima console script (setup.py entry_points)"
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "inspect" in result.stdout and "convert" in result.stdout


def test_inspect_a_quantized_model(fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / "digits_ops_int8.tflite")]) == 0
    out = capsys.readouterr().out
    assert "quantized (QDQ)" in out and "input  serving_default_image_0: int8[1, 8, 8, 1]" in out
    assert "4  relax.nn.conv2d" in out and "9 chain(s) converted" in out and "region(s) to the sima codegen" in out


def test_convert_writes_a_library_artifacts_and_report_that_match_litert(fixtures_dir, tmp_path, capsys):
    from test_tflite_qdq import litert

    model = fixtures_dir / "digits_int8.tflite"
    assert main(["convert", str(model), "--output", str(tmp_path)]) == 0
    assert "4 chain(s) converted" in capsys.readouterr().out
    report = json.loads((tmp_path / "convert_report.json").read_text())
    assert report["mode"] == "tflite" and len(report["converted"]) == 4 and report["unconverted"] == []
    assert [p.name for p in (tmp_path / "artifacts").iterdir()]  # at least one offloaded region
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(tmp_path / "model.so")), tvm.cpu())
    x = np.load(fixtures_dir / "digits_int8_inputs.npz")["images"][3].reshape(1, 8, 8, 1).astype(np.int8)
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(model, x))


@pytest.mark.parametrize("argv, message", [
    (["convert", "missing.tflite", "--output", "o"], "model file missing.tflite not found"),
    (["convert", "FIXTURE/digits_cnn_float.tflite", "--output", "o"], "is a float model; convert takes int8"),
    (["inspect", "FIXTURE/digits_int8.tflite", "--input-shape", "image"], "write NAME=D1,D2,..."),
])
def test_errors_are_one_line_with_exit_status_1(argv, message, fixtures_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("FIXTURE", str(fixtures_dir)) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("tvm-sima: error:") and message in err and "\n" not in err


def test_usage_errors_exit_2(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["convert", "m.tflite"])  # --output is required
    assert exit_.value.code == 2 and "--output" in capsys.readouterr().err


def test_quantize_from_the_command_line_with_a_toml_config(fixtures_dir, tmp_path, capsys):
    split = np.load(fixtures_dir / "digits_split.npz")
    np.save(tmp_path / "calib.npy", (split["calib"][:32] / 16.0).astype(np.float32))
    (tmp_path / "q.toml").write_text('requant_mode = "multiplier_shift"\ncalibrate_mode = "percentile"\n')
    out = tmp_path / "out"
    assert main(["quantize", str(fixtures_dir / "digits_cnn_float.tflite"), "--calib", str(tmp_path / "calib.npy"),
                 "--output", str(out), "--config", str(tmp_path / "q.toml")]) == 0
    assert "4 fused layer(s), 0 float op(s)" in capsys.readouterr().out
    for name in ("model.so", "report.json", "qconfig.json", "layers.json", "statistics.npz"):
        assert (out / name).is_file(), name
    assert json.loads((out / "qconfig.json").read_text())["requant_mode"] == "multiplier_shift"  # effective config
    vm = relax.VirtualMachine(tvm.runtime.load_module(str(out / "model.so")), tvm.cpu())
    test = (split["test"][:64] / 16.0).astype(np.float32)
    predictions = [vm["main"](tvm.runtime.tensor(x[None])).numpy().argmax() for x in test]
    assert np.mean(np.asarray(predictions) == split["test_labels"][:64]) > 0.8


def test_quantize_rejects_an_unknown_config_key(fixtures_dir, tmp_path, capsys):
    np.save(tmp_path / "calib.npy", np.zeros((2, 8, 8, 1), np.float32))
    (tmp_path / "bad.toml").write_text('calibrate_mod = "mse"\n')
    assert main(["quantize", str(fixtures_dir / "digits_cnn_float.tflite"), "--calib", str(tmp_path / "calib.npy"),
                 "--output", str(tmp_path / "o"), "--config", str(tmp_path / "bad.toml")]) == 1
    err = capsys.readouterr().err
    assert "unknown option 'calibrate_mod'; did you mean 'calibrate_mode'?" in err


def test_report_writes_per_layer_metrics(fixtures_dir, tmp_path, capsys):
    split = np.load(fixtures_dir / "digits_split.npz")
    np.save(tmp_path / "calib.npy", (split["calib"][:16] / 16.0).astype(np.float32))
    np.save(tmp_path / "eval.npy", (split["test"][:8] / 16.0).astype(np.float32))
    assert main(["report", str(fixtures_dir / "digits_cnn_float.tflite"), "--calib", str(tmp_path / "calib.npy"),
                 "--eval", str(tmp_path / "eval.npy"), "--output", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "lowest SQNR:" in out
    report = json.loads((tmp_path / "r" / "per_layer.json").read_text())
    assert report["mode"] == "continuous" and report["eval_batches"] == 8
    names = [t["name"] for t in report["tensors"]]
    assert "conv2d_0.input" in names and "matmul_3.output" in names
    for t in report["tensors"]:
        assert {"cosine", "sqnr_db", "mse", "max_abs_error", "scale", "zero_point", "dtype"} <= set(t)
        assert t["cosine"] > 0.99 and (t["sqnr_db"] is None or t["sqnr_db"] > 20)
