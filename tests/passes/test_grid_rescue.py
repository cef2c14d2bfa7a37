"""quantize notices a tensor its int8 grid destroys and rescues it (issue 15: BlazeFace's logit head).

The model, drawn::

    x: float32[1, 1, 16, 16] in [-1, 1]
      -> conv2d 1x1, 10 output channels, + bias      (one fused sima.conv2d)
      -> output

Channels 0..7 are logits ``w_k x + b_k`` of a sigmoid face / non-face decision (sign of the
logit), all within (-4, +4); channels 8 and 9 are anchors that never fire, with biases -3000 and
-1000 (MediaPipe clips the logits to +-100 after the model). One int8 grid over [-3001, 4] has a
step of ~11.8 and zero point 127: every decision logit becomes the code of 0.
"""

from __future__ import annotations

import logging

import numpy as np
import tvm
from helpers.quantize import graph
from tvm import relax

import tvm_sima

WEIGHT = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 1.2, 1.8, 2.2, 1.0, 1.0], np.float32).reshape(10, 1, 1, 1)
BIAS = np.array([0.3, -0.2, 0.1, -0.4, 0.5, 0.0, -0.1, 0.2, -3000.0, -1000.0], np.float32)
SHAPE = (1, 1, 16, 16)


def _model() -> tvm.IRModule:
    def body(bb: relax.BlockBuilder, x: relax.Var) -> relax.Expr:
        y = bb.emit(relax.op.nn.conv2d(x, relax.const(WEIGHT)))
        return relax.op.add(y, relax.const(BIAS.reshape(1, 10, 1, 1)))

    return graph(SHAPE, body)


def _inputs(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.uniform(-1, 1, SHAPE).astype("float32") for _ in range(n)]


def _quantized_logits(tmp_path, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    mod = _model()
    with tvm_sima.qconfig(**options):
        qmod = tvm_sima.quantize(mod, None, _inputs(8, 0), work_dir=tmp_path)
    evals = _inputs(4, 1)
    ref = np.concatenate([x * WEIGHT[:8, 0, 0, 0].reshape(1, 8, 1, 1) + BIAS[:8].reshape(1, 8, 1, 1) for x in evals])
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    out = np.concatenate([vm["main"](tvm.runtime.tensor(x)).numpy()[:, :8] for x in evals])
    return ref, out, tvm_sima.quantize_report(qmod)


def test_without_the_rescue_the_logits_collapse_to_a_constant_and_a_warning_names_the_tensor(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="tvm_sima"):
        ref, out, report = _quantized_logits(tmp_path, rescue_collapsed_tensors=False)
    assert len(np.unique(out)) <= 2  # the failure mode: the layer outputs (nearly) a constant
    assert np.mean((out > 0) == (ref > 0)) < 0.7
    assert [g["tensor"] for g in report["collapsed"]] == ["conv2d_0.output"] and report["rescued"] == []
    assert report["collapsed"][0]["before"]["zero_point"] == 127
    assert any("conv2d_0.output" in r.getMessage() and "collapses" in r.getMessage() for r in caplog.records)


def test_the_default_rescues_the_layer_with_16_bit_codes_and_says_so(tmp_path):
    ref, out, report = _quantized_logits(tmp_path)
    assert len(np.unique(out)) > 100  # ~140 codes of 0.046 over the decision logits
    assert np.mean((out > 0) == (ref > 0)) > 0.99  # the sigmoid decisions agree with float
    assert np.abs(out - ref).max() < 0.2
    (rescued,) = report["rescued"]
    assert rescued["tensor"] == "conv2d_0.output" and rescued["choice"] == "16-bit over the calibrated range"
    assert rescued["before"]["bits"] == 8 and rescued["after"]["bits"] == 16
    assert "zero point 127 (the highest code)" in rescued["problem"] and report["collapsed"] == []
    assert report["float_ops"] == []  # the fused conv writes int16 itself


def test_the_simulated_graph_uses_the_rescued_grid_too(tmp_path):
    with tvm_sima.qconfig(do_simulation=True):
        smod = tvm_sima.quantize(_model(), None, _inputs(8, 0), work_dir=tmp_path)
    x = _inputs(1, 1)[0]
    ref = x * WEIGHT[:8, 0, 0, 0].reshape(1, 8, 1, 1) + BIAS[:8].reshape(1, 8, 1, 1)
    out = relax.VirtualMachine(tvm_sima.build(smod), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()[:, :8]
    assert len(np.unique(out)) > 100 and np.mean((out > 0) == (ref > 0)) > 0.99
