"""int8 TFLite -> Relax QDQ graph (load_model), run by TVM, against LiteRT's reference kernels.

The QDQ graph computes in float between dequantize and quantize, so it may differ from LiteRT's
integer kernels by rounding (1 LSB); folding the chains into fused integer ops (bit-exact) is
the converter's job. The measured numbers are printed with ``pytest -s``.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tvm
import tvm_ffi
from helpers.litert import litert
from helpers.relax import float_bindings, op_counts
from tvm import relax

import tvm_sima
from tvm_sima.frontends.loader import UnsupportedOpsError


@pytest.mark.parametrize("name, least_exact", [("digits_int8", 0.95), ("digits_mlp_int8", 0.95)])
def test_int8_tflite_loads_as_qdq_and_matches_litert_within_one_lsb(name, least_exact, fixtures_dir):
    path = fixtures_dir / f"{name}.tflite"
    mod, params = tvm_sima.load_model(path)
    assert params == {}
    main = mod["main"]
    assert str(main.params[0].ty.dtype) == "int8" and str(main.ret_ty.dtype) == "int8"  # integer interface
    ops = op_counts(mod)
    layers = ops["relax.nn.conv2d"] + ops["relax.matmul"]
    assert layers >= 2 and ops["sima.quantize"] == layers  # one requantization point per layer
    assert ops["sima.dequantize"] == 3 * layers  # input, int8 weight, int32 bias
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images"]
    shape = tuple(int(d) for d in main.params[0].ty.shape)
    diffs = []
    for image in images:
        x = image.reshape(shape).astype(np.int8)
        got = vm["main"](tvm.runtime.tensor(x)).numpy()
        assert got.dtype == np.int8
        diffs.append(np.abs(got.astype(np.int64) - litert(path, x).astype(np.int64)).ravel())
    diff = np.concatenate(diffs)
    print(f"{name}: QDQ graph vs LiteRT: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
    assert diff.max() <= 1 and np.mean(diff == 0) >= least_exact


def digits_inputs(fixtures_dir, shape, random=8):
    """The 32 bundled held-out digits quantized for the model input, then ``random`` random int8 images."""
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images"]
    rng = np.random.default_rng(5)
    return [i.reshape(shape).astype(np.int8) for i in images] + [
        rng.integers(-128, 128, shape).astype(np.int8) for _ in range(random)]


def test_int8_tflite_with_the_other_ops_loads_and_matches_litert_within_one_lsb(fixtures_dir):
    # digits_ops_int8.tflite is real TFLite converter output (tools/make_tflite_fixtures.py) with a
    # dynamic batch: two SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND atrous convolutions, ADD
    # (tensor + tensor, tensor + int8 constant), MAX_POOL_2D, AVERAGE_POOL_2D (SAME), CONCATENATION,
    # DEPTHWISE_CONV_2D (RELU6), quantized STRIDED_SLICE, MEAN, and a flatten as SHAPE / STRIDED_SLICE /
    # PACK / RESHAPE.
    path = fixtures_dir / "digits_ops_int8.tflite"
    mod, _ = tvm_sima.load_model(path)
    main = mod["main"]
    assert str(main.params[0].ty.dtype) == "int8" and str(main.ret_ty.dtype) == "int8"
    ops = op_counts(mod)
    assert ops["relax.nn.conv2d"] == 4 and ops["relax.matmul"] == 1
    dilated = []
    tvm_ffi.structural_walk(main, [(relax.Call, lambda c: dilated.append(c) if isinstance(c.op, tvm.ir.Op) and
                                    c.op.name == "relax.nn.conv2d" and int(c.attrs["dilation"][0]) == 2 else None)])
    assert len(dilated) == 2  # both space/batch sandwiches became one dilated convolution each
    assert ops["relax.nn.max_pool2d"] == ops["relax.nn.avg_pool2d"] == ops["relax.mean"] == 1
    assert ops["relax.concat"] == 2 and ops["relax.strided_slice"] == 1 and ops["relax.reshape"] == 1
    vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    inputs = digits_inputs(fixtures_dir, (1, 8, 8, 1))
    got = np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs]).astype(np.int64)
    diff = np.abs(got - np.stack([litert(path, x) for x in inputs]).astype(np.int64))
    print(f"digits_ops_int8: QDQ graph vs LiteRT: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
    assert diff.max() <= 1 and np.mean(diff == 0) >= 0.75


def test_int8_tflite_keeps_its_stored_shapes(fixtures_dir):
    with pytest.raises(ValueError, match="imported with the shapes it stores"):
        tvm_sima.load_model(fixtures_dir / "digits_ops_int8.tflite",
                            input_shapes={"serving_default_image:0": (4, 8, 8, 1)})


def test_unsupported_int8_ops_are_listed(tmp_path, fixtures_dir):
    from tvm_sima.frontends import tflite_qdq

    original = tflite_qdq.QDQ_OPS
    try:
        tflite_qdq.QDQ_OPS = ("RESHAPE",)  # pretend conv / dense are unknown: every one must be listed
        with pytest.raises(UnsupportedOpsError, match=r"unsupported op\(s\): CONV_2D \(op 0, output") as err:
            tvm_sima.load_model(fixtures_dir / "digits_int8.tflite")
        assert [op for op, _ in err.value.ops] == ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "FULLY_CONNECTED"]
    finally:
        tflite_qdq.QDQ_OPS = original


@pytest.mark.parametrize("name, least_shift_exact", [("digits_int8", 0.6), ("digits_mlp_int8", 0.6),
                                                     ("digits_ops_int8", 0.3)])
def test_convert_folds_every_chain_bit_exact_with_litert(name, least_shift_exact, fixtures_dir):
    #   int8 x -> [dequantize -> conv2d / matmul (dequantize(W)) -> + dequantize(b) -> relu? -> quantize] x N
    #   becomes  int8 x -> sima.conv2d / sima.dense (weight, bias, multiplier, shift) x N
    # and every other dequantize -> op -> quantize (add, pools, mean, concat, ...) an integer form.
    path = fixtures_dir / f"{name}.tflite"
    mod, _ = tvm_sima.load_model(path)
    shape = tuple(int(d) for d in mod["main"].params[0].ty.shape)
    inputs = digits_inputs(fixtures_dir, shape, random=32)
    outputs = {}
    for mode in ("tflite", "shift"):
        converted, report = tvm_sima.convert(mod, mode)
        ops = op_counts(converted)
        assert report.unconverted == []
        fused = [c for c in report.converted if c["op"] in ("sima.conv2d", "sima.dense")]
        assert len(fused) == ops["sima.conv2d"] + ops["sima.dense"] == op_counts(mod)["relax.nn.conv2d"] + \
            op_counts(mod)["relax.matmul"]
        assert ops["sima.dequantize"] == ops["sima.quantize"] == ops["relax.matmul"] == 0
        assert float_bindings(converted) == []  # integer only, end to end
        infos = tvm_sima.read_quantize_info(converted)  # every converted op's output carries its parameters
        assert sorted(infos) == sorted(c["tensor"] for c in report.converted)
        vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
        outputs[mode] = np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs]).astype(np.int64)
    reference = np.stack([litert(path, x) for x in inputs]).astype(np.int64)
    np.testing.assert_array_equal(outputs["tflite"], reference)  # bit for bit, digits and random inputs
    diff = np.abs(outputs["shift"] - reference)
    print(f"{name}: shift mode vs LiteRT: {np.mean(diff == 0):.4f} exact, max {diff.max()} LSB")
    assert diff.max() <= 4 and np.mean(diff == 0) >= least_shift_exact


def test_convert_reports_the_integer_form_of_each_tflite_op(fixtures_dir):
    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_ops_int8.tflite")
    _, report = tvm_sima.convert(mod)
    kinds = collections.Counter(c["op"] for c in report.converted)
    assert kinds == {"sima.conv2d": 4, "sima.dense": 1, "integer add": 2, "integer avg_pool2d": 1,
                     "integer mean": 1}, kinds
    assert "9 chain(s) converted" in report.summary()


def test_convert_rejects_an_unknown_mode(fixtures_dir):
    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_mlp_int8.tflite")
    with pytest.raises(ValueError, match="mode='exact'; use one of"):
        tvm_sima.convert(mod, "exact")


def test_a_chain_breaking_a_hardware_rule_stays_float_and_is_reported(fixtures_dir):
    from tvm_sima.converter import HardwareLimits

    path = fixtures_dir / "digits_int8.tflite"
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod, limits=HardwareLimits(max_kernel=2, max_stride=1))
    # all three convolutions are 3x3: kernel-limits; the dense layer converts
    assert [c["op"] for c in report.converted] == ["sima.dense"]
    conv_reasons = [u["reason"] for u in report.unconverted if u["op"] == "relax.nn.conv2d"]
    assert len(conv_reasons) == 3 and all("hardware rule 'kernel-limits'" in r for r in conv_reasons)
    assert "left in float" in report.summary() and "kernel-limits" in report.summary()
    ops = op_counts(converted)
    assert ops["relax.nn.conv2d"] == 3 and ops["sima.dense"] == 1
    # what stayed float still runs between its dequantize / quantize, as imported
    inputs = digits_inputs(fixtures_dir, (1, 8, 8, 1), random=0)[:8]
    vm_mixed = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    got = np.stack([vm_mixed["main"](tvm.runtime.tensor(x)).numpy() for x in inputs]).astype(np.int64)
    diff = np.abs(got - np.stack([litert(path, x) for x in inputs]).astype(np.int64))
    assert diff.max() <= 1


def test_int8_tflite_with_a_float_interface_keeps_it_and_converts_bit_exact(fixtures_dir):
    # The TFLite converter's default: float in, QUANTIZE, int8 ops, DEQUANTIZE, float out.
    path = fixtures_dir / "digits_mlp_int8_float_io.tflite"
    mod, _ = tvm_sima.load_model(path)
    main = mod["main"]
    assert str(main.params[0].ty.dtype) == "float32" and str(main.ret_ty.dtype) == "float32"
    converted, report = tvm_sima.convert(mod)
    assert [c["op"] for c in report.converted] == ["sima.dense", "sima.dense"] and report.unconverted == []
    ops = op_counts(converted)
    assert ops["sima.quantize"] == ops["sima.dequantize"] == 1  # only the float interface is left
    images = np.load(fixtures_dir / "digits_int8_inputs.npz")["images_float"].reshape(-1, 1, 64).astype(np.float32)
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    got = np.stack([vm["main"](tvm.runtime.tensor(x)).numpy() for x in images])
    reference = np.stack([litert(path, x) for x in images])
    from tvm_sima.frontends.tflite_flatbuffer import read_tflite

    graph = read_tflite(path)
    scale = float(graph.tensors[graph.ops[-1].inputs[0]].scale[0])
    np.testing.assert_array_equal(np.round(got / scale), np.round(reference / scale))  # the same int8 codes


def test_a_float_input_quantize_divides_in_float32_as_litert(tmp_path):
    """QUANTIZE float32 -> int8 on values an ulp around the ties: LiteRT's reference kernel divides
    in float32 (a float64 division rounds about 1 in 6 of these codes the other way)."""
    from helpers.tflite_writer import Op, Tensor, int8, write_tflite

    scale = float(np.float32(0.0123457))
    rng = np.random.default_rng(0)
    ties = np.float32(scale) * (rng.integers(-120, 120, 1024) + 0.5).astype(np.float32)
    x = np.nextafter(ties, ties + rng.choice([-1, 0, 1], ties.size).astype(np.float32)).astype(np.float32)[None]
    path = write_tflite(tmp_path / "quantize.tflite", [Tensor("x", [1, x.size]), int8("q", [1, x.size], (scale, 3))],
                        [Op("QUANTIZE", [0], [1])], [0], [1])
    want = litert(path, x)
    vm = relax.VirtualMachine(tvm_sima.build(tvm_sima.load_model(path)[0]), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), want)
    double = np.clip(np.sign(x) * np.floor(np.abs(x.astype(np.float64) / scale) + 0.5) + 3, -128, 127)
    assert (double != want).sum() > 100  # the inputs do tell the two divisions apart
