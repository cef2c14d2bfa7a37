"""``load_model`` -> ``build(mod, params=params)``, as Relay's ``relay.build(mod, target, params=params)``."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from tvm import relax

import tvm_sima
from tvm_sima.params import unbound_weights


def test_a_loaded_float_onnx_model_builds_with_its_params(fixtures_dir):
    path = fixtures_dir / "digits_cnn_float.onnx"
    mod, params = tvm_sima.load_model(path)
    assert len(params) >= 8  # the weights are parameters of main, not constants
    images = np.load(fixtures_dir / "digits_eval_nchw.npz")["image"][:8]
    vm = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())
    got = np.concatenate([vm["main"](tvm.runtime.tensor(x[None])).numpy() for x in images])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.concatenate([session.run(None, {"image": x[None]})[0] for x in images])
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    # the top-level bind_params gives the same module build() binds
    bound = tvm_sima.bind_params(mod, params)
    assert unbound_weights(bound) == [] and len(bound["main"].params) == 1


def test_building_with_unbound_weights_is_an_error_naming_them(fixtures_dir):
    mod, params = tvm_sima.load_model(fixtures_dir / "digits_cnn_float.onnx")
    first = sorted(params)[0]
    with pytest.raises(ValueError, match=rf"build: main has {len(params)} unbound weight parameter\(s\) "
                                         r"\(.+\); pass the params that load_model returned"):
        tvm_sima.build(mod)
    partial = {k: v for k, v in params.items() if k != first}
    with pytest.raises(ValueError, match=rf"1 unbound weight parameter\(s\) \({first}\)"):
        tvm_sima.build(mod, params=partial)
    with pytest.raises(ValueError, match=r"bind_params: \['nope'\] are not parameters of main"):
        tvm_sima.build(mod, params={**params, "nope": np.zeros(1, np.float32)})
