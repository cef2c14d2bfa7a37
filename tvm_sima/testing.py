"""Random quantized conv / dense layers for the seed API, shared by tests and benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional, Union

import numpy as np

from .math import (
    FixedPointMultiplier,
    Quantization,
    RoundingMode,
    conv2d_accumulate,
    dense_accumulate,
    requantize,
    requantize_qnn_convolution_dense,
    tflite_requantization_constants,
)


@dataclass
class Case:
    """One quantized conv or dense layer with its input."""

    x: np.ndarray
    weight: np.ndarray  # HWIGO or OI
    bias: Optional[np.ndarray]
    zp_x: int
    product_scales: np.ndarray  # one per output channel
    per_channel: bool
    output_q: Quantization
    is_dense: bool
    conv: dict

    @property
    def channel_axis(self) -> int:
        return 1 if (not self.is_dense and self.conv["layout"] == "NCHW") else -1

    def product_q(self):
        qs = [Quantization(float(s), 0, 32) for s in self.product_scales]
        return qs if self.per_channel else qs[0]

    def accumulate(self, x: np.ndarray, weight: np.ndarray, pad_value: int) -> np.ndarray:
        if self.is_dense:
            return dense_accumulate(x, weight)
        return conv2d_accumulate(x, weight, pad_value=pad_value, **self.conv)

    def _bcast(self, v: np.ndarray, ndim: int) -> np.ndarray:
        shape = [1] * ndim
        shape[self.channel_axis] = -1
        return np.asarray(v).reshape(shape)

    def exact(self) -> np.ndarray:
        """y* = r * (sum((x - zp) w) + b) + zp_y, real valued (float64), unclipped."""
        acc = self.accumulate(self.x.astype(np.int64) - self.zp_x, self.weight, 0)
        if self.bias is not None:
            acc = acc + self._bcast(self.bias, acc.ndim)
        r = self.product_scales / self.output_q.scale
        return acc * self._bcast(r, acc.ndim) + self.output_q.zero_point

    def receptive_abs_sum(self) -> np.ndarray:
        """sum(|x - zp|) over the inputs of each output."""
        centered = np.abs(self.x.astype(np.int64) - self.zp_x)
        ones = np.ones_like(self.weight, dtype=np.int64)
        return self.accumulate(centered, ones, 0)

    def fused_shift(self):
        """Output of the shift-only fused op, and its shift."""
        w, b, shift = requantize_qnn_convolution_dense(
            self.weight, self.bias, self.zp_x, self.product_q(), self.output_q, self.is_dense)
        acc = self.accumulate(self.x, w, self.zp_x) + self._bcast(b, self.x.ndim)
        n = np.asarray(shift)
        y = requantize(acc, 1, n, RoundingMode.HALF_UP, 0, -128, 127, axis=(acc.ndim + self.channel_axis) % acc.ndim
                       if n.ndim else None)
        return y, w, b, shift

    def fused_tflite(self) -> np.ndarray:
        b, sc, zc, shift = tflite_requantization_constants(
            self.weight, self.bias, self.zp_x, self.product_q(), self.output_q, self.is_dense)
        acc = self.accumulate(self.x, self.weight, self.zp_x) + self._bcast(b, self.x.ndim)
        axis = (acc.ndim + self.channel_axis) % acc.ndim if np.ndim(sc) else None
        right_shift = FixedPointMultiplier.from_q31_right_shift(sc, shift).right_shift
        return requantize(acc, sc, right_shift, RoundingMode.TFLITE, zc, -128, 127, axis=axis)


def random_case(rng: np.random.Generator, is_dense: bool, per_channel: bool) -> Case:
    """A layer with int8 weights spanning their range and realistic scales."""
    if is_dense:
        out_c, in_c = int(rng.integers(1, 17)), int(rng.integers(1, 65))
        weight_2d = rng.integers(-127, 128, (out_c, in_c))
        weight = weight_2d
        x = rng.integers(-128, 128, (int(rng.integers(1, 4)), in_c))
        conv = {}
        reduction = in_c
    else:
        groups = int(rng.choice([1, 2, 3]))
        cin_g, cout_g = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        kh, kw = int(rng.integers(1, 4)), int(rng.integers(1, 4))
        weight = rng.integers(-127, 128, (kh, kw, cin_g, groups, cout_g))
        layout = str(rng.choice(["NHWC", "NCHW"]))
        h, w = int(rng.integers(kh + 1, 9)), int(rng.integers(kw + 1, 9))
        shape = (1, h, w, cin_g * groups) if layout == "NHWC" else (1, cin_g * groups, h, w)
        x = rng.integers(-128, 128, shape)
        conv = dict(strides=tuple(int(s) for s in rng.integers(1, 3, 2)), padding=str(rng.choice(["same", "valid"])),
                    dilation=(1, 1), layout=layout)
        out_c = groups * cout_g
        reduction = kh * kw * cin_g
    # Weights use their full range per channel; the per-channel weight scales differ.
    s_x = float(np.exp(rng.uniform(np.log(1e-3), np.log(1e-1))))
    s_w = np.exp(rng.uniform(np.log(1e-3), np.log(1e-1), out_c)) if per_channel else np.full(out_c, 0.01)
    product = s_x * s_w
    # Output scale so that the typical output spans a good part of int8.
    s_y = float(product.max() * 127 * 40 * np.sqrt(reduction) / 127 * rng.uniform(0.5, 2.0))
    zp_x, zp_y = int(rng.integers(-128, 128)), int(rng.integers(-20, 21))
    bias = rng.integers(-(2**14), 2**14, out_c) if rng.random() < 0.8 else None
    return Case(x.astype(np.int8), weight.astype(np.int8), bias, zp_x, product, per_channel,
                Quantization(s_y, zp_y), is_dense, conv)


def digits_inputs(graph, npz_path: Union[str, os.PathLike], count_random: int, seed: int = 0) -> list[np.ndarray]:
    """int8 inputs for a TFLite digits model: the bundled held-out digits, quantized with the
    model's own input parameters, then ``count_random`` uniformly random int8 tensors."""
    data = np.load(npz_path)
    inp = graph.tensors[graph.inputs[0]]
    scale, zp = float(inp.scale[0]), int(inp.zero_point[0])
    digits = data["images_float"].reshape((-1,) + inp.shape[1:])
    real = [np.clip(np.round(d / scale) + zp, -128, 127).astype(np.int8)[None] for d in digits]
    rng = np.random.default_rng(seed)
    return real + [rng.integers(-128, 128, inp.shape).astype(np.int8) for _ in range(count_random)]
