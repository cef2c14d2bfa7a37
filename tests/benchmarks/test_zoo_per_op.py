"""The converter route op by op (``benchmarks/zoo_per_op.py``), on the digits CNN quantized by onnxruntime.

The model (``helpers.onnx_models.digits_cnn``, ``quantize_static`` QDQ, per-channel)::

    image -Q-> conv0 -Q-> r0 -> depthwise dw0 -Q-> r1 -> conv1 -Q-> r2 -> Transpose -Q-> Flatten -Q-> Gemm -Q-> logits

Seven QuantizeLinear outputs: the input's (the converted program's float interface: it stays a
``sima.quantize``) and six the converter writes, each with a ``quantize_info``. A copy of the
model with the depthwise conv's weight scales 20 % larger, converted and checked against the
original, must show that one tensor far off and, since every op is fed the oracle's codes,
every other tensor still within 1 LSB.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import onnx
import pytest
from helpers.onnx_models import digits_cnn, held_out_images, quantize_with_onnxruntime
from onnx import numpy_helper

import tvm_sima

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from zoo_per_op import per_op_check, quantized_tensors  # noqa: E402

TENSORS = ["image_QuantizeLinear_Output", "r0_QuantizeLinear_Output", "r1_QuantizeLinear_Output",
           "r2_QuantizeLinear_Output", "nhwc_QuantizeLinear_Output", "flat_QuantizeLinear_Output",
           "logits_QuantizeLinear_Output"]


@pytest.fixture(scope="module")
def qdq(tmp_path_factory) -> pathlib.Path:
    root = tmp_path_factory.mktemp("per_op")
    return quantize_with_onnxruntime(digits_cnn(root / "cnn.onnx"), root / "cnn_qdq.onnx", per_channel=True)


def _converted(path: pathlib.Path):
    return tvm_sima.convert(tvm_sima.load_model(path)[0])


def _inputs() -> list[np.ndarray]:
    return list(held_out_images(8)[:, None])


def _with_weight_scale(path: pathlib.Path, weight: str, factor: float, out: pathlib.Path) -> pathlib.Path:
    model = onnx.load(str(path))
    scale = next(i for i in model.graph.initializer if i.name == f"{weight}_scale")
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(factor), scale.name))
    onnx.save(model, str(out))
    return out


def test_quantized_tensors_lists_each_quantize_with_its_op_and_scale_ratio(qdq):
    found = {t.tensor: t for t in quantized_tensors(onnx.load(str(qdq)))}
    assert list(found) == TENSORS
    assert [found[n].op for n in TENSORS] == ["input", "Conv", "Conv", "Conv", "Transpose", "Flatten", "Gemm"]
    assert found["image_QuantizeLinear_Output"].scale_ratio is None  # from the float input
    assert found["nhwc_QuantizeLinear_Output"].scale_ratio == 1.0  # a move keeps its input's grid
    constants = {i.name: numpy_helper.to_array(i) for i in onnx.load(str(qdq)).graph.initializer}
    assert found["r1_QuantizeLinear_Output"].scale_ratio == pytest.approx(constants["r0_scale"] / constants["r1_scale"])


def test_every_converted_tensor_is_within_one_lsb_of_ort_disable_all(qdq):
    converted, report = _converted(qdq)
    check = per_op_check(str(qdq), converted, report, _inputs())
    assert [t.name for t in check.tensors] == TENSORS  # program order
    assert check.unchecked == []
    assert check.max <= 1 and check.within(1) == 7
    assert all(t.count == 8 * n for t, n in zip(check.tensors, [64, 512, 1024, 144, 144, 144, 10], strict=True))
    assert check.tensors[0].converted == "sima.quantize" and check.tensors[0].max == 0  # float32 division, half to even
    assert {t.converted for t in check.tensors} >= {"sima.conv2d", "sima.dense"}
    assert check.within(0) >= 3  # the moves at least are exact


def test_a_wrong_op_is_found_and_only_that_one(qdq, tmp_path):
    """The depthwise conv's weights 20 % off: its output is many LSB off; isolated, nothing downstream is."""
    wrong = _with_weight_scale(qdq, "dw0.w", 1.2, tmp_path / "wrong.onnx")
    converted, report = _converted(wrong)
    check = per_op_check(str(qdq), converted, report, _inputs())
    by_name = {t.name: t for t in check.tensors}
    assert by_name["r1_QuantizeLinear_Output"].max > 5
    assert check.worst(1)[0].name == "r1_QuantizeLinear_Output"
    assert all(t.max <= 1 for n, t in by_name.items() if n != "r1_QuantizeLinear_Output")
    assert check.within(1) == 6 and check.max == by_name["r1_QuantizeLinear_Output"].max
