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
    with tvm_sima.qconfig(layer_overrides=[{"match": "name:conv2d_1", "weight_bits": 4}]) as config:
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
    assert (rendered["rows"], rendered["images"], rendered["loaded"]) == (len(modes["continuous"]), 4, 4)
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


def _rendered(page: pathlib.Path, tmp_path: pathlib.Path, view: str = "", size: str = "1366,768") -> tuple[dict, str]:
    """``(data-rendered, DOM)`` of ``page#view`` in headless Chromium at a laptop's window size."""
    profile = tmp_path / f"profile{abs(hash(view))}"
    dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={size}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri() + view],
                         capture_output=True, text=True, timeout=120)
    found = re.search(r'data-rendered="([^"]+)"', dom.stdout)
    assert found, dom.stderr[-2000:]
    return json.loads(found.group(1).replace("&quot;", '"')), dom.stdout


def _cell(dom: str, table: str, tensor: str, column: str) -> str:
    """The text of ``column`` in the row of ``tensor`` in the table ``table`` of a dumped DOM."""
    body = dom[dom.index(f'<table id="{table}"'):]
    body = body[:body.index("</table>")]
    heads = re.findall(r"<th[^>]*>(.*?)</th>", body)
    row = re.search(r'<tr[^>]*>((?:(?!</tr>).)*?<td class="name tensor">' + re.escape(tensor) + r"</td>.*?)</tr>",
                    body)
    assert row, f"no row for {tensor} in {table}"
    return re.findall(r"<td[^>]*>(.*?)</td>", row.group(1))[heads.index(column)]


def test_the_report_shows_weight_bits_and_the_models_names_of_each_layer(digits_report, tmp_path):
    """conv2d_1 is given 4-bit weights: the row of the tensor it computes says 4 (weight) and 8 (its bits)."""
    modes, _, _ = digits_report
    by_name = {m.name: m for m in modes["isolated"]}
    out = by_name["conv2d_2.input"]  # what conv2d_1 (the depthwise conv) computes
    assert (out.layer, out.weight_bits, out.bits) == ("conv2d_1", 4, 8)
    assert out.source.startswith("functional_1/dwconv_mult2_1/")  # the TFLite output tensor's name
    assert by_name["conv2d_1.input"].weight_bits == 8
    page = write_html(tmp_path / "report.html", modes, model="digits_cnn_float.tflite", eval_batches=12)
    _, dom = _rendered(page, tmp_path)
    assert _cell(dom, "tensors", "conv2d_2.input", "weight bits") == "4"
    assert _cell(dom, "tensors", "conv2d_2.input", "bits") == "8"
    assert _cell(dom, "tensors", "conv2d_1.input", "weight bits") == "8"
    assert _cell(dom, "tensors", "conv2d_2.input", "name in the model") == out.source


def _many_tensors(count: int = 300) -> dict[str, list[TensorMetrics]]:
    """``count`` tensors with long TFLite-style names, every tenth computed by a 4-bit-weight layer."""
    rng = np.random.default_rng(0)
    modes: dict[str, list[TensorMetrics]] = {"continuous": [], "isolated": []}
    for i in range(count):
        ref = rng.standard_normal(300)
        for mode, noise in (("continuous", 0.05 + i / 3000), ("isolated", 0.02 + (i % 37) / 500)):
            m = TensorMetrics(f"conv2d_{i}.output", 0.02, 3, "int8", order=i, producer="sima.conv2d",
                              source=f"model/backbone/stage_{i // 50}/block_{i}/conv2d_{i}/BiasAdd;"
                                     f"model/backbone/stage_{i // 50}/block_{i}/Relu6",
                              layer=f"conv2d_{i}", weight_bits=4 if i % 10 == 3 else 8)
            m.update(ref, ref + noise * rng.standard_normal(300))
            modes[mode].append(m)
    return modes


def test_a_300_tensor_report_fits_a_laptop_window_worst_first(tmp_path):
    modes = _many_tensors()
    page = write_html(tmp_path / "report.html", modes, model="big.onnx", eval_batches=3)
    rendered, dom = _rendered(page, tmp_path)
    assert rendered["rows"] == 300 and rendered["loaded"] == rendered["images"]
    # nothing wider than the window: no horizontal scroll of the page, the chart scaled to fit
    assert rendered["page_width"] <= rendered["window_width"] == 1366, rendered
    assert 600 < rendered["chart_width"] <= rendered["window_width"], rendered
    worst = sorted(modes["isolated"], key=lambda m: m.sqnr)
    listed = re.findall(r'<td class="name tensor">([^<]+)</td>', dom[dom.index('<table id="worst"'):
                                                                      dom.index('<table id="tensors"')])
    assert listed == [m.name for m in worst[:20]]  # the worst tensors first, in order


def test_the_full_table_filters_and_sorts_from_a_link(tmp_path):
    modes = _many_tensors()
    page = write_html(tmp_path / "report.html", modes, model="big.onnx", eval_batches=3)
    rendered, _ = _rendered(page, tmp_path, "#filter=int4%20stage_2&sort=SQNR%20dB%20(isolated)")
    four_bit = [m for m in modes["isolated"] if m.weight_bits == 4 and "stage_2/" in m.source]
    assert rendered["rows"] == len(four_bit) == 5
    assert rendered["first"] == min(four_bit, key=lambda m: m.sqnr).name  # ascending: the worst first
    rendered, _ = _rendered(page, tmp_path, "#sort=SQNR%20dB%20(continuous)&desc")
    assert rendered["rows"] == 300 and rendered["first"] == max(modes["continuous"], key=lambda m: m.sqnr).name


def test_the_printed_report_of_a_big_model_lists_the_worst_tensors_with_their_model_names(capsys):
    from tvm_sima.cli_report import print_report

    modes = _many_tensors()
    print_report(modes, {"sqnr": 20.0}, 3, labelled=False)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "the 20 lowest-SQNR of 300 tensors (all in report.html):"
    worst = min(modes["isolated"], key=lambda m: m.sqnr)
    assert lines[2].startswith(worst.name) and lines[2].endswith(worst.source) and len(lines) == 2 + 20 + 3


def test_the_report_draws_the_mixed_precision_curve_when_a_search_ran(digits_report, tmp_path):
    modes, _, _ = digits_report
    found = {"target_db": 40.0, "met": True, "sqnr_db": 41.2, "mac_fraction": 0.25, "wide_tensors": ["conv2d_1.input"],
             "curve": [[0.0, 30.0], [0.1, 35.0], [0.25, 41.0]], "measured": [[0, 0.0, 31.0], [2, 0.25, 41.2]]}
    page = write_html(tmp_path / "report.html", modes, model="digits_cnn_float.tflite", eval_batches=12,
                      precision=found)
    dom = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}",
                          "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=120)
    rendered = json.loads(re.search(r'data-rendered="([^"]+)"', dom.stdout).group(1).replace("&quot;", '"'))
    assert rendered["images"] == rendered["loaded"] == 4 + 1 + 1  # 4 histograms, the SQNR chart and the curve
    assert "Mixed precision: output SQNR against cost" in dom.stdout and "<code>conv2d_1.input</code>" in dom.stdout
    assert "Mixed precision" not in write_html(tmp_path / "plain.html", modes).read_text()  # no search, no section
