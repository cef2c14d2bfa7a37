"""The shared lowering (tvm_sima.lowering), family by family, and its one registry.

Each family's emitted integer ops are built and run, and compared bit for bit with the NumPy
integer model of the same algorithm in ``tvm_sima.math``; a new family registered with one line
reaches both routes (``quantize`` of a float model and ``convert`` of a QDQ one).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import quantize_uniform
from helpers.relax import one_input_module, run_lowered
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm
from tvm_sima import ops as so
from tvm_sima.lowering.arithmetic import lower_add, lower_multiply
from tvm_sima.lowering.pooling import lower_mean

RNG = np.random.default_rng(14)
INT32 = (-(2**31), 2**31 - 1)
SHAPE = (2, 3, 4, 5)


def qparams(scale: float, zp: int) -> sm.QParams:
    return sm.QParams(scale, zp, "int8")


def codes(shape=SHAPE) -> np.ndarray:
    return RNG.integers(-128, 128, size=shape).astype("int8")


def test_shift15_add_is_math_fixed_point_add():
    a_q, b_q, y_q = qparams(0.031, 3), qparams(0.07, -20), qparams(0.09, 5)
    a, b = codes(), codes()
    lowered = lower_add(a_q, b_q, y_q, (y_q.qmin, y_q.qmax), "int8", lowering.Numerics.npu_shift())
    np.testing.assert_array_equal(run_lowered(lowered, a, b), sm.fixed_point_add(a, b, a_q, b_q, y_q))


@pytest.mark.parametrize("numerics", [lowering.Numerics.tflite(), lowering.Numerics.for_config(tvm_sima.QConfig())],
                         ids=["tflite", "float-route"])
def test_add_is_its_integer_model(numerics):
    a_q, b_q, y_q = qparams(0.02, -7), qparams(0.05, 11), qparams(0.06, -2)
    a, b = codes(), codes()
    lowered = lower_add(a_q, b_q, y_q, (-100, 100), "int8", numerics)
    ca, cb = a.astype(np.int64) - (-7), b.astype(np.int64) - 11
    if numerics.add is lowering.AddMethod.TFLITE:
        twice = 2 * 0.05
        f_a, f_b, f_y = (sm.FixedPointMultiplier.tflite(r) for r in (0.02 / twice, 0.05 / twice,
                                                                      twice / ((1 << 20) * 0.06)))
        total = f_a.apply(ca << 20, 0, *INT32) + f_b.apply(cb << 20, 0, *INT32)
        expected = f_y.apply(total, -2, -100, 100)
    else:  # both to s_y / 256, then >> 8 rounded half up
        fine = 0.06 / 256
        total = numerics.multiplier(0.02 / fine).apply(ca, 0, *INT32) + numerics.multiplier(0.05 / fine).apply(
            cb, 0, *INT32)
        expected = sm.FixedPointMultiplier(1, 8).apply(total, -2, -100, 100)
    np.testing.assert_array_equal(run_lowered(lowered, a, b), expected)


def test_tflite_multiply_computes_its_factor_in_float32():
    a_q, b_q, y_q = qparams(0.013, 4), qparams(0.21, -9), qparams(0.05, 1)
    a, b = codes(), codes()
    lowered = lower_multiply(a_q, b_q, y_q, (y_q.qmin, y_q.qmax), "int8", lowering.Numerics.tflite())
    fpm = sm.FixedPointMultiplier.tflite(float(np.float32(0.013) * np.float32(0.21) / np.float32(0.05)))
    expected = fpm.apply((a.astype(np.int64) - 4) * (b.astype(np.int64) + 9), 1)
    np.testing.assert_array_equal(run_lowered(lowered, a, b), expected)
    assert lowered.shifts == [fpm.right_shift] and lowered.multipliers == [fpm.multiplier]


def test_tflite_mean_folds_the_count_into_the_multiplier():
    x_q, y_q = qparams(0.04, -5), qparams(0.01, 3)
    x = codes()
    lowered = lower_mean(list(SHAPE), [2, 3], True, x_q, y_q, (y_q.qmin, y_q.qmax), "int8", lowering.Numerics.tflite())
    fpm = sm.FixedPointMultiplier.tflite(0.04 / 0.01).fold_divisor(20)
    total = x.astype(np.int64).sum(axis=(2, 3), keepdims=True) - (-5) * 20
    np.testing.assert_array_equal(run_lowered(lowered, x), fpm.apply(total, 3))


def test_a_table_holds_the_quantized_function_of_every_code():
    x_q, y_q = qparams(0.05, 0), qparams(1 / 256, -128)
    values = lowering.table(lambda v: 1 / (1 + np.exp(-v)), x_q, y_q, "half_even", (y_q.qmin, y_q.qmax))
    assert values.shape == (256,) and values.dtype == np.int8
    x = codes()
    lowered = lowering.Lowered("table", lambda bb, xs: lowering.emit_table(bb, xs[0], x_q, values))
    expected = sm.quantize(1 / (1 + np.exp(-sm.dequantize(x, x_q))), y_q, "half_even")
    np.testing.assert_array_equal(run_lowered(lowered, x), expected)


def _square(request: lowering.Request):
    """A family written in this test: x * x as a lookup table (any unary function is one)."""
    x_q = request.inputs[0]
    values = lowering.table(np.square, x_q, request.output, "half_up", request.codes())
    return lowering.Lowered("integer square", lambda bb, xs: lowering.emit_table(bb, xs[0], x_q, values))


def _float_square() -> tvm.IRModule:
    return one_input_module((1, 16), "float32", lambda bb, x: relax.op.square(x))


def _qdq_square() -> tvm.IRModule:
    return _qdq_module((1, 16), relax.op.square, qparams(0.02, 0), qparams(0.01, -128))


def test_a_new_family_is_one_registry_line_for_both_routes(tmp_path):
    calib = [RNG.uniform(-2, 2, size=(1, 16)).astype("float32") for _ in range(8)]
    assert "relax.square" not in lowering.FAMILIES
    _, before = tvm_sima.convert(_qdq_square())
    assert [u["op"] for u in before.unconverted] == ["relax.square"]
    lowering.register(["relax.square"], lowering.Family(lambda call: [call.args[0]], _square))  # the one line
    try:
        qmod = tvm_sima.quantize(_float_square(), None, calib, work_dir=tmp_path)
        report = tvm_sima.quantize_report(qmod)
        assert report["float_ops"] == [] and report["integer_ops"]["relax.square"] == 1
        converted, after = tvm_sima.convert(_qdq_square())
        assert after.unconverted == [] and [c["op"] for c in after.converted] == ["integer square"]
        x = np.linspace(-1.9, 1.9, 16, dtype="float32").reshape(1, 16)
        vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
        np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), x * x, atol=0.05)
    finally:
        del lowering.FAMILIES["relax.square"]


def _qdq_module(shape, body, x_q, y_q) -> tvm.IRModule:
    """``main(x: int8) = quantize(body(dequantize(x)))``: a QDQ chain as onnxruntime writes them."""
    return one_input_module(shape, "int8", lambda bb, x: so.quantize(bb.emit(body(bb.emit(so.dequantize(x, x_q)))),
                                                                     y_q, "half_even"))


CONVERTER_GAINS = {
    # op: (body, output parameters, largest difference to dequantize -> float op -> quantize, in LSB)
    "relax.nn.pad": (lambda x: relax.op.nn.pad(x, [0, 0, 0, 0, 1, 1, 2, 2], "constant", 0.0), None, 0),
    "relax.image.resize2d": (lambda x: relax.op.image.resize2d(x, (8, 10), method="nearest_neighbor"), None, 0),
    "relax.nn.adaptive_avg_pool2d": (lambda x: relax.op.nn.adaptive_avg_pool2d(x, (1, 1)), qparams(0.01, -3), 1),
}


@pytest.mark.parametrize("op", sorted(CONVERTER_GAINS))
def test_ops_of_the_shared_families_convert_in_qdq_models_too(op):
    # One lowering: the converter now gets every family the float route has (these stayed float).
    body, y_q, tolerance = CONVERTER_GAINS[op]
    x_q = qparams(0.02, 5)
    mod = _qdq_module((1, 3, 4, 5), body, x_q, y_q or x_q)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and len(report.converted) == 1
    x = codes((1, 3, 4, 5))
    run = [relax.VirtualMachine(tvm_sima.build(m, offload=False), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
           for m in (mod, converted)]
    assert np.abs(run[0].astype(np.int32) - run[1]).max() <= tolerance


def test_one_set_of_mode_names_for_the_converter_and_the_config(fixtures_dir):
    mod, _ = tvm_sima.load_model(fixtures_dir / "digits_int8.tflite")
    by_name = {name: tvm_sima.convert(mod, name) for name in ("tflite", "multiplier_shift", sm.RequantMode.SHIFT)}
    tvm.ir.assert_structural_equal(by_name["tflite"][0], by_name["multiplier_shift"][0])
    assert by_name["multiplier_shift"][1].mode == "multiplier_shift"
    assert by_name[sm.RequantMode.SHIFT][1].mode == "shift"
    assert lowering.Numerics.for_config(tvm_sima.QConfig(requant_mode="multiplier_shift")).fused \
        is sm.RequantMode.parse("tflite")
    with pytest.raises(ValueError, match="use one of"):
        tvm_sima.convert(mod, "exact")


@pytest.mark.parametrize("layout", ["channel-axis", "flattened"])
def test_prelu_is_one_table_per_slope(layout, tmp_path):
    # "channel-axis": prelu(x, alpha[C], axis=1); "flattened": as TVM's TFLite importer writes PRELU,
    # a 1-D tensor with one slope per element, repeating per channel.
    slopes = np.array([0.25, -0.1, 0.25, 1.5], dtype="float32")
    if layout == "channel-axis":
        shape, alpha, axis = (1, 4, 3, 5), relax.const(slopes), 1
    else:
        shape, alpha, axis = (60,), relax.const(np.tile(slopes, 15)), 0
    mod = one_input_module(shape, "float32", lambda bb, x: relax.op.nn.prelu(x, alpha, axis=axis))
    qmod, report, infos = quantize_uniform(mod, shape, -3, 3, RNG, tmp_path)
    assert report["float_ops"] == [] and report["integer_ops"]["lut(prelu)"] == 1
    x = RNG.uniform(-2.9, 2.9, size=shape).astype("float32")
    x_q, y_q = (next(i.qparams for n, i in infos.items() if n.endswith(suffix))
                for suffix in (".input", "prelu@0.output"))
    codes_in = sm.quantize(x, x_q, "half_up")
    real = sm.dequantize(codes_in, x_q)
    per_element = slopes.reshape([-1 if i == axis else 1 for i in range(len(shape))]) if layout == "channel-axis" \
        else np.tile(slopes, 15)
    expected = sm.dequantize(sm.quantize(np.where(real >= 0, real, per_element * real), y_q, "half_up"), y_q)
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected.astype("float32"))


CONSTANT_OPS = {
    # op: (builder, real function) with a per-channel constant of shape (1, 4, 1, 1)
    "add": (relax.op.add, np.add),
    "subtract_from": (lambda x, c: relax.op.subtract(c, x), lambda x, c: c - x),
    "multiply": (relax.op.multiply, np.multiply),
    "divide": (relax.op.divide, np.divide),
}


@pytest.mark.parametrize("op", sorted(CONSTANT_OPS))
def test_an_op_with_a_constant_tensor_is_one_table_per_value(op, tmp_path):
    # PP-OCR det's add / subtract / multiply / divide by per-channel constants stayed float.
    build, real_fn = CONSTANT_OPS[op]
    shape, c = (1, 4, 3, 5), np.array([0.5, -1.25, 2.0, 0.5], dtype="float32").reshape(1, 4, 1, 1)
    mod = one_input_module(shape, "float32", lambda bb, x: build(x, relax.const(c)))
    calib = [RNG.uniform(-3, 3, size=shape).astype("float32") for _ in range(8)]
    qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path)
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == [], report["float_ops"]
    infos = tvm_sima.read_quantize_info(qmod)
    x_q = next(i.qparams for n, i in infos.items() if n.endswith(".input"))
    y_q = next(i.qparams for n, i in infos.items() if n.endswith("@0.output"))
    x = RNG.uniform(-2.9, 2.9, size=shape).astype("float32")
    real = sm.dequantize(sm.quantize(x, x_q, "half_up"), x_q)
    expected = sm.dequantize(sm.quantize(real_fn(real, c.astype(np.float64)), y_q, "half_up"), y_q)
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected.astype("float32"))
