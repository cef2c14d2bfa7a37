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
    from helpers.litert import litert

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


def test_report_writes_per_layer_metrics_and_the_html_page(fixtures_dir, tmp_path, capsys):
    split = np.load(fixtures_dir / "digits_split.npz")
    np.save(tmp_path / "calib.npy", (split["calib"][:16] / 16.0).astype(np.float32))
    np.save(tmp_path / "eval.npy", (split["test"][:8] / 16.0).astype(np.float32))
    assert main(["report", str(fixtures_dir / "digits_cnn_float.tflite"), "--calib", str(tmp_path / "calib.npy"),
                 "--eval", str(tmp_path / "eval.npy"), "--output", str(tmp_path / "r")]) == 0
    out = capsys.readouterr().out
    assert "lowest SQNR (continuous):" in out and "lowest SQNR (isolated):" in out
    report = json.loads((tmp_path / "r" / "per_layer.json").read_text())
    assert report["eval_batches"] == 8 and set(report["modes"]) == {"continuous", "isolated"}
    # no labels in an .npy: top1 is the agreement with the float model's class
    assert set(report["output_metrics"]) == {"top1", "cosine", "sqnr", "max_abs_error"}
    assert 0.75 <= report["output_metrics"]["top1"] <= 1.0
    for mode, tensors in report["modes"].items():
        names = [t["name"] for t in tensors]
        assert "conv2d_0.input" in names and "matmul_3.output" in names, mode
        for t in tensors:
            assert {"cosine", "sqnr_db", "mse", "max_abs_error", "scale", "zero_point", "dtype", "bits"} <= set(t)
            assert t["cosine"] > 0.99 and (t["sqnr_db"] is None or t["sqnr_db"] > 20) and t["bits"] == 8
    page = (tmp_path / "r" / "report.html").read_text()
    assert page.count("<img") == 5 and "matmul_3.output" in page  # SQNR curve + 4 histograms


def test_report_on_the_bundled_onnx_model_with_labels_and_a_chosen_metric(fixtures_dir, tmp_path, capsys):
    assert main(["report", str(fixtures_dir / "digits_cnn_float.onnx"), "--calib",
                 str(fixtures_dir / "digits_calib_nchw.npy"), "--eval", str(fixtures_dir / "digits_eval_nchw.npz"),
                 "--output", str(tmp_path), "--mode", "isolated", "--metric", "top5", "--metric", "top1"]) == 0
    report = json.loads((tmp_path / "per_layer.json").read_text())
    assert list(report["modes"]) == ["isolated"]
    scores = report["output_metrics"]
    # labelled digits: accuracies, the float model's beside the quantized one's
    assert set(scores) == {"top5", "top1", "float_top1"}
    assert scores["top1"] > 0.85 and abs(scores["top1"] - scores["float_top1"]) <= 0.05
    assert scores["top5"] >= scores["top1"]
    assert "top-k against labels" in capsys.readouterr().out


def test_build_a_float_model_from_saved_statistics_and_an_edited_layer_file(fixtures_dir, tmp_path, capsys):
    onnx_model, calib = str(fixtures_dir / "digits_cnn_float.onnx"), str(fixtures_dir / "digits_calib_nchw.npy")
    assert main(["quantize", onnx_model, "--calib", calib, "--output", str(tmp_path / "q")]) == 0
    layers = json.loads((tmp_path / "q" / "layers.json").read_text())
    layers["layers"][0]["skip"] = True  # keep the first conv in float
    (tmp_path / "layers.json").write_text(json.dumps(layers))
    (tmp_path / "c.yaml").write_text(f"layer_config: {tmp_path / 'layers.json'}\n")
    capsys.readouterr()
    assert main(["build", onnx_model, "--statistics", str(tmp_path / "q" / "statistics.npz"),
                 "--config", str(tmp_path / "c.yaml"), "--output", str(tmp_path / "b")]) == 0
    out = capsys.readouterr().out
    assert "quantized: 3 fused layer(s)" in out and (tmp_path / "b" / "model.so").is_file()
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    assert report["skipped_layers"] and report["fused"] == ["conv2d_1", "conv2d_2", "matmul_3"]


def test_build_an_int8_model_without_offload(fixtures_dir, tmp_path, capsys):
    assert main(["build", str(fixtures_dir / "digits_int8.tflite"), "--no-offload", "--output", str(tmp_path)]) == 0
    assert (tmp_path / "model.so").is_file() and not (tmp_path / "artifacts").exists()
    assert "(TIR only)" in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["build", "{f}/digits_cnn_float.onnx", "--output", "{t}/b"], "give --statistics"),
    (["report", "{f}/digits_int8.tflite", "--calib", "{f}/digits_calib_nchw.npy", "--eval",
      "{f}/digits_eval_nchw.npz", "--output", "{t}/r"], "is already quantized; use `tvm-sima convert`"),
    (["report", "{f}/digits_cnn_float.onnx", "--calib", "{f}/digits_calib_nchw.npy", "--eval", "{t}/none.npz",
      "--output", "{t}/r"], "data file {t}/none.npz not found"),
    (["report", "{f}/digits_cnn_float.onnx", "--calib", "{f}/digits_calib_nchw.npy", "--eval",
      "{f}/digits_eval_nchw.npz", "--output", "{t}/r", "--metric", "top3"], "unknown metric 'top3'; known:"),
    (["quantize", "{f}/digits_cnn_float.onnx", "--calib", "{f}/digits_split.npz", "--output", "{t}/q"],
     "no array for input(s)"),
    (["quantize", "{f}/digits_cnn_float.onnx", "--calib", "{f}/digits_calib_nchw.npy", "--output", "{t}/q",
      "--config", "{t}/bad.yaml"], "not valid YAML"),
])
def test_new_command_errors_are_one_line(argv, message, fixtures_dir, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text("calibrate_mode: [unclosed\n")
    argv = [a.format(f=fixtures_dir, t=tmp_path) for a in argv]
    assert main(argv) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tvm-sima: error:") and message.format(t=tmp_path) in err[0], err


def test_inspect_a_float_model_lists_what_quantize_would_quantize(fixtures_dir, capsys):
    assert main(["inspect", str(fixtures_dir / "digits_cnn_float.onnx")]) == 0
    out = capsys.readouterr().out
    assert "input  image: float32[1, 1, 8, 8]" in out and "quantize would quantize 4 layer(s)" in out
    assert "conv2d_2" in out and "matmul_3" in out and "relax.nn.conv2d" in out


def test_a_runs_qconfig_json_is_accepted_back_as_a_config(fixtures_dir, tmp_path):
    model, calib = str(fixtures_dir / "digits_cnn_float.onnx"), str(fixtures_dir / "digits_calib_nchw.npy")
    (tmp_path / "c.yaml").write_text("calibration_strategy_for_activation: mse\nrequant_mode: multiplier_shift\n")
    assert main(["quantize", model, "--calib", calib, "--config", str(tmp_path / "c.yaml"),
                 "--output", str(tmp_path / "a")]) == 0
    first = json.loads((tmp_path / "a" / "qconfig.json").read_text())
    assert first["calibration_strategy_for_activation"] == "mse" and first["requant_mode"] == "multiplier_shift"
    assert main(["quantize", model, "--calib", calib, "--config", str(tmp_path / "a" / "qconfig.json"),
                 "--output", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "qconfig.json").read_text()) == first


def test_report_on_a_labelled_image_folder_with_dataset_options(fixtures_dir, tmp_path, capsys):
    """Digits as 16x16 PNGs in class sub-folders; the config's [dataset] table resizes and scales them."""
    from PIL import Image

    split = np.load(fixtures_dir / "digits_split.npz")
    for k, (image, label) in enumerate(zip(split["test"][:64, :, :, 0], split["test_labels"][:64], strict=True)):
        (tmp_path / "imgs" / f"digit_{label}").mkdir(parents=True, exist_ok=True)
        big = Image.fromarray(image, mode="L").resize((16, 16), Image.Resampling.NEAREST)  # pixel values 0..16
        big.save(tmp_path / "imgs" / f"digit_{label}" / f"{k:03d}.png")
    (tmp_path / "c.toml").write_text('[dataset]\nresize = "8x8"\nscale = 0.0625\n')  # the model takes value / 16
    argv = ["report", str(fixtures_dir / "digits_cnn_float.onnx"),
            "--calib", str(fixtures_dir / "digits_calib_nchw.npy"), "--eval", str(tmp_path / "imgs"),
            "--config", str(tmp_path / "c.toml"), "--output", str(tmp_path / "r"),
            "--mode", "continuous", "--metric", "top1"]
    assert main(argv) == 0
    assert "top-k against labels" in capsys.readouterr().out  # the sub-folders gave labels
    scores = json.loads((tmp_path / "r" / "per_layer.json").read_text())["output_metrics"]
    assert set(scores) == {"top1", "float_top1"} and scores["top1"] > 0.8 and scores["float_top1"] > 0.8
    # --data-option overrides the config's table: 4x4 images do not fit the 8x8 input (one line, before quantizing)
    assert main([*argv, "--data-option", "resize=4x4"]) == 1
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "4x4 after resize/crop; the model takes 8x8" in err


@pytest.mark.parametrize("command", ["inspect", "quantize", "report", "convert", "build"])
def test_every_command_helps_with_an_example(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_.value.code == 0 and f"example:\n  tvm-sima {command} tests/fixtures/" in out
    if command == "build":  # what build does with each kind of model
        assert "A quantized model" in out and "A float model is quantized from the statistics.npz" in out


def test_quantize_says_which_tensor_it_re_gridded(tmp_path, capsys):
    """A 1x1 conv whose logits share one grid with never-firing anchors (tests/passes/test_grid_rescue.py)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 1.2, 1.8, 2.2, 1.0, 1.0], np.float32).reshape(10, 1, 1, 1)
    bias = np.array([0.3, -0.2, 0.1, -0.4, 0.5, 0.0, -0.1, 0.2, -3000.0, -1000.0], np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["y"], name="head")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 16, 16])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10, 16, 16])],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "head.onnx"))
    np.save(tmp_path / "calib.npy", np.random.default_rng(0).uniform(-1, 1, (8, 1, 16, 16)).astype("float32"))
    assert main(["quantize", str(tmp_path / "head.onnx"), "--calib", str(tmp_path / "calib.npy"),
                 "--output", str(tmp_path / "q")]) == 0
    out = capsys.readouterr().out
    assert "re-gridded conv2d_0.output: 16-bit over the calibrated range" in out and "zero point 127" in out
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert [g["tensor"] for g in report["rescued"]] == ["conv2d_0.output"]


def test_preset_flag_turns_on_the_preset_and_the_config_file_still_overrides_it(fixtures_dir, tmp_path):
    split = np.load(fixtures_dir / "digits_split.npz")
    np.save(tmp_path / "calib.npy", (split["calib"][:8] / 16.0).astype(np.float32))
    model, calib = str(fixtures_dir / "digits_cnn_float.tflite"), str(tmp_path / "calib.npy")
    assert main(["quantize", model, "--calib", calib, "--output", str(tmp_path / "a"), "--preset", "accurate"]) == 0
    saved = json.loads((tmp_path / "a" / "qconfig.json").read_text())
    assert saved["preset"] == "accurate" and saved["scale_search"] is True
    (tmp_path / "q.toml").write_text("scale_search = false\n")
    assert main(["quantize", model, "--calib", calib, "--output", str(tmp_path / "b"), "--preset", "accurate",
                 "--config", str(tmp_path / "q.toml")]) == 0
    saved = json.loads((tmp_path / "b" / "qconfig.json").read_text())
    assert saved["preset"] == "accurate" and saved["scale_search"] is False
    with pytest.raises(SystemExit):  # argparse refuses an unknown preset before anything runs
        main(["quantize", model, "--calib", calib, "--output", str(tmp_path / "c"), "--preset", "fast"])
    assert not (tmp_path / "c").exists()


def test_quantize_with_a_target_sqnr_searches_mixed_precision(fixtures_dir, tmp_path, capsys):
    split = np.load(fixtures_dir / "digits_split.npz")
    np.save(tmp_path / "calib.npy", (split["calib"][:16] / 16.0).astype(np.float32))
    out = tmp_path / "out"
    assert main(["quantize", str(fixtures_dir / "digits_cnn_float.tflite"), "--calib", str(tmp_path / "calib.npy"),
                 "--output", str(out), "--min-sqnr", "60"]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())["mixed_precision"]
    assert report["target_db"] == 60.0 and report["wide_tensors"]  # 8 bits alone do not give a CNN 60 dB
    assert f"mixed precision: {len(report['wide_tensors'])} tensor(s) at 16 bits" in printed
    assert json.loads((out / "qconfig.json").read_text())["mixed_precision_sqnr_db"] == 60.0
