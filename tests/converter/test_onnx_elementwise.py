"""QDQ ONNX HardSwish / HardSigmoid / Max / Min: one table or the integer max / min, against onnxruntime.

onnxruntime runs the QDQ graphs unfused (``ORT_DISABLE_ALL``: dequantize -> float op -> quantize, on
any CPU). A chain of one input is one table built in float64 (onnxruntime's op computes in
float32), so it may differ by one code where the float32 result sits on a rounding boundary.
In ``mode="tflite"`` (LiteRT's kernels) HardSwish is LiteRT's fixed-point HARD_SWISH instead, within
one code of the exact function. Max / Min rescale their inputs to the output's grid first: one rounding each.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import elementwise_model, held_out_images, quantize_with_onnxruntime
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_sima

SHAPE = [1, 4, 8, 8]
X_Q, B_Q, Y_Q = (0.04, 3), (0.03, -10), (0.025, -100)


def _session(path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def _qdq_model(path, op: str, two: bool, **attrs) -> str:
    """``quantize(op(dequantize(x) [, dequantize(b)]))`` with int8 inputs and output."""
    inits = [numpy_helper.from_array(np.array(v, dtype), f"{name}{k}") for name, (s, z) in
             (("x", X_Q), ("b", B_Q), ("y", Y_Q)) for k, v, dtype in (("s", s, np.float32), ("z", z, np.int8))]
    inputs = ["x", "b"] if two else ["x"]
    nodes = [helper.make_node("DequantizeLinear", [i, f"{i}s", f"{i}z"], [f"{i}f"]) for i in inputs]
    nodes += [helper.make_node(op, [f"{i}f" for i in inputs], ["yf"], **attrs),
              helper.make_node("QuantizeLinear", ["yf", "ys", "yz"], ["y"])]
    graph = helper.make_graph(nodes, op, [helper.make_tensor_value_info(i, TensorProto.INT8, SHAPE) for i in inputs],
                              [helper.make_tensor_value_info("y", TensorProto.INT8, SHAPE)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return str(path)


OPS = {
    # node: (two inputs, attributes, the converted op's label starts with)
    "HardSwish": (False, {}, "lookup table (hard_swish, LiteRT's fixed point)"),  # mode="tflite"
    "HardSigmoid": (False, {"alpha": 0.3, "beta": 0.4}, "lookup table (chain"),
    "Max": (True, {}, "integer maximum"),
    "Min": (True, {}, "integer minimum"),
}


@pytest.mark.parametrize("op", sorted(OPS))
def test_qdq_op_converts_within_one_lsb_of_onnxruntime(op, tmp_path):
    two, attrs, label = OPS[op]
    path = _qdq_model(tmp_path / f"{op}.onnx", op, two, **attrs)
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and len(report.converted) == 1, report.summary()
    assert report.converted[0]["op"].startswith(label)
    rng = np.random.default_rng(3)
    feeds = [{name: rng.integers(-128, 128, SHAPE).astype(np.int8) for name in (["x", "b"] if two else ["x"])}
             for _ in range(4)]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    session = _session(path)
    for feed in feeds:
        ours = vm["main"](*[tvm.runtime.tensor(v) for v in feed.values()]).numpy().astype(np.int64)
        assert np.abs(ours - session.run(None, feed)[0].astype(np.int64)).max() <= 1


def test_onnxruntime_quantized_hard_swish_is_one_table(tmp_path):
    # onnxruntime's quantize_static puts HardSwish between DequantizeLinear and QuantizeLinear
    # (HardSigmoid, Max and Min it leaves float: they stay float here too, listed with the reason).
    path = quantize_with_onnxruntime(elementwise_model(tmp_path / "ew.onnx"), tmp_path / "ew_qdq.onnx",
                                     per_channel=True)
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert sum(c["op"].startswith("lookup table (hard_swish") for c in report.converted) == 1, report.summary()
    left = sorted(u["op"] for u in report.unconverted)  # HardSigmoid's three ops, Max, Min (no quantize after)
    assert left == ["relax.add", "relax.clip", "relax.maximum", "relax.minimum", "relax.multiply"], left
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    session = _session(path)
    scale = min(float(numpy_helper.to_array(i)) for i in onnx.load(str(path)).graph.initializer
                if i.name.endswith("_scale") and numpy_helper.to_array(i).size == 1)
    for x in held_out_images(4)[:, None]:
        diff = np.abs(vm["main"](tvm.runtime.tensor(x)).numpy() - session.run(None, {"image": x})[0])
        assert diff.max() <= 2 * scale
