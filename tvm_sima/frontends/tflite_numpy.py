"""Run an int8 TFLite model with :mod:`tvm_sima.math` alone: the NumPy integer oracle.

Every conv / dense goes through the seed API (``tflite_requantization_constants``) and
the integer reference kernels, so agreeing with LiteRT's reference kernels bit for bit
validates both.

Rounding, measured against LiteRT 2.3.0 with ``OpResolverType.BUILTIN_REF``
(tests/converter/test_tflite_bitexact.py): CONV_2D and DEPTHWISE_CONV_2D apply
``MultiplyByQuantizedMultiplier`` with its two roundings (``RoundingMode.TFLITE``);
FULLY_CONNECTED rounds **once**, ``(acc * M + 2**(30 - shift)) >> (31 - shift)``
(``RoundingMode.HALF_UP`` with the same Q31 multiplier, TFLite's single-rounding form).
With double rounding FULLY_CONNECTED differs by 1 LSB on a few outputs in a thousand.

Supported ops: CONV_2D, DEPTHWISE_CONV_2D, FULLY_CONNECTED, RESHAPE (int8, per-tensor or
per-channel weights, fused NONE / RELU / RELU6 / RELU_N1_TO_1).

Two requantization modes: ``"tflite"`` (multiplier and shift, bit-exact with LiteRT) and
``"shift"`` (SiMa-style: ``requantize_qnn_convolution_dense`` folds the scale into the
weights, the op only shifts), so the precision the fold costs can be measured on real models.
"""

from __future__ import annotations

import os
from typing import Callable, Union

import numpy as np

from ..math import (
    FixedPointMultiplier,
    Quantization,
    RoundingMode,
    clamp_codes,
    conv2d_accumulate,
    dense_accumulate,
    depthwise_to_hwigo,
    ohwi_to_hwigo,
    requantize,
    requantize_qnn_convolution_dense,
    tflite_product_quantization,
    tflite_requantization_constants,
)
from .tflite_flatbuffer import TFLiteGraph, TFLiteOp, TFLiteTensor, read_tflite

__all__ = ["MODES", "ROUNDING", "SUPPORTED_OPS", "activation_range", "clamp_codes", "run_int8_tflite", "run_op"]

Handler = Callable[[TFLiteGraph, TFLiteOp, dict, str], np.ndarray]
MODES = ("tflite", "shift")
_HANDLERS: dict[str, Handler] = {}

_ACTIVATIONS = {"NONE": (None, None), "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}


def _register(name: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        _HANDLERS[name] = fn
        return fn

    return wrap


def activation_range(activation: str, out: TFLiteTensor) -> tuple[int, int]:
    """TFLite's ``CalculateActivationRangeQuantized``: ``zp + round(bound / scale)`` in float32."""
    if activation not in _ACTIVATIONS:
        raise ValueError(f"fused activation {activation} is not supported (use NONE, RELU, RELU6, RELU_N1_TO_1)")
    info = np.iinfo(out.dtype)
    lo, hi = _ACTIVATIONS[activation]
    return clamp_codes(float(out.scale[0]), int(out.zero_point[0]), int(info.min), int(info.max), lo, hi)


#: How LiteRT's reference kernels round the requantization, per op (see the module docstring).
ROUNDING = {"CONV_2D": RoundingMode.TFLITE, "DEPTHWISE_CONV_2D": RoundingMode.TFLITE,
            "FULLY_CONNECTED": RoundingMode.HALF_UP}


def _constant(graph: TFLiteGraph, op: TFLiteOp, position: int) -> np.ndarray:
    """The constant data of an op's input, or a clear error if it is computed at run time."""
    tensor = graph.tensors[op.inputs[position]]
    if tensor.data is None:
        raise ValueError(
            f"op {op.index} ({op.name}): input {position} '{tensor.name}' is not a constant; "
            "weights and biases computed at run time are not supported"
        )
    return tensor.data


def _conv_like(
    graph: TFLiteGraph, op: TFLiteOp, mode: str, weight: np.ndarray, is_dense: bool, x: np.ndarray
) -> np.ndarray:
    inp, filt, out = (graph.tensors[op.inputs[0]], graph.tensors[op.inputs[1]], graph.tensors[op.outputs[0]])
    bias = _constant(graph, op, 2) if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
    if inp.dtype != np.int8 or filt.dtype != np.int8:
        raise ValueError(f"op {op.index} ({op.name}): only int8 input and weights are supported")
    product_q = tflite_product_quantization(inp.scale[0], filt.scale)
    out_q = Quantization(float(out.scale[0]), int(out.zero_point[0]))
    zp_in = int(inp.zero_point[0])
    per_tensor = product_q[0] if len(product_q) == 1 else product_q  # ints rather than arrays
    qmin, qmax = activation_range(op.options["FusedActivationFunction"], out)
    multiplier: Union[int, np.ndarray]
    if mode == "shift":
        weight, b, shift = requantize_qnn_convolution_dense(weight, bias, zp_in, per_tensor, out_q, is_dense)
        multiplier, right_shift, zc, rounding = 1, np.asarray(shift), 0, RoundingMode.HALF_UP
    else:
        b, multiplier, zc, shift = tflite_requantization_constants(weight, bias, zp_in, per_tensor, out_q, is_dense)
        right_shift = np.asarray(FixedPointMultiplier.from_q31_right_shift(multiplier, shift).right_shift)
        rounding = RoundingMode.parse(ROUNDING[op.name])
    if is_dense:
        acc = dense_accumulate(x, weight)
    else:
        o = op.options
        acc = conv2d_accumulate(
            x, weight, strides=(o["StrideH"], o["StrideW"]), padding=o["Padding"].lower(),
            dilation=(o["DilationHFactor"], o["DilationWFactor"]), pad_value=zp_in,
        )
    axis = acc.ndim - 1 if right_shift.ndim else None
    y = requantize(acc + b, multiplier, right_shift, rounding, zc, qmin, qmax, axis=axis)
    return y.astype(np.int8)


@_register("CONV_2D")
def _conv2d(graph: TFLiteGraph, op: TFLiteOp, values: dict, mode: str) -> np.ndarray:
    w = ohwi_to_hwigo(_constant(graph, op, 1))
    return _conv_like(graph, op, mode, w, False, values[op.inputs[0]])


@_register("DEPTHWISE_CONV_2D")
def _depthwise(graph: TFLiteGraph, op: TFLiteOp, values: dict, mode: str) -> np.ndarray:
    x = values[op.inputs[0]]
    filt = _constant(graph, op, 1)
    multiplier = filt.shape[3] // x.shape[3]
    return _conv_like(graph, op, mode, depthwise_to_hwigo(filt, multiplier), False, x)


@_register("FULLY_CONNECTED")
def _fully_connected(graph: TFLiteGraph, op: TFLiteOp, values: dict, mode: str) -> np.ndarray:
    w = _constant(graph, op, 1)
    x = values[op.inputs[0]].reshape(-1, w.shape[1])
    y = _conv_like(graph, op, mode, w, True, x)
    return y.reshape(graph.tensors[op.outputs[0]].shape)


@_register("RESHAPE")
def _reshape(graph: TFLiteGraph, op: TFLiteOp, values: dict, mode: str) -> np.ndarray:
    return values[op.inputs[0]].reshape(graph.tensors[op.outputs[0]].shape)


SUPPORTED_OPS: tuple[str, ...] = tuple(sorted(_HANDLERS))


def run_op(graph: TFLiteGraph, op: TFLiteOp, values: dict[int, np.ndarray], mode: str = "tflite") -> np.ndarray:
    """Compute one op's output from ``values`` (tensor index -> array) in ``mode``."""
    if op.name not in _HANDLERS:
        raise ValueError(f"unsupported TFLite op {op.name} (op {op.index}); supported: {', '.join(SUPPORTED_OPS)}")
    return _HANDLERS[op.name](graph, op, values, mode)


def run_int8_tflite(
    model: Union[str, os.PathLike, bytes, TFLiteGraph], x: np.ndarray, mode: str = "tflite"
) -> dict[int, np.ndarray]:
    """Execute the model on one int8 input; returns every tensor computed, by tensor index.

    ``mode`` is ``"tflite"`` (bit-exact with LiteRT's reference kernels) or ``"shift"``
    (the SiMa shift-only fold).

    Raises
    ------
    ValueError
        Listing every unsupported op with its index and output tensor name, or when the
        input's shape or dtype does not match the model's.
    """
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: use one of {MODES}")
    graph = model if isinstance(model, TFLiteGraph) else read_tflite(model)
    missing = [f"{op.name} (op {op.index}, output '{graph.tensors[op.outputs[0]].name}')"
               for op in graph.ops if op.name not in _HANDLERS]
    if missing:
        raise ValueError(f"unsupported TFLite ops: {', '.join(missing)}; supported: {', '.join(SUPPORTED_OPS)}")
    (inp,) = [graph.tensors[i] for i in graph.inputs]
    x = np.asarray(x)
    if x.dtype != inp.dtype or tuple(x.shape) != inp.shape:
        raise ValueError(f"input must be {inp.dtype} of shape {inp.shape}, got {x.dtype} {tuple(x.shape)}")
    values = {inp.index: x}
    for op in graph.ops:
        values[op.outputs[0]] = _HANDLERS[op.name](graph, op, values, mode)
    return values
