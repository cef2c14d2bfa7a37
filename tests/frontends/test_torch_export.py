"""PyTorch models in: ``load_model`` of an ``nn.Module``, an ``ExportedProgram`` and a ``.pt2`` file.

Real ``torch.export``, real TVM builds, compared with PyTorch running the same module; the
model is ``helpers.torch_models.SmallNet`` (its graph is drawn there).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import tvm
from helpers.relax import run
from helpers.torch_models import images, small_net
from tvm import relax

import tvm_sima
from tvm_sima.frontends.loader import DynamicShapeError, UnsupportedOpsError, bind_params

EXAMPLE = torch.zeros(1, 3, 16, 16)


@pytest.fixture(scope="module")
def model():
    return small_net()


def _torch(model, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def _float_run(mod, params, x: np.ndarray) -> np.ndarray:
    return run(bind_params(mod, params), x)


def test_a_module_imports_builds_and_matches_pytorch(model):
    mod, params = tvm_sima.load_model(model, example_inputs=(EXAMPLE,))
    assert set(params) >= {"p_stem_weight", "p_fc_bias"} and all(isinstance(v, np.ndarray) for v in params.values())
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [1, 3, 16, 16]
    for x in images(3, seed=1):
        np.testing.assert_allclose(_float_run(mod, params, x), _torch(model, x), rtol=1e-5, atol=1e-5)


def test_an_exported_program_and_a_pt2_file_give_the_same_program(model, tmp_path):
    ep = torch.export.export(model, (EXAMPLE,))
    torch.export.save(ep, tmp_path / "net.pt2")
    x = images(1, seed=2)[0]
    want = _torch(model, x)
    for source in (ep, tmp_path / "net.pt2", str(tmp_path / "net.pt2")):
        mod, params = tvm_sima.load_model(source)
        np.testing.assert_allclose(_float_run(mod, params, x), want, rtol=1e-5, atol=1e-5)
    assert tvm_sima.frontends.loader.declared_inputs(tmp_path / "net.pt2") == {"x": [1, 3, 16, 16]}


def test_numpy_example_inputs_and_eval_mode(model):
    model.train()  # load_model exports in eval mode: batch norm uses its running statistics
    try:
        mod, params = tvm_sima.load_model(model, example_inputs=(np.zeros((1, 3, 16, 16), np.float32),))
        assert model.training  # and leaves the caller's module in its mode
    finally:
        model.eval()
    x = images(1, seed=3)[0]
    np.testing.assert_allclose(_float_run(mod, params, x), _torch(model, x), rtol=1e-5, atol=1e-5)


def test_every_binding_has_the_modules_own_name(model):
    mod, _ = tvm_sima.load_model(model, example_inputs=(EXAMPLE,))
    names = set(dict(mod["main"].attrs["sima.source_names"]).values())
    assert {"x", "stem", "relu", "features.0.conv", "features.0.bn", "features.0/hardtanh", "features.0/add",
            "features.1.conv", "features.1/add_1", "mean", "fc"} <= names, sorted(names)
    assert not any(n.startswith("lv") for n in names)


def test_quantize_report_layers_json_and_quantize_info_carry_the_module_names(model, tmp_path):
    mod, params = tvm_sima.load_model(model, example_inputs=(EXAMPLE,))
    qmod = tvm_sima.quantize(mod, params, images(4, seed=4), work_dir=tmp_path / "run")
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == []
    rows = json.loads((tmp_path / "run" / "layers.json").read_text())["layers"]
    assert [r["source"] for r in rows] == ["stem", "features.0.conv", "features.1.conv", "fc"]
    assert report["sources"]["matmul_3"] == "fc" and report["sources"]["conv2d_0.input"] == "x"
    infos = tvm_sima.read_quantize_info(qmod)
    assert {"features.0/add", "features.1/add_1", "mean"} <= {i.source for i in infos.values()}
    out = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())["main"](tvm.runtime.tensor(images(1, 5)[0])).numpy()
    want = _torch(model, images(1, 5)[0])
    assert 10 * np.log10((want**2).sum() / ((want - out) ** 2).sum()) > 25  # int8 close to float


class _Odd(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.lgamma(x)


class _Odder(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.head = torch.nn.Sequential(torch.nn.ReLU(), _Odd())
        self.tail = _Odd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.digamma(self.head(x)) + self.tail(x)


def test_unsupported_aten_ops_are_one_error_naming_each_node_and_module():
    with pytest.raises(UnsupportedOpsError) as err:
        tvm_sima.load_model(_Odder(), example_inputs=(torch.ones(1, 4),))
    assert len(err.value.ops) == 3, err.value.ops
    text = str(err.value)
    assert "3 unsupported op(s)" in text and "aten.digamma.default (node 'digamma' in the model's forward)" in text
    assert "aten.lgamma.default (node 'lgamma' in module 'head.1')" in text
    assert "aten.lgamma.default (node 'lgamma_1' in module 'tail')" in text
    assert text.startswith("_Odder (")  # what: the model, by its class


def test_a_dynamic_batch_becomes_1_and_other_dynamic_dims_need_input_shapes(model):
    batch, width = torch.export.Dim("batch"), torch.export.Dim("width", min=8, max=64)
    ep = torch.export.export(model, (torch.zeros(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch}})
    mod, params = tvm_sima.load_model(ep)
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [1, 3, 16, 16]
    x = images(1, seed=6)[0]
    np.testing.assert_allclose(_float_run(mod, params, x), _torch(model, x), rtol=1e-5, atol=1e-5)
    ep = torch.export.export(model, (torch.zeros(2, 3, 16, 16),), dynamic_shapes={"x": {0: batch, 3: width}})
    with pytest.raises(DynamicShapeError, match=r"input 'x' has dynamic dimension\(s\) .*input_shapes=\{'x': "
                                                r"\(1, 3, 16, s\d+\)\}"):
        tvm_sima.load_model(ep)
    mod, params = tvm_sima.load_model(ep, input_shapes={"x": (1, 3, 16, 24)})
    x = images(1, seed=7, shape=(1, 3, 16, 24))[0]
    np.testing.assert_allclose(_float_run(mod, params, x), _torch(model, x), rtol=1e-5, atol=1e-5)


def test_bad_torch_inputs_say_what_to_do(model, tmp_path):
    with pytest.raises(ValueError, match=r"SmallNet .*needs example inputs: give load_model\(model, example_inputs="):
        tvm_sima.load_model(model)
    with pytest.raises(TypeError, match="a model file path, a torch.nn.Module or a torch.export.ExportedProgram, "
                                        "not a dict"):
        tvm_sima.load_model({"not": "a model"})
    (tmp_path / "bad.pt2").write_bytes(b"not a pt2 archive")
    with pytest.raises(tvm_sima.frontends.CorruptModelError, match=r"bad.pt2: .*torch.export.load"):
        tvm_sima.load_model(tmp_path / "bad.pt2")
