"""An int8 TFLite TRANSPOSE_CONV: imported as a QDQ chain, converted, bit-exact with LiteRT's reference kernel.

Each model is one op, written with tests/helpers/tflite_writer.py (no TFLite converter here)::

    x int8[1, H, W, 3] -> TRANSPOSE_CONV(output shape, W int8[4, kh, kw, 3] per-channel, b int32[4]) -> y int8
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tvm
from helpers.litert import litert
from helpers.relax import op_counts
from helpers.tflite_writer import Op, Tensor, write_tflite
from tvm import relax

import tvm_sima

RNG = np.random.default_rng(31)

#: name: (input shape, kernel, strides, padding, output shape, fused activation, per-channel)
CASES = {
    "same_k3s2": ((1, 5, 5, 3), (3, 3), (2, 2), "SAME", (1, 10, 10, 4), "NONE", True),
    "same_k2s2_per_tensor": ((1, 4, 6, 3), (2, 2), (2, 2), "SAME", (1, 8, 12, 4), "NONE", False),
    "valid_k3_s2x1": ((1, 4, 5, 3), (3, 3), (2, 1), "VALID", (1, 9, 7, 4), "NONE", True),
    "valid_larger_output": ((1, 4, 4, 3), (3, 3), (2, 2), "VALID", (1, 10, 10, 4), "NONE", True),
    "same_relu6": ((1, 5, 5, 3), (4, 4), (2, 2), "SAME", (1, 10, 10, 4), "RELU6", True),
}


def transpose_conv_model(path, case):
    shape, (kh, kw), (sh, sw), padding, out_shape, act, per_channel = CASES[case]
    w = RNG.integers(-127, 128, size=(4, kh, kw, 3)).astype(np.int8)
    w_scale = list(RNG.uniform(0.002, 0.01, size=4)) if per_channel else [0.005]
    x_scale, y_scale = 0.02, 0.05
    bias = RNG.integers(-3000, 3000, size=4).astype(np.int32)
    options = {"Padding": {"SAME": 0, "VALID": 1}[padding], "StrideH": sh, "StrideW": sw,
               "FusedActivationFunction": {"NONE": 0, "RELU6": 3}[act]}
    tensors = [Tensor("output_shape", (4,), "int32", data=np.asarray(out_shape, np.int32)),
               Tensor("w", w.shape, "int8", data=w, scale=w_scale, zero_point=[0] * len(w_scale)),
               Tensor("x", shape, "int8", scale=[x_scale], zero_point=[-5]),
               Tensor("b", (4,), "int32", data=bias, scale=[x_scale * s for s in w_scale],
                      zero_point=[0] * len(w_scale)),
               Tensor("y", out_shape, "int8", scale=[y_scale], zero_point=[3])]
    return write_tflite(path, tensors, [Op("TRANSPOSE_CONV", [0, 1, 2, 3], [4], ("TransposeConvOptions", options),
                                           version=4 if act != "NONE" else 3)], inputs=[2], outputs=[4])


@pytest.mark.parametrize("case", sorted(CASES))
def test_int8_transpose_conv_converts_bit_exact_with_litert(case, tmp_path):
    path = transpose_conv_model(tmp_path / "m.tflite", case)
    mod, _ = tvm_sima.load_model(path)
    assert op_counts(mod)["relax.nn.conv2d_transpose"] == 1
    converted, report = tvm_sima.convert(mod, "tflite")
    assert report.unconverted == [], report.summary()
    assert collections.Counter(c["op"] for c in report.converted) == {"sima.conv2d": 1}
    assert op_counts(converted)["relax.nn.conv2d_transpose"] == 0
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    for _ in range(4):
        x = RNG.integers(-128, 128, size=CASES[case][0]).astype(np.int8)
        np.testing.assert_array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(path, x))


def test_the_converted_program_replays_in_the_artifact_interpreter(tmp_path):
    # The zero insertion is a reshape / pad / reshape on the host: the interpreter runs them too.
    from tvm_sima.codegen import load_program, program_from_function, run_program, write_program

    converted, _ = tvm_sima.convert(tvm_sima.load_model(transpose_conv_model(tmp_path / "m.tflite", "same_k3s2"))[0])
    program = load_program(write_program(program_from_function(converted["main"]), tmp_path / "artifact"))
    assert "relax.nn.pad" in [op["op"] for op in program.graph["ops"]]
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    x = RNG.integers(-128, 128, size=(1, 5, 5, 3)).astype(np.int8)
    np.testing.assert_array_equal(run_program(program, x)[0], vm["main"](tvm.runtime.tensor(x)).numpy())
