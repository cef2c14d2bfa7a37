"""ONNX QDQ models of one op (Resize, DepthToSpace, SpaceToDepth, Pad) -> load_model -> convert -> build.

Each model is ``x -> QuantizeLinear -> DequantizeLinear -> op -> QuantizeLinear -> DequantizeLinear``;
the oracle is onnxruntime running it node by node (``ORT_DISABLE_ALL``: dequantize -> float op ->
quantize, see ``test_onnx_qdq.py``). Value moves must be exact; a bilinear resize within 1 LSB
(10-bit weights instead of float32 ones).
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import held_out_images, quantize_with_onnxruntime
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_sima

RNG = np.random.default_rng(17)


def qdq_model(path, node, in_shape, out_shape, in_q, out_q, inits=()):
    """The one-op QDQ model of the module docstring (``node`` reads ``xd`` and writes ``yf``)."""
    consts = {"s_in": np.float32(in_q[0]), "z_in": np.int8(in_q[1]), "s_out": np.float32(out_q[0]),
              "z_out": np.int8(out_q[1])}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s_in", "z_in"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s_in", "z_in"], ["xd"]), node,
             helper.make_node("QuantizeLinear", ["yf", "s_out", "z_out"], ["yq"]),
             helper.make_node("DequantizeLinear", ["yq", "s_out", "z_out"], ["y"])]
    graph = helper.make_graph(nodes, "one_op", [helper.make_tensor_value_info("x", TensorProto.FLOAT, in_shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, out_shape)],
                              [numpy_helper.from_array(np.asarray(v), k) for k, v in consts.items()] + list(inits))
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=8), path)
    return path


def converted_and_reference(path, shape):
    """``(convert's output, onnxruntime's output, report)`` on one random input."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    x = RNG.uniform(-2.5, 2.5, size=shape).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    return vm["main"](tvm.runtime.tensor(x)).numpy(), session.run(None, {"x": x})[0], report


@pytest.mark.parametrize("out_q", [(0.02, 3), (0.03, -5)], ids=["same-qparams", "requantized"])
@pytest.mark.parametrize("mode", ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"])
def test_a_bilinear_resize_converts_within_one_lsb_of_onnxruntime(tmp_path, mode, out_q):
    sizes = numpy_helper.from_array(np.array([1, 3, 11, 7], np.int64), "sizes")
    node = helper.make_node("Resize", ["xd", "", "", "sizes"], ["yf"], mode="linear",
                            coordinate_transformation_mode=mode)
    path = qdq_model(tmp_path / "resize.onnx", node, [1, 3, 5, 4], [1, 3, 11, 7], (0.02, 3), out_q, [sizes])
    got, want, report = converted_and_reference(path, (1, 3, 5, 4))
    assert report.unconverted == [] and [c["op"] for c in report.converted] == ["integer bilinear resize"]
    assert np.abs(np.round((got - want) / out_q[0])).max() <= 1


def _pads(pads, value=None):
    inits = [numpy_helper.from_array(np.array(pads, np.int64), "pads")]
    if value is not None:
        inits.append(numpy_helper.from_array(np.array(value, np.float32), "value"))
    return helper.make_node("Pad", ["xd", "pads"] + (["value"] if value is not None else []), ["yf"],
                            mode="constant"), inits


MOVES = {
    # case: (node, initializers, input shape, output shape)
    "depth_to_space-DCR": (helper.make_node("DepthToSpace", ["xd"], ["yf"], blocksize=2, mode="DCR"), [],
                           [1, 8, 3, 4], [1, 2, 6, 8]),
    "depth_to_space-CRD": (helper.make_node("DepthToSpace", ["xd"], ["yf"], blocksize=2, mode="CRD"), [],
                           [1, 8, 3, 4], [1, 2, 6, 8]),
    "space_to_depth": (helper.make_node("SpaceToDepth", ["xd"], ["yf"], blocksize=2), [], [1, 2, 6, 8],
                       [1, 8, 3, 4]),
    "pad-channels": (*_pads([0, 0, 0, 0, 0, 5, 0, 0]), [1, 3, 4, 5], [1, 8, 4, 5]),
    "pad-before-and-after": (*_pads([0, 2, 1, 0, 0, 3, 0, 2]), [1, 3, 4, 5], [1, 8, 5, 7]),
    "pad-value": (*_pads([0, 0, 1, 1, 0, 0, 1, 1], 0.5), [1, 3, 4, 5], [1, 3, 6, 7]),
}


@pytest.mark.parametrize("case", sorted(MOVES))
def test_value_moves_convert_exactly(tmp_path, case):
    # DepthToSpace / SpaceToDepth import as reshape -> transpose -> reshape (run on the codes since
    # converter/layout_moves.py); Pad as a call_tir of TOPI's pad (relax.nn.pad since frontends/onnx_pad.py).
    node, inits, in_shape, out_shape = MOVES[case]
    path = qdq_model(tmp_path / f"{case}.onnx", node, in_shape, out_shape, (0.02, 3), (0.02, 3), inits)
    got, want, report = converted_and_reference(path, tuple(in_shape))
    assert report.unconverted == [] and len(report.converted) == 1
    np.testing.assert_array_equal(got, want)


def test_an_onnxruntime_quantized_model_with_resize_depth_to_space_and_pad_converts(tmp_path):
    #   image -> Conv 3x3 (8) -> Relu -> Resize linear 2x -> DepthToSpace 2 -> Pad 2 channels -> Conv 1x1 (4)
    # quantized by onnxruntime quantize_static (QDQ): three of its chains stayed float before.
    w1, w2 = RNG.standard_normal((8, 1, 3, 3)).astype("float32"), RNG.standard_normal((4, 4, 1, 1)).astype("float32")
    inits = [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2"),
             numpy_helper.from_array(np.array([1, 8, 16, 16], np.int64), "sizes"),
             numpy_helper.from_array(np.array([0, 0, 0, 0, 0, 2, 0, 0], np.int64), "pads")]
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("Resize", ["r", "", "", "sizes"], ["u"], mode="linear"),
             helper.make_node("DepthToSpace", ["u"], ["d"], blocksize=2),
             helper.make_node("Pad", ["d", "pads"], ["p"], mode="constant"),
             helper.make_node("Conv", ["p", "w2"], ["y"])]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 32, 32])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), tmp_path / "f.onnx")
    path = quantize_with_onnxruntime(tmp_path / "f.onnx", tmp_path / "q.onnx", per_channel=True)
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and len(report.converted) == 5
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    scale = float(numpy_helper.to_array(next(i for i in onnx.load(path).graph.initializer if i.name == "y_scale")))
    for x in held_out_images(4):
        got, want = vm["main"](tvm.runtime.tensor(x[None])).numpy(), session.run(None, {"image": x[None]})[0]
        # 1 LSB per op (the resize's 10-bit weights), which the last convolution may carry to 2
        assert np.abs(np.round((got - want) / scale)).max() <= 2
