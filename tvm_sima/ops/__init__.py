"""Relax operators of tvm-sima, registered from Python on import.

=========================  ==================================================================
op                         meaning
=========================  ==================================================================
``sima.quantize``          float -> int, ``clip(round(x / s) + zp)``
``sima.dequantize``        int -> float, ``s * (q - zp)``
``sima.requantize``        int -> int, ``clip(round((x - zp_in) * M / 2**N) + zp_out)``
``sima.quantize_info``     identity carrying a tensor's quantization parameters
``sima.simulated_quantize`` float fake quantization (calibration)
``sima.conv2d``            int8 conv + int32 bias + requantize (shift, or multiplier and shift)
``sima.dense``             int8 dense + int32 bias + requantize
=========================  ==================================================================
"""

from ._registry import OpError
from .nn import LAYOUTS, conv2d, dense
from .quant import (
    KINDS,
    dequantize,
    qparams_attrs,
    qparams_from_attrs,
    quantize,
    quantize_info,
    requantize,
    simulated_quantize,
)

__all__ = [
    "KINDS",
    "LAYOUTS",
    "conv2d",
    "dense",
    "OpError",
    "dequantize",
    "qparams_attrs",
    "qparams_from_attrs",
    "quantize",
    "quantize_info",
    "requantize",
    "simulated_quantize",
]
