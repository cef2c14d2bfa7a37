"""16-bit activations in every op family the float route lowers: integer, and as precise as 16 bits allow.

Each case is a tiny float graph quantized with ``activation_bits=16, input_bits=16, bias_bits=48``
and compared with the float graph (SQNR over every output value).

Why the bounds: a tensor on a 16-bit grid spanning ``R`` carries rounding noise of variance
``(R / 65535)**2 / 12``; for the Gaussian-like tensors here (``R`` about 9 standard deviations,
more for products) one grid costs about 88 dB of SQNR, and an op passes through two or three
grids (its inputs, its output, a rescale), so the int program lands near 80 dB. 8-bit codes
give at most about 40 dB on the same tensors, and an overflow or a wrong rescale gives far
less; 60 dB leaves 20 dB for the ops' own fixed-point roundings and fails any 8-bit-precise step.
Ops whose error is not the activation grid's have their own bound, said at the case.

Calibration is ``extrema`` and the graphs are evaluated on calibration batches: a percentile
clip (the default, 99.99%) alone caps a Gaussian tensor at about 45 dB, which is the calibrator's
choice, not the lowering's precision (what these tests measure).
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import graph, run, total_sqnr
from helpers.relax import op_counts
from tvm import relax

import tvm_sima

A16 = {"activation_bits": 16, "input_bits": 16, "bias_bits": 48, "calibration_strategy_for_activation": "extrema",
       "requant_mode": "multiplier_shift"}
RNG = np.random.default_rng(16)


def _module(shape: tuple, body) -> tvm.IRModule:
    """``graph(shape, body)`` with the weights drawn afresh: each case's numbers do not depend on the others."""
    global RNG
    RNG = np.random.default_rng(16)
    return graph(shape, body)


def _c(value) -> relax.Expr:
    return relax.const(np.asarray(value, dtype="float32"))


def _grid_weights(shape: tuple, axis: int = 0) -> relax.Expr:
    """Weights on their own 8-bit per-channel grid (``k * s``, ``max |k| = 127`` per channel): quantizing
    them loses nothing, so a fused op's error is its activations' and its requantization's alone."""
    k = RNG.integers(-127, 128, size=shape)
    first = [0] * len(shape)
    for c in range(shape[axis]):
        index = list(first)
        index[axis] = c
        k[tuple(index)] = 127
    scale = RNG.uniform(0.002, 0.004, size=shape[axis]).reshape([-1 if i == axis else 1 for i in range(len(shape))])
    return _c(k * scale)


def _conv(bb, x, cout=8, k=3, **kwargs):
    return bb.emit(relax.op.nn.conv2d(x, _grid_weights((cout, int(x.ty.shape[1]) // kwargs.get("groups", 1), k, k)),
                                      **kwargs))


def _two(bb, x):
    """Two tensors of different scales and zero points: 1x1 convs of one input, the second one's codes
    all on one side of its zero point (``[0, max]`` takes the whole grid: ``|code - zp|`` up to 65535)."""
    return _conv(bb, x, 4, 1), bb.emit(relax.op.nn.relu(_conv(bb, x, 4, 1)))


def _nearly_equal(bb, x):
    """``a`` and ``b = a + 0.002 c``: ``a - b`` spans 1/500 of ``a``'s range."""
    a = _conv(bb, x, 4, 1)
    return a, bb.emit(relax.op.add(a, bb.emit(relax.op.multiply(_conv(bb, x, 4, 1), _c(0.002)))))


def _positive(bb, x):
    """Two tensors of ``[0, max]`` grids, large together (``b >= a``): their centred product passes
    ``2**31`` (it reaches ``65535**2``)."""
    a = _conv(bb, x, 4, 1)
    return bb.emit(relax.op.nn.relu(a)), bb.emit(relax.op.nn.relu(bb.emit(relax.op.maximum(a, _conv(bb, x, 4, 1)))))


NCHW = (1, 4, 8, 8)
CASES = {
    # name: (input shape, body(bb, x), SQNR bound in dB)
    "conv2d": (NCHW, lambda bb, x: relax.op.nn.relu(_conv(bb, x, padding=[1, 1, 1, 1])), 60),
    "depthwise": (NCHW, lambda bb, x: _conv(bb, x, 4, 3, groups=4), 60),
    "dense": ((2, 16), lambda bb, x: relax.op.add(bb.emit(relax.op.matmul(x, _grid_weights((16, 8), 1))),
                                                  _c(RNG.standard_normal(8) * 0.1)), 60),
    "conv2d_transpose": (NCHW, lambda bb, x: relax.op.nn.conv2d_transpose(
        x, _grid_weights((4, 4, 3, 3), 1), strides=(2, 2), padding=(1, 1, 0, 0), output_padding=(1, 1)), 60),
    "add": (NCHW, lambda bb, x: relax.op.add(*_two(bb, x)), 60),
    "subtract": (NCHW, lambda bb, x: relax.op.subtract(*_two(bb, x)), 60),
    # the difference is 54 dB below its operands, whose 16-bit grids (88 dB) leave it about 34 dB
    "subtract_of_nearly_equal_tensors": (NCHW, lambda bb, x: relax.op.subtract(*_nearly_equal(bb, x)), 30),
    "multiply": (NCHW, lambda bb, x: relax.op.multiply(*_two(bb, x)), 60),
    "multiply_of_positive_tensors": (NCHW, lambda bb, x: relax.op.multiply(*_positive(bb, x)), 60),
    "maximum": (NCHW, lambda bb, x: relax.op.maximum(*_two(bb, x)), 60),
    "minimum": (NCHW, lambda bb, x: relax.op.minimum(*_two(bb, x)), 60),
    "concat": (NCHW, lambda bb, x: relax.op.concat(list(_two(bb, x)), axis=1), 60),
    "add_constant": (NCHW, lambda bb, x: relax.op.add(x, _c(0.75)), 60),
    "multiply_constant_tensor": (NCHW, lambda bb, x: relax.op.multiply(x, _c([[[[0.5]], [[-1.25]], [[2.0]], [[0.5]]]])),
                                 60),
    # 64 per-channel values (a folded batch norm): 64 tables of 65536 codes would be 8 MiB
    "multiply_add_64_channel_constants": ((1, 64, 4, 4), lambda bb, x: relax.op.add(bb.emit(relax.op.multiply(
        x, _c(np.linspace(-2.0, 3.0, 64).reshape(1, 64, 1, 1)))), _c(np.linspace(-1.0, 1.0, 64).reshape(1, 64, 1, 1))),
        60),
    "divide_constant": (NCHW, lambda bb, x: relax.op.divide(x, _c(3.0)), 60),
    "subtract_from_constant": (NCHW, lambda bb, x: relax.op.subtract(_c(1.0), x), 60),
    "mean": (NCHW, lambda bb, x: relax.op.mean(x, axis=[2, 3], keepdims=True), 60),
    # 65536 codes of relu(x), half of them at qmin = -32768: their int32 sum wraps
    "mean_of_a_large_map": ((1, 2, 256, 256), lambda bb, x: relax.op.mean(
        bb.emit(relax.op.nn.relu(x)), axis=[2, 3], keepdims=True), 60),
    "global_avg_pool": (NCHW, lambda bb, x: relax.op.nn.adaptive_avg_pool2d(x, (1, 1)), 60),
    "avg_pool2d": (NCHW, lambda bb, x: relax.op.nn.avg_pool2d(x, (3, 3), (2, 2), (1, 1, 1, 1),
                                                              count_include_pad=True), 60),
    # MediaPipe's global pools: avg_pool2d over the whole 64x64 map (4096 codes per window sum)
    "avg_pool2d_global_window": ((1, 64, 64, 4), lambda bb, x: relax.op.nn.avg_pool2d(
        bb.emit(relax.op.nn.relu(x)), (64, 64), (64, 64), layout="NHWC"), 60),
    "softmax": ((4, 16), lambda bb, x: relax.op.nn.softmax(x), 60),
    "resize_bilinear": (NCHW, lambda bb, x: relax.op.image.resize2d(x, (16, 16), method="linear",
                                                                    coordinate_transformation_mode="half_pixel"), 60),
    # 8 -> 13: weights that are no multiple of 2**-10. With 10-bit taps (LiteRT's) each weight is off by
    # up to 2**-11 times the step between neighbours: about 65 dB on white noise (63 measured); 16-bit
    # codes take 14-bit taps, 24 dB better
    "resize_bilinear_odd": (NCHW, lambda bb, x: relax.op.image.resize2d(
        x, (13, 13), method="linear", coordinate_transformation_mode="half_pixel"), 60),
    "resize_nearest": (NCHW, lambda bb, x: relax.op.image.resize2d(x, (16, 16), method="nearest_neighbor"), 60),
    "prelu": (NCHW, lambda bb, x: relax.op.nn.prelu(x, _c([0.25, -0.1, 0.25, 0.0]), axis=1), 60),
    # 32 slopes (MediaPipe's PReLU layers have one per channel): 32 tables of 65536 codes would be 4 MiB
    "prelu_32_channels": ((1, 32, 4, 4), lambda bb, x: relax.op.nn.prelu(
        x, _c(np.linspace(-0.5, 1.5, 32)), axis=1), 60),
    # as TVM's TFLite importer writes PRELU: a 1-D tensor, one slope per element
    "prelu_flattened": ((64,), lambda bb, x: relax.op.nn.prelu(x, _c(np.tile([0.25, -0.1, 0.5, 0.0], 16)), axis=0),
                        60),
    "hard_swish_chain": (NCHW, lambda bb, x: relax.op.multiply(x, bb.emit(relax.op.divide(bb.emit(relax.op.clip(
        bb.emit(relax.op.add(x, _c(3.0))), 0, 6)), _c(6.0)))), 60),
    "swish_chain": (NCHW, lambda bb, x: relax.op.multiply(x, bb.emit(relax.op.sigmoid(x))), 60),
    "relu": (NCHW, lambda bb, x: relax.op.nn.relu(x), 60),
    "relu6": (NCHW, lambda bb, x: relax.op.nn.relu6(x), 60),
    "clip": (NCHW, lambda bb, x: relax.op.clip(x, -0.5, 1.0), 60),
    "max_pool2d": (NCHW, lambda bb, x: relax.op.nn.max_pool2d(x, (2, 2), (2, 2)), 60),
    "reshape": (NCHW, lambda bb, x: relax.op.reshape(x, (1, 4, 64)), 60),
    "transpose": (NCHW, lambda bb, x: relax.op.permute_dims(x, [0, 2, 3, 1]), 60),
    "pad": (NCHW, lambda bb, x: relax.op.nn.pad(x, [0, 0, 0, 0, 1, 1, 2, 2], "constant", 0.0), 60),
    "strided_slice": (NCHW, lambda bb, x: relax.op.strided_slice(x, [2], [1], [7]), 60),
    **{f"lut_{op}": (NCHW, lambda bb, x, make=make: make(x), 60) for op, make in {
        "sigmoid": relax.op.sigmoid, "tanh": relax.op.tanh, "exp": relax.op.exp, "erf": relax.op.erf,
        "gelu": relax.op.nn.gelu, "gelu_tanh": relax.op.nn.gelu_tanh, "silu": relax.op.nn.silu,
        "leakyrelu": lambda x: relax.op.nn.leakyrelu(x, 0.1), "softplus": lambda x: relax.op.nn.softplus(x),
        "abs": relax.op.abs, "negative": relax.op.negative}.items()},
    "lut_sqrt": (NCHW, lambda bb, x: relax.op.sqrt(bb.emit(relax.op.abs(x))), 60),
}


def _batches(shape: tuple, n: int) -> list[np.ndarray]:
    rng = np.random.default_rng(3)
    return [rng.standard_normal(shape).astype("float32") for _ in range(n)]


def quantize_16(mod, shape, tmp_path, **config):
    """(report, float outputs, int outputs) of ``mod`` under 16-bit activations, on calibration batches."""
    calib = _batches(shape, 8)
    with tvm_sima.qconfig(**{**A16, **config}):
        qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path)
    tvm_sima.read_quantize_info(qmod)  # raises if one tensor name had two different parameter sets
    return qmod, tvm_sima.quantize_report(qmod), run(mod, calib[:3]), run(qmod, calib[:3])


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_family_is_integer_and_16_bit_precise(case, tmp_path):
    shape, body, bound = CASES[case]
    qmod, report, ref, out = quantize_16(_module(shape, body), shape, tmp_path)
    assert report["float_ops"] == [], report["float_ops"]
    infos = tvm_sima.read_quantize_info(qmod)
    assert {i.dtype for i in infos.values()} == {"int16"}, {n: i.dtype for n, i in infos.items()}
    assert total_sqnr(ref, out) > bound, total_sqnr(ref, out)
    assert op_counts(qmod)["sima.dequantize"] == 1


MIXED = {
    "add": relax.op.add, "subtract": relax.op.subtract, "multiply": relax.op.multiply,
    "maximum": relax.op.maximum, "concat": lambda a, b: relax.op.concat([a, b], axis=1),
}


@pytest.mark.parametrize("output_bits", [8, 16])
@pytest.mark.parametrize("op", sorted(MIXED))
def test_one_16_bit_and_one_8_bit_operand(op, output_bits, tmp_path):
    #   x -> conv2d_0 -> relu -> a (16-bit) -+
    #   x -> conv2d_1 ---------> b (8-bit) --+--> op(a, b) -> y (8 or 16 bits)
    # as the grid rescue leaves an 8-bit model (one tensor re-gridded to 16 bits) or a per-layer choice
    # does: the layer override sets conv2d_0's (or conv2d_1's) activations apart from the rest.
    shape = NCHW
    if output_bits == 16:
        config = {"layer_overrides": [{"match": "name:conv2d_1", "activation_bits": 8, "bias_bits": 32}]}
    else:
        config = {"activation_bits": 8, "bias_bits": 32,
                  "layer_overrides": [{"match": "name:conv2d_0", "activation_bits": 16, "bias_bits": 48}]}
    mod = _module(shape, lambda bb, x: MIXED[op](*_two(bb, x)))
    qmod, report, ref, out = quantize_16(mod, shape, tmp_path, **config)
    assert report["float_ops"] == [], report["float_ops"]
    dtypes = {n: i.dtype for n, i in tvm_sima.read_quantize_info(qmod).items()}
    assert dtypes["conv2d_0.output"] == "int16" and dtypes["conv2d_1.output"] == "int8", dtypes
    assert {d for n, d in dtypes.items() if "@" in n} == {f"int{output_bits}"}, dtypes
    # An 8-bit grid bounds the result: 8-bit outputs measure 37-47 dB (the product's heavy tails on 255
    # steps the lowest), 16-bit outputs 48-55 dB (b's 8-bit grid), over four weight draws.
    bound = 33 if output_bits == 8 else 44
    assert total_sqnr(ref, out) > bound, total_sqnr(ref, out)


def test_16_bit_weights_and_activations_fuse_with_a_48_bit_accumulator(tmp_path):
    #   x -> conv2d 3x3 -> y      16-bit weights on 16-bit codes: the zero point's fold leaves int32, but not the
    #                             48-bit accumulator 16-bit data get (an int64 bias, one half-up rounding)
    shape = NCHW
    mod = _module(shape, lambda bb, x: relax.op.nn.conv2d(bb.emit(relax.op.nn.relu(x)), _grid_weights((8, 4, 3, 3))))
    qmod, report, ref, out = quantize_16(mod, shape, tmp_path, weight_bits=16)
    assert report["float_ops"] == []
    conv = [b.value for b in qmod["main"].body.blocks[0].bindings
            if getattr(getattr(b.value, "op", None), "name", "") == "sima.conv2d"]
    assert len(conv) == 1 and str(conv[0].args[2].ty.dtype) == "int64"
    assert total_sqnr(ref, out) > 60
