"""The converter's hardware rules: each names itself in the message and bites at its limit."""

from __future__ import annotations

import numpy as np

from tvm_sima.converter.rules import HardwareLimits, check_bias, check_requant, check_tensors, check_window
from tvm_sima.math import HW_MAX_RIGHT_SHIFT

LIMITS = HardwareLimits()


def test_shift_range_is_31_for_the_shift_only_op_and_62_with_a_multiplier():
    assert check_requant(LIMITS, [HW_MAX_RIGHT_SHIFT]) is None
    assert "'shift-range'" in check_requant(LIMITS, [HW_MAX_RIGHT_SHIFT + 1])
    assert check_requant(LIMITS, [62], multiplier=[2**30]) is None
    assert "'shift-range'" in check_requant(LIMITS, [63], multiplier=[2**30])
    assert "'shift-range'" in check_requant(LIMITS, [-1], multiplier=[2**30])


def test_multiplier_bits_and_bias_int32():
    assert "'multiplier-bits'" in check_requant(HardwareLimits(multiplier_bits=15), [20], multiplier=[1 << 15])
    assert check_requant(HardwareLimits(multiplier_bits=15), [20], multiplier=[(1 << 15) - 1]) is None
    assert "'bias-int32'" in check_requant(LIMITS, 8, bias=np.asarray([2**31]))
    assert check_requant(LIMITS, 8, bias=np.asarray([2**31 - 1, -(2**31)])) is None


def test_int8_only_kernel_and_stride_limits():
    assert check_tensors(["int8", "uint8"], "int8") is None
    assert "'int8-only'" in check_tensors(["int16"], "int8")
    assert check_tensors(["int16", "int8"], "int8", int16=True) is None
    assert "'activation-bits'" in check_tensors(["int32"], "int8", int16=True)


def test_bias_rules_int32_and_the_16_bit_modes_48_bits():
    assert check_bias(np.asarray([2**31 - 1, -(2**31)], np.int32)) is None
    assert check_bias(np.asarray([2**40], np.int64)) is None
    assert "'bias-48'" in check_bias(np.asarray([2**47], np.int64))
    assert "'bias-int32'" in check_bias(np.asarray([2**40], np.int64), wide=False)  # an int8-only device
    assert "'int8-only'" in check_tensors(["int8"], "int4")
    assert check_window(LIMITS, [16, 16], [8, 8], [8, 8]) is None
    assert "'kernel-limits'" in check_window(LIMITS, [17, 1], [1, 1])
    assert "'stride-limits'" in check_window(LIMITS, [3, 3], [9, 1])
    assert "'stride-limits'" in check_window(LIMITS, [3, 3], [1, 1], [1, 9])
