"""tvm_sima.load_model: float ONNX and TFLite files in, Relax out; clear errors otherwise."""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest
import tvm
from helpers.onnx_models import onnx_model
from onnx import helper
from tvm import relax

import tvm_sima
from tvm_sima.frontends.loader import InputShapeError, UnsupportedOpsError, bind_params


def run_main(mod, params, x):
    ex = tvm_sima.build(bind_params(mod, params))
    return relax.VirtualMachine(ex, tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()


def test_onnx_matches_onnxruntime(tmp_path):
    path = onnx_model(tmp_path / "m.onnx")
    mod, params = tvm_sima.load_model(path)
    assert sorted(params) == ["fc", "w"] and params["w"].shape == (4, 3, 3, 3)
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype("float32")
    got = run_main(mod, params, x)
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_tflite_float_matches_litert(fixtures_dir):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = fixtures_dir / "digits_cnn_float.tflite"
    mod, params = tvm_sima.load_model(path)
    assert params == {}  # TFLite weights are constants of main
    x = np.load(fixtures_dir / "digits_int8_inputs.npz")["images_float"][:1].astype("float32")
    got = run_main(mod, params, x)
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    np.testing.assert_allclose(got, it.get_tensor(it.get_output_details()[0]["index"]), rtol=1e-4, atol=1e-4)


def test_every_unsupported_op_is_listed_with_its_node(tmp_path):
    extra = [helper.make_node("FancyOp", ["y"], ["z"], name="fancy_1"),
             helper.make_node("OtherOp", ["z"], ["z2"], name="other_2")]
    path = onnx_model(tmp_path / "m.onnx", extra_nodes=extra)
    with pytest.raises(UnsupportedOpsError, match=r"2 unsupported op\(s\): FancyOp \(node 'fancy_1'\); "
                                                  r"OtherOp \(node 'other_2'\)") as info:
        tvm_sima.load_model(path)
    assert [op for op, _ in info.value.ops] == ["FancyOp", "OtherOp"]


def test_dynamic_batch_is_one_unless_given(tmp_path):
    # every spelling of dynamic dimensions, the CLI and TFLite: tests/frontends/test_dynamic_shapes.py
    path = onnx_model(tmp_path / "m.onnx", batch="N")
    mod, _ = tvm_sima.load_model(path)
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [1, 3, 8, 8]
    mod, _ = tvm_sima.load_model(path, input_shapes={"x": (2, 3, 8, 8)})
    assert [int(d) for d in mod["main"].params[0].ty.shape] == [2, 3, 8, 8]
    with pytest.raises(InputShapeError, match=r"input_shapes=\{'x': \(2, 3, 9, 8\)\} does not fit input 'x', "
                                              r"declared \[N, 3, 8, 8\] \(dimension 2 is 8 in the file\)"):
        tvm_sima.load_model(path, input_shapes={"x": (2, 3, 9, 8)})
    with pytest.raises(ValueError, match=r"input_shapes=\{'image': \(1, 3, 8, 8\)\} names no input"):
        tvm_sima.load_model(path, input_shapes={"image": (1, 3, 8, 8)})


def test_bind_params_rejects_unknown_names(tmp_path):
    mod, params = tvm_sima.load_model(onnx_model(tmp_path / "m.onnx"))
    with pytest.raises(ValueError, match=r"\['conv_w'\] are not parameters of main"):
        bind_params(mod, {"conv_w": params["w"]})


def test_bad_files(tmp_path, fixtures_dir):
    with pytest.raises(FileNotFoundError, match="model file .*nope.onnx not found"):
        tvm_sima.load_model(tmp_path / "nope.onnx")
    (tmp_path / "m.pb").write_bytes(b"x")
    with pytest.raises(ValueError, match="unknown model type '.pb'"):
        tvm_sima.load_model(tmp_path / "m.pb")
    (tmp_path / "bad.onnx").write_bytes(b"\x00garbage\xff")
    with pytest.raises(ValueError, match="bad.onnx: not a readable ONNX model"):
        tvm_sima.load_model(tmp_path / "bad.onnx")
    # (an int8 TFLite model loads as a QDQ graph: tests/converter/test_tflite_qdq.py)
