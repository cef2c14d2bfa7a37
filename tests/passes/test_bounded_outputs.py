"""A model output read straight from a sigmoid / softmax / tanh gets the op's whole interval as its grid.

    x: float32[1, 4, 8, 8] -> conv2d 1x1 (4 -> 2 channels, + bias) -> sigmoid -> output
                                                                  -> sigmoid -> conv2d 1x1 -> output 2

Calibration inputs keep the first output's logits far below 0 (a presence score of at most ~0.004:
MediaPipe's hand flag on photos without hands); calibrated alone, that output's grid would end near
0.005, and an input whose score is 0.9 would read 0.005. The second sigmoid feeds a conv, not an
output: its grid stays the calibrated one.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import graph
from tvm import relax

import tvm_sima
from tvm_sima.graph import GraphIndex
from tvm_sima.passes.annotate import annotate
from tvm_sima.passes.canonicalize import canonicalize
from tvm_sima.passes.grids import output_bounds

SHAPE = (1, 4, 8, 8)
W1 = np.array([[3.5, -3.5, 0.5, 0.0], [3.5, -3.5, 0.0, 0.5]], np.float32).reshape(2, 4, 1, 1)
B1 = np.array([-6.0, -6.0], np.float32)
W2 = np.full((3, 2, 1, 1), 0.5, np.float32)


def _model(op=relax.op.sigmoid) -> tvm.IRModule:
    def body(bb: relax.BlockBuilder, x: relax.Var) -> relax.Expr:
        logits = bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, relax.const(W1))),
                                      relax.const(B1.reshape(1, 2, 1, 1))))
        score = bb.emit(op(logits))
        gate = bb.emit(relax.op.sigmoid(logits))
        return relax.Tuple([score, bb.emit(relax.op.nn.conv2d(gate, relax.const(W2)))])
    return graph(SHAPE, body)


def _calibration(n: int = 8) -> list[np.ndarray]:
    """Inputs in [-1, 1] whose channels 0 and 1 are equal: the logits stay in [-6.5, -5.5]."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        x = rng.uniform(-1.0, 1.0, SHAPE).astype(np.float32)
        x[:, 1] = x[:, 0]
        out.append(x)
    return out


def _outputs(mod: tvm.IRModule, x: np.ndarray) -> list[np.ndarray]:
    out = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())["main"](tvm.runtime.tensor(x))
    return [out[i].numpy() for i in range(len(out))]


def test_only_a_model_output_read_straight_from_a_bounded_op_is_listed():
    for op, interval, logits in ((relax.op.sigmoid, (0.0, 1.0), 6.23), (relax.op.tanh, (-1.0, 1.0), 3.11)):
        amod, _ = annotate(canonicalize(_model(op)), tvm_sima.current_qconfig())
        bounds = output_bounds(GraphIndex(amod["main"]))
        assert bounds.keys() == {f"{op.__name__}@0.output", "conv2d_0.output"}  # not the gate, conv2d_1.input
        assert (bounds[f"{op.__name__}@0.output"].lo, bounds[f"{op.__name__}@0.output"].hi) == interval
        assert bounds[f"{op.__name__}@0.output"].fixed and not bounds["conv2d_0.output"].fixed
        assert (bounds["conv2d_0.output"].lo, bounds["conv2d_0.output"].hi) == pytest.approx((-logits, logits),
                                                                                               abs=0.01)


@pytest.mark.parametrize("simulate", [False, True])
def test_a_score_calibrated_near_zero_still_reads_a_high_score(tmp_path, simulate):
    with tvm_sima.qconfig(do_simulation=simulate):
        qmod = tvm_sima.quantize(_model(), None, _calibration(), work_dir=tmp_path)
    high = np.zeros(SHAPE, np.float32)
    high[:, 0], high[:, 1] = 1.0, -1.0  # in the inputs' range, logits 1.0: a score of 0.73 calibration never saw
    score, _ = _outputs(qmod, high)
    assert np.abs(score - 1 / (1 + np.exp(-1.0))).max() < 3 / 255  # the logits grid: 0.05, sigmoid slope 0.2
    x = _calibration(1)[0]  # on calibration-like inputs the scores keep to one step of 1/255
    ref = 1 / (1 + np.exp(-(np.einsum("oi,bihw->bohw", W1[:, :, 0, 0], x) + B1.reshape(1, 2, 1, 1))))
    assert np.abs(_outputs(qmod, x)[0] - ref).max() <= 1 / 255


def test_the_sigmoid_inside_keeps_its_calibrated_grid(tmp_path):
    qmod = tvm_sima.quantize(_model(), None, _calibration(), work_dir=tmp_path)
    infos = tvm_sima.read_quantize_info(qmod)
    assert infos["conv2d_1.input"].scale[0] < 0.01 / 255  # the gate a conv reads: calibrated, [0, ~0.007]
    assert infos["sigmoid@0.output"].scale[0] == pytest.approx(1 / 255)  # the model output: [0, 1]


def test_a_floor_on_a_collapsing_logit_tensor_keeps_the_grid_check(tmp_path):
    # BlazeFace's logits (tests/passes/test_grid_rescue.py) before a sigmoid output: the floor [-6.2, 6.2] joins
    # the calibrated [-3001, 4], the middle half still gets under one bit, and the rescue still widens it.
    weight = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 1.2, 1.8, 2.2, 1.0, 1.0], np.float32).reshape(10, 1, 1, 1)
    bias = np.array([0.3, -0.2, 0.1, -0.4, 0.5, 0.0, -0.1, 0.2, -3000.0, -1000.0], np.float32).reshape(1, 10, 1, 1)
    mod = graph((1, 1, 16, 16), lambda bb, x: relax.op.sigmoid(
        bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, relax.const(weight))), relax.const(bias)))))
    rng = np.random.default_rng(0)
    qmod = tvm_sima.quantize(mod, None, [rng.uniform(-1, 1, (1, 1, 16, 16)).astype(np.float32) for _ in range(8)],
                             work_dir=tmp_path)
    (rescued,) = tvm_sima.quantize_report(qmod)["rescued"]
    assert rescued["tensor"] == "conv2d_0.output" and rescued["after"]["bits"] == 16
    assert rescued["after"]["scale"] * (2 ** 16 - 1) > 3000  # over the calibrated range joined with the floor
