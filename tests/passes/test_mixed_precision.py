"""Automatic mixed precision (tvm_sima.passes.precision): 16 bits where the output needs them, nowhere else."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from helpers.quantize import batches, graph, run, total_sqnr
from tvm import relax

import tvm_sima

SHAPE = (1, 4, 8, 8)


def _weights(shape, seed):
    return relax.const((np.random.default_rng(seed).standard_normal(shape) * 0.3).astype("float32"))


def _model():
    #   x -> conv 3x3 -> relu -> conv 3x3 -> y
    w0, w1 = _weights((8, 4, 3, 3), 0), _weights((8, 8, 3, 3), 1)
    return graph(SHAPE, lambda bb, x: relax.op.nn.conv2d(
        bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(x, w0, padding=1)))), w1, padding=1))


def _calibration():
    # One batch 40x the others: with extrema (and no grid rescue) every 8-bit grid is 40x too coarse for the
    # rest, which 16 bits absorb.
    data = batches(SHAPE, 24, 1)
    data[3] = data[3] * 40.0
    return data


SETTINGS = dict(calibration_strategy_for_activation="extrema", rescue_collapsed_tensors=False,
                mixed_precision_samples=6)


def _quantize(tmp_path, **extra):
    with tvm_sima.qconfig(**SETTINGS, **extra):
        return tvm_sima.quantize(_model(), None, _calibration(), work_dir=tmp_path)


def test_the_search_gives_16_bits_to_what_the_target_needs_and_the_program_meets_it(tmp_path):
    # 8 bits everywhere measure about 31.6 dB, each of the three activations at 16 bits adds 2 to 3.5 dB
    qmod = _quantize(tmp_path / "mp", mixed_precision_sqnr_db=36.0)
    found = tvm_sima.quantize_report(qmod)["mixed_precision"]
    assert found["measured"][0][0] == 0 and found["measured"][0][2] < 36.0  # all at 8 bits misses the target
    assert found["met"] and found["sqnr_db"] >= 36.0
    assert 1 <= len(found["wide_tensors"]) < 3  # not every activation: only what the target needs
    infos = tvm_sima.read_quantize_info(qmod)
    assert {name for name, qp in infos.items() if qp.dtype == "int16"} == set(found["wide_tensors"])
    # the program itself, on the batches the search measured: at least the target
    kept = _calibration()[:6]
    assert total_sqnr(run(_model(), kept), run(qmod, kept)) >= 36.0 - 1e-6
    # the choice is written down: layers.json replays it without a search, to the same program
    written = json.loads((tmp_path / "mp" / "layers.json").read_text())
    assert [row["tensor"] for row in written["tensors"]] == found["wide_tensors"]
    with tvm_sima.qconfig(**SETTINGS, layer_config=tmp_path / "mp" / "layers.json"):
        replay = tvm_sima.quantize(_model(), None, _calibration(), work_dir=tmp_path / "replay")
    assert tvm_sima.quantize_report(replay)["mixed_precision"] is None
    np.testing.assert_array_equal(np.concatenate(run(replay, kept)), np.concatenate(run(qmod, kept)))


def test_a_target_met_at_8_bits_costs_one_build_and_changes_nothing(tmp_path):
    qmod = _quantize(tmp_path / "easy", mixed_precision_sqnr_db=-50.0)
    found = tvm_sima.quantize_report(qmod)["mixed_precision"]
    assert found["wide_tensors"] == [] and found["builds"] == 1 and found["met"]
    assert all(qp.dtype == "int8" for qp in tvm_sima.read_quantize_info(qmod).values())


def test_an_unreachable_target_is_said_and_costs_only_what_helps(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tvm_sima.passes.precision"):
        qmod = _quantize(tmp_path / "hard", mixed_precision_sqnr_db=200.0)
    found = tvm_sima.quantize_report(qmod)["mixed_precision"]
    assert not found["met"] and "NOT met" in caplog.text
    whole = max(m[2] for m in found["measured"])
    assert found["sqnr_db"] >= whole - 0.25  # the knee, not every tensor for the last hundredth of a dB


def test_mixed_precision_needs_a_dataset():
    with tvm_sima.qconfig(mixed_precision_sqnr_db=30.0):
        with pytest.raises(ValueError, match="calibration batches"):
            from tvm_sima.passes.precision import search_precision

            search_precision(None, {}, tvm_sima.current_qconfig(), [], [])
    with pytest.raises(ValueError, match="mixed_precision_max_macs"):
        with tvm_sima.qconfig(mixed_precision_max_macs=1.5):
            pass


def test_weights_are_in_the_search_when_activations_alone_cannot_reach_the_target(tmp_path):
    # every activation at 16 bits stops near 40 dB here (the int8 weights); 45 dB needs 16-bit weights too
    qmod = _quantize(tmp_path / "w", mixed_precision_sqnr_db=45.0)
    found = tvm_sima.quantize_report(qmod)["mixed_precision"]
    assert found["met"] and any(t.endswith(".weight") for t in found["wide_tensors"])
    layers = {row["name"]: row for row in tvm_sima.quantize_report(qmod)["layers"]}
    for tensor in found["wide_tensors"]:
        if tensor.endswith(".weight"):
            assert layers[tensor.rsplit(".", 1)[0]]["weight_bits"] == 16
    assert found["mac_fraction"] <= 1.0  # a layer with two 16-bit operands counts once
    kept = _calibration()[:6]
    assert total_sqnr(run(_model(), kept), run(qmod, kept)) >= 45.0 - 1e-6
