"""Forms the onnxruntime-quantized zoo models (EfficientNet-Lite0, PP-OCR det / cls) write, each on a small fixture.

Each fixture is the digits CNN's first layer followed by the form (``helpers.onnx_models.digits_then``),
quantized by onnxruntime ``quantize_static`` (QDQ, per-channel int8 weights, int8 activations), then
``load_model`` -> ``convert`` -> build; the oracle is onnxruntime running the QDQ graph unfused
(``ORT_DISABLE_ALL``), compared in codes of the output's scale.
"""

from __future__ import annotations

import collections

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import digits_then, held_out_images, output_scale, quantize_with_onnxruntime
from onnx import helper, numpy_helper
from tvm import relax

import tvm_sima
from tvm_sima.graph import GraphIndex, op_name


def _ort(path, inputs):
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return np.stack([session.run(None, {"image": x})[0] for x in inputs])


def _converted_lsb(path, offload=True):
    """``(report, max |tvm - onnxruntime| in output codes)`` over 16 held-out digits."""
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    vm = relax.VirtualMachine(tvm_sima.build(converted, offload=offload), tvm.cpu())
    inputs = list(held_out_images(16)[:, None])
    got = np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs])
    diff = np.abs(got.astype(np.float64) - _ort(path, inputs).astype(np.float64)) / output_scale(path)
    return report, int(np.round(diff.max()))


@pytest.mark.parametrize("offload", [True, False])
def test_gemm_with_transposed_per_channel_weight_is_a_dense(tmp_path, offload):
    # EfficientNet-Lite0's classifier: Gemm(transB=1), per-channel weight scales along B's axis 0.
    # TVM imports it as matmul(x, permute_dims(dequantize(W))): the converter reads the codes
    # through the transpose (the scale axis follows it).
    #   image -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm(transB=1) -> logits
    rng = np.random.default_rng(5)
    nodes = [helper.make_node("GlobalAveragePool", ["r0"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc", transB=1)]
    inits = {"fc.w": (rng.standard_normal((10, 8)) * 0.5).astype(np.float32),
             "fc.b": (rng.standard_normal(10) * 0.1).astype(np.float32)}
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 10]), tmp_path / "q.onnx",
                                     per_channel=True)
    report, lsb = _converted_lsb(path, offload)
    assert report.unconverted == [], report.summary()
    assert collections.Counter(c["op"] for c in report.converted)["sima.dense"] == 1
    assert lsb <= 1


def test_a_matmul_of_three_dimensional_data_is_a_dense_on_the_flattened_rows(tmp_path):
    # PP-OCRv4 rec's head: MatMul of [1, T, C] activations by a constant [C, K] weight. sima.dense
    # takes 2-D data; the converter emitted it on the 3-D tensor ("data must have rank 2").
    #   image -> Conv -> Relu -> Reshape [1, 8, 64] -> Transpose [1, 64, 8] -> MatMul [8, 10] -> logits
    rng = np.random.default_rng(9)
    nodes = [helper.make_node("Reshape", ["r0", "rows"], ["rs"], name="rows"),
             helper.make_node("Transpose", ["rs"], ["t"], name="time_major", perm=[0, 2, 1]),
             helper.make_node("MatMul", ["t", "head.w"], ["logits"], name="head")]
    inits = {"rows": np.asarray([1, 8, 64], np.int64),
             "head.w": (rng.standard_normal((8, 10)) * 0.5).astype(np.float32)}
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 64, 10]), tmp_path / "q.onnx",
                                     per_channel=True)
    report, lsb = _converted_lsb(path, offload=False)
    assert collections.Counter(c["op"] for c in report.converted)["sima.dense"] == 1, report.summary()
    assert lsb <= 1


def test_a_shape_computed_reshape_of_a_quantized_model_is_folded(tmp_path):
    # PP-OCRv4 rec quantized by onnxruntime: its reshapes take their shape from Shape -> Slice ->
    # Concat, which TVM's importer cannot read as a shape; the folding for fixed input shapes ran
    # for float models only ("Reshape requires the input new shape to be Shape").
    #   image -> Conv -> Relu -> r0; Shape(r0) -> Cast -> [:1] -> Cast ++ [-1] -> Reshape(r0) [1, 512] -> MatMul
    rng = np.random.default_rng(4)
    nodes = [helper.make_node("Shape", ["r0"], ["s"], name="shape"),
             helper.make_node("Cast", ["s"], ["s32"], name="to_int32", to=onnx.TensorProto.INT32),
             helper.make_node("Slice", ["s32", "zero", "one"], ["batch"], name="batch"),
             helper.make_node("Cast", ["batch"], ["batch64"], name="to_int64", to=onnx.TensorProto.INT64),
             helper.make_node("Concat", ["batch64", "minus_one"], ["target"], name="target", axis=0),
             helper.make_node("Reshape", ["r0", "target"], ["flat"], name="flatten"),
             helper.make_node("MatMul", ["flat", "fc.w"], ["logits"], name="fc")]
    inits = {"zero": np.asarray([0], np.int32), "one": np.asarray([1], np.int32),
             "minus_one": np.asarray([-1], np.int64),
             "fc.w": (rng.standard_normal((512, 10)) * 0.1).astype(np.float32)}
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 10]), tmp_path / "q.onnx",
                                     per_channel=True)
    report, lsb = _converted_lsb(path, offload=False)
    assert collections.Counter(c["op"] for c in report.converted)["sima.dense"] == 1, report.summary()
    assert lsb <= 1


def _conv(name, x, y, channels_in, channels_out, rng, kernel=3):
    """A Conv node (no activation: its output is signed) and its weights."""
    w = (rng.standard_normal((channels_out, channels_in, kernel, kernel)) * 0.3).astype(np.float32)
    pads = [kernel // 2] * 4
    return helper.make_node("Conv", [x, f"{name}.w"], [y], name=name, pads=pads), {f"{name}.w": w}


@pytest.mark.parametrize("mode", ["tflite", "shift"])
def test_uint8_activations_with_zero_points_above_127_convert(tmp_path, mode):
    # onnxruntime with uint8 activations (EfficientNet-Lite0): a signed tensor gets a zero point
    # near 128. The fused constants kept the type's width but not its sign, so zero points > 127
    # were 'outside the range of int8' and the layers stayed float.
    #   image -> Conv -> Relu -> Conv (signed) -> AveragePool 2x2 -> Flatten -> Gemm -> logits
    rng = np.random.default_rng(2)
    conv, inits = _conv("conv_signed", "r0", "c1", 8, 4, rng)
    nodes = [conv, helper.make_node("AveragePool", ["c1"], ["ap"], name="avg", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Flatten", ["ap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc.w"], ["logits"], name="fc")]
    inits["fc.w"] = (rng.standard_normal((64, 10)) * 0.3).astype(np.float32)
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 10]), tmp_path / "q.onnx",
                                     per_channel=True, unsigned=True)
    mod, _ = tvm_sima.load_model(path)
    zero_points = [int(np.atleast_1d(qp.zero_point)[0]) for qp in _activation_qparams(mod)]
    assert max(zero_points) > 127
    converted, report = tvm_sima.convert(mod, mode)
    assert report.unconverted == [], report.summary()
    kinds = collections.Counter(c["op"] for c in report.converted)
    assert kinds["sima.conv2d"] == 2 and kinds["sima.dense"] == 1
    if mode == "tflite":
        assert _converted_lsb(path)[1] <= 1


def _activation_qparams(mod):
    from tvm_sima.ops import qparams_from_attrs

    return [qparams_from_attrs(v.attrs) for v in GraphIndex(mod["main"]).producer.values()
            if op_name(v) == "sima.quantize"]


def test_division_by_a_float_constant_is_a_table(tmp_path):
    # onnxruntime does not quantize Div: PP-OCR's hard-swish ends in DequantizeLinear -> Div(x, 6.0)
    # -> QuantizeLinear, the 6 a float constant. One table per distinct constant value, rounded as
    # the model's QuantizeLinear (half to even); a per-channel divisor is one table per channel.
    #   image -> Conv -> Relu -> Div(6) -> Conv -> Div(per-channel) -> Conv -> GlobalAveragePool -> Flatten -> Gemm
    rng = np.random.default_rng(4)
    conv1, inits = _conv("conv1", "d0", "c1", 8, 4, rng)
    conv2, more = _conv("conv2", "d1", "c2", 4, 4, rng, kernel=1)
    inits.update(more, six=np.asarray(6.0, np.float32), fc=(rng.standard_normal((4, 10))).astype(np.float32),
                 per_channel=np.asarray([0.5, 3.0, -2.0, 7.0], np.float32).reshape(1, 4, 1, 1))
    nodes = [helper.make_node("Div", ["r0", "six"], ["d0"], name="div_six"), conv1,
             helper.make_node("Div", ["c1", "per_channel"], ["d1"], name="div_channels"), conv2,
             helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc")]
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 10]), tmp_path / "q.onnx",
                                     per_channel=True)
    report, lsb = _converted_lsb(path)
    assert report.unconverted == [], report.summary()
    assert collections.Counter(c["op"] for c in report.converted)["lookup table (divide by a constant)"] == 2
    assert lsb <= 2  # three layers after the first Div, each within 1 LSB; each Div alone:
    for node in ("div_six", "div_channels"):
        assert _segment_lsb(path, node, tmp_path) == 0, node


def _segment_lsb(path, node_name, tmp_path):
    """max |tvm - onnxruntime| of the segment DQ -> ``node_name`` -> QuantizeLinear, fed every code."""
    model = onnx.load(str(path))
    node = next(n for n in model.graph.node if n.name == node_name)
    producer = {o: n for n in model.graph.node for o in n.output}
    source = producer[node.input[0]].input[0]  # the codes the DequantizeLinear reads
    output = next(n.output[0] for n in model.graph.node
                  if n.op_type == "QuantizeLinear" and n.input[0] == node.output[0])
    cut = tmp_path / f"{node_name}.onnx"
    onnx.utils.extract_model(str(path), str(cut), [source], [output])
    shape = [d.dim_value for d in onnx.load(str(cut)).graph.input[0].type.tensor_type.shape.dim]
    codes = np.resize(np.arange(-128, 128, dtype=np.int8), shape)  # every int8 code, in every channel
    codes = np.stack([codes, np.roll(codes, 97)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(cut), options, providers=["CPUExecutionProvider"])
    mod, _ = tvm_sima.load_model(cut)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and len(report.converted) == 1, report.summary()
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    return max(int(np.abs(vm["main"](tvm.runtime.tensor(c)).numpy().astype(np.int64) -
                          session.run(None, {source: c})[0].astype(np.int64)).max()) for c in codes)


def test_ops_left_float_are_reported_under_the_input_modules_names(tmp_path):
    # The rebuilt module renames a float var whose name an emitted integer op took (PP-OCR cls:
    # 'lv161' became 'lv1611'); the report then named a tensor the user's module does not have,
    # and lost its reason ('no integer form for this op' for a max_pool2d with a float input).
    #   image -> Conv -> Relu -> 3 x (Add(x, r0) -> Softmax) -> GlobalAveragePool -> Flatten -> Gemm
    nodes, x = [], "r0"
    for k in range(3):
        nodes += [helper.make_node("Add", [x, "r0"], [f"a{k}"], name=f"add{k}"),
                  helper.make_node("Softmax", [f"a{k}"], [f"s{k}"], name=f"softmax{k}", axis=1)]
        x = f"s{k}"
    nodes += [helper.make_node("GlobalAveragePool", [x], ["gap"], name="gap"),
              helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
              helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc")]
    fc = np.random.default_rng(1).standard_normal((8, 10)).astype(np.float32)
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, {"fc": fc}, [1, 10]),
                                     tmp_path / "q.onnx", per_channel=True)
    mod, _ = tvm_sima.load_model(path)
    ops = {var.name: op_name(value) for var, value in GraphIndex(mod["main"]).producer.items()}
    _, report = tvm_sima.convert(mod)
    assert [u["op"] for u in report.unconverted] == ["relax.nn.softmax"] * 3
    for left in report.unconverted:
        assert ops.get(left["tensor"]) == "relax.nn.softmax", left
        assert left["reason"] == "no integer softmax equal to LiteRT's yet"


def test_qoperator_softmax_is_rewritten_to_qdq(tmp_path):
    # onnxruntime's QOperator format writes PP-OCR cls's Softmax as com.microsoft QLinearSoftmax;
    # load_model refused it ('unsupported op'). It becomes DequantizeLinear -> Softmax -> QuantizeLinear
    # (the softmax then stays float in convert's tflite mode, reported).
    #   image -> Conv -> Relu -> GlobalAveragePool -> Flatten -> Gemm -> Softmax -> logits
    fc = (np.random.default_rng(3).standard_normal((8, 10)) * 2).astype(np.float32)
    nodes = [helper.make_node("GlobalAveragePool", ["r0"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc"], ["z"], name="fc"),
             helper.make_node("Softmax", ["z"], ["logits"], name="softmax", axis=-1)]
    # 7-bit weights: onnxruntime's QLinear kernels cannot saturate (tests/converter/test_onnx_qdq.py)
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, {"fc": fc}, [1, 10]),
                                     tmp_path / "q.onnx", per_channel=True, operators=True, reduce_range=True)
    assert "QLinearSoftmax" in {n.op_type for n in onnx.load(str(path)).graph.node}
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert [u["op"] for u in report.unconverted] == ["relax.nn.softmax"]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    inputs = list(held_out_images(16)[:, None])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])  # the QLinear kernels
    got = np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs])
    reference = np.stack([session.run(None, {"image": x})[0] for x in inputs])
    assert np.abs(got - reference).max() / output_scale(path) <= 1.01


def _quantize_slope(path, name):
    """The model at ``path`` with initializer ``name`` as int8 codes behind a DequantizeLinear (per-tensor)."""
    model = onnx.load(str(path))
    init = next(i for i in model.graph.initializer if i.name == name)
    value = numpy_helper.to_array(init)
    scale = np.float32(np.abs(value).max() / 127)
    codes = np.round(value / scale).astype(np.int8)
    model.graph.initializer.remove(init)
    model.graph.initializer.extend([numpy_helper.from_array(codes, f"{name}_q"),
                                    numpy_helper.from_array(np.asarray(scale, np.float32), f"{name}_scale"),
                                    numpy_helper.from_array(np.asarray(0, np.int8), f"{name}_zp")])
    model.graph.node.insert(0, helper.make_node("DequantizeLinear", [f"{name}_q", f"{name}_scale", f"{name}_zp"],
                                                [name], name=f"{name}_dq"))
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize("slope_shape", [(8, 1, 1), (1,)])
@pytest.mark.parametrize("quantized_slope", [False, True])
def test_prelu_is_a_table_per_slope(tmp_path, slope_shape, quantized_slope):
    # onnxruntime's quantize_static writes DequantizeLinear -> PRelu(x, float slope) -> QuantizeLinear;
    # other tools quantize the slope like a weight: prelu(dequantize(x), reshape(dequantize(int8 slope))),
    # for which the PReLU family said 'the slope is not a constant'. The converter gives it the
    # slopes as the model's DequantizeLinear computes them.
    #   image -> Conv -> Relu -> Conv (signed) -> PRelu -> Conv 1x1 -> GlobalAveragePool -> Flatten -> Gemm
    rng = np.random.default_rng(6)
    conv1, inits = _conv("conv1", "r0", "c1", 8, 8, rng)
    conv2, more = _conv("conv2", "p1", "c2", 8, 4, rng, kernel=1)
    inits.update(more, slope=rng.uniform(-0.5, 0.9, slope_shape).astype(np.float32),
                 fc=rng.standard_normal((4, 10)).astype(np.float32))
    nodes = [conv1, helper.make_node("PRelu", ["c1", "slope"], ["p1"], name="prelu"), conv2,
             helper.make_node("GlobalAveragePool", ["c2"], ["gap"], name="gap"),
             helper.make_node("Flatten", ["gap"], ["flat"], name="flatten"),
             helper.make_node("Gemm", ["flat", "fc"], ["logits"], name="fc")]
    path = quantize_with_onnxruntime(digits_then(tmp_path / "f.onnx", nodes, inits, [1, 10]), tmp_path / "q.onnx",
                                     per_channel=True)
    if quantized_slope:
        path = _quantize_slope(path, "slope")
    report, lsb = _converted_lsb(path)
    assert report.unconverted == [], report.summary()
    assert collections.Counter(c["op"] for c in report.converted)["lookup table (prelu)"] == 1
    assert lsb <= 2
    assert _segment_lsb(path, "prelu", tmp_path) <= 1
