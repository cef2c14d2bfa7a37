"""How a route computes the integers of each op family: one :class:`Numerics` per route.

The lowering families (:mod:`tvm_sima.lowering`) each implement every integer algorithm of their
ops once; a route names which one it wants here. The float-model route (``quantize``) uses
:meth:`Numerics.for_config`; the pre-quantized route (``convert``) uses :meth:`Numerics.tflite`
(bit-exact with LiteRT's reference kernels) or :meth:`Numerics.npu_shift` (the NPU's shift-only
fused ops and 15-bit element-wise multipliers).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from .. import math as sm

if TYPE_CHECKING:
    from ..config import QConfig

__all__ = ["AddMethod", "MultiplyMethod", "Numerics", "PoolMethod", "ResizeMethod", "TableRounding"]


class AddMethod(str, enum.Enum):
    """Integer ``a + b`` / ``a - b`` of two tensors with their own scales."""

    FINE_GRID = "fine_grid"  # both rescaled to s_y / 256 in int32, summed, rounded once more (>> 8)
    TFLITE = "tflite"  # TFLite's ADD / SUB: inputs << 20, Q31 multipliers, double rounding
    SHIFT15 = "shift15"  # math.add_params: 15-bit multipliers, one final rounding


class MultiplyMethod(str, enum.Enum):
    """How the real factor ``s_a s_b / s_y`` of an integer product becomes a fixed-point multiplier."""

    REQUANTIZER = "requantizer"  # the route's own multiplier width (Numerics.multiplier)
    TFLITE = "tflite"  # TFLite's MUL: the factor computed in float32, QuantizeMultiplier
    SHIFT15 = "shift15"  # a 15-bit multiplier and a right shift


class PoolMethod(str, enum.Enum):
    """Integer ``avg_pool2d`` and ``mean``."""

    NPU = "npu"  # avg: a depthwise sima.conv2d of ones, 1 / window in its multiplier; mean: sum, then rescale
    TFLITE = "tflite"  # TFLite's AVERAGE_POOL_2D (in-bounds counts, half away from zero) and MEAN


class TableRounding(str, enum.Enum):
    """Rounding of a lookup table's entries ``quantize(f(dequantize(code)))``."""

    HALF_UP = "half_up"  # the float route's choice
    OF_THE_MODEL = "of_the_model"  # as the model's own quantize after the op rounds


class ResizeMethod(str, enum.Enum):
    """Taps and rounding of an integer bilinear resize (:mod:`tvm_sima.lowering.resize`)."""

    EXACT = "exact"  # the exact source coordinates, 10-bit weights, rounded half up (the float route)
    OF_THE_MODEL = "of_the_model"  # LiteRT's 10-bit scale for TFLite models (their quantize rounds half away)


@dataclass(frozen=True)
class Numerics:
    """A route's integer algorithm per op family (module docstring)."""

    fused: sm.RequantMode  # of sima.conv2d / sima.dense
    dense_rounding: sm.RoundingMode  # of the multiplier_shift sima.dense
    add: AddMethod
    multiply: MultiplyMethod
    pool: PoolMethod
    tables: TableRounding
    multiplier_bits: int = sm.TFLITE_MULTIPLIER_BITS  # of the route's requantizer
    force_shift_positive: bool = False
    tflite_requantizer: bool = False  # requantize with TFLite's QuantizeMultiplier (else quantize_multiplier)
    tflite_clip: bool = False  # real clip bounds -> codes as TFLite (float32, half away from zero)
    integer_softmax: bool = False  # softmax in integers (a Q15 exponential table; not LiteRT's kernel)
    resize: ResizeMethod = ResizeMethod.EXACT  # bilinear resize taps (the converter: OF_THE_MODEL)
    tflite_hard_swish: bool = False  # a hard-swish chain's table is LiteRT's int16 fixed-point HARD_SWISH

    @classmethod
    def for_config(cls, config: "QConfig") -> "Numerics":
        """The float-model route under a :class:`~tvm_sima.config.QConfig`."""
        return cls(config.requant, sm.RoundingMode.TFLITE, AddMethod.FINE_GRID,
                   MultiplyMethod.REQUANTIZER, PoolMethod.NPU, TableRounding.HALF_UP,
                   multiplier_bits=int(config.multiplier_bits),
                   force_shift_positive=bool(config.force_shift_positive), integer_softmax=True)

    @classmethod
    def tflite(cls) -> "Numerics":
        """The converter's ``mode="tflite"``: LiteRT's reference kernels, bit for bit."""
        return cls(sm.RequantMode.MULTIPLIER_SHIFT, sm.RoundingMode.HALF_UP, AddMethod.TFLITE, MultiplyMethod.TFLITE,
                   PoolMethod.TFLITE, TableRounding.OF_THE_MODEL, tflite_requantizer=True, tflite_clip=True,
                   resize=ResizeMethod.OF_THE_MODEL, tflite_hard_swish=True)

    @classmethod
    def npu_shift(cls) -> "Numerics":
        """The converter's ``mode="shift"``: shift-only fused ops, 15-bit element-wise multipliers."""
        return cls(sm.RequantMode.SHIFT, sm.RoundingMode.HALF_UP, AddMethod.SHIFT15, MultiplyMethod.SHIFT15,
                   PoolMethod.TFLITE, TableRounding.OF_THE_MODEL, tflite_requantizer=True, tflite_clip=True,
                   resize=ResizeMethod.OF_THE_MODEL)

    def multiplier(self, real: float, acc_bound: int = 0) -> sm.FixedPointMultiplier:
        """The fixed-point form of a per-tensor rescale ``real`` of accumulators ``|acc| <= acc_bound``.

        Rounded half up, or TFLite's double rounding. The multiplier keeps ``acc * M`` in int64
        (:func:`~tvm_sima.math.multiplier_bits_for`: every bit for 8-bit operands); an accumulator
        beyond int32, which TFLite's double rounding cannot take (16-bit operands' products and sums),
        gets a single rounding half away from zero, TFLite's rounding of its final shift.
        """
        if self.tflite_requantizer and acc_bound <= sm.INT32_MAX:
            return sm.FixedPointMultiplier.tflite(real)
        width = sm.TFLITE_MULTIPLIER_BITS if self.tflite_requantizer else self.multiplier_bits
        bits = sm.multiplier_bits_for(acc_bound, width)
        m, n = sm.quantize_multiplier(real, bits, force_shift_positive=self.force_shift_positive)
        rounding = sm.RoundingMode.HALF_AWAY_FROM_ZERO if self.tflite_requantizer else sm.RoundingMode.HALF_UP
        return sm.FixedPointMultiplier(int(m), int(n), rounding)

    def clip_codes(self, qp: sm.QParams, lo: float, hi: float) -> tuple[int, int]:
        """The integer bounds equal to quantizing ``clip(x, lo, hi)`` (infinite: unbounded)."""
        scale, zp = float(np.atleast_1d(qp.scale)[0]), int(np.atleast_1d(qp.zero_point)[0])
        if self.tflite_clip:
            return sm.clamp_codes(scale, zp, qp.qmin, qp.qmax, None if lo == -np.inf else lo,
                                  None if hi == np.inf else hi)
        def code(bound: float) -> int:
            return zp + int(sm.round_real(bound / scale, sm.RoundingMode.HALF_UP))

        qmin = qp.qmin if lo == -np.inf else max(qp.qmin, min(qp.qmax, code(lo)))
        qmax = qp.qmax if hi == np.inf else min(qp.qmax, max(qp.qmin, code(hi)))
        return qmin, max(qmin, qmax)
