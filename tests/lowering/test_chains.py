"""Element-wise chains of one input as one table, and maximum / minimum of two tensors, in both routes.

Each chain is built as the importers write it (Relax directly); the float route (``quantize``) and
the pre-quantized route (``convert`` of ``quantize(chain(dequantize(x)))``) must both give one
table, bit-exact with the NumPy table model ``quantize(f(dequantize(code)))``.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.quantize import quantize_uniform
from helpers.relax import one_input_module, op_counts
from tvm import relax

import tvm_sima
from tvm_sima import lowering
from tvm_sima import math as sm
from tvm_sima import ops as so
from tvm_sima.graph import GraphIndex

RNG = np.random.default_rng(15)
SHAPE = (1, 4, 3, 5)


def _c(v: float) -> relax.Expr:
    return relax.const(v, "float32")


def _hard_swish_onnx(bb, x):  # TVM's ONNX HardSwish: x * (clip(x + 3, 0, 6) / 6)
    return relax.op.multiply(x, bb.emit(relax.op.divide(bb.emit(relax.op.clip(bb.emit(relax.op.add(x, _c(3))), 0, 6)),
                                                        _c(6))))


def _hard_swish_tflite(bb, x):  # x * relu6(x + 3) / 6, the division last
    return relax.op.divide(bb.emit(relax.op.multiply(x, bb.emit(relax.op.clip(bb.emit(relax.op.add(x, _c(3))), 0, 6)))),
                           _c(6))


def _hard_sigmoid(bb, x):  # TVM's ONNX HardSigmoid: clip(alpha * x + beta, 0, 1)
    return relax.op.clip(bb.emit(relax.op.add(bb.emit(relax.op.multiply(_c(0.2), x)), _c(0.5))), 0, 1)


def _f32(v: float) -> float:
    """A constant as the model holds it (float32), for the real functions (evaluated in float64)."""
    return float(np.float32(v))


CHAINS = {
    # name: (body, the real function, number of ops)
    "hard_swish_onnx": (_hard_swish_onnx, lambda x: x * np.clip(x + 3, 0, 6) / 6, 4),
    "hard_swish_tflite": (_hard_swish_tflite, lambda x: x * np.clip(x + 3, 0, 6) / 6, 4),
    "hard_sigmoid": (_hard_sigmoid, lambda x: np.clip(_f32(0.2) * x + 0.5, 0, 1), 3),
    "swish": (lambda bb, x: relax.op.multiply(x, bb.emit(relax.op.sigmoid(x))), lambda x: x / (1 + np.exp(-x)), 2),
    "scaled_tanh": (lambda bb, x: relax.op.multiply(bb.emit(relax.op.tanh(x)), _c(1.7)),
                    lambda x: _f32(1.7) * np.tanh(x), 2),
    "max_of_two_members": (lambda bb, x: relax.op.maximum(x, bb.emit(relax.op.multiply(x, _c(0.1)))),
                           lambda x: np.maximum(x, _f32(0.1) * x), 2),
}


def _qp(scale: float, zp: int) -> sm.QParams:
    return sm.QParams(np.float64(scale), np.int64(zp), "int8")


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_the_chain_is_found_whole(name):
    body, fn, n_ops = CHAINS[name]
    mod = one_input_module(SHAPE, "float32", body)
    chains = lowering.find_chains(GraphIndex(mod["main"]))
    assert len(chains) == 1 and len(chains[0].members) == n_ops
    assert chains[0].source.same_as(mod["main"].params[0])
    x = np.linspace(-5, 5, 41)
    np.testing.assert_allclose(chains[0].function(x), fn(x), rtol=1e-12)


def test_no_chain_through_a_tensor_used_outside_or_of_two_inputs():
    def shared(bb, x):  # a = x + 3 is also an output: its clip and the multiply can still be one chain
        a = bb.emit(relax.op.add(x, _c(3)))
        y = bb.emit(relax.op.multiply(bb.emit(relax.op.clip(a, 0, 6)), _c(0.5)))
        return relax.Tuple([a, y])

    chains = lowering.find_chains(GraphIndex(one_input_module(SHAPE, "float32", shared)["main"]))
    assert [c.ops() for c in chains] == [["relax.clip", "relax.multiply"]]

    def two_inputs(bb, x):  # sigmoid(x) * tanh(x + x[::-1]): the reversed x is a second tensor
        flipped = bb.emit(relax.op.flip(x, axis=3))
        return relax.op.multiply(bb.emit(relax.op.sigmoid(x)), bb.emit(relax.op.add(x, flipped)))

    chains = lowering.find_chains(GraphIndex(one_input_module(SHAPE, "float32", two_inputs)["main"]))
    assert chains == []


@pytest.mark.parametrize("name", sorted(CHAINS))
def test_the_float_route_makes_one_table_of_the_chain(name, tmp_path):
    body, fn, _ = CHAINS[name]
    mod = one_input_module(SHAPE, "float32", body)
    qmod, report, infos = quantize_uniform(mod, SHAPE, -5, 5, RNG, tmp_path)
    assert report["float_ops"] == [] and report["integer_ops"]["lut(chain)"] == 1
    assert op_counts(qmod)["relax.take"] == 1
    assert len(infos) == 2  # the input and the output: the chain's inside has no parameters
    x_q, y_q = (next(i.qparams for n, i in infos.items() if n.endswith(s)) for s in (".input", ".output"))
    x = RNG.uniform(-4.9, 4.9, size=SHAPE).astype("float32")
    real = sm.dequantize(sm.quantize(x, x_q, "half_up"), x_q)
    expected = sm.dequantize(sm.quantize(fn(real), y_q, "half_up"), y_q).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)


def _qdq(body, x_q, y_q):
    return one_input_module(SHAPE, "int8", lambda bb, x: so.quantize(bb.emit(body(bb, bb.emit(so.dequantize(x, x_q)))),
                                                                     y_q, "half_even"))


@pytest.mark.parametrize("mode", ["tflite", "shift"])
@pytest.mark.parametrize("name", sorted(CHAINS))
def test_the_converter_makes_one_table_of_a_chain_between_dequantize_and_quantize(name, mode):
    # mode="tflite" is LiteRT's kernels: a hard-swish is LiteRT's fixed-point HARD_SWISH (math.hard_swish)
    body, fn, _ = CHAINS[name]
    x_q, y_q = _qp(0.04, 3), _qp(0.03, -20)
    converted, report = tvm_sima.convert(_qdq(body, x_q, y_q), mode)
    assert report.unconverted == [] and len(report.converted) == 1
    litert = mode == "tflite" and name.startswith("hard_swish")
    label = "lookup table (hard_swish, LiteRT's fixed point)" if litert else "lookup table (chain: "
    assert report.converted[0]["op"].startswith(label)
    x = RNG.integers(-128, 128, size=SHAPE).astype("int8")
    expected = sm.tflite_hard_swish(x, x_q, y_q) if litert else sm.quantize(fn(sm.dequantize(x, x_q)), y_q,
                                                                             "half_even")
    out = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(out, expected)


def _on_grid(codes: np.ndarray, q_in: sm.QParams, q_out: sm.QParams, numerics: lowering.Numerics) -> np.ndarray:
    """The lowering's rescale of codes to another grid, in NumPy (none for equal parameters)."""
    if q_in == q_out:
        return codes
    (s_in, zp_in), (s_out, zp_out) = ((float(q.scale), int(q.zero_point)) for q in (q_in, q_out))
    return numerics.multiplier(s_in / s_out).apply(codes.astype(np.int64) - zp_in, zp_out)


def _max_min(op):
    def body(bb, x):  # two tensors with their own parameters: a slice of x and tanh of the other slice
        a = bb.emit(relax.op.strided_slice(x, [3], [0], [2]))
        b = bb.emit(relax.op.tanh(bb.emit(relax.op.strided_slice(x, [3], [2], [4]))))
        return op(a, b)

    return body


@pytest.mark.parametrize("op", [relax.op.maximum, relax.op.minimum])
def test_maximum_minimum_of_two_tensors_in_the_float_route(op, tmp_path):
    mod = one_input_module(SHAPE, "float32", _max_min(op))
    qmod, report, infos = quantize_uniform(mod, SHAPE, -3, 3, RNG, tmp_path)
    assert report["float_ops"] == [] and report["integer_ops"][f"relax.{op.__name__}"] == 1
    q = {n.split("@")[0].split(".")[0]: i.qparams for n, i in infos.items()}
    x = RNG.uniform(-2.9, 2.9, size=SHAPE).astype("float32")
    codes = sm.quantize(x, q["x"], "half_up")
    a, b = codes[..., :2], sm.quantize(np.tanh(sm.dequantize(codes[..., 2:4], q["x"])), q["tanh"], "half_up")
    # the model: each input requantized to the output's grid (sima.requantize), then the integer max / min
    numerics = lowering.Numerics.for_config(tvm_sima.QConfig())
    on_y = [_on_grid(v, qv, q[op.__name__], numerics) for v, qv in ((a, q["x"]), (b, q["tanh"]))]
    np_op = np.maximum if op is relax.op.maximum else np.minimum
    expected = sm.dequantize(np_op(*on_y), q[op.__name__]).astype("float32")
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), expected)


@pytest.mark.parametrize("op", [relax.op.maximum, relax.op.minimum])
def test_maximum_minimum_of_two_tensors_in_the_converter(op):
    x_q, y_q = _qp(0.05, 2), _qp(0.04, -7)

    def body(bb, x):
        a = bb.emit(so.dequantize(bb.emit(relax.op.strided_slice(x, [3], [0], [2])), x_q))
        b = bb.emit(so.dequantize(bb.emit(relax.op.strided_slice(x, [3], [2], [4])), y_q))  # other parameters
        return so.quantize(bb.emit(op(a, b)), y_q, "half_even")

    converted, report = tvm_sima.convert(one_input_module(SHAPE, "int8", body))
    assert report.unconverted == [] and [c["op"] for c in report.converted] == [f"integer {op.__name__}"]
    x = RNG.integers(-128, 128, size=SHAPE).astype("int8")
    a = _on_grid(x[..., :2], x_q, y_q, lowering.Numerics.tflite())  # the one input with other parameters
    expected = (np.maximum if op is relax.op.maximum else np.minimum)(a, x[..., 2:4])
    out = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_array_equal(out, expected)
