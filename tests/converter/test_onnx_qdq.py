"""Quantized ONNX (onnxruntime ``quantize_static``, QDQ and QOperator) -> load_model -> convert -> build.

What is compared, and why it is exact on every CPU:

* QDQ models run in onnxruntime with every graph optimization off (``ORT_DISABLE_ALL``, see
  :func:`reference_session`): DequantizeLinear -> the float op -> QuantizeLinear, node by node —
  the model's own meaning. With optimizations on, onnxruntime fuses the QDQ chains into its int8
  kernels, which on CPUs without AVX-512 VNNI multiply with ``vpmaddubsw``: pairs of u8 x s8
  products saturate in int16, so their results depend on the CPU (14-25 LSB off on these CNNs on
  an AVX2-only machine). Those kernels are not an oracle; the unfused graph is.
* The QOperator model (QLinearConv, QGemm, ... have no unfused form) is quantized with
  ``reduce_range=True``: weights in [-64, 64], so a pair of products is at most
  2 * 255 * 64 = 32640 < 2**15 and the int16 pair sums cannot saturate; onnxruntime's int8
  kernels then accumulate exactly whatever instructions the CPU has.

onnxruntime requantizes in float32 and rounds half to even, tvm-sima's tflite mode in fixed point
(LiteRT), so results may differ by rounding: each op is within 1 LSB; whole graphs are within
1 LSB when no op amplifies an upstream 1-LSB difference (a multiply of two activations does:
2 LSB, measured). The measured numbers are printed with ``pytest -s``.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import digits_branches, digits_cnn, held_out_images, output_scale, quantize_with_onnxruntime
from helpers.relax import float_bindings, op_counts
from onnx import numpy_helper
from tvm import relax

import tvm_sima


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("onnx_qdq")
    out = {"cnn": digits_cnn(root / "cnn.onnx"), "branches": digits_branches(root / "branches.onnx")}
    out["cnn_per_tensor"] = quantize_with_onnxruntime(out["cnn"], root / "cnn_pt.onnx", per_channel=False)
    out["cnn_per_channel"] = quantize_with_onnxruntime(out["cnn"], root / "cnn_pc.onnx", per_channel=True)
    out["branches_qdq"] = quantize_with_onnxruntime(out["branches"], root / "br.onnx", per_channel=True)
    # 7-bit weights: onnxruntime's QLinear kernels cannot saturate (module docstring)
    out["branches_qop"] = quantize_with_onnxruntime(out["branches"], root / "br_qop.onnx", per_channel=True,
                                                    operators=True, reduce_range=True)
    return out


def run_tvm(mod, inputs):
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    return np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs])


def reference_session(path) -> ort.InferenceSession:
    """onnxruntime running the QDQ graph node by node (no int8 kernel fusion): exact on every CPU."""
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def run_ort(path, inputs, name="image", session=None):
    session = session or reference_session(path)
    return np.stack([session.run(None, {name: x})[0] for x in inputs])


def lsb(a, b, scale=1.0):
    return np.round(np.abs(a.astype(np.float64) - b.astype(np.float64)) / scale).astype(np.int64)


@pytest.mark.parametrize("name", ["cnn_per_tensor", "cnn_per_channel"])
def test_onnxruntime_quantized_cnn_converts_and_stays_within_one_lsb(models, name):
    # Conv (+ folded Relu) x3 incl. a depthwise with multiplier 2, Transpose, Flatten, Gemm: NCHW,
    # bias as a reshaped dequantized int32, per-tensor or per-channel weights.
    path = models[name]
    mod, params = tvm_sima.load_model(path)
    assert params == {}
    ops = op_counts(mod)
    assert ops["sima.quantize"] > 0 and ops["relax.quantize"] == ops["relax.dequantize"] == 0
    inputs = list(held_out_images(32)[:, None]) + [np.random.default_rng(3).random((1, 1, 8, 8), np.float32)
                                                 for _ in range(8)]
    reference = run_ort(path, inputs)
    scale = output_scale(path)
    diff = lsb(run_tvm(mod, inputs), reference, scale)
    print(f"{name}: QDQ graph vs onnxruntime: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
    assert diff.max() <= 1
    for mode in ("tflite", "shift"):
        converted, report = tvm_sima.convert(mod, mode)
        assert report.unconverted == []
        kinds = collections.Counter(c["op"] for c in report.converted)
        assert kinds["sima.conv2d"] == 3 and kinds["sima.dense"] == 1
        # Only the float interface is left: the input quantize and the output dequantize.
        left = op_counts(converted)
        assert left["sima.quantize"] == left["sima.dequantize"] == 1
        assert len(float_bindings(converted)) == 1  # the dequantized output
        diff = lsb(run_tvm(converted, inputs), reference, scale)
        print(f"{name}: convert(mode={mode}) vs onnxruntime: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
        assert diff.max() <= (1 if mode == "tflite" else 3)


def q_to_q_segments(path):
    """``(op type, node name, inputs, output)`` of every DequantizeLinear* -> op -> QuantizeLinear segment."""
    model = onnx.load(str(path))
    producer = {o: n for n in model.graph.node for o in n.output}
    initializers = {i.name for i in model.graph.initializer}
    segments = []
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") or node.output[0] not in \
                {n.input[0] for n in model.graph.node if n.op_type == "QuantizeLinear"}:
            continue
        quantize = next(n for n in model.graph.node if n.op_type == "QuantizeLinear" and n.input[0] == node.output[0])
        inputs = [producer[i].input[0] for i in node.input if i in producer and i not in initializers
                  and producer[i].op_type == "DequantizeLinear" and producer[i].input[0] not in initializers]
        segments.append((node.op_type, node.name, inputs, quantize.output[0]))
    return segments


def test_each_onnxruntime_op_is_within_one_lsb_on_random_int8_inputs(models, tmp_path):
    # Every dequantize -> op -> quantize segment of the branchy model is cut out as its own model
    # with int8 inputs and fed random int8 tensors; onnxruntime runs it unfused (float op between
    # DequantizeLinear and QuantizeLinear).
    path = models["branches_qdq"]
    rng = np.random.default_rng(11)
    seen = set()
    for op_type, node, inputs, output in q_to_q_segments(path):
        cut = tmp_path / f"{node}.onnx"
        onnx.utils.extract_model(str(path), str(cut), inputs, [output])
        session = reference_session(cut)
        feeds = [{i.name: rng.integers(-128, 128, [d.dim_value for d in i.type.tensor_type.shape.dim]).astype(
            np.int8) for i in onnx.load(str(cut)).graph.input} for _ in range(16)]
        reference = np.stack([session.run(None, f)[0] for f in feeds]).astype(np.int64)
        mod, _ = tvm_sima.load_model(cut)
        converted, report = tvm_sima.convert(mod, "tflite")
        assert report.unconverted == [] and len(report.converted) == 1, (node, report.summary())
        vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
        got = np.stack([vm["main"](*[tvm.runtime.tensor(v) for v in f.values()]).numpy() for f in feeds])
        diff = np.abs(got.astype(np.int64) - reference)
        print(f"{op_type} '{node}' ({report.converted[0]['op']}): {np.mean(diff == 0):.4f} exact, "
              f"max {diff.max()} LSB")
        assert diff.max() <= 1, node
        seen.add(op_type)
    assert seen == {"Conv", "MaxPool", "AveragePool", "Concat", "Add", "Sigmoid", "Mul", "GlobalAveragePool",
                    "Reshape", "Gemm"}


def test_onnxruntime_branchy_model_end_to_end(models):
    path = models["branches_qdq"]
    mod, _ = tvm_sima.load_model(path)
    inputs = list(held_out_images(32)[:, None])
    reference, scale = run_ort(path, inputs), output_scale(path)
    for mode in ("tflite", "shift"):
        converted, report = tvm_sima.convert(mod, mode)
        assert report.unconverted == []
        diff = lsb(run_tvm(converted, inputs), reference, scale)
        print(f"branches: convert(mode={mode}) vs onnxruntime: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
        # The Mul of two activations turns the avg-pool branch's 1-LSB rounding differences into 2.
        assert diff.max() <= (2 if mode == "tflite" else 6)


def test_the_references_cannot_depend_on_the_cpu(models, tmp_path):
    # The premises of the module docstring, checked: the reference session keeps the QDQ graph
    # exactly as written (no node fused into an int8 kernel) ...
    for name in ("cnn_per_tensor", "branches_qdq"):
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
        options.optimized_model_filepath = str(tmp_path / f"{name}.run.onnx")
        ort.InferenceSession(str(models[name]), options, providers=["CPUExecutionProvider"])
        ran = [n.op_type for n in onnx.load(options.optimized_model_filepath).graph.node]
        written = collections.Counter(n.op_type for n in onnx.load(str(models[name])).graph.node)
        # (onnxruntime gives a DequantizeLinear read by two nodes a copy per reader; nothing else changes)
        assert set(ran) == set(written) and collections.Counter(ran)["QuantizeLinear"] == written["QuantizeLinear"]
        assert not any(op.startswith(("QLinear", "QGemm")) for op in ran)
    # ... and the QOperator model's int8 weights are 7-bit, so u8 x s8 pair sums stay below 2**15.
    qop = onnx.load(str(models["branches_qop"]))
    inits = {i.name: numpy_helper.to_array(i) for i in qop.graph.initializer}
    weights = [inits[n.input[3]] for n in qop.graph.node if n.op_type == "QLinearConv"] + \
              [inits[n.input[3]] for n in qop.graph.node if n.op_type == "QGemm"]
    assert len(weights) == 3 and all(w.dtype == np.int8 for w in weights)
    assert max(int(np.abs(w.astype(np.int64)).max()) for w in weights) * 255 * 2 < 2**15


def test_qoperator_model_is_rewritten_to_qdq_and_converts(models):
    path = models["branches_qop"]
    qop = onnx.load(str(path))
    assert {"QLinearConv", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool",
            "QLinearConcat", "QGemm"} <= {n.op_type for n in qop.graph.node}
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == []
    kinds = collections.Counter(c["op"] for c in report.converted)
    assert kinds["sima.conv2d"] == 2 and kinds["sima.dense"] == 1 and kinds["integer add"] == 1
    assert kinds["integer multiply"] == kinds["integer avg_pool2d"] == kinds["integer mean"] == 1
    inputs = list(held_out_images(32)[:, None])
    # The QLinear ops have no unfused form: onnxruntime's int8 kernels, exact with 7-bit weights.
    reference = run_ort(path, inputs, session=ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]))
    diff = lsb(run_tvm(converted, inputs), reference, output_scale(path))
    print(f"branches QOperator: convert vs onnxruntime: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
    assert diff.max() <= 2


def test_unsupported_quantized_onnx_ops_are_listed(tmp_path):
    from onnx import TensorProto, helper

    nodes = [helper.make_node("ConvInteger", ["x", "w"], ["c"], name="conv_int"),
             helper.make_node("MatMulInteger", ["x2", "w2"], ["m"], name="mm_int")]
    graph = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4]),
                     helper.make_tensor_value_info("x2", TensorProto.UINT8, [2, 3])],
        [helper.make_tensor_value_info("c", TensorProto.INT32, None),
         helper.make_tensor_value_info("m", TensorProto.INT32, None)],
        [numpy_helper.from_array(np.ones((1, 1, 3, 3), np.uint8), "w"),
         numpy_helper.from_array(np.ones((3, 2), np.uint8), "w2")])
    path = tmp_path / "dyn.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    with pytest.raises(ValueError, match=r"2 unsupported op\(s\): ConvInteger \(node 'conv_int'\); "
                                         r"MatMulInteger \(node 'mm_int'\)"):
        tvm_sima.load_model(path)


def test_quantize_linear_divides_in_float32_as_onnxruntime(tmp_path):
    """PP-OCR's input normalisation on the grid 2 / 255 (what MinMax calibrates for [-1, 1]): every pixel's
    exact quotient is a tie, and only a float32 division rounds them as onnxruntime does."""
    from onnx import TensorProto, helper

    scale = np.float32(2 / 255)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="x_QuantizeLinear"),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="x_DequantizeLinear")]
    graph = helper.make_graph(nodes, "pixels", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 256])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 256])],
                              [numpy_helper.from_array(np.array(scale), "s"), numpy_helper.from_array(np.int8(0), "z")])
    path = tmp_path / "pixels.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), str(path))
    k = np.arange(256, dtype=np.float32)
    x = ((k / np.float32(255) - np.float32(0.5)) / np.float32(0.5))[None]
    want = run_ort(path, [x], name="x")
    mod, _ = tvm_sima.load_model(path)
    np.testing.assert_array_equal(run_tvm(mod, [x]), want)
    exact = np.clip(np.rint(x.astype(np.float64) / np.float64(scale)), -128, 127) * np.float64(scale)
    assert (exact.astype(np.float32) != want[0]).sum() > 10  # a float64 division would not match
