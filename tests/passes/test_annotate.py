"""Annotate: simulated_quantize around inputs and weights, by an overridable per-op registry."""

from __future__ import annotations

import tvm
import tvm_ffi
from helpers.onnx_models import onnx_model
from tvm import relax

import tvm_sima
from tvm_sima.config import QConfig
from tvm_sima.frontends.loader import bind_params
from tvm_sima.passes import ANNOTATE_FUNCTIONS, annotate, attach_simulated_quantize, register_annotate_function


def model(tmp_path) -> tvm.IRModule:
    #   x -> Conv(w) -> Relu -> Flatten -> MatMul(fc) -> y
    mod, params = tvm_sima.load_model(onnx_model(tmp_path / "m.onnx"))
    return bind_params(mod, params)


def simulated(mod: tvm.IRModule) -> dict[str, tuple[str, float, float]]:
    """name -> (kind, clip_min, clip_max) of every sima.simulated_quantize in main."""
    found: dict[str, tuple[str, float, float]] = {}

    def visit(call: relax.Call) -> None:
        if isinstance(call.op, tvm.ir.Op) and call.op.name == "sima.simulated_quantize":
            a = call.attrs
            found[str(a["name"])] = (str(a["kind"]), float(a["clip_min"]), float(a["clip_max"]))

    tvm_ffi.structural_walk(mod["main"], [(relax.Call, visit)])
    return found


def test_default_annotation(tmp_path):
    amod, layers = annotate(model(tmp_path), QConfig())
    assert [(layer.name, layer.op, layer.op_index) for layer in layers] == [
        ("conv2d_0", "relax.nn.conv2d", 0), ("matmul_1", "relax.matmul", 0)]
    assert simulated(amod) == {
        "conv2d_0.input": ("activation", -128.0, 127.0),
        "conv2d_0.weight": ("weight", -127.0, 127.0),  # symmetric restricted weights by default
        "matmul_1.input": ("activation", -128.0, 127.0),
        "matmul_1.weight": ("weight", -127.0, 127.0),
        # Conv -> Relu is one fused layer: its output (after the relu) feeds Flatten, an op
        # without an annotate function, which has its input quantized under the producer's name.
        "conv2d_0.output": ("activation", -128.0, 127.0),
        "matmul_1.output": ("activation", -128.0, 127.0),  # model outputs are quantized too
    }


def test_skips_and_per_layer_bits(tmp_path):
    config = QConfig(skip_conv_layers=(0,), layer_overrides=[
        {"match": "op:relax.matmul", "weight_bits": 4}])
    amod, layers = annotate(model(tmp_path), config)
    assert len(layers) == 2  # the skipped conv is still listed
    assert simulated(amod) == {"matmul_1.input": ("activation", -128.0, 127.0),
                               "matmul_1.weight": ("weight", -7.0, 7.0),
                               "conv2d_0.output": ("activation", -128.0, 127.0),
                               "matmul_1.output": ("activation", -128.0, 127.0)}


def test_user_override_of_an_annotate_function(tmp_path):
    original = ANNOTATE_FUNCTIONS["relax.nn.conv2d"]

    @register_annotate_function("relax.nn.conv2d", override=True)
    def weights_only(call, ctx):
        weight = attach_simulated_quantize(call.args[1], "weight", ctx, sign=True)
        return relax.Call(call.op, [call.args[0], weight], call.attrs, call.ty_args)

    try:
        assert weights_only is ANNOTATE_FUNCTIONS["relax.nn.conv2d"]  # the decorator returns the function
        names = set(simulated(annotate(model(tmp_path), QConfig())[0]))
        assert "conv2d_0.weight" in names and "conv2d_0.input" not in names
    finally:
        register_annotate_function("relax.nn.conv2d", override=True)(original)


def test_duplicate_registration_is_refused():
    import pytest

    with pytest.raises(ValueError, match="relax.nn.conv2d already has an annotate function"):
        register_annotate_function("relax.nn.conv2d")(lambda call, ctx: call)


def test_ops_whose_results_are_gathered_into_the_output_tuple_are_quantized_too(tmp_path):
    # Importers (TFLite, ONNX) bind the outputs as `gv = (a, b)` before returning gv: the convs that
    # produce a and b must get calibrated output scales, not stay float ("output has no calibrated
    # scale", FaceMesh and hand landmark before).
    import numpy as np

    rng = np.random.default_rng(15)
    x = relax.Var("x", relax.TensorType((1, 3, 8, 8), "float32"))
    bb = relax.BlockBuilder()
    with bb.function("main", [x]):
        with bb.dataflow():
            heads = [bb.emit(relax.op.nn.conv2d(x, relax.const(rng.standard_normal((c, 3, 3, 3)).astype("float32"))))
                     for c in (4, 2)]
            gathered = bb.emit(relax.Tuple(heads))
            out = bb.emit_output(gathered)
        bb.emit_func_output(out)
    calib = [rng.uniform(0, 1, size=(1, 3, 8, 8)).astype("float32") for _ in range(4)]
    report = tvm_sima.quantize_report(tvm_sima.quantize(bb.get(), None, calib, work_dir=tmp_path))
    assert report["float_ops"] == [] and len(report["fused"]) == 2
