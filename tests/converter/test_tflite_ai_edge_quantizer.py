"""int8 TFLite models from ai-edge-quantizer 0.10.0: load_model -> convert -> build, bit-exact with LiteRT BUILTIN_REF.

The forms it writes on MediaPipe's BlazeFace (``helpers.tflite_models``): PAD (channel padding),
a standalone RELU whose output has its own parameters, and int8 -> int8 QUANTIZE.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tvm
from helpers.litert import litert
from helpers.tflite_models import (
    logistic,
    pad_relu_concat,
    prelu,
    quantize_with_ai_edge_quantizer,
    with_requantized_output,
)
from tvm import relax

import tvm_sima
from tvm_sima.frontends.tflite_flatbuffer import read_tflite


@pytest.fixture(scope="module")
def int8_model(tmp_path_factory):
    root = tmp_path_factory.mktemp("aeq")
    rng = np.random.default_rng(0)
    samples = [rng.standard_normal((1, 8, 8, 2)).astype(np.float32) for _ in range(8)]
    return quantize_with_ai_edge_quantizer(pad_relu_concat(root / "f.tflite"), root / "q.tflite", samples)


def _bit_exact(path, offload=True):
    """``(report, number of differing codes)`` over 8 random int8 inputs."""
    converted, report = tvm_sima.convert(tvm_sima.load_model(path)[0])
    vm = relax.VirtualMachine(tvm_sima.build(converted, offload=offload), tvm.cpu())
    rng = np.random.default_rng(1)
    inputs = [rng.integers(-128, 128, (1, 8, 8, 2)).astype(np.int8) for _ in range(8)]
    return report, sum(int(np.sum(vm["main"](tvm.runtime.tensor(x)).numpy() != litert(path, x))) for x in inputs)


@pytest.mark.parametrize("offload", [True, False])
def test_pad_and_relu_from_ai_edge_quantizer_are_bit_exact(int8_model, offload):
    # PAD and RELU were refused at import ('unsupported op'); PAD runs on the codes (padding with the
    # zero point, as TFLite's int8 PAD), RELU is quantize(relu(dequantize(x))), a clip / requantize.
    assert [op.name for op in read_tflite(int8_model).ops] == ["PAD", "RELU", "CONCATENATION"]
    report, differing = _bit_exact(int8_model, offload)
    assert report.unconverted == [], report.summary()
    assert differing == 0


def test_int8_to_int8_quantize_is_a_requantize(int8_model, tmp_path):
    # TFLite's int8 -> int8 QUANTIZE was refused ('only float32 -> int8'); it is quantize(dequantize(x)),
    # converted to one sima.requantize with LiteRT's multiplier and rounding.
    path = with_requantized_output(int8_model, tmp_path / "rq.tflite", scale=0.0371, zero_point=-7)
    report, differing = _bit_exact(path)
    assert report.unconverted == [], report.summary()
    assert collections.Counter(c["op"] for c in report.converted)["sima.requantize"] == 1
    assert differing == 0


def test_logistic_is_a_table_equal_to_litert_on_every_code(tmp_path):
    # MediaPipe's hand landmark ends in two LOGISTIC heads, refused at import ('unsupported op'); as
    # quantize(sigmoid(dequantize(x))) the converter makes it a 256-entry table, which equals
    # LiteRT's fixed-point int8 LOGISTIC on every input code (this input and output scale).
    rng = np.random.default_rng(2)
    samples = [(rng.standard_normal((1, 16, 16, 1)) * 3).astype(np.float32) for _ in range(8)]
    path = quantize_with_ai_edge_quantizer(logistic(tmp_path / "f.tflite"), tmp_path / "q.tflite", samples)
    converted, report = tvm_sima.convert(tvm_sima.load_model(path)[0])
    assert report.unconverted == [] and [c["op"] for c in report.converted] == ["lookup table (sigmoid)"]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    codes = np.arange(-128, 128, dtype=np.int8).reshape(1, 16, 16, 1)  # every int8 code once
    assert np.array_equal(vm["main"](tvm.runtime.tensor(codes)).numpy(), litert(path, codes))


def test_prelu_left_float_by_ai_edge_quantizer_is_a_table_per_slope(tmp_path):
    # ai-edge-quantizer 0.10.0 leaves PRELU float (FaceMesh: 23 of them): DEQUANTIZE -> PRELU with
    # a float slope -> QUANTIZE; PRELU was refused at import. The chain is PReLU's table per slope,
    # equal to LiteRT on every code of every channel.
    rng = np.random.default_rng(3)
    samples = [(rng.standard_normal((1, 8, 8, 4)) * 2).astype(np.float32) for _ in range(8)]
    path = quantize_with_ai_edge_quantizer(prelu(tmp_path / "f.tflite"), tmp_path / "q.tflite", samples)
    assert [op.name for op in read_tflite(path).ops] == ["DEQUANTIZE", "PRELU", "QUANTIZE"]
    converted, report = tvm_sima.convert(tvm_sima.load_model(path)[0])
    assert report.unconverted == [] and [c["op"] for c in report.converted] == ["lookup table (prelu)"]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    every = np.repeat(np.arange(-128, 128, dtype=np.int8), 4).reshape(4, 8, 8, 4)  # each code in each channel
    for x in every:
        assert np.array_equal(vm["main"](tvm.runtime.tensor(x[None])).numpy(), litert(path, x[None]))
