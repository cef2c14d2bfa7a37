"""tvm_sima.quantize, op by op: tiny float graphs, realized to integers, op counts and numbers checked.

Each graph is drawn in its test. Calibration and evaluation use different random batches; the
quantized program is built with the sima pipeline and compared with the float one (SQNR), or
bit for bit with a NumPy model of the integer op where the op is exact on integers.
"""

from __future__ import annotations

import dataclasses
import logging
import math

import numpy as np
import pytest
import tvm
from helpers.quantize import batches, const, graph, run, total_sqnr
from helpers.relax import op_counts
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm


def quantize_and_compare(mod, shape, tmp_path, n_calib=64, **config):
    """(qmod, report, float outputs, quantized outputs) on 4 evaluation batches."""
    with tvm_sima.qconfig(**config):
        qmod = tvm_sima.quantize(mod, None, batches(shape, n_calib, 1), work_dir=tmp_path)
    tvm_sima.read_quantize_info(qmod)  # raises if one tensor name had two different parameter sets
    evals = batches(shape, 4, 2)
    return qmod, tvm_sima.quantize_report(qmod), run(mod, evals), run(qmod, evals)


CONVS = {
    # name: (input shape, weight shape, conv2d kwargs)
    "plain": ((1, 4, 10, 10), (8, 4, 3, 3), {}),
    "padded": ((1, 4, 10, 10), (8, 4, 3, 3), {"padding": [1, 1, 1, 1]}),
    "strided": ((1, 4, 11, 11), (8, 4, 3, 3), {"strides": [2, 2], "padding": [0, 0, 1, 1]}),
    "dilated": ((1, 4, 12, 12), (8, 4, 3, 3), {"dilation": [2, 2]}),
    "depthwise": ((1, 8, 10, 10), (8, 1, 3, 3), {"groups": 8, "padding": [1, 1, 1, 1]}),
    "grouped": ((1, 8, 10, 10), (8, 4, 3, 3), {"groups": 2}),
    "depth_multiplier": ((1, 4, 10, 10), (8, 1, 3, 3), {"groups": 4}),
}


@pytest.mark.parametrize("mode", ["shift", "multiplier_shift"])
@pytest.mark.parametrize("kind", sorted(CONVS))
def test_conv2d_bias_relu6_fuses_into_one_sima_conv2d(kind, mode, tmp_path):
    #   x -> conv2d(W) -> add(b) -> clip(0, 6) -> y        (one sima.conv2d)
    shape, wshape, kwargs = CONVS[kind]
    bias = const((1, wshape[0], 1, 1))
    mod = graph(shape, lambda bb, x: relax.op.clip(
        bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d(x, const(wshape), **kwargs)), bias)), 0, 6))
    qmod, report, ref, out = quantize_and_compare(mod, shape, tmp_path, requant_mode=mode)
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 1 and counts["relax.nn.conv2d"] == 0 and counts["relax.add"] == 0
    assert counts["relax.clip"] == 0  # relu6 is the fused op's clip range
    assert counts["sima.quantize"] == 1 and counts["sima.dequantize"] == 1
    assert report["fused"] == ["conv2d_0"] and report["float_ops"] == []
    assert min(o.min() for o in out) >= 0 and max(o.max() for o in out) <= 6.0
    assert total_sqnr(ref, out) > 30, total_sqnr(ref, out)


def test_conv2d_nhwc(tmp_path):
    #   x (NHWC) -> conv2d(W, HWIO) -> y
    shape = (1, 9, 9, 4)
    mod = graph(shape, lambda bb, x: relax.op.nn.conv2d(x, const((3, 3, 4, 6)), data_layout="NHWC",
                                                         kernel_layout="HWIO", padding=[1, 1, 1, 1]))
    qmod, _, ref, out = quantize_and_compare(mod, shape, tmp_path)
    assert op_counts(qmod)["sima.conv2d"] == 1
    assert total_sqnr(ref, out) > 30


def test_batch_norm_folds_into_the_conv(tmp_path):
    #   x -> conv2d(W) -> batch_norm(gamma, beta, mean, var) -> relu -> y      (one sima.conv2d)
    shape = (1, 3, 8, 8)

    def body(bb, x):
        conv = bb.emit(relax.op.nn.conv2d(x, const((5, 3, 3, 3))))
        bn = bb.emit(relax.op.nn.batch_norm(conv, const((5,), positive=True), const((5,)), const((5,)),
                                            const((5,), positive=True), axis=1, training=False))
        return relax.op.nn.relu(bb.emit(relax.TupleGetItem(bn, 0)))

    qmod, report, ref, out = quantize_and_compare(graph(shape, body), shape, tmp_path)
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 1 and counts["relax.multiply"] == 0 and counts["relax.nn.batch_norm"] == 0
    assert report["float_ops"] == []
    assert total_sqnr(ref, out) > 30


@pytest.mark.parametrize("rank", [2, 3])
def test_dense_with_bias(rank, tmp_path):
    #   x (.., 16) -> matmul(W 16x10) -> add(b) -> y      (one sima.dense)
    shape = (2, 16) if rank == 2 else (1, 3, 16)
    mod = graph(shape, lambda bb, x: relax.op.add(bb.emit(relax.op.matmul(x, const((16, 10)))), const((10,))))
    qmod, report, ref, out = quantize_and_compare(mod, shape, tmp_path)
    counts = op_counts(qmod)
    assert counts["sima.dense"] == 1 and counts["relax.matmul"] == 0 and report["float_ops"] == []
    assert out[0].shape == shape[:-1] + (10,)
    assert total_sqnr(ref, out) > 30


@pytest.mark.parametrize("op", ["add", "subtract", "multiply", "concat"])
def test_binary_ops_in_integers(op, tmp_path):
    #        +-> conv2d(Wa) -> a -+
    #   x ---+                    +--> add / subtract / multiply / concat(a, b) -> y
    #        +-> conv2d(Wb) -> b -+
    shape = (1, 3, 8, 8)

    def body(bb, x):
        a = bb.emit(relax.op.nn.conv2d(x, const((4, 3, 1, 1))))
        b = bb.emit(relax.op.nn.conv2d(x, const((4, 3, 1, 1), scale=0.1)))
        if op == "concat":
            return relax.op.concat([a, b], axis=1)
        return getattr(relax.op, op)(a, b)

    qmod, report, ref, out = quantize_and_compare(graph(shape, body), shape, tmp_path)
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 2 and report["float_ops"] == []
    assert counts["sima.dequantize"] == 1  # only at the output: the op itself ran on integers
    assert total_sqnr(ref, out) > (25 if op == "multiply" else 30)


def realized_input_qparams(qmod) -> sm.QParams:
    info = tvm_sima.read_quantize_info(qmod)["x.input"]
    return sm.QParams(info.scale[0], info.zero_point[0], "int8")


@pytest.mark.parametrize("name, make", [
    ("max_pool2d", lambda x: relax.op.nn.max_pool2d(x, (2, 2), (2, 2))),
    ("reshape", lambda x: relax.op.reshape(x, (1, 4, 64))),
    ("flatten", lambda x: relax.op.reshape(x, (1, 256))),
    ("transpose", lambda x: relax.op.permute_dims(x, [0, 2, 3, 1])),
    ("squeeze", lambda x: relax.op.squeeze(x, [0])),
    ("pad", lambda x: relax.op.nn.pad(x, [0, 0, 0, 0, 1, 1, 2, 2], "constant", 0.0)),
    ("resize_nearest", lambda x: relax.op.image.resize2d(x, (16, 16), method="nearest_neighbor")),
    ("relu", lambda x: relax.op.nn.relu(x)),
    ("relu6", lambda x: relax.op.nn.relu6(x)),
    ("clip", lambda x: relax.op.clip(x, -0.5, 1.0)),
    ("maximum_constant_first", lambda x: relax.op.maximum(relax.const(-0.25, "float32"), x)),
])
def test_value_preserving_ops_are_exact_on_integers(name, make, tmp_path):
    #   x -> op -> y        (the op runs on int8; y == op(dequantize(quantize(x))) exactly)
    shape = (1, 4, 8, 8)
    mod = graph(shape, lambda bb, x: make(x))
    qmod, report, _, out = quantize_and_compare(mod, shape, tmp_path)
    assert report["float_ops"] == []
    qp = realized_input_qparams(qmod)
    evals = batches(shape, 4, 2)
    fake = [sm.dequantize(sm.quantize(x, qp, "half_up"), qp).astype("float32") for x in evals]
    expected = run(mod, fake)
    if name in ("relu", "relu6", "clip", "maximum_constant_first"):  # the output keeps its own scale after the clip
        for e, o in zip(expected, out, strict=True):
            assert np.abs(e - o).max() <= float(qp.scale) * 1.01
    else:
        for e, o in zip(expected, out, strict=True):
            np.testing.assert_array_equal(o, e)


@pytest.mark.parametrize("name", ["sigmoid", "tanh", "gelu", "silu", "leakyrelu", "exp", "add_scalar"])
def test_unary_ops_become_lookup_tables(name, tmp_path):
    #   x -> f(x) -> y      (f a 256-entry int8 table: relax.take)
    makers = {
        "sigmoid": relax.op.sigmoid, "tanh": relax.op.tanh, "gelu": relax.op.nn.gelu, "silu": relax.op.nn.silu,
        "leakyrelu": lambda x: relax.op.nn.leakyrelu(x, 0.1), "exp": relax.op.exp,
        "add_scalar": lambda x: relax.op.add(x, relax.const(0.75, "float32")),
    }
    shape = (1, 64)
    qmod, report, ref, out = quantize_and_compare(graph(shape, lambda bb, x: makers[name](x)), shape, tmp_path)
    counts = op_counts(qmod)
    assert counts["relax.take"] == 1 and report["float_ops"] == []
    assert total_sqnr(ref, out) > 25


def test_global_average_pool_and_mean(tmp_path):
    #   x -> mean(axis=[2, 3], keepdims) -> reshape -> matmul(W) -> y
    shape = (1, 6, 5, 5)

    def body(bb, x):
        pooled = bb.emit(relax.op.mean(x, axis=[2, 3], keepdims=True))
        return relax.op.matmul(bb.emit(relax.op.reshape(pooled, (1, 6))), const((6, 3)))

    qmod, report, ref, out = quantize_and_compare(graph(shape, body), shape, tmp_path)
    counts = op_counts(qmod)
    assert counts["relax.sum"] == 1 and counts["sima.dense"] == 1 and report["float_ops"] == []
    assert total_sqnr(ref, out) > 25


def test_ops_without_integer_form_stay_float_and_are_reported(tmp_path, caplog):
    #   x -> conv2d -> log_softmax -> resize(bicubic) -> y     (bilinear is integer since lowering/resize.py)
    shape = (1, 3, 6, 6)

    def body(bb, x):
        conv = bb.emit(relax.op.nn.conv2d(x, const((4, 3, 1, 1))))
        soft = bb.emit(relax.op.nn.log_softmax(conv, axis=1))
        return relax.op.image.resize2d(soft, (12, 12), method="cubic")

    with caplog.at_level(logging.WARNING):
        qmod, report, ref, out = quantize_and_compare(graph(shape, body), shape, tmp_path)
    ops = [f["op"] for f in report["float_ops"]]
    assert ops == ["relax.nn.log_softmax", "relax.image.resize2d"]
    assert "cubic resize" in report["float_ops"][1]["reason"]
    assert "2 ops stay in float" in caplog.text and "relax.nn.log_softmax" in caplog.text
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 1 and counts["sima.dequantize"] == 1  # dequantized once, before log_softmax
    assert total_sqnr(ref, out) > 25


def test_softmax_in_integers(tmp_path):
    #   x -> matmul(W) -> softmax -> y       (exp table, int64 sums, one integer division)
    shape = (4, 12)
    mod = graph(shape, lambda bb, x: relax.op.nn.softmax(bb.emit(relax.op.matmul(x, const((12, 10), 0.5)))))
    qmod, report, ref, out = quantize_and_compare(mod, shape, tmp_path)
    counts = op_counts(qmod)
    assert report["float_ops"] == [] and counts["relax.nn.softmax"] == 0 and counts["relax.floor_divide"] == 1
    assert total_sqnr(ref, out) > 25
    for o in out:  # still a distribution, to within the output's quantization
        np.testing.assert_allclose(o.sum(axis=-1), 1.0, atol=0.05)


@pytest.mark.parametrize("padding, include_pad", [((0, 0, 0, 0), False), ((1, 1, 1, 1), True)])
def test_avg_pool2d_as_a_window_sum(padding, include_pad, tmp_path):
    #   x -> avg_pool2d(3x3, stride 2) -> y      (a depthwise sima.conv2d with all-one weights)
    shape = (1, 4, 9, 9)
    mod = graph(shape, lambda bb, x: relax.op.nn.avg_pool2d(x, (3, 3), (2, 2), padding,
                                                            count_include_pad=include_pad))
    qmod, report, ref, out = quantize_and_compare(mod, shape, tmp_path)
    counts = op_counts(qmod)
    assert report["float_ops"] == [] and counts["sima.conv2d"] == 1 and counts["relax.nn.avg_pool2d"] == 0
    assert total_sqnr(ref, out) > 30


def test_onnx_hardswish_composite(tmp_path):
    #   x -> x * clip(x + 3, 0, 6) / 6 -> y      (how the ONNX importer writes HardSwish)
    shape = (1, 64)

    def body(bb, x):
        clipped = bb.emit(relax.op.clip(bb.emit(relax.op.add(x, relax.const(3.0, "float32"))), 0, 6))
        return relax.op.multiply(x, bb.emit(relax.op.divide(clipped, relax.const(6.0, "float32"))))

    qmod, report, ref, out = quantize_and_compare(graph(shape, body), shape, tmp_path)
    # the whole chain of one input is one table (lowering.chains); its inside has no parameters
    assert report["float_ops"] == [] and op_counts(qmod)["relax.take"] == 1
    assert report["integer_ops"]["lut(chain)"] == 1 and len(tvm_sima.read_quantize_info(qmod)) == 2
    assert total_sqnr(ref, out) > 30


def test_quantize_info_on_every_quantized_tensor(tmp_path):
    #   x -> conv2d -> relu -> max_pool -> conv2d -> y
    shape = (1, 3, 8, 8)

    def body(bb, x):
        a = bb.emit(relax.op.nn.relu(bb.emit(relax.op.nn.conv2d(x, const((4, 3, 3, 3))))))
        return relax.op.nn.conv2d(bb.emit(relax.op.nn.max_pool2d(a, (2, 2), (2, 2))), const((2, 4, 1, 1)))

    qmod, _, _, _ = quantize_and_compare(graph(shape, body), shape, tmp_path)
    infos = tvm_sima.read_quantize_info(qmod)
    assert set(infos) == {"conv2d_0.input", "conv2d_0.output", "conv2d_1.input", "conv2d_1.output"}
    assert infos["conv2d_0.output"].zero_point[0] == -128  # relu output: [0, max] uses the whole range
    # The max pool keeps its input's scale: the tensor feeding conv2d_1 has conv2d_0.output's parameters.
    assert infos["conv2d_1.input"].scale == infos["conv2d_0.output"].scale
    assert all(info.dtype == "int8" for info in infos.values())
    # Every integer op's result feeds a quantize_info.
    func = qmod["main"]
    produced = {}
    for block in func.body.blocks:
        for binding in block.bindings:
            produced[binding.var] = binding.value
    for var, value in produced.items():
        if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in (
                "sima.conv2d", "sima.quantize"):
            users = [v for v, val in produced.items() if isinstance(val, relax.Call) and any(
                isinstance(a, relax.Var) and a.same_as(var) for a in val.args)]
            assert [produced[u].op.name for u in users] == ["sima.quantize_info"]
    assert math.isfinite(float(infos["conv2d_1.output"].scale[0]))


def _dense_call(qmod):
    """The one ``sima.dense`` call of ``qmod``."""
    return [b.value for b in qmod["main"].body.blocks[0].bindings if getattr(b.value, "op", None) is not None
            and getattr(b.value.op, "name", "") == "sima.dense"][0]


def test_16_bit_activations_and_the_accumulator_guard(tmp_path):
    #   x -> conv2d 3x3 (36 products) -> y          16-bit activations: fused
    #   x -> matmul (4096 products) -> y            16-bit: past int32, fused with a 48-bit accumulator (int64 bias)
    #   x -> matmul (4096 products), 16-bit weights, 8-bit x, 32-bit bias: the int32 accumulator could
    #        overflow (int16 weight codes in multiplier_shift mode), so the layer gets the 48-bit one (not
    #        float), and the report says so
    shape = (1, 4, 10, 10)
    conv = graph(shape, lambda bb, x: relax.op.nn.conv2d(x, const((8, 4, 3, 3))))
    qmod, report, ref, out = quantize_and_compare(conv, shape, tmp_path / "conv", activation_bits=16,
                                                  input_bits=16, bias_bits=48)
    assert op_counts(qmod)["sima.conv2d"] == 1 and report["float_ops"] == []
    assert tvm_sima.read_quantize_info(qmod)["conv2d_0.input"].dtype == "int16"
    assert total_sqnr(ref, out) > 35
    # Own weights and extrema: a 4-value output calibrated on 64 batches is clipped by some held-out batch
    # under percentile, whatever the accumulator (seen with the shared RNG's weights).
    weight = relax.const((np.random.default_rng(0).standard_normal((4096, 4)) * 0.3).astype("float32"))
    wide = graph((1, 4096), lambda bb, x: relax.op.matmul(x, weight))
    qmod, report, ref, out = quantize_and_compare(wide, (1, 4096), tmp_path / "dense", activation_bits=16,
                                                  input_bits=16, bias_bits=48,
                                                  calibration_strategy_for_activation="extrema")
    assert report["float_ops"] == [] and op_counts(qmod)["sima.dense"] == 1
    dense = _dense_call(qmod)
    assert str(dense.args[2].ty.dtype) == "int64"
    assert total_sqnr(ref, out) > 35  # the int8 weights bound it
    qmod, report, ref, out = quantize_and_compare(wide, (1, 4096), tmp_path / "wide_weights", weight_bits=16,
                                                  requant_mode="multiplier_shift",
                                                  calibration_strategy_for_activation="extrema")
    assert report["float_ops"] == [] and op_counts(qmod)["sima.dense"] == 1
    dense = _dense_call(qmod)
    assert str(dense.args[2].ty.dtype) == "int64"
    assert any("32-bit accumulator could overflow" in n and n.endswith("48-bit accumulator") for n in report["notes"])
    assert total_sqnr(ref, out) > 35


def test_the_accumulator_guard_knows_its_width():
    # One row of 4096 weights at 127: with 8-bit inputs (|x| <= 128) the worst sum is 6.7e7, inside int32;
    # with 16-bit inputs it is 1.7e10, past int32 but inside the 48-bit accumulator 16-bit data get.
    # 16-bit weights at 32767 on 8-bit inputs with a 32-bit bias: 1.7e10 in an int32 accumulator, refused.
    ones = np.full((1, 4096), 127, np.int8)
    x8, x16 = (sm.choose_qparams(-1.0, 1.0, sm.QScheme.ASYMMETRIC, b) for b in (8, 16))
    ok8 = lowering.FusedConstants(ones, np.zeros(1, np.int64), 0, accumulator_bits=lowering.accumulator_bits(x8))
    ok16 = lowering.FusedConstants(ones, np.zeros(1, np.int64), 0, accumulator_bits=lowering.accumulator_bits(x16))
    assert ok8.accumulator_bits == 32 and ok16.accumulator_bits == 48
    assert lowering.accumulator_overflow(ok8, x8, True) is None
    assert lowering.accumulator_overflow(ok16, x16, True) is None
    assert "32-bit accumulator could overflow" in lowering.accumulator_overflow(
        dataclasses.replace(ok16, accumulator_bits=32), x16, True)
    wide_w = lowering.FusedConstants(np.full((1, 4096), 32767, np.int16), np.zeros(1, np.int64), 0)
    assert "32-bit accumulator could overflow with 8-bit inputs" in lowering.accumulator_overflow(wide_w, x8, True)
