"""Pure-NumPy quantization math: the numerical reference for everything in tvm-sima.

No TVM import here. Conventions (written into the types):

- affine quantization ``real = scale * (q - zero_point)``, ``scale > 0`` (:class:`QParams`);
- requantization ``y = clip(round(acc * M / 2**N) + zp_out)`` with an integer multiplier ``M``
  of stated width and a **right** shift ``N >= 0``, rounding named by :class:`RoundingMode`
  (:class:`FixedPointMultiplier`, which also converts TFLite's Q31 exponents);
- convolution weights in HWIGO, dense weights in OI (:mod:`tvm_sima.math.kernels`).
"""

from .elementwise import (
    AddParams,
    add_params,
    clip_bounds,
    fixed_point_add,
    fixed_point_clip,
    fixed_point_max,
    fixed_point_min,
    fixed_point_mul,
    fixed_point_relu,
    fixed_point_relu6,
    fixed_point_sub,
    pad_value,
)
from .fixed_point import MAX_TOTAL_RIGHT_SHIFT, FixedPointMultiplier
from .hard_swish import tflite_hard_swish, tflite_hard_swish_multipliers
from .kernels import (
    conv2d_accumulate,
    dense_accumulate,
    depthwise_to_hwigo,
    hwigo_to_oihw,
    ohwi_to_hwigo,
    oihw_to_hwigo,
    per_channel_weight_unview,
    per_channel_weight_view,
    same_padding,
)
from .lut import Lut, apply_lut, build_lut
from .qparams import (
    MIN_SCALE,
    Granularity,
    QParams,
    QScheme,
    bias_qparams,
    choose_qparams,
    clamp_codes,
    dequantize,
    quantize,
)
from .qtypes import ACTIVATION_BITS, BIAS_BITS, INT32_MAX, INT32_MIN, WEIGHT_BITS, QType, parse_qtype
from .requant import (
    HW15_MAX_MULTIPLIER,
    HW15_MULTIPLIER_BITS,
    HW_MAX_RIGHT_SHIFT,
    REQUANT_MODE_NAMES,
    TFLITE_MULTIPLIER_BITS,
    RequantMode,
    multiply_by_quantized_multiplier,
    normalize_axis,
    quantize_multiplier,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
    tflite_quantize_multiplier,
)
from .rounding import RoundingMode, round_real, rounding_right_shift
from .sima import (
    Quantization,
    correction_factors,
    fold_float_weights_shift,
    folded_error_bound,
    requantize_qnn_convolution_dense,
    tflite_product_quantization,
    tflite_requantization_constants,
)

__all__ = [
    "ACTIVATION_BITS",
    "AddParams",
    "BIAS_BITS",
    "FixedPointMultiplier",
    "Granularity",
    "HW15_MAX_MULTIPLIER",
    "HW15_MULTIPLIER_BITS",
    "HW_MAX_RIGHT_SHIFT",
    "INT32_MAX",
    "INT32_MIN",
    "Lut",
    "MAX_TOTAL_RIGHT_SHIFT",
    "MIN_SCALE",
    "QParams",
    "QScheme",
    "QType",
    "Quantization",
    "REQUANT_MODE_NAMES",
    "RequantMode",
    "RoundingMode",
    "TFLITE_MULTIPLIER_BITS",
    "WEIGHT_BITS",
    "add_params",
    "apply_lut",
    "bias_qparams",
    "build_lut",
    "choose_qparams",
    "clamp_codes",
    "clip_bounds",
    "conv2d_accumulate",
    "correction_factors",
    "dense_accumulate",
    "depthwise_to_hwigo",
    "dequantize",
    "fixed_point_add",
    "fixed_point_clip",
    "fixed_point_max",
    "fixed_point_min",
    "fixed_point_mul",
    "fixed_point_relu",
    "fixed_point_relu6",
    "fixed_point_sub",
    "fold_float_weights_shift",
    "folded_error_bound",
    "hwigo_to_oihw",
    "multiply_by_quantized_multiplier",
    "normalize_axis",
    "ohwi_to_hwigo",
    "oihw_to_hwigo",
    "pad_value",
    "per_channel_weight_unview",
    "per_channel_weight_view",
    "parse_qtype",
    "quantize",
    "quantize_multiplier",
    "requantize",
    "requantize_qnn_convolution_dense",
    "round_real",
    "rounding_divide_by_pot",
    "rounding_right_shift",
    "same_padding",
    "saturating_rounding_doubling_high_mul",
    "tflite_hard_swish",
    "tflite_hard_swish_multipliers",
    "tflite_product_quantization",
    "tflite_quantize_multiplier",
    "tflite_requantization_constants",
]
