"""``relax.image.resize2d`` (bilinear) as integers: the lowering is bit-exact with ``tvm_sima.math.resize``.

Both routes: the float route (``quantize``: exact taps, half up) and the converter (``convert``: LiteRT's
10-bit taps and raw codes for a model whose quantize rounds half away from zero, as TFLite's; exact
taps rounded half to even for ONNX's).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import quantize_uniform
from helpers.relax import one_input_module
from lowering.test_lowering import run_lowered
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm
from tvm_sima.lowering.resize import lower_resize

RNG = np.random.default_rng(16)
FLOAT_ROUTE = lowering.Numerics.for_config(tvm_sima.QConfig())
ROUTES = {"float-route": (FLOAT_ROUTE, None), "tflite-model": (lowering.Numerics.tflite(), "half_away_from_zero"),
          "onnx-model": (lowering.Numerics.tflite(), "half_even")}
LAYOUTS = {"NHWC": ((1, 5, 7, 3), (1, 2)), "NCHW": ((1, 3, 5, 7), (2, 3))}


def resize_call(shape, size, layout, mode) -> relax.Call:
    x = relax.Var("x", relax.TensorType(shape, "float32"))
    return relax.BlockBuilder().normalize(relax.op.image.resize2d(x, size, None, layout, "linear", mode, ""))


def expected(q, call, axes, x_q, y_q, route, mode):
    """The NumPy model of what ``lower_resize`` must compute, written from the module docstrings."""
    numerics, rounding = ROUTES[route]
    out_shape = [int(d) for d in call.ty.shape]
    tflite = route == "tflite-model" and mode != "pytorch_half_pixel"
    taps = [sm.linear_taps(q.shape[a], out_shape[a], mode, tflite=tflite) for a in axes]
    if tflite and y_q is x_q:  # LiteRT's kernel: the raw codes, rounded half away from zero
        return sm.resize_bilinear(q, taps, axes, 0, sm.FixedPointMultiplier(1, 20, "half_away_from_zero"), 0, -128, 127)
    base = numerics.multiplier(x_q.scale / y_q.scale) if y_q is not x_q else sm.FixedPointMultiplier(1, 0, "half_up")
    fpm = sm.FixedPointMultiplier(base.multiplier, base.right_shift + 20, rounding or base.rounding)
    return sm.resize_bilinear(q, taps, axes, x_q.zero_point, fpm, y_q.zero_point, -128, 127)


@pytest.mark.parametrize("route", sorted(ROUTES))
@pytest.mark.parametrize("mode", sm.LINEAR_COORDINATE_MODES)
@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_bilinear_resize_is_its_numpy_model(route, mode, layout):
    shape, axes = LAYOUTS[layout]
    size = (11, 4)
    call = resize_call(shape, size, layout, mode)
    x_q = sm.QParams(0.02, 5, "int8")
    for y_q in (x_q, sm.QParams(0.03, -7, "int8")):
        numerics, rounding = ROUTES[route]
        lowered = lower_resize(lowering.Request(call, [x_q], y_q, numerics, rounding=rounding))
        assert not isinstance(lowered, str), lowered
        q = RNG.integers(-128, 128, size=shape).astype("int8")
        np.testing.assert_array_equal(run_lowered(lowered, q), expected(q, call, axes, x_q, y_q, route, mode))


def test_tflite_models_get_litert_taps_and_onnx_models_exact_ones():
    call = resize_call((1, 3, 3, 1), (7, 7), "NHWC", "asymmetric")  # 1024 * 3 / 7 is not an integer
    x_q = sm.QParams(0.02, 5, "int8")
    q = RNG.integers(-128, 128, size=(1, 3, 3, 1)).astype("int8")
    runs = {route: run_lowered(lower_resize(lowering.Request(call, [x_q], x_q, n, rounding=r)), q)
            for route, (n, r) in ROUTES.items()}
    np.testing.assert_array_equal(runs["tflite-model"], sm.tflite_resize_bilinear(q, (7, 7)))
    assert not np.array_equal(runs["tflite-model"], runs["onnx-model"])


@pytest.mark.parametrize("why,call", [
    ("cubic", relax.op.image.resize2d(relax.Var("x", relax.TensorType((1, 4, 4, 2), "float32")), (8, 8), None, "NHWC",
                                      "cubic")),
    ("tf_crop_and_resize", relax.op.image.resize2d(relax.Var("x", relax.TensorType((1, 4, 4, 2), "float32")), (8, 8),
                                                   None, "NHWC", "linear", "tf_crop_and_resize")),
])
def test_other_resizes_say_why_they_stay_float(why, call):
    call = relax.BlockBuilder().normalize(call)
    x_q = sm.QParams(0.02, 5, "int8")
    reason = lower_resize(lowering.Request(call, [x_q], x_q, FLOAT_ROUTE))
    assert isinstance(reason, str) and why in reason


def test_the_float_route_quantizes_a_bilinear_resize_to_integers(tmp_path):
    # palm_detection_lite's two RESIZE_BILINEAR (half_pixel_centers) stayed float.
    shape = (1, 6, 6, 4)
    mod = one_input_module(shape, "float32", lambda bb, x: relax.op.image.resize2d(
        x, (12, 12), None, "NHWC", "linear", "half_pixel", ""))
    qmod, report, infos = quantize_uniform(mod, shape, -1, 3, RNG, tmp_path)
    assert report["float_ops"] == [] and report["integer_ops"]["resize2d(linear)"] == 1
    x = RNG.uniform(-1, 3, size=shape).astype("float32")
    x_q = next(i.qparams for n, i in infos.items() if n.endswith(".input"))
    taps = [sm.linear_taps(6, 12, "half_pixel", tflite=False)] * 2
    want = sm.resize_bilinear(sm.quantize(x, x_q, "half_up"), taps, (1, 2), x_q.zero_point,
                              sm.FixedPointMultiplier(1, 20, "half_up"), x_q.zero_point, x_q.qmin, x_q.qmax)
    got = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(got, sm.dequantize(want, x_q).astype("float32"))


def test_a_symbolic_batch_still_lowers():
    # calibration builds use a symbolic batch; only the spatial sizes need to be static.
    n = tvm.tirx.Var("n", "int64")
    call = resize_call((n, 3, 5, 7), (10, 14), "NCHW", "half_pixel")
    x_q = sm.QParams(0.02, 5, "int8")
    assert isinstance(lower_resize(lowering.Request(call, [x_q], x_q, FLOAT_ROUTE)), lowering.Lowered)
