"""Transposed convolution in integers (tvm_sima.lowering.transpose_conv), in both routes.

The integer form is zero insertion on the codes, then the fused ``sima.conv2d`` of the flipped,
channel-swapped kernel. Checked bit for bit against ``tvm_sima.math.conv2d_transpose_accumulate``
(a direct scatter, itself checked against onnxruntime's ConvTranspose), then through
``quantize`` (float graph) and ``convert`` (a QDQ ONNX model, against onnxruntime's unfused QDQ
execution)::

    x -> conv2d_transpose(W) -> add(b) -> relu -> y          (one sima.conv2d, no float op)
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from helpers.quantize import batches, graph, run, total_sqnr
from helpers.relax import op_counts
from onnx import TensorProto, helper
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm

RNG = np.random.default_rng(15)

#: name: (input NCHW shape, groups, conv2d_transpose kwargs, kernel hw)
CASES = {
    "k2s2": ((1, 4, 5, 6), 1, {"strides": (2, 2)}, (2, 2)),  # PP-OCR det, selfie segmentation
    "k3s2_padded": ((1, 4, 5, 5), 1, {"strides": (2, 2), "padding": (1, 1, 1, 1), "output_padding": (1, 1)}, (3, 3)),
    "asymmetric": ((1, 4, 4, 6), 1, {"strides": (3, 2), "padding": (2, 0, 1, 3)}, (3, 3)),
    "crop": ((1, 4, 5, 5), 1, {"strides": (1, 1), "padding": (3, 0, 0, 3)}, (2, 2)),  # padding > k - 1
    "dilated_grouped": ((1, 4, 5, 5), 2, {"strides": (2, 1), "dilation": (2, 1), "padding": (1, 1, 0, 0)}, (3, 2)),
}


def _call(case, layout="NCHW"):
    shape, groups, kwargs, (kh, kw) = CASES[case]
    cin, cout_g = shape[1], 3
    w = RNG.integers(-128, 128, size=(cin, cout_g, kh, kw)).astype(np.int8)
    x_shape = shape if layout == "NCHW" else (shape[0], shape[2], shape[3], shape[1])
    x = relax.Var("x", relax.TensorType(x_shape, "float32"))
    call = relax.BlockBuilder().normalize(relax.op.nn.conv2d_transpose(
        x, relax.const(w.astype("float32")), groups=groups, data_layout=layout, **kwargs))
    return call, w, x_shape


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_zero_insertion_and_sima_conv2d_is_the_math_transpose_conv(case, layout):
    call, w, x_shape = _call(case, layout)
    tc = lowering.transpose_conv(call)
    assert isinstance(tc, lowering.TransposeConv), tc
    channels = w.shape[1] * tc.groups
    zp_x, zp_y = -3, 4
    bias = RNG.integers(-5000, 5000, size=channels)
    shift = RNG.integers(9, 12, size=channels)
    hwigo = tc.hwigo(w).astype(np.int8)
    # sima.conv2d adds the bias to sum(x * w) on the raw codes: the zero-point fold is in the bias.
    folded = bias - zp_x * sm.per_channel_weight_view(hwigo.astype(np.int64), False).sum(axis=1)
    consts = lowering.FusedConstants(hwigo, folded, shift.tolist(), output_zero_point=zp_y)
    x = RNG.integers(-128, 128, size=x_shape).astype(np.int8)

    bb = relax.BlockBuilder()
    param = relax.Var("x", relax.TensorType(x_shape, "int8"))
    with bb.function("main", [param]):
        with bb.dataflow():
            out = bb.emit_output(bb.emit(lowering.emit_conv2d_transpose(
                bb, param, x_shape, consts, zp_x, (-100, 120), "int8", tc)))
        bb.emit_func_output(out)
    got = relax.VirtualMachine(tvm_sima.build(bb.get()), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()

    a = call.attrs
    acc = sm.conv2d_transpose_accumulate(
        x.astype(np.int64) - zp_x, w, strides=[int(s) for s in a["strides"]], padding=[int(p) for p in a["padding"]],
        output_padding=[int(p) for p in a["output_padding"]], dilation=[int(d) for d in a["dilation"]],
        groups=tc.groups, layout=layout)
    axis = layout.index("C")
    expected = sm.requantize(acc + bias.reshape([-1 if i == axis else 1 for i in range(4)]), 1, shift, "half_up",
                             zp_y, -100, 120, axis=axis)
    assert got.shape == tuple(int(d) for d in call.ty.shape)
    np.testing.assert_array_equal(got, expected)


def test_the_math_transpose_conv_is_onnxruntime_convtranspose():
    for case in sorted(CASES):
        call, w, x_shape = _call(case)
        a = call.attrs
        x = RNG.integers(-20, 20, size=x_shape)
        kwargs = {"strides": [int(s) for s in a["strides"]], "pads": [int(p) for p in a["padding"]],
                  "output_padding": [int(p) for p in a["output_padding"]],
                  "dilations": [int(d) for d in a["dilation"]], "group": int(a["groups"])}
        node = helper.make_node("ConvTranspose", ["x", "w"], ["y"], **kwargs)
        model = helper.make_model(helper.make_graph(
            [node], "t", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x_shape)],
            [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
            [helper.make_tensor("w", TensorProto.FLOAT, w.shape, w.astype(np.float32).ravel())]),
            opset_imports=[helper.make_opsetid("", 17)], ir_version=8)
        want = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(
            None, {"x": x.astype(np.float32)})[0]
        got = sm.conv2d_transpose_accumulate(x, w, strides=kwargs["strides"], padding=kwargs["pads"],
                                             output_padding=kwargs["output_padding"], dilation=kwargs["dilations"],
                                             groups=kwargs["group"], layout="NCHW")
        np.testing.assert_array_equal(got, want, err_msg=case)


@pytest.mark.parametrize("mode", ["shift", "multiplier_shift"])
@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_quantize_fuses_transpose_conv_bias_relu_into_one_sima_conv2d(layout, mode, tmp_path):
    shape = (1, 8, 6, 6) if layout == "NCHW" else (1, 6, 6, 8)
    rng = np.random.default_rng(0)  # its own draws: 34.6 to 38.4 dB over these four (2.5 dB above a 30 dB bound)
    w = rng.standard_normal((8, 4, 3, 3)).astype("float32") * 0.3
    b = rng.standard_normal(4).astype("float32") * 0.3
    bias = b.reshape((1, 4, 1, 1) if layout == "NCHW" else (1, 1, 1, 4))
    mod = graph(shape, lambda bb, x: relax.op.nn.relu(bb.emit(relax.op.add(bb.emit(relax.op.nn.conv2d_transpose(
        x, relax.const(w), strides=(2, 2), padding=(1, 1, 0, 0), output_padding=(1, 1), data_layout=layout)),
        relax.const(bias)))))
    with tvm_sima.qconfig(requant_mode=mode):
        qmod = tvm_sima.quantize(mod, None, batches(shape, 32, 1), work_dir=tmp_path)
    report = tvm_sima.quantize_report(qmod)
    counts = op_counts(qmod)
    assert counts["sima.conv2d"] == 1 and counts["relax.nn.conv2d_transpose"] == 0 and counts["relax.add"] == 0
    assert report["fused"] == ["conv2d_transpose_0"] and report["float_ops"] == []
    evals = batches(shape, 4, 2)
    ref, out = run(mod, evals), run(qmod, evals)
    assert out[0].shape == ref[0].shape and min(o.min() for o in out) >= 0
    assert total_sqnr(ref, out) > 30, total_sqnr(ref, out)


def _convtranspose_model(path, groups):
    """x[1, 4, 6, 6] -> ConvTranspose(k3 s2, pads, output_padding, +b) -> Relu -> ConvTranspose(k2 s2, groups) -> y."""
    rng = np.random.default_rng(4)
    inits = [helper.make_tensor(name, TensorProto.FLOAT, v.shape, v.ravel()) for name, v in (
        ("w0", (rng.standard_normal((4, 6, 3, 3)) * 0.3).astype(np.float32)),
        ("b0", (rng.standard_normal(6) * 0.2).astype(np.float32)),
        ("w1", (rng.standard_normal((6, 6 // groups, 2, 2)) * 0.3).astype(np.float32)))]
    nodes = [helper.make_node("ConvTranspose", ["x", "w0", "b0"], ["t0"], name="up0", strides=[2, 2],
                              pads=[1, 0, 1, 1], output_padding=[1, 0]),
             helper.make_node("Relu", ["t0"], ["r0"], name="relu"),
             helper.make_node("ConvTranspose", ["r0", "w1"], ["y"], name="up1", strides=[2, 2], group=groups)]
    graph = helper.make_graph(nodes, "up", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 6, 6])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def _onnxruntime_qdq(float_path, out_path, per_channel):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"x": x} for x in batches((1, 4, 6, 6), 16, 5)])

        def get_next(self):  # noqa: ANN201 - onnxruntime's interface
            return next(self.batches, None)

    quantize_static(str(float_path), str(out_path), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=per_channel)
    return out_path


@pytest.mark.parametrize("groups", [1, 2])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_convert_onnxruntime_qdq_convtranspose_within_one_lsb(per_channel, groups, tmp_path):
    path = _onnxruntime_qdq(_convtranspose_model(tmp_path / "f.onnx", groups), tmp_path / "q.onnx", per_channel)
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod, "tflite")
    assert report.unconverted == [], report.summary()
    assert [c["op"] for c in report.converted].count("sima.conv2d") == 2
    assert op_counts(converted)["relax.nn.conv2d_transpose"] == 0
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    model = onnx.load(str(path))
    scale = float(onnx.numpy_helper.to_array(next(i for i in model.graph.initializer if i.name == next(
        n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == "y").input[1])))
    xs = batches((1, 4, 6, 6), 8, 6)
    want = np.stack([session.run(None, {"x": x})[0] for x in xs])
    got = np.stack(run(converted, xs))
    diff = np.round(np.abs(got.astype(np.float64) - want) / scale)
    print(f"convert vs onnxruntime (ORT_DISABLE_ALL): {np.mean(diff == 0):.4f} exact, max {diff.max():.0f} LSB")
    assert diff.max() <= 1, (diff.max(), np.mean(diff == 0))
