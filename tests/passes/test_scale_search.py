"""Scale search (``qconfig(scale_search=True)``): the output scale that puts shift-mode weights on their full grid.

The case built to need it::

    x (uniform in [-1, 1], 64 channels) -> conv 1x1 (16 channels, every row's max |w| = m) -> relu6 -> y

relu6 saturates on the calibration data, so the output scale is 6 / 255 whatever ``m``, and ``m``
sets where ``s_x / s_y * m`` falls between two powers of two: here just above 64, the worst phase,
where the shift-only fold stores each channel's weights with at most 65 levels instead of 127.
A slightly coarser output grid lets the fold take one more shift: twice the weight resolution.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import fused_conv_weight, graph, run, total_sqnr
from tvm import relax

import tvm_sima
from tvm_sima.passes.scale_search import Window, patch_moments

SHAPE = (1, 64, 8, 8)


def _model(seed: int, peak: float) -> tvm.IRModule:
    rng = np.random.default_rng(seed)
    rows = rng.uniform(-1, 1, size=(16, 64))
    weight = (rows / np.abs(rows).max(axis=1, keepdims=True) * peak).astype("float32").reshape(16, 64, 1, 1)
    return graph(SHAPE, lambda bb, x: relax.op.clip(relax.op.nn.conv2d(x, relax.const(weight)), 0.0, 6.0))


def _data(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, size=SHAPE).astype("float32") for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scale_search_fills_the_shift_mode_weight_grid_and_lowers_the_error(seed, tmp_path):
    # s_x ~ 2 / 255, s_y = 6 / 255: max|w'| = peak / 3 * 2**shift; peak = 3 * 64.8 / 2**6 lands just above 64.
    mod, calib, evals = _model(seed, 3 * 64.8 / 64), _data(100 + seed, 16), _data(200 + seed, 8)
    ref = run(mod, evals)
    results = {}
    for search in (False, True):
        with tvm_sima.qconfig(scale_search=search):
            qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path / str(search))
        peaks = np.abs(fused_conv_weight(qmod)).reshape(16, -1).max(axis=1)
        results[search] = (peaks, total_sqnr(ref, run(qmod, evals)), tvm_sima.quantize_report(qmod))
    (plain_peaks, plain_sqnr, plain_report), (peaks, sqnr, report) = results[False], results[True]
    assert plain_peaks.max() <= 70  # the case is built at the worst phase: at most ~65 of 127 levels
    assert plain_report["scale_search"] == []
    [choice] = report["scale_search"]
    assert choice["layer"] == "conv2d_0" and 1.0 < choice["factor"] < 1.1
    assert choice["error_after"] < choice["error_before"] / 2
    assert peaks.min() >= 110  # one more shift: nearly the full int8 range on every channel
    assert sqnr > plain_sqnr + 3.0, (plain_sqnr, sqnr)


def test_an_unsearched_layer_keeps_its_calibrated_scale_and_the_same_program(tmp_path):
    # At the best phase (max|w'| ~ 126) the calibrated scale is already the best: nothing changes.
    mod, calib = _model(0, 3 * 126.0 / 64), _data(100, 16)
    programs = []
    for search in (False, True):
        with tvm_sima.qconfig(scale_search=search):
            programs.append(tvm_sima.quantize(mod, None, calib, work_dir=tmp_path / str(search)))
    assert tvm_sima.quantize_report(programs[1])["scale_search"][0]["factor"] == 1.0
    tvm.ir.assert_structural_equal(programs[0]["main"].body, programs[1]["main"].body)


def test_patch_moments_are_those_of_the_im2col_patches():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((2, 4, 5, 6))
    window = Window((3, 3), (2, 1), (1, 1, 1, 1), (1, 1), 2, "NCHW")
    moments = patch_moments(x, window, centred=False)
    padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    for g in range(2):
        patches = [padded[b, 2 * g:2 * g + 2, 2 * i:2 * i + 3, j:j + 3].transpose(1, 2, 0).ravel()
                   for b in range(2) for i in range(3) for j in range(6)]
        p = np.array(patches)
        np.testing.assert_allclose(moments[g], p.T @ p / len(p), rtol=1e-12)


def test_the_accurate_preset_searches(tmp_path):
    mod, calib = _model(0, 3 * 64.8 / 64), _data(100, 16)
    with tvm_sima.qconfig(preset="accurate"):
        qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path)
    assert tvm_sima.quantize_report(qmod)["scale_search"][0]["factor"] > 1.0


def test_bias_correction_comes_after_the_search_and_corrects_the_weights_the_op_holds(tmp_path):
    # x -> conv 1x1 (no clip: linear, so the correction is exact on the calibration means) -> y, inputs in [0, 1]
    # (mean 0.5: each channel's weight rounding shifts its mean). The search changes the weights; the bias is
    # corrected for the searched ones, so on the calibration data every channel's mean error is ~0.
    rng = np.random.default_rng(5)
    weight = rng.uniform(-1, 1, size=(16, 64, 1, 1)).astype("float32")
    mod = graph(SHAPE, lambda bb, x: relax.op.nn.conv2d(x, relax.const(weight)))
    calib = [rng.uniform(0, 1, size=SHAPE).astype("float32") for _ in range(4)]
    ref = np.stack(run(mod, calib))
    drift = {}
    for corrected in (False, True):
        with tvm_sima.qconfig(scale_search=True, bias_correction=corrected, scale_search_samples=4):
            qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path / str(corrected))
        report = tvm_sima.quantize_report(qmod)
        assert report["scale_search"][0]["factor"] > 1.0  # the search moved the output scale
        scale = tvm_sima.read_quantize_info(qmod)["conv2d_0.output"].scale[0]
        drift[corrected] = np.abs((np.stack(run(qmod, calib)) - ref).mean(axis=(0, 1, 3, 4))).max() / scale
    assert drift[True] < 0.05 < 0.2 < drift[False], drift


def test_multiplier_shift_layers_keep_their_calibrated_scale(tmp_path):
    mod, calib = _model(0, 3 * 64.8 / 64), _data(100, 16)
    with tvm_sima.qconfig(scale_search=True, requant_mode="multiplier_shift"):
        qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path)
    assert tvm_sima.quantize_report(qmod)["scale_search"] == []
