"""The per-layer accuracy report: continuous and isolated metrics, the HTML page in headless Chromium."""

from __future__ import annotations

import json
import pathlib
import re
import shutil
import subprocess

import numpy as np
import pytest

import tvm_sima
from tvm_sima.compare import TensorMetrics, compare_tensors
from tvm_sima.html_report import write_html
from tvm_sima.math import QParams
from tvm_sima.math.qparams import dequantize, quantize

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"


@pytest.fixture(scope="module")
def digits_report():
    mod, params = tvm_sima.load_model(FIXTURES / "digits_cnn_float.tflite")
    digits = np.load(FIXTURES / "digits_split.npz")
    calib = [(x / 16.0).astype("float32")[None] for x in digits["calib"][:32]]
    evaluation = [(x / 16.0).astype("float32")[None] for x in digits["test"][:12]]
    with tvm_sima.qconfig() as config:
        qmod = tvm_sima.quantize(mod, params, calib)
        outputs: list = []
        modes = {"continuous": compare_tensors(mod, params, qmod, evaluation, config, outputs=outputs),
                 "isolated": compare_tensors(mod, params, qmod, evaluation, config, mode="isolated")}
    return modes, outputs, evaluation


def test_isolated_tensor_after_a_reshape_is_pure_rounding_of_the_float_value(digits_report):
    modes, _, _ = digits_report
    iso = {m.name: m for m in modes["isolated"]}
    cont = {m.name: m for m in modes["continuous"]}
    # matmul_3.input is the reshape of conv2d_2.output: fed the float conv output, quantized,
    # it holds exactly the rounded float values; in continuous mode it carries the conv's error too.
    m = iso["matmul_3.input"]
    ref, test = m.samples
    assert ref.size == test.size > 1000
    qp = QParams(m.scale, m.zero_point, m.dtype)
    np.testing.assert_allclose(test, dequantize(quantize(ref, qp, "half_up"), qp), rtol=0, atol=1e-6)
    assert iso["matmul_3.input"].sqnr > cont["matmul_3.input"].sqnr + 1.0
    # the model input is quantized the same way in both modes
    assert iso["conv2d_0.input"].sqnr == pytest.approx(cont["conv2d_0.input"].sqnr)
    assert [m.name for m in modes["isolated"]] == [m.name for m in modes["continuous"]]


def test_continuous_samples_pair_float_and_quantized_values(digits_report):
    modes, outputs, evaluation = digits_report
    assert len(outputs) == len(evaluation)
    last = modes["continuous"][-1]
    assert last.name == "matmul_3.output"
    ref, test = last.samples
    # the logits tap sees every output value: 12 batches x 10 logits, all kept (fewer than sample_size)
    assert ref.size == 120
    np.testing.assert_allclose(np.sort(ref), np.sort(np.concatenate([f.ravel() for f, _ in outputs])), rtol=1e-6)
    np.testing.assert_allclose(np.sort(test), np.sort(np.concatenate([q.ravel() for _, q in outputs])), rtol=1e-6)


def test_metric_sample_is_bounded_and_uniform():
    m = TensorMetrics("t", sample_size=500)
    for k in range(20):
        values = np.arange(k * 1000, (k + 1) * 1000, dtype=np.float64)
        m.update(values, values + 1)
    ref, test = m.samples
    assert ref.size == 500
    np.testing.assert_array_equal(test, ref + 1)
    # a uniform sample of 0..19999: its mean is near 10000 and late batches are represented
    assert abs(ref.mean() - 10000) < 1500 and (ref > 15000).sum() > 50
    assert m.mse == pytest.approx(1.0) and m.max_abs_error == 1.0


def test_compare_rejects_an_unknown_mode(digits_report):
    with pytest.raises(ValueError, match="mode 'layerwise' is not one of"):
        compare_tensors(None, None, None, [], mode="layerwise")  # type: ignore[arg-type]


CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def chromium() -> str:
    path = shutil.which("chromium")
    if path is None:
        pytest.fail("Debian chromium is not installed: `make browser` (run by `make test`) installs it")
    return path


def test_html_report_renders_table_and_images_in_headless_chromium(digits_report, tmp_path):
    modes, _, _ = digits_report
    page = write_html(tmp_path / "report.html", modes, model="digits_cnn_float.tflite", eval_batches=12,
                      output_metrics={"top1": 0.9}, worst=3)
    text = page.read_text()
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")  # self-contained
    dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'data-rendered="([^"]+)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    rendered = json.loads(found.group(1).replace("&quot;", '"'))
    # every tensor row is laid out; the SQNR chart and three histograms decoded by the browser
    assert rendered == {"rows": len(modes["continuous"]), "images": 4, "loaded": 4}
    worst = min(modes["isolated"], key=lambda m: m.sqnr)  # the histograms follow the isolated mode
    assert f"histogram of {worst.name}" in dom.stdout and "SQNR dB (isolated)" in dom.stdout
    shot = tmp_path / "report.png"
    subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile2'}",
                    "--window-size=1100,1400", f"--screenshot={shot}", page.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 20_000


def test_html_report_needs_tensors(tmp_path):
    with pytest.raises(ValueError, match="no quantized tensor"):
        write_html(tmp_path / "r.html", {"continuous": []})


def test_write_report_keeps_json_strict_for_exact_outputs(digits_report, tmp_path):
    from tvm_sima.html_report import write_report

    modes, _, _ = digits_report
    json_path, html_path = write_report(tmp_path, modes, output_metrics={"sqnr": float("inf"), "top1": 0.5})
    payload = json.loads(json_path.read_text(), parse_constant=lambda c: pytest.fail(f"non-strict JSON: {c}"))
    assert payload["output_metrics"] == {"sqnr": None, "top1": 0.5}
    assert "output sqnr: exact" in html_path.read_text()
