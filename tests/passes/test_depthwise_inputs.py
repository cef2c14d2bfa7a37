"""With ``depthwise_input_bits=16`` the activations a depthwise conv reads get 16-bit codes; with ``"auto"`` (the
default) those whose depthwise conv loses ``depthwise_input_loss_db`` of their 8-bit SQNR; with 8 none.

    x: float32[1, 4, 16, 16] -> conv2d 1x1 (4 -> 8, + bias) -> relu6 -> depthwise 3x3 (a Laplacian, no pad) -> y

The relu6 tensor spans [0, 6] (channels 0-3), but channels 4-7 vary by only +-0.3 around 3, and the
Laplacian's taps cancel on smooth inputs (as trained depthwise kernels' edge-like taps largely do):
its output on those channels keeps little of their signal but all of the tensor's rounding noise. At
8 bits that output is mostly noise; at 16 bits the weights' and the output's own grids limit it.
"""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import tvm
from helpers.quantize import fused_calls, graph
from tvm import relax

import tvm_sima
from tvm_sima.codegen.byoc import offloaded_functions, partition_for_sima, refusal
from tvm_sima.config import LayerOverride
from tvm_sima.converter.rules import DEFAULT_LIMITS, HardwareLimits
from tvm_sima.passes.annotate import annotate
from tvm_sima.passes.canonicalize import canonicalize
from tvm_sima.passes.depthwise_bits import DepthwiseLoss, depthwise_inputs
from tvm_sima.quantize_info import read_quantize_info

SHAPE = (1, 4, 16, 16)
W1 = np.concatenate([3.0 * np.eye(4), 0.3 * np.eye(4)]).reshape(8, 4, 1, 1).astype(np.float32)
B1 = np.full(8, 3.0, np.float32)
LAPLACIAN = np.array([[0.0, -1.0, 0.0], [-1.0, 4.0, -1.0], [0.0, -1.0, 0.0]], np.float32)
W2 = np.tile(LAPLACIAN, (8, 1, 1, 1))  # OIHW, one input channel per group
DEPTHWISE_INPUT = "conv2d_1.input"


def _model(tail: bool = False) -> tvm.IRModule:
    """The module docstring's model; ``tail``: then a 1x1 conv (8 -> 4) of the depthwise conv's 8-bit output."""
    def body(bb: relax.BlockBuilder, x: relax.Var) -> relax.Expr:
        y = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, relax.const(W1))), relax.const(B1.reshape(1, 8, 1, 1))))
        y = bb.emit(relax.op.clip(y, 0.0, 6.0))
        y = bb.emit(relax.op.nn.conv2d(y, relax.const(W2), groups=8))
        return bb.emit(relax.op.nn.conv2d(y, relax.const(W1.transpose(1, 0, 2, 3).copy()))) if tail else y
    return graph(SHAPE, body)


def _smooth(seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    i, j = np.meshgrid(np.arange(16), np.arange(16), indexing="ij")
    phase = rng.uniform(0.0, 2 * np.pi, (4, 2))
    x = np.stack([np.sin(2 * np.pi * (i + j * 0.5) / 16 + phase[c, 0]) * np.cos(2 * np.pi * j / 24 + phase[c, 1])
                  for c in range(4)])
    return x[None].astype(np.float32)


def _reference(x: np.ndarray) -> np.ndarray:
    y = np.clip(np.einsum("oi,bihw->bohw", W1[:, :, 0, 0], x) + B1.reshape(1, 8, 1, 1), 0.0, 6.0)
    return sum(LAPLACIAN[a, b] * y[:, :, a:a + 14, b:b + 14] for a in range(3) for b in range(3))


def _sqnr_db(qmod: tvm.IRModule, inputs: list[np.ndarray]) -> float:
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    signal = noise = 0.0
    for x in inputs:
        ref = _reference(x).astype(np.float64)[:, 4:]  # the quiet channels
        out = vm["main"](tvm.runtime.tensor(x)).numpy()[:, 4:]
        signal, noise = signal + float((ref ** 2).sum()), noise + float(((out - ref) ** 2).sum())
    return 10 * np.log10(signal / noise)


def _quantized(tmp_path, tail: bool = False, **settings) -> tvm.IRModule:
    with tvm_sima.qconfig(**settings):
        return tvm_sima.quantize(_model(tail), None, [_smooth(s) for s in range(8)], work_dir=tmp_path)


def test_the_depthwise_conv_input_is_found_by_its_groups():
    amod, _ = annotate(canonicalize(_model()), tvm_sima.current_qconfig())
    assert depthwise_inputs(amod) == [DEPTHWISE_INPUT]  # not the model input, which a 1x1 conv reads


def test_depthwise_inputs_get_16_bits_and_keep_the_signal_8_bits_lose(tmp_path):
    wide = _quantized(tmp_path / "16", depthwise_input_bits=16)
    narrow = _quantized(tmp_path / "8", depthwise_input_bits=8)
    assert read_quantize_info(wide)[DEPTHWISE_INPUT].dtype == "int16"
    assert read_quantize_info(narrow)[DEPTHWISE_INPUT].dtype == "int8"
    assert {read_quantize_info(q)["conv2d_0.input"].dtype for q in (wide, narrow)} == {"int8"}
    held_out = [_smooth(s) for s in range(100, 104)]
    low, high = _sqnr_db(narrow, held_out), _sqnr_db(wide, held_out)
    assert low < 10.0 and high > low + 10.0, (low, high)


def test_a_tensor_override_of_the_user_wins_and_the_setting_is_module_wide(tmp_path):
    back = _quantized(tmp_path, depthwise_input_bits=16,
                      layer_overrides=[{"match": f"tensor:{DEPTHWISE_INPUT}", "activation_bits": 8}])
    assert read_quantize_info(back)[DEPTHWISE_INPUT].dtype == "int8"
    with pytest.raises(ValueError, match="depthwise_input_bits"):
        LayerOverride("name:conv2d_1", {"depthwise_input_bits": 8})
    with pytest.raises(ValueError, match="depthwise_input_bits"):
        tvm_sima.qconfig(depthwise_input_bits=12).__enter__()


def _box_model() -> tvm.IRModule:
    """The same, but a 3x3 box filter (all taps 1/9: nothing cancels) as the depthwise kernel."""
    def body(bb: relax.BlockBuilder, x: relax.Var) -> relax.Expr:
        y = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, relax.const(W1))), relax.const(B1.reshape(1, 8, 1, 1))))
        y = bb.emit(relax.op.clip(y, 0.0, 6.0))
        return bb.emit(relax.op.nn.conv2d(y, relax.const(np.full((8, 1, 3, 3), 1 / 9, np.float32)), groups=8))
    return graph(SHAPE, body)


def test_auto_widens_the_input_whose_depthwise_conv_loses_its_signal_as_16_bits_do(tmp_path):
    auto, wide = _quantized(tmp_path / "auto"), _quantized(tmp_path / "16", depthwise_input_bits=16)
    assert read_quantize_info(auto)[DEPTHWISE_INPUT].dtype == "int16"
    assert read_quantize_info(auto) == read_quantize_info(wide)
    (loss,) = tvm_sima.quantize_report(auto)["depthwise_inputs"]
    assert loss["layer"] == "conv2d_1" and loss["tensors"] == [DEPTHWISE_INPUT] and loss["bits"] == 16
    assert loss["loss_db"] >= 10.0
    held_out = [_smooth(s) for s in range(100, 104)]
    assert _sqnr_db(auto, held_out) == _sqnr_db(wide, held_out)


def test_the_measured_loss_is_the_depthwise_convs_own_on_the_first_calibration_batches(tmp_path):
    narrow = _quantized(tmp_path / "8", depthwise_input_bits=8)
    auto = _quantized(tmp_path / "auto")
    qp = read_quantize_info(narrow)[DEPTHWISE_INPUT]
    scale, zp = float(np.ravel(qp.scale)[0]), int(np.ravel(qp.zero_point)[0])
    x = np.concatenate([np.clip(np.einsum("oi,bihw->bohw", W1[:, :, 0, 0], _smooth(s)) + B1.reshape(1, 8, 1, 1),
                                0.0, 6.0) for s in range(4)]).astype(np.float64)  # scale_search_samples batches
    noise = (np.clip(np.round(x / scale) + zp, -128, 127) - zp) * scale - x

    def laplacian(v: np.ndarray) -> np.ndarray:
        return sum(float(LAPLACIAN[a, b]) * v[:, :, a:a + 14, b:b + 14] for a in range(3) for b in range(3))
    in_db = 10 * np.log10((x ** 2).sum() / (noise ** 2).sum())
    out_db = 10 * np.log10((laplacian(x) ** 2).sum() / (laplacian(noise) ** 2).sum())
    (loss,) = tvm_sima.quantize_report(auto)["depthwise_inputs"]
    assert loss["input_sqnr_db"] == pytest.approx(in_db, abs=0.01)
    assert loss["output_sqnr_db"] == pytest.approx(out_db, abs=0.01)


def test_auto_keeps_8_bits_where_the_taps_do_not_cancel_or_the_threshold_is_not_reached(tmp_path):
    with tvm_sima.qconfig():
        box = tvm_sima.quantize(_box_model(), None, [_smooth(s) for s in range(8)], work_dir=tmp_path / "box")
    (loss,) = tvm_sima.quantize_report(box)["depthwise_inputs"]
    assert loss["bits"] == 8 and loss["loss_db"] < 0.0  # averaging keeps the signal and cancels noise
    assert read_quantize_info(box)[DEPTHWISE_INPUT].dtype == "int8"
    strict = _quantized(tmp_path / "strict", depthwise_input_loss_db=60.0)
    assert read_quantize_info(strict)[DEPTHWISE_INPUT].dtype == "int8"
    assert tvm_sima.quantize_report(strict)["depthwise_inputs"][0]["bits"] == 8


def test_auto_with_statistics_alone_keeps_8_bits_and_says_why(tmp_path, caplog):
    _quantized(tmp_path / "a", depthwise_input_bits=8)
    with caplog.at_level("WARNING", logger="tvm_sima"):
        again = tvm_sima.quantize(_model(), None, statistics=tmp_path / "a" / "statistics.npz", work_dir=tmp_path / "b")
    assert read_quantize_info(again)[DEPTHWISE_INPUT].dtype == "int8"
    assert "depthwise_input_bits='auto' measures on calibration batches" in caplog.text
    with pytest.raises(ValueError, match="depthwise_input_loss_db"):
        tvm_sima.qconfig(depthwise_input_loss_db=-1.0).__enter__()


def test_a_measurement_without_output_noise_is_strict_json():
    loss = DepthwiseLoss("conv2d_1", (DEPTHWISE_INPUT,), 40.0, float("inf"), False)
    row = loss.to_dict()
    assert row["input_sqnr_db"] == 40.0 and row["output_sqnr_db"] is None and row["loss_db"] is None
    json.dumps(row, allow_nan=False)  # raises on NaN / Infinity


def _reshaped_model() -> tvm.IRModule:
    """The relu6 tensor reaches the depthwise conv through reshape, max pool, reshape: ops that move values and
    keep their operand's grid (FaceMesh: PReLU -> RESHAPE -> DEPTHWISE_CONV_2D)."""
    def body(bb: relax.BlockBuilder, x: relax.Var) -> relax.Expr:
        y = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, relax.const(W1))), relax.const(B1.reshape(1, 8, 1, 1))))
        y = bb.emit(relax.op.reshape(bb.emit(relax.op.clip(y, 0.0, 6.0)), (1, 8, 256, 1)))
        y = bb.emit(relax.op.reshape(bb.emit(relax.op.nn.max_pool2d(y)), (1, 8, 16, 16)))  # a 1x1 max pool
        return bb.emit(relax.op.nn.conv2d(y, relax.const(W2), groups=8))
    return graph(SHAPE, body)


def test_the_tensors_a_depthwise_input_keeps_the_grid_of_are_widened_too(tmp_path):
    amod, _ = annotate(canonicalize(_reshaped_model()), tvm_sima.current_qconfig())
    found = depthwise_inputs(amod)
    # back to the conv writing the codes the moves pass on; not the model input
    assert found == [DEPTHWISE_INPUT, "max_pool2d@0.output", "reshape@0.output", "conv2d_0.output"]
    with tvm_sima.qconfig(depthwise_input_bits=16):
        qmod = tvm_sima.quantize(_reshaped_model(), None, [_smooth(s) for s in range(8)], work_dir=tmp_path)
    info = read_quantize_info(qmod)
    assert [info[name].dtype for name in found] == ["int16"] * 4
    assert info["conv2d_0.input"].dtype == "int8"


def test_a_runs_qconfig_json_given_back_adds_the_overrides_once(tmp_path):
    first = _quantized(tmp_path / "a", depthwise_input_bits=16)
    saved = json.loads((tmp_path / "a" / "qconfig.json").read_text())
    assert [o["match"] for o in saved["layer_overrides"]] == [f"tensor:{DEPTHWISE_INPUT}", "name:conv2d_1"]
    again = _quantized(tmp_path / "b", **saved)
    assert json.loads((tmp_path / "b" / "qconfig.json").read_text()) == saved
    assert read_quantize_info(again) == read_quantize_info(first)


def _offloaded_convs(qmod: tvm.IRModule, limits: HardwareLimits = DEFAULT_LIMITS) -> int:
    regions = offloaded_functions(partition_for_sima(qmod, limits))
    return sum(len(re.findall(r'"Composite": "sima\.conv2d', str(f))) for f in regions.values())


@pytest.mark.parametrize("isa", ["generic", "avx2", "avx512"])
def test_the_npu_16_bit_mode_runs_the_16_bit_layers_bit_exactly_with_tir(tmp_path, monkeypatch, isa):
    """The default limits offload all three convs (an 8-bit input with a 16-bit output, the 16-bit depthwise
    input with its 48-bit bias, the int8 tail); every kernel path gives the TIR program's integers."""
    qmod = _quantized(tmp_path, tail=True, depthwise_input_bits=16)
    assert _offloaded_convs(qmod) == 3
    monkeypatch.setenv("TVM_SIMA_KERNEL_ISA", isa)  # a lower one where the CPU lacks it: still a real path
    x = tvm.runtime.tensor(_smooth(200))
    outputs = [relax.VirtualMachine(tvm_sima.build(qmod, offload=offload), tvm.cpu())["main"](x).numpy()
               for offload in (True, False)]
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_an_int8_only_device_keeps_the_16_bit_layers_on_the_host(tmp_path):
    qmod = _quantized(tmp_path, tail=True, depthwise_input_bits=16)
    assert _offloaded_convs(qmod, HardwareLimits(int16_activations=False)) == 1  # the int8 tail conv only
    assert [refusal(c) for c in fused_calls(qmod)] == [None, None, None]
    strict = [refusal(c, HardwareLimits(int16_activations=False)) for c in fused_calls(qmod)]
    assert all("'int8-only'" in r for r in strict[:2]) and strict[2] is None, strict
