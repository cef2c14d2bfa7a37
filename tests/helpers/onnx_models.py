"""Float ONNX models for the converter tests, and their onnxruntime ``quantize_static`` versions.

* ``digits_cnn``: the trained digits CNN of ``fixtures/digits_cnn_float.tflite`` rewritten as an
  NCHW ONNX graph (Conv 3x3 + Relu, depthwise Conv x2 + Relu, Conv 3x3 stride 2 + Relu, Transpose
  to NHWC, Flatten, Gemm) — same weights, same predictions;
* ``digits_branches``: the digits CNN's first layer followed by branches with the other ops
  (MaxPool, AveragePool, Concat, Add, Sigmoid, Mul, GlobalAveragePool, Reshape) and a Gemm; weights after
  the first layer are random (the tests compare runtimes, not accuracy);
* ``elementwise_model``: Conv -> HardSwish -> Conv -> HardSigmoid, Sigmoid, Max and Min of two tensors
  (random weights; the digits' input);
* ``onnx_model``: a small random float graph (Conv, Relu, Flatten, Gemm) for the loader and quantize tests;
* ``output_scale``: the scale of a quantized model's last DequantizeLinear.
"""

from __future__ import annotations

import pathlib

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"


def _digits_weights() -> dict[str, np.ndarray]:
    from tvm_sima.frontends.tflite_flatbuffer import read_tflite

    graph = read_tflite(FIXTURES / "digits_cnn_float.tflite")
    weights: dict[str, np.ndarray] = {}
    kinds = {"CONV_2D": "conv", "DEPTHWISE_CONV_2D": "dw", "FULLY_CONNECTED": "fc"}
    seen: dict[str, int] = {}
    for op in graph.ops:
        if op.name not in kinds:
            continue
        kind = kinds[op.name]
        name = f"{kind}{seen.get(kind, 0)}"
        seen[kind] = seen.get(kind, 0) + 1
        w, b = (graph.tensors[op.inputs[k]].data for k in (1, 2))
        assert w is not None and b is not None
        if kind == "conv":
            w = w.transpose(0, 3, 1, 2)  # OHWI -> OIHW
        elif kind == "dw":
            w = w.transpose(3, 0, 1, 2)  # 1,H,W,C*m -> C*m,1,H,W
        else:
            w = w.T  # (O, K) -> (K, O) for Gemm
        weights[f"{name}.w"], weights[f"{name}.b"] = np.ascontiguousarray(w, np.float32), b.astype(np.float32)
    return weights


def _save(path: pathlib.Path, nodes: list, inits: dict[str, np.ndarray], out_shape: list[int]) -> pathlib.Path:
    graph = helper.make_graph(
        nodes, "digits", [helper.make_tensor_value_info("image", TensorProto.FLOAT, [1, 1, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, out_shape)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def digits_cnn(path: pathlib.Path) -> pathlib.Path:
    w = _digits_weights()
    nodes = [
        helper.make_node("Conv", ["image", "conv0.w", "conv0.b"], ["c0"], name="conv_same", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("Conv", ["r0", "dw0.w", "dw0.b"], ["c1"], name="dwconv_mult2", pads=[1, 1, 1, 1], group=8),
        helper.make_node("Relu", ["c1"], ["r1"], name="relu1"),
        helper.make_node("Conv", ["r1", "conv1.w", "conv1.b"], ["c2"], name="conv_stride2_valid", strides=[2, 2]),
        helper.make_node("Relu", ["c2"], ["r2"], name="relu2"),
        helper.make_node("Transpose", ["r2"], ["nhwc"], name="to_nhwc", perm=[0, 2, 3, 1]),
        helper.make_node("Flatten", ["nhwc"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc0.w", "fc0.b"], ["logits"], name="fc"),
    ]
    return _save(path, nodes, w, [1, 10])


def digits_then(path: pathlib.Path, nodes: list, inits: dict[str, np.ndarray], out_shape: list[int]) -> pathlib.Path:
    """The digits CNN's first layer (``image`` -> Conv 3x3 -> Relu -> ``r0``, [1, 8, 8, 8]) followed by ``nodes``.

    ``nodes`` end in ``logits``; for fixtures that reproduce one form a zoo model writes.
    """
    w = _digits_weights()
    first = [helper.make_node("Conv", ["image", "conv0.w", "conv0.b"], ["c0"], name="conv_same", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c0"], ["r0"], name="relu0")]
    return _save(path, first + list(nodes), {"conv0.w": w["conv0.w"], "conv0.b": w["conv0.b"], **inits}, out_shape)


def digits_branches(path: pathlib.Path) -> pathlib.Path:
    w = _digits_weights()
    rng = np.random.default_rng(7)
    inits = {"conv0.w": w["conv0.w"], "conv0.b": w["conv0.b"],
             "conv_b.w": (rng.standard_normal((8, 8, 3, 3)) * 0.2).astype(np.float32),
             "conv_b.b": (rng.standard_normal(8) * 0.1).astype(np.float32),
             "fc.w": (rng.standard_normal((8, 10)) * 0.5).astype(np.float32),
             "fc.b": (rng.standard_normal(10) * 0.1).astype(np.float32),
             "flat_shape": np.asarray([1, -1], np.int64)}
    nodes = [
        helper.make_node("Conv", ["image", "conv0.w", "conv0.b"], ["c0"], name="conv_same", pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c0"], ["r0"], name="relu0"),
        helper.make_node("MaxPool", ["r0"], ["mp"], name="max_pool", kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("AveragePool", ["r0"], ["ap"], name="avg_pool", kernel_shape=[3, 3], strides=[2, 2],
                         pads=[0, 0, 1, 1]),
        helper.make_node("Concat", ["mp", "ap"], ["cat"], name="concat", axis=1),
        helper.make_node("Conv", ["cat", "conv_b.w", "conv_b.b"], ["cb"], name="conv_b", pads=[1, 1, 1, 1],
                         group=2),
        helper.make_node("Add", ["cb", "mp"], ["res"], name="residual_add"),
        helper.make_node("Sigmoid", ["ap"], ["gate"], name="gate_sigmoid"),
        helper.make_node("Mul", ["res", "gate"], ["gated"], name="gate_mul"),
        helper.make_node("GlobalAveragePool", ["gated"], ["gap"], name="gap"),
        helper.make_node("Reshape", ["gap", "flat_shape"], ["flat"], name="flatten"),
        helper.make_node("Gemm", ["flat", "fc.w", "fc.b"], ["logits"], name="fc"),
    ]
    return _save(path, nodes, inits, [1, 10])


def calibration_images(count: int = 64) -> np.ndarray:
    """Training digits (never the held-out ones) as NCHW float32 in [0, 1]."""
    split = np.load(FIXTURES / "digits_split.npz")
    return (split["calib"][:count].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)


def held_out_images(count: int = 32) -> np.ndarray:
    split = np.load(FIXTURES / "digits_split.npz")
    return (split["test"][:count].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)


def quantize_with_onnxruntime(float_path: pathlib.Path, out_path: pathlib.Path, per_channel: bool,
                              operators: bool = False, reduce_range: bool = False,
                              unsigned: bool = False) -> pathlib.Path:
    """onnxruntime ``quantize_static``: QDQ (or QOperator) format, int8 activations and weights, MinMax.

    ``reduce_range``: 7-bit weights ([-64, 64]), onnxruntime's advice for CPUs without VNNI;
    ``unsigned``: uint8 activations (onnxruntime's other choice).
    """
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": x[None]} for x in calibration_images()])

        def get_next(self):  # noqa: ANN201 - onnxruntime's interface
            return next(self.batches, None)

    quant_format = QuantFormat.QOperator if operators else QuantFormat.QDQ
    activations = QuantType.QUInt8 if unsigned else QuantType.QInt8
    quantize_static(str(float_path), str(out_path), Reader(), quant_format=quant_format,
                    activation_type=activations, weight_type=QuantType.QInt8, per_channel=per_channel,
                    reduce_range=reduce_range)
    return out_path


def elementwise_model(path: pathlib.Path) -> pathlib.Path:
    """image -> Conv 3x3 (c1) -> HardSwish (hs) -> Conv 1x1 -> HardSigmoid; Min(Max(that, Sigmoid(c1)), hs)."""
    rng = np.random.default_rng(5)
    inits = {"w1": rng.standard_normal((4, 1, 3, 3)).astype(np.float32),
             "w2": (rng.standard_normal((4, 4, 1, 1)) * 0.5).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["image", "w1"], ["c1"], pads=[1, 1, 1, 1], name="conv1"),
             helper.make_node("HardSwish", ["c1"], ["hs"], name="hard_swish"),
             helper.make_node("Conv", ["hs", "w2"], ["c2"], name="conv2"),
             helper.make_node("HardSigmoid", ["c2"], ["hsig"], alpha=0.3, beta=0.4, name="hard_sigmoid"),
             helper.make_node("Sigmoid", ["c1"], ["s1"], name="sigmoid"),
             helper.make_node("Max", ["hsig", "s1"], ["m"], name="max"),
             helper.make_node("Min", ["m", "hs"], ["logits"], name="min")]
    return _save(path, nodes, inits, [1, 4, 8, 8])


def onnx_model(path, batch=1, extra_nodes=()):
    """x[batch, 3, 8, 8] -> Conv 3x3 (4 ch) -> Relu -> Flatten -> Gemm (10)."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype("float32"), "w")
    fc = numpy_helper.from_array(rng.standard_normal((4 * 6 * 6, 10)).astype("float32"), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("Flatten", ["r"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["y"], name="fc"), *extra_nodes]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 10])], [w, fc])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def output_scale(path) -> float:
    model = onnx.load(str(path))
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    last = [n for n in model.graph.node if n.op_type == "DequantizeLinear"][-1]
    return float(inits[last.input[1]])
