"""AdaRound (``qconfig(adaround=True)``): the fused op's stored weights rounded for the layer's output error.

The case built to need it::

    x (2 channels, each patch nearly one level: a per-image level plus small noise) -> conv 3x3 (8 channels,
    4-bit weights) -> y

Every patch is close to ``level * (1, ..., 1)``, so a channel's output error is about ``level * sum(e)``:
the 18 nearest-rounding errors of a row add up, and choosing some of them up or down can cancel the sum.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import fused_conv_weight, graph, run
from tvm import relax

import tvm_sima
from tvm_sima.passes.adaround import AdaRoundParams, layer_objective, optimise_rounding, rectified_sigmoid
from tvm_sima.passes.scale_search import Window

SHAPE = (1, 2, 12, 12)


def _model(seed: int) -> tvm.IRModule:
    weight = np.random.default_rng(seed).uniform(-1, 1, size=(8, 2, 3, 3)).astype("float32")
    return graph(SHAPE, lambda bb, x: relax.op.nn.conv2d(x, relax.const(weight), padding=[1, 1]))


def _data(seed: int, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [(rng.uniform(-1, 1, size=(1, 2, 1, 1)) + 0.05 * rng.standard_normal(SHAPE)).astype("float32")
            for _ in range(n)]


def _quantize(mod, calib, path, **options):
    with tvm_sima.qconfig(weight_bits=4, scale_search_samples=8, **options):
        return tvm_sima.quantize(mod, None, calib, work_dir=path)


@pytest.mark.parametrize("mode", ["shift", "multiplier_shift"])
@pytest.mark.parametrize("quantized_input", [False, True])
def test_adaround_changes_the_stored_weights_and_lowers_the_layer_error(mode, quantized_input, tmp_path):
    mod, calib = _model(3), _data(7, 8)
    ref = np.stack(run(mod, calib))
    programs, errors = {}, {}
    for ada in (False, True):
        programs[ada] = _quantize(mod, calib, tmp_path / str(ada), adaround=ada, requant_mode=mode,
                                  adaround_quantized_input=quantized_input)
        errors[ada] = float(np.mean((np.stack(run(programs[ada], calib)) - ref) ** 2))
    nearest, chosen = fused_conv_weight(programs[False]).astype(int), fused_conv_weight(programs[True]).astype(int)
    assert nearest.shape == chosen.shape
    changed = np.mean(nearest != chosen)
    assert 0.02 < changed < 0.6, changed  # some codes moved, not all
    assert np.abs(nearest - chosen).max() == 1  # never more than one step from nearest
    [choice] = tvm_sima.quantize_report(programs[True])["adaround"]
    assert choice["layer"] == "conv2d_0" and choice["error_adaround"] < choice["error_nearest"] / 2
    assert choice["quantized_input"] is quantized_input  # the second pass: the input as the first program has it
    assert tvm_sima.quantize_report(programs[False])["adaround"] == []
    assert errors[True] < errors[False] / 1.5, errors


def test_adaround_is_deterministic(tmp_path):
    mod, calib = _model(4), _data(8, 8)
    weights = [fused_conv_weight(_quantize(mod, calib, tmp_path / str(i), adaround=True)) for i in range(2)]
    np.testing.assert_array_equal(weights[0], weights[1])


def test_the_optimiser_cancels_correlated_errors_and_stays_on_the_grid():
    # One row of 16 weights between 0.05 and 0.45 of a step over an integer: nearest rounds all down (errors summing
    # to -4); with fully correlated inputs (M all ones) the output error is (sum e)**2: 16 for nearest, below 1/4
    # when the right 4 or 5 of them round up.
    ratio = 3.0 + np.linspace(0.05, 0.45, 16)[None]
    lo, hi = np.floor(ratio), np.floor(ratio) + 1
    codes = optimise_rounding(ratio, lo, hi, np.ones(1), np.ones((1, 16, 16)), AdaRoundParams())
    assert set(np.unique(codes)) == {3.0, 4.0}
    assert abs((codes - ratio).sum()) <= 0.5, codes
    np.testing.assert_allclose(rectified_sigmoid(np.array([-50.0, 0.0, 50.0])), [0.0, 0.5, 1.0])


def test_bad_hyper_parameters_are_refused():
    with pytest.raises(ValueError, match="adaround_beta"):
        tvm_sima.QConfig(adaround_beta=(20.0,))
    with pytest.raises(ValueError, match="adaround_iterations"):
        tvm_sima.QConfig(adaround_iterations=0)
    with pytest.raises(ValueError, match="adaround_warm_start"):
        tvm_sima.QConfig(adaround_warm_start=1.0)
    assert tvm_sima.QConfig(adaround_beta=[10, 2]).adaround_beta == (10.0, 2.0)


def test_the_quantized_input_objective_is_the_output_error_over_the_patches():
    # E[(w p - w~ p~)**2] summed over rows, for the patches p of x and p~ of a perturbed x at the same positions.
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, 6, 6))
    x_tilde = x + 0.1 * rng.standard_normal(x.shape)
    window = Window((3, 3), (1, 1), (1, 1, 1, 1), (1, 1), 1, "NCHW")
    view = rng.standard_normal((4, 27))
    step = np.full(4, 0.1)
    ratio = view / step[:, None]
    codes = np.round(ratio) + rng.integers(0, 2, size=ratio.shape)
    objective = layer_objective(view, x, x_tilde, window, centred=False)
    padded, padded_t = (np.pad(a, ((0, 0), (0, 0), (1, 1), (1, 1))) for a in (x, x_tilde))
    p = np.array([padded[b, :, i:i + 3, j:j + 3].transpose(1, 2, 0).ravel()
                  for b in range(2) for i in range(6) for j in range(6)])
    q = np.array([padded_t[b, :, i:i + 3, j:j + 3].transpose(1, 2, 0).ravel()
                  for b in range(2) for i in range(6) for j in range(6)])
    direct = np.mean(((p @ view.T) - (q @ (codes * step[:, None]).T)) ** 2, axis=0).sum()
    np.testing.assert_allclose(objective.error(codes, ratio, step), direct, rtol=1e-9)
