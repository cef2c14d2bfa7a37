"""Hardware rules the converter checks before it folds a QDQ chain into integer sima ops.

Each rule has a name that appears in the conversion report when a chain breaks it; the chain then
stays float between its dequantize and quantize. The limits are those of the NPU model tvm-sima
simulates (8-bit datapath with int32 bias; a 16-bit activation mode whose accumulator and bias are
48 bits, as SPEC's bit widths allow; 31-bit multipliers, right shifts up to 62 on a 64-bit
product); the kernel, stride and dilation limits are assumptions of this model, not published
SiMa numbers — give ``convert(..., limits=HardwareLimits(...))`` (or ``partition_for_sima``'s
``limits``) to match a real device. The int8 converter folds 8-bit QDQ chains only; the 16-bit
mode is what the BYOC offloads of a float model quantized with 16-bit tensors
(``qconfig(depthwise_input_bits=16)``, the mixed-precision search, ``activation_bits=16``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np

from ..math import HW_MAX_RIGHT_SHIFT

__all__ = ["HardwareLimits", "DEFAULT_LIMITS", "RULES", "check_tensors", "check_requant", "check_bias",
           "check_window"]

#: Rule name -> what it enforces (the report names the rule a chain broke).
RULES = {
    "int8-only": "weights are int8; activations (inputs and outputs) are int8 or uint8",
    "activation-bits": "activations are int8 / uint8, or int16 in the 16-bit mode (HardwareLimits.int16_activations)",
    "bias-int32": "the bias, with the input zero point folded in, fits int32",
    "bias-48": "an int64 bias (the 48-bit accumulator of the 16-bit mode) fits 48 bits",
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
    #: The 16-bit activation mode: conv / dense / requantize with int16 inputs or outputs and a 48-bit
    #: bias run on the NPU (the BYOC offloads them); ``False``: an int8-only device keeps them on the host.
    int16_activations: bool = True


DEFAULT_LIMITS = HardwareLimits()


def _violation(rule: str, detail: str) -> str:
    return f"hardware rule '{rule}' ({RULES[rule]}): {detail}"


def check_tensors(activations: Sequence[str], weight: Optional[str] = None,
                  int16: bool = False) -> Optional[str]:
    """int8-only (or, with ``int16``, activation-bits): activation dtypes (``str``) and the weight dtype."""
    allowed = ("int8", "uint8", "int16") if int16 else ("int8", "uint8")
    bad = [d for d in activations if d not in allowed]
    if bad:
        return _violation("activation-bits" if int16 else "int8-only", f"activation dtype {bad[0]}")
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


def check_bias(bias: np.ndarray, wide: bool = True) -> Optional[str]:
    """bias-int32 for an int32 bias (or any bias when not ``wide``), bias-48 for an int64 one (the 16-bit
    mode's 48-bit accumulator)."""
    if not bias.size:
        return None
    lo, hi = int(bias.min()), int(bias.max())
    if bias.dtype == np.int64 and wide:
        return None if -(2**47) <= lo and hi < 2**47 else _violation("bias-48", f"bias range [{lo}, {hi}]")
    return None if -(2**31) <= lo and hi < 2**31 else _violation("bias-int32", f"bias range [{lo}, {hi}]")


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
