"""Float convs become NHWC / HWIO before legalization; clips stay between them, results do not change."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import tvm
from helpers.relax import op_counts
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_sima
from tvm_sima.params import bind_params
from tvm_sima.passes.schedule_layout import float_conv_layout

RNG = np.random.default_rng(0)
INITS = {
    "w0": RNG.standard_normal((16, 8, 3, 3)).astype("float32"), "b0": RNG.standard_normal(16).astype("float32"),
    "w1": RNG.standard_normal((16, 1, 3, 3)).astype("float32"), "b1": RNG.standard_normal(16).astype("float32"),
    "w2": RNG.standard_normal((24, 16, 1, 1)).astype("float32"), "b2": RNG.standard_normal(24).astype("float32"),
    "lo": np.array(0.0, "float32"), "hi": np.array(6.0, "float32"),
}


def conv_clip_model(path):
    """image -> Conv 3x3 /2 -> Clip(0, 6) -> depthwise Conv 3x3 -> Clip(0, 6) -> Conv 1x1 -> out (NCHW)."""
    nodes = [
        helper.make_node("Conv", ["image", "w0", "b0"], ["c0"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("Clip", ["c0", "lo", "hi"], ["r0"]),
        helper.make_node("Conv", ["r0", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1], group=16),
        helper.make_node("Clip", ["c1", "lo", "hi"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2", "b2"], ["out"]),
    ]
    graph = helper.make_graph(nodes, "conv_clip", [helper.make_tensor_value_info("image", TensorProto.FLOAT,
                                                                                 [1, 8, 20, 24])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 24, 10, 12])],
                              [numpy_helper.from_array(v, k) for k, v in INITS.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_float_convs_become_nhwc_with_one_transpose_at_each_end(tmp_path):
    mod, params = tvm_sima.load_model(conv_clip_model(tmp_path / "m.onnx"))
    mod = float_conv_layout(bind_params(mod, params))
    convs = []
    relax.analysis.post_order_visit(mod["main"], lambda e: convs.append(e) if isinstance(e, relax.Call) and isinstance(
        e.op, tvm.ir.Op) and e.op.name == "relax.nn.conv2d" else None)
    assert len(convs) == 3
    assert all((str(c.attrs["data_layout"]), str(c.attrs["kernel_layout"])) == ("NHWC", "HWIO") for c in convs)
    counts = op_counts(relax.transform.FoldConstant()(mod))
    assert counts["relax.permute_dims"] == 2, counts  # the input's and the output's; none around the clips
    assert counts["relax.maximum"] == 2 and counts["relax.minimum"] == 2 and counts["relax.call_tir"] == 0, counts


def test_built_model_matches_onnxruntime(tmp_path):
    path = conv_clip_model(tmp_path / "m.onnx")
    mod, params = tvm_sima.load_model(path)
    x = np.random.default_rng(1).standard_normal((1, 8, 20, 24)).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_a_transposed_conv_after_nhwc_convs_keeps_nchw_and_builds(tmp_path):
    #   image -> Conv 3x3 -> Relu -> ConvTranspose 2x2 /2 (PP-OCR det's head): the transposed conv must stay
    #   in the one layout TOPI legalizes, or the build fails ("CodeGenVM cannot emit this Relax operator")
    rng = np.random.default_rng(2)
    inits = [numpy_helper.from_array(rng.standard_normal((6, 3, 3, 3)).astype("float32"), "w"),
             numpy_helper.from_array(rng.standard_normal((6, 4, 2, 2)).astype("float32"), "wt")]
    nodes = [helper.make_node("Conv", ["image", "w"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"]),
             helper.make_node("ConvTranspose", ["r", "wt"], ["out"], strides=[2, 2])]
    graph = helper.make_graph(nodes, "up", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 3, 8, 10])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, [1, 4, 16, 20])], inits)
    path = tmp_path / "up.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    mod, params = tvm_sima.load_model(path)
    x = rng.standard_normal((1, 3, 8, 10)).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x)).numpy()
    expected = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_integer_programs_are_left_alone():
    from helpers.relax import one_input_module

    import tvm_sima.ops as so

    w = np.ones((4, 3, 1, 1), "int8")
    mod = one_input_module((1, 3, 5, 5), "int8", lambda bb, v: so.conv2d(v, relax.const(w), None, shift=2))
    assert float_conv_layout(mod).same_as(mod)
