"""Malformed calls of sima ops fail with messages that name the op and the argument."""

from __future__ import annotations

import numpy as np
import pytest
from helpers.relax import one_input_module
from tvm import relax

import tvm_sima.ops as so
from tvm_sima import math as sm

QP = sm.QParams(0.1, 0, "int8")
W = relax.const(np.zeros((4, 3, 3, 3), "int8"))  # OIHW, 3 input channels
B = relax.const(np.zeros((4,), "int32"))


def build(shape, dtype, make):
    return one_input_module(shape, dtype, lambda bb, v: make(v))


@pytest.mark.parametrize(
    "shape, dtype, make, message",
    [
        ((2, 3), "int8", lambda v: so.quantize(v, QP), "sima.quantize: data must be a float tensor, got int8"),
        ((2, 3), "float32", lambda v: so.dequantize(v, QP), "sima.dequantize: data must be an integer tensor"),
        ((2, 4), "float32", lambda v: so.quantize(v, sm.QParams([0.1, 0.2, 0.3], 0, "int8", axis=1)),
         "sima.quantize: scale has 3 values but the tensor has 4 channels on axis 1"),
        ((2, 4), "int32", lambda v: so.requantize(v, multiplier=[1, 2], shift=[1, 2], axis=1),
         "sima.requantize: multiplier has 2 values but the tensor has 4 channels on axis 1"),
        ((1, 5, 8, 8), "int8", lambda v: so.conv2d(v, W, B, shift=4),
         "sima.conv2d: data has 5 channels but weight expects groups 1 x 3 = 3"),
        ((1, 3, 8, 8), "int8", lambda v: so.conv2d(v, W, relax.const(np.zeros(5, "int32")), shift=4),
         "sima.conv2d: bias has 5 values but the op has 4 output channels"),
        ((1, 3, 8, 8), "int8", lambda v: so.conv2d(v, W, B, shift=[1, 2, 3]),
         "sima.conv2d: shift has 3 values but the op has 4 output channels"),
        ((1, 3, 8, 8), "float32", lambda v: so.conv2d(v, W, B, shift=4), "sima.conv2d: data must be int8"),
        ((1, 3, 2, 2), "int8", lambda v: so.conv2d(v, W, B, shift=4),
         "sima.conv2d: the kernel does not fit the padded input height"),
        ((2, 7), "int8", lambda v: so.dense(v, relax.const(np.zeros((4, 6), "int8")), None, shift=3),
         "sima.dense: data has 7 features but weight expects 6"),
        ((2, 6), "int8", lambda v: so.dense(v, relax.const(np.zeros((4, 6), "float32")), None, shift=3),
         "sima.dense: weight must be int8"),
    ],
)
def test_type_inference_errors(shape, dtype, make, message):
    with pytest.raises(Exception, match=message):
        build(shape, dtype, make)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda v: so.requantize(v, multiplier=3, shift=-2), r"sima.requantize: shift must be in \[0, 62\]"),
        (lambda v: so.conv2d(v, W, B, shift=-1), r"sima.conv2d: shift must be in \[0, 31\] for the shift-only op"),
        (lambda v: so.conv2d(v, W, B, shift=40), r"shift must be in \[0, 31\]"),
        (lambda v: so.conv2d(v, W, B, shift=4, multiplier=-5), r"multiplier must be in \[0, 2\*\*31 - 1\]"),
        (lambda v: so.requantize(v, multiplier=[1, 2], shift=[1, 2]), "per-channel multiplier / shift need axis="),
        (lambda v: so.requantize(v, shift=3), "multiplier and shift .* are required"),
        (lambda v: so.quantize(v, QP, "stochastic"), "stochastic rounding is simulation-only"),
        (lambda v: so.quantize_info(v, QP, name=""), "name is required"),
        (lambda v: so.quantize_info(v, QP, name="t", kind="gradient"), "kind='gradient'"),
        (lambda v: so.conv2d(v, W, B, shift=4, data_layout="NCWH"), "data_layout='NCWH'"),
        (lambda v: so.conv2d(v, W, B, shift=4, data_layout="NHWC", kernel_layout="OIHW"), "needs kernel_layout HWIO"),
        (lambda v: so.conv2d(v, W, B, shift=4, padding=(1, 2, 3)), "padding must be"),
        (lambda v: so.simulated_quantize(v, kind="weight", dom_scale=0.0, clip_min=-1, clip_max=1),
         "dom_scale must be finite and > 0"),
        (lambda v: so.requantize(v, multiplier=1, shift=1, qmin=5, qmax=1), "qmin=5 is greater than qmax=1"),
    ],
)
def test_constructor_errors(make, message):
    v = relax.Var("v", relax.TensorType((1, 3, 8, 8), "int8"))
    with pytest.raises(so.OpError, match=message):
        make(v)
