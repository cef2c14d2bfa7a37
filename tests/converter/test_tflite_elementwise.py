"""int8 TFLite HARD_SWISH, MAXIMUM, MINIMUM: bit-exact with LiteRT's reference kernels.

HARD_SWISH imports as ``x * relu6(x + 3) / 6`` between a dequantize and a quantize; ``convert``
makes it one table, in ``mode="tflite"`` the table of LiteRT's int16 fixed-point kernel
(:func:`tvm_sima.math.tflite_hard_swish`), which is not the rounded function on every code.

LiteRT's kernel takes the max / min of the raw int8 codes (the quantization spec requires the
inputs and the output to share their parameters; the kernel does not check). With equal
parameters the lowering's max / min of the codes is that, bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.litert import litert
from helpers.tflite_writer import Op, int8, write_tflite
from tvm import relax

import tvm_sima

Q = (0.05, -3)


@pytest.mark.parametrize("op", ["MAXIMUM", "MINIMUM"])
def test_int8_maximum_minimum_are_bit_exact_with_litert(op, tmp_path):
    rng = np.random.default_rng(7)
    other = rng.integers(-128, 128, size=(1, 4, 4, 3)).astype(np.int8)  # the second operand, a constant tensor
    path = write_tflite(tmp_path / f"{op}.tflite",
                        [int8("x", [1, 4, 4, 3], Q), int8("b", [1, 4, 4, 3], Q, other),
                         int8("y", [1, 4, 4, 3], Q)], [Op(op, [0, 1], [2])], [0], [2])
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and [c["op"] for c in report.converted] == [f"integer {op.lower()}"]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    for _ in range(4):
        x = rng.integers(-128, 128, size=(1, 4, 4, 3)).astype(np.int8)
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(path, x))


def test_int8_hard_swish_is_one_table_bit_exact_with_litert(tmp_path):
    x_q, y_q = (0.05, -3), (0.03, -100)  # scales where LiteRT's kernel and the rounded function differ
    path = write_tflite(tmp_path / "hs.tflite", [int8("x", [1, 8, 8, 4], x_q),
                                                 int8("y", [1, 8, 8, 4], y_q)],
                        [Op("HARD_SWISH", [0], [1])], [0], [1])
    mod, _ = tvm_sima.load_model(path)
    converted, report = tvm_sima.convert(mod)
    assert report.unconverted == [] and [c["op"] for c in report.converted] == \
        ["lookup table (hard_swish, LiteRT's fixed point)"]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    x = np.arange(-128, 128, dtype=np.int8).reshape(1, 8, 8, 4)  # every code
    np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(path, x))
