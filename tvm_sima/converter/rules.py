"""Hardware rules the converter checks before it folds a QDQ chain into integer sima ops.

Each rule has a name that appears in the conversion report when a chain breaks it; the chain then
stays float between its dequantize and quantize. The limits are those of the NPU model tvm-sima
simulates (8-bit datapath, int32 bias, 31-bit multipliers, right shifts up to 62 on a 64-bit
product); the kernel, stride and dilation limits are assumptions of this model, not published
SiMa numbers — give ``convert(..., limits=HardwareLimits(...))`` to match a real device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..math import HW_MAX_RIGHT_SHIFT

__all__ = ["HardwareLimits", "DEFAULT_LIMITS", "RULES", "check_tensors", "check_requant", "check_window"]

#: Rule name -> what it enforces (the report names the rule a chain broke).
RULES = {
    "int8-only": "weights are int8; activations (inputs and outputs) are int8 or uint8",
    "bias-int32": "the bias, with the input zero point folded in, fits int32",
    "shift-range": "every requantization shift is a right shift in [0, max_shift]",
    "multiplier-bits": "every requantization multiplier fits multiplier_bits bits (unsigned)",
    "kernel-limits": "kernel height / width at most max_kernel",
    "stride-limits": "strides at most max_stride, dilations at most max_dilation",
}


@dataclass(frozen=True)
class HardwareLimits:
    """Limits of the target NPU (see the module docstring for which are assumptions)."""

    max_shift: int = 62
    multiplier_bits: int = 31
    max_kernel: int = 16
    max_stride: int = 8
    max_dilation: int = 8


DEFAULT_LIMITS = HardwareLimits()


def _violation(rule: str, detail: str) -> str:
    return f"hardware rule '{rule}' ({RULES[rule]}): {detail}"


def check_tensors(activations: Sequence[str], weight: Optional[str] = None) -> Optional[str]:
    """int8-only: activation dtypes (``str``) and the weight dtype."""
    bad = [d for d in activations if d not in ("int8", "uint8")]
    if bad:
        return _violation("int8-only", f"activation dtype {bad[0]}")
    if weight is not None and weight != "int8":
        return _violation("int8-only", f"weight dtype {weight}")
    return None


def check_requant(limits: HardwareLimits, shift: object, multiplier: object = None,
                  bias: Optional[np.ndarray] = None) -> Optional[str]:
    """shift-range, multiplier-bits and bias-int32 for the constants of one fused op."""
    shifts = np.atleast_1d(np.asarray(shift, dtype=np.int64))
    # The shift-only fused op (no multiplier) shifts a 32-bit accumulator: at most HW_MAX_RIGHT_SHIFT.
    top = limits.max_shift if multiplier is not None else min(limits.max_shift, HW_MAX_RIGHT_SHIFT)
    if shifts.min() < 0 or shifts.max() > top:
        return _violation("shift-range", f"shift {int(shifts.min())}..{int(shifts.max())}, limit [0, {top}]")
    if multiplier is not None:
        m = np.atleast_1d(np.asarray(multiplier, dtype=np.int64))
        if m.min() < 0 or m.max() >= 1 << limits.multiplier_bits:
            return _violation("multiplier-bits", f"multiplier {int(m.max())} needs more than "
                                                 f"{limits.multiplier_bits} bits")
    if bias is not None and bias.size and (bias.min() < -(2**31) or bias.max() > 2**31 - 1):
        return _violation("bias-int32", f"bias range [{int(bias.min())}, {int(bias.max())}]")
    return None


def check_window(limits: HardwareLimits, kernel: Sequence[int], strides: Sequence[int],
                 dilation: Sequence[int] = (1, 1)) -> Optional[str]:
    """kernel-limits and stride-limits for a convolution or pooling window."""
    if max(kernel) > limits.max_kernel:
        return _violation("kernel-limits", f"kernel {list(kernel)}, limit {limits.max_kernel}")
    if max(strides) > limits.max_stride:
        return _violation("stride-limits", f"strides {list(strides)}, limit {limits.max_stride}")
    if max(dilation) > limits.max_dilation:
        return _violation("stride-limits", f"dilation {list(dilation)}, limit {limits.max_dilation}")
    return None
