"""The float route (``quantize``) on ONNX DepthToSpace / SpaceToDepth / Pad: value moves on the codes.

DepthToSpace and SpaceToDepth import as reshape -> transpose -> reshape, which were already
integer moves; a constant Pad imported as an opaque ``call_tir`` (``quantize`` failed on it: "no
definition of GlobalVar pad") and is ``relax.nn.pad`` since ``frontends/onnx_pad.py``, padding
with the zero point's code. The output is the input's codes moved, bit for bit.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_sima
from tvm_sima import math as sm

RNG = np.random.default_rng(19)


def _d2s(x, mode):
    n, c, h, w = x.shape
    if mode == "DCR":
        y = x.reshape(n, 2, 2, c // 4, h, w).transpose(0, 3, 4, 1, 5, 2)
    else:
        y = x.reshape(n, c // 4, 2, 2, h, w).transpose(0, 1, 4, 2, 5, 3)
    return y.reshape(n, c // 4, h * 2, w * 2)


def _s2d(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 3, 5, 1, 2, 4).reshape(n, c * 4, h // 2, w // 2)


CASES = {
    # case: (node, initializers, input shape, NumPy model of the move)
    "depth_to_space-DCR": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="DCR"), [],
                           (1, 8, 3, 4), lambda x: _d2s(x, "DCR")),
    "depth_to_space-CRD": (helper.make_node("DepthToSpace", ["x"], ["y"], blocksize=2, mode="CRD"), [],
                           (1, 8, 3, 4), lambda x: _d2s(x, "CRD")),
    "space_to_depth": (helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2), [], (1, 2, 6, 8), _s2d),
    "pad-channels": (helper.make_node("Pad", ["x", "pads"], ["y"], mode="constant"),
                     [numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 5, 0, 0], np.int64), "pads")], (1, 3, 4, 5),
                     lambda x: np.pad(x, [(0, 0), (0, 5), (0, 0), (0, 0)])),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_moves_are_integer_in_the_float_route(tmp_path, case):
    node, inits, shape, move = CASES[case]
    out_shape = list(move(np.zeros(shape)).shape)
    graph = helper.make_graph([node], case, [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(shape))],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)], inits)
    path = tmp_path / f"{case}.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path)
    mod, params = tvm_sima.load_model(path)
    calib = [RNG.uniform(-1, 3, size=shape).astype("float32") for _ in range(4)]
    qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path / "work")
    assert tvm_sima.quantize_report(qmod)["float_ops"] == []
    x_q = next(i.qparams for n, i in tvm_sima.read_quantize_info(qmod).items() if n.endswith(".input"))
    x = RNG.uniform(-1, 3, size=shape).astype("float32")
    got = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    codes = move(sm.quantize(x, x_q, "half_up").astype(np.int64) - x_q.zero_point) + x_q.zero_point  # pad: zp
    np.testing.assert_array_equal(got, sm.dequantize(codes, x_q).astype("float32"))
