"""PT2E-quantized PyTorch models (torchao ``prepare_pt2e`` / ``convert_pt2e``, XNNPACK quantizer) convert.

The model is ``helpers.torch_models.SmallNet``; PT2E writes (batch norms folded into the convs)::

    x -Q-> stem conv -> relu -Q-> [conv -Q-> relu6 -> add -Q->] x 2 -> mean -Q-> fc -Q-> out

``load_model`` imports the ``quantized_decomposed`` nodes as sima quantize / dequantize, ``convert``
folds every chain, and each quantized activation is checked, isolated, against PyTorch running the
PT2E program (``benchmarks/torch_per_op.py``): within 1 LSB, most exact.
"""

from __future__ import annotations

import pathlib
import sys

import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (torch.ops.quantized_decomposed, without torchao)
import tvm
from helpers.relax import one_input_module
from helpers.relax import run as run_module
from helpers.torch_models import PaddedNet, images, pt2e_quantized, small_net
from tvm import relax

import tvm_sima
from tvm_sima import math as sm
from tvm_sima import ops as so

ROOT = pathlib.Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from torch_per_op import per_op_check, quantized_tensors  # noqa: E402

EXAMPLE = torch.zeros(1, 3, 16, 16)


@pytest.fixture(scope="module")
def pt2e():
    return pt2e_quantized(small_net(), EXAMPLE, images(8, seed=0))


@pytest.fixture(scope="module")
def converted(pt2e):
    mod, params = tvm_sima.load_model(pt2e, example_inputs=(EXAMPLE,))
    assert params == {}  # the int8 weights are constants the converter reads
    return tvm_sima.convert(mod)


def test_every_chain_of_the_pt2e_model_becomes_integer_ops(converted):
    mod, report = converted
    assert report.unconverted == []
    ops = sorted(c["from"] for c in report.converted)
    assert ops.count("relax.nn.conv2d") == 3 and ops.count("relax.matmul") == 1 and ops.count("relax.add") == 2
    text = mod["main"].script()
    assert "relax.nn.conv2d" not in text and "R.matmul" not in text


def test_each_quantized_activation_is_within_1_lsb_of_pytorch_isolated(pt2e, converted):
    mod, report = converted
    check = per_op_check(pt2e, (EXAMPLE,), mod, report, images(4, seed=9))
    assert check.unchecked == [] and len(check.tensors) == 10, (check.unchecked, check.tensors)  # 10 quantizes
    assert [t.converted for t in check.tensors].count("sima.conv2d") == 3
    assert check.max <= 1, [t.to_dict() for t in check.worst()]
    assert all(t.exact > 0.97 for t in check.tensors), [t.to_dict() for t in check.worst()]


def test_the_whole_program_matches_pytorch_within_a_few_output_lsb(pt2e, converted):
    mod, _ = converted
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    last = quantized_tensors(torch.export.export(pt2e, (EXAMPLE,)).run_decompositions())[-1]
    assert last.op == "permute+addmm"  # the classifier's quantize: its scale is the output's LSB
    scale = float(next(n for n in pt2e.graph.nodes if n.op == "call_function" and "quantize_per_tensor" in
                       str(n.target) and n.args[0].name == "linear").args[1])
    for x in images(4, seed=11):
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        with torch.no_grad():
            want = pt2e(torch.from_numpy(x)).numpy()
        assert np.abs(got - want).max() <= 3 * scale + 1e-6, np.abs(got - want).max() / scale


def test_quantize_infos_carry_the_module_names(converted):
    infos = tvm_sima.read_quantize_info(converted[0])
    assert {"x", "relu", "features.0.conv", "features.0/add", "features.1/add_1", "mean", "fc"} <= \
        {i.source for i in infos.values()}, sorted(i.source for i in infos.values())


def test_a_pt2_file_of_a_pt2e_model_converts_the_same(pt2e, converted, tmp_path):
    torch.export.save(torch.export.export(pt2e, (EXAMPLE,)), tmp_path / "q.pt2")
    mod, report = tvm_sima.convert(tvm_sima.load_model(tmp_path / "q.pt2")[0])
    assert report.unconverted == [] and len(report.converted) == len(converted[1].converted)
    tvm.ir.assert_structural_equal(mod["main"], converted[0]["main"])  # the same integer program


def test_a_zero_pad_after_relu6_converts_on_the_codes():
    """PT2E leaves ``dequantize -> hardtanh -> pad -> quantize`` (no pad annotation): convert pads the codes,
    then clips them (``hoist_zero_pads``); every quantized tensor stays within 1 LSB of PyTorch."""
    torch.manual_seed(1)
    model = PaddedNet().eval()
    quantized = pt2e_quantized(model, EXAMPLE, images(4, seed=13))
    mod, report = tvm_sima.convert(tvm_sima.load_model(quantized, example_inputs=(EXAMPLE,))[0])
    assert report.unconverted == [], report.unconverted
    assert sorted(c["from"] for c in report.converted) == ["relax.nn.conv2d", "relax.nn.conv2d", "relax.nn.pad"]
    check = per_op_check(quantized, (EXAMPLE,), mod, report, images(2, seed=14))
    assert check.unchecked == [] and len(check.tensors) == 4 and check.max <= 1, [t.to_dict() for t in check.tensors]


def _ties(scale: float) -> np.ndarray:
    """float32 values next to ``(k + 0.5) * scale``: where the quotient's last bit decides the code."""
    k = np.arange(-120, 120, dtype=np.float64) + 0.5
    centre = (k * scale).astype(np.float32)
    return np.concatenate([np.nextafter(centre, -np.inf), centre, np.nextafter(centre, np.inf)]).reshape(3, -1)


@pytest.mark.parametrize("scale", [0.1, 0.0137, 1 / 255, 0.7])
def test_sima_quantize_float32_reciprocal_is_pytorchs_quantize_per_tensor_bit_for_bit(scale):
    x = _ties(scale)
    want = torch.ops.quantized_decomposed.quantize_per_tensor(torch.from_numpy(x), scale, 3, -128, 127,
                                                              torch.int8).numpy()
    qp = sm.QParams(scale, 3, "int8")
    got = run_module(one_input_module(x.shape, "float32", lambda bb, v: so.quantize(
        v, qp, sm.RoundingMode.HALF_EVEN, precision="float32_reciprocal")), x)
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal(sm.quantize(x, qp, "half_even", precision="float32_reciprocal"), want)


def test_float32_division_is_not_pytorchs_quantize():
    """Without the reciprocal form the codes differ at ties: ONNX's float32 division is another function."""
    differ = 0
    for scale in (0.1, 0.0137, 1 / 255, 0.7):
        x = _ties(scale)
        want = torch.ops.quantized_decomposed.quantize_per_tensor(torch.from_numpy(x), scale, 3, -128, 127,
                                                                  torch.int8).numpy()
        differ += int((sm.quantize(x, sm.QParams(scale, 3, "int8"), "half_even", precision="float32") != want).sum())
    assert differ > 0


class _BadRange(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = torch.ops.quantized_decomposed.quantize_per_tensor(x, 0.1, 0, -100, 100, torch.int8)
        return torch.ops.quantized_decomposed.dequantize_per_tensor(q, 0.1, 0, -100, 100, torch.int8)


def test_a_quantize_range_tvm_sima_cannot_hold_is_a_clear_error():
    with pytest.raises(tvm_sima.frontends.CorruptModelError,
                       match=r"PyTorch importer failed at node 'quantize_per_tensor' "
                             r"\(quantized_decomposed.quantize_per_tensor.default\): ValueError: node "
                             r"'quantize_per_tensor' .*quant_min=-100, quant_max=100 for int8; tvm-sima takes "
                             r"the type's full range \[-128, 127\] or its narrow one \[-127, 127\]"):
        tvm_sima.load_model(_BadRange(), example_inputs=(torch.zeros(1, 4),))
