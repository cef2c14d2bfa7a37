"""tvm_sima.quantize as a user drives it: real ONNX / TFLite models, files, statistics, options, errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tvm
from helpers.onnx_models import onnx_model
from helpers.quantize import batches, const, graph, run, total_sqnr
from helpers.relax import op_counts
from tvm import relax

import tvm_sima
from tvm_sima.frontends.loader import bind_params


@pytest.fixture(scope="module")
def onnx_cnn(tmp_path_factory):
    #   x -> Conv(w) -> Relu -> Flatten -> MatMul(fc) -> y
    return tvm_sima.load_model(onnx_model(tmp_path_factory.mktemp("m") / "m.onnx"))


def test_onnx_model_end_to_end_with_files(onnx_cnn, tmp_path):
    mod, params = onnx_cnn
    calib, evals = batches((1, 3, 8, 8), 32, 1), batches((1, 3, 8, 8), 8, 2)
    with tvm_sima.qconfig():
        qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path)
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 1 and counts["sima.dense"] == 1 and counts["relax.nn.conv2d"] == 0
    ref = run(bind_params(mod, params), evals)
    assert total_sqnr(ref, run(qmod, evals)) > 30
    for name in ("layers.json", "statistics.npz", "qconfig.json", "report.json"):
        assert (tmp_path / name).is_file(), name
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["fused"] == ["conv2d_0", "matmul_1"] and report["float_ops"] == []
    assert tvm_sima.quantize_report(qmod)["work_dir"] == str(tmp_path)
    # The saved statistics give the same program without data.
    again = tvm_sima.quantize(mod, params, statistics=tmp_path / "statistics.npz", work_dir=tmp_path / "again")
    tvm.ir.assert_structural_equal(again["main"].body, qmod["main"].body)


def test_tflite_float_model(fixtures_dir, tmp_path):
    mod, params = tvm_sima.load_model(fixtures_dir / "digits_cnn_float.tflite")
    # Held-out scikit-learn digits (NHWC float): calibrate on 16, evaluate on the other 16.
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images_float"].astype("float32")
    calib, evals = [images[i:i + 1] for i in range(16)], [images[i:i + 1] for i in range(16, 32)]
    qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path)
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == [] and len(report["fused"]) >= 4
    ref, out = run(mod, evals), run(qmod, evals)
    agree = np.mean([r.argmax() == o.argmax() for r, o in zip(ref, out, strict=True)])
    assert agree >= 15 / 16 and total_sqnr(ref, out) > 20


def test_layer_config_file_round_trip_skips_a_layer(onnx_cnn, tmp_path):
    mod, params = onnx_cnn
    calib = batches((1, 3, 8, 8), 8, 1)
    tvm_sima.quantize(mod, params, calib, work_dir=tmp_path)
    template = json.loads((tmp_path / "layers.json").read_text())
    assert [row["name"] for row in template["layers"]] == ["conv2d_0", "matmul_1"]
    template["layers"][0]["skip"] = True
    edited = tmp_path / "edited.json"
    edited.write_text(json.dumps(template))
    with tvm_sima.qconfig(layer_config=str(edited)):
        qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path / "2")
    counts = op_counts(qmod)
    assert counts["relax.nn.conv2d"] == 1 and counts["sima.dense"] == 1 and counts["sima.conv2d"] == 0
    assert tvm_sima.quantize_report(qmod)["skipped_layers"] == ["conv2d_0"]


def test_do_simulation_returns_the_fake_quantized_float_graph(onnx_cnn, tmp_path):
    mod, params = onnx_cnn
    calib, evals = batches((1, 3, 8, 8), 16, 1), batches((1, 3, 8, 8), 4, 2)
    with tvm_sima.qconfig(do_simulation=True):
        sim = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path)
    counts = op_counts(sim)
    assert counts["relax.nn.conv2d"] == 1 and counts["sima.conv2d"] == 0
    assert counts["sima.quantize"] == counts["sima.dequantize"] == 6  # 4 activations, 2 weights
    qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path / "q")
    ref = run(bind_params(mod, params), evals)
    assert total_sqnr(ref, run(sim, evals)) > 25 and total_sqnr(ref, run(qmod, evals)) > 25


def test_bias_correction_removes_the_mean_error(tmp_path):
    #   x -> relu -> depthwise conv2d 3x3 (coarse weights) -> y
    # Inputs after a relu have a positive mean, so weight rounding shifts each output channel's
    # mean; bias correction subtracts that shift.
    shape = (1, 16, 12, 12)
    weight = const((16, 1, 3, 3), scale=1.0)
    mod = graph(shape, lambda bb, x: relax.op.nn.conv2d(bb.emit(relax.op.nn.relu(x)), weight, groups=16))
    calib, evals = batches(shape, 32, 1), batches(shape, 8, 2)
    ref = np.concatenate(run(mod, evals))
    mean_error = {}
    for corrected in (False, True):
        with tvm_sima.qconfig(bias_correction=corrected, weight_bits=4, requant_mode="multiplier_shift"):
            qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path / str(corrected))
        out = np.concatenate(run(qmod, evals))
        mean_error[corrected] = np.abs((out - ref).mean(axis=(0, 2, 3))).mean()
    assert mean_error[True] < 0.5 * mean_error[False], mean_error


def test_errors_a_user_can_act_on(onnx_cnn, tmp_path):
    mod, params = onnx_cnn
    with pytest.raises(ValueError, match="quantize needs calibration data"):
        tvm_sima.quantize(mod, params)
    with pytest.raises(ValueError, match="quantize_method_for_activation must be per_tensor"):
        with tvm_sima.qconfig(quantize_method_for_activation="per_channel_asymmetric"):
            tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 2, 1))
    with pytest.raises(ValueError, match="quantize_method_for_weight must be symmetric"):
        with tvm_sima.qconfig(quantize_method_for_weight="per_channel_asymmetric"):
            tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 2, 1))
    with pytest.raises(ValueError, match="round_for_shift=False .* is not supported"):
        with tvm_sima.qconfig(round_for_shift=False):
            tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 2, 1))
    with pytest.raises(ValueError, match=r"calibration batch lacks inputs \['x'\]"):
        tvm_sima.quantize(mod, params, [{"image": batches((1, 3, 8, 8), 1, 1)[0]}], work_dir=tmp_path)
    with pytest.raises(TypeError, match="quantize expects a tvm.IRModule"):
        tvm_sima.quantize("model.onnx", params, batches((1, 3, 8, 8), 2, 1))
    with pytest.raises(ValueError, match="not made by tvm_sima.quantize"):
        tvm_sima.quantize_report(bind_params(mod, params))


def test_input_bits_apply_to_model_inputs_only(onnx_cnn, tmp_path):
    mod, params = onnx_cnn
    with tvm_sima.qconfig(nbit_input=16, bias_bits=48):
        qmod = tvm_sima.quantize(mod, params, batches((1, 3, 8, 8), 16, 1), work_dir=tmp_path)
    infos = tvm_sima.read_quantize_info(qmod)
    assert infos["conv2d_0.input"].dtype == "int16" and infos["matmul_1.input"].dtype == "int8"
    evals = batches((1, 3, 8, 8), 4, 2)
    assert total_sqnr(run(bind_params(mod, params), evals), run(qmod, evals)) > 25
