"""Calibrate: one float run per batch, taps keyed by tensor name, weights observed directly."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.onnx_models import onnx_model

import tvm_sima
from tvm_sima.config import LayerInfo, QConfig
from tvm_sima.frontends.loader import bind_params
from tvm_sima.passes import annotate
from tvm_sima.passes.calibrate import calibrate


@pytest.fixture(scope="module")
def annotated(tmp_path_factory):
    #   x -> Conv(w) -> Relu -> Flatten -> MatMul(fc) -> y
    mod, params = tvm_sima.load_model(onnx_model(tmp_path_factory.mktemp("m") / "m.onnx"))
    amod, _ = annotate(bind_params(mod, params), QConfig())
    return amod, params


def batches(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((1, 3, 8, 8)).astype("float32") for _ in range(n)]


def relu_conv_flat(x, w):
    """The float activation feeding the matmul: relu(conv3x3_valid(x, w)) flattened."""
    patches = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))  # (1, 3, 6, 6, 3, 3)
    y = np.einsum("ncijkl,ockl->noij", patches, w)
    return np.maximum(y, 0).reshape(1, -1)


def test_taps_weights_and_names(annotated):
    amod, params = annotated
    data = batches()
    obs = calibrate(amod, data, QConfig(calibration_strategy_for_activation="extrema"))
    assert set(obs) == {"conv2d_0.input", "conv2d_0.weight", "matmul_1.input", "matmul_1.weight",
                        "conv2d_0.output", "matmul_1.output"}
    stacked = np.concatenate(data)
    assert float(obs["conv2d_0.input"].min_val) == pytest.approx(float(stacked.min()))
    hidden = np.concatenate([relu_conv_flat(x, params["w"]) for x in data])
    assert float(obs["matmul_1.input"].max_val) == pytest.approx(float(hidden.max()), rel=1e-5)
    w_obs = obs["conv2d_0.weight"]
    assert w_obs.axis == 0
    np.testing.assert_allclose(w_obs.max_val, params["w"].max(axis=(1, 2, 3)))
    assert obs["matmul_1.weight"].axis == 1  # (K, N): output channels last


def test_dict_batches_and_bad_datasets(annotated):
    amod, _ = annotated
    obs = calibrate(amod, [{"x": b} for b in batches(3)], QConfig())
    assert obs["conv2d_0.input"].count == 3 * 3 * 8 * 8
    with pytest.raises(ValueError, match=r"calibration batch lacks inputs \['x'\]"):
        calibrate(amod, [{"image": batches(1)[0]}])
    with pytest.raises(ValueError, match=r"calibration batch 2: input 'x' is float32 of shape \(1, 3, 9, 9\); "
                                         r"the model takes float32 of shape \(1, 3, 8, 8\)"):
        calibrate(amod, [batches(1)[0], np.zeros((1, 3, 9, 9), "float32")])
    with pytest.raises(ValueError, match="calibration batch 1: input 'x' is float64"):
        calibrate(amod, [batches(1)[0].astype("float64")])
    with pytest.raises(ValueError, match="the calibration dataset is empty"):
        calibrate(amod, [])
    bad = batches(1)[0].copy()
    bad[0, 0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="tensor 'conv2d_0.input' has 1 NaN values"):
        calibrate(amod, [bad])
    trimmed = calibrate(amod, [bad], QConfig(trim_infinity_before_statistic=True))
    assert trimmed["conv2d_0.input"].trimmed == 1
    # batch 1's observers run on worker threads while batch 2 is checked: their error still comes first
    with pytest.raises(ValueError, match="tensor 'conv2d_0.input' has 1 NaN values"):
        calibrate(amod, [bad, np.zeros((1, 3, 9, 9), "float32")])


def test_threaded_observers_see_every_batch_in_order(annotated):
    """Streamed on worker threads, the statistics are the serial ones (updates fed one by one, in order)."""
    amod, _ = annotated
    data = batches(7, seed=3)
    config = QConfig(calibration_strategy_for_activation="percentile")
    streamed = calibrate(amod, data, config)
    serial = calibrate(amod, data[:1], config)["conv2d_0.input"]
    for x in data[1:]:  # this tap is the model input itself: the later batches fed by hand, one by one
        serial.update(x)
    a, b = streamed["conv2d_0.input"].state_dict(), serial.state_dict()
    assert a["sum"] == b["sum"] and a["count"] == b["count"] and (a["hist"]["exponent"], a["hist"]["offset"]) == (
        b["hist"]["exponent"], b["hist"]["offset"])
    np.testing.assert_array_equal(a["hist"]["counts"], b["hist"]["counts"])
    np.testing.assert_array_equal(a["sample"]["values"], b["sample"]["values"])


def test_per_layer_overrides_reach_the_observers(annotated):
    amod, _ = annotated
    override = {"match": "name:matmul_1", "calibration_strategy_for_activation": "kl_divergence"}
    config = QConfig(layer_overrides=[override])
    layers = [LayerInfo(0, "conv2d_0", "relax.nn.conv2d", 0), LayerInfo(1, "matmul_1", "relax.matmul", 0)]
    obs = calibrate(amod, batches(2), config, layers=layers)
    assert type(obs["matmul_1.input"]).__name__ == "KLDivergenceObserver"
    assert type(obs["conv2d_0.input"]).__name__ == "PercentileObserver"


def test_chunked_calibration_gives_the_same_statistics(annotated):
    amod, _ = annotated
    data = batches(4)
    whole = calibrate(amod, data, QConfig())
    chunked = calibrate(amod, data, QConfig(calibrate_chunk_by=1))
    assert set(whole) == set(chunked)
    for name in whole:
        np.testing.assert_array_equal(whole[name].min_val, chunked[name].min_val)
        assert whole[name].compute_qparams() == chunked[name].compute_qparams()
    with pytest.raises(ValueError, match="pass a re-iterable dataset"):
        calibrate(amod, (b for b in data), QConfig(calibrate_chunk_by=1))
