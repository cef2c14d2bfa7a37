"""Forms the onnxruntime-quantized zoo models (EfficientNet-Lite0, PP-OCR det / cls) write, each on a small fixture.

Each fixture is the digits CNN's first layer followed by the form (``helpers.onnx_models.digits_then``),
quantized by onnxruntime ``quantize_static`` (QDQ, per-channel int8 weights, int8 activations), then
``load_model`` -> ``convert`` -> build; the oracle is onnxruntime running the QDQ graph unfused
(``ORT_DISABLE_ALL``), compared in codes of the output's scale.
"""

from __future__ import annotations

import collections

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import digits_then, held_out_images, output_scale, quantize_with_onnxruntime
from onnx import helper
from tvm import relax

import tvm_sima


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
