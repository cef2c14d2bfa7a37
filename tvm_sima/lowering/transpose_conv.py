"""Transposed convolution (``relax.nn.conv2d_transpose``) as a value move and the fused ``sima.conv2d``.

A transposed convolution with stride ``s``, padding ``p``, output padding ``op`` and dilation ``d``
equals, exactly, a plain stride-1 convolution of the input with ``s - 1`` zeros inserted between
its pixels, with the kernel flipped in height and width and its in / out channels swapped::

    conv2d_transpose(x, W)[y] = conv2d(insert_zeros(x, s), flip(W)^T, dilation=d,
                                       padding=(d*(k-1) - p_before, d*(k-1) - p_after + op))[y]

On integers the inserted "zero" is the input's zero-point code (real 0), so the insertion is a
value move and the convolution is the existing ``sima.conv2d`` with its int8 weight, int32 bias
and requantization (:mod:`.fused`); no new sima op. Both routes use this module: realize
(float weights, :func:`tvm_sima.lowering.corrected_float_weights`) and the converter (int8 weights,
:func:`tvm_sima.lowering.from_integer_weights`) take the equivalent convolution's HWIGO weight from
:meth:`TransposeConv.hwigo` and emit with :func:`emit_conv2d_transpose`. The NumPy oracle is
:func:`tvm_sima.math.conv2d_transpose_accumulate` (a direct scatter, not this construction).

The inserted zeros cost ``s_h * s_w`` times the transposed convolution's MACs; a kernel equal to
the stride (no overlap) could instead be a 1x1 convolution and a depth-to-space.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence, Union

import numpy as np
from tvm import relax

from .base import Codes
from .fused import FusedConstants, emit_conv2d

__all__ = ["TransposeConv", "emit_conv2d_transpose", "transpose_conv"]

#: Data layouts sima.conv2d takes.
_LAYOUTS = ("NCHW", "NHWC")


@dataclass(frozen=True)
class TransposeConv:
    """A ``conv2d_transpose`` call's equivalent convolution.

    ``before`` / ``after``: per spatial axis (height, width), the padding (>= 0) or crop (< 0) of
    the zero-inserted input of ``(H - 1) * s + 1`` rows; the convolution then runs with stride 1.
    """

    strides: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    layout: str
    kernel_layout: str
    before: tuple[int, int]
    after: tuple[int, int]

    def hwigo(self, weight: np.ndarray) -> np.ndarray:
        """The equivalent convolution's HWIGO weight from the call's ``weight`` (its kernel layout).

        ``weight`` is ``[I, O / groups, kh, kw]`` in some axis order (relax's ``IOHW``: ONNX
        ConvTranspose as is, TFLite's ``[O, kh, kw, I]`` permuted by the importer); any dtype.
        """
        w = np.asarray(weight).transpose([self.kernel_layout.index(c) for c in "IOHW"])
        cin, cout_g, kh, kw = w.shape
        if cin % self.groups:
            raise ValueError(f"conv2d_transpose: groups={self.groups} does not divide the {cin} input channels")
        w = w.reshape(self.groups, cin // self.groups, cout_g, kh, kw)[:, :, :, ::-1, ::-1]
        return np.ascontiguousarray(w.transpose(3, 4, 1, 0, 2))  # kh, kw, I/g, g, O/g

    def kept_zeros(self, i: int) -> int:
        """How many of the ``s - 1`` zeros inserted after the last pixel of spatial axis ``i`` serve as padding."""
        return min(max(self.after[i], 0), self.strides[i] - 1)

    def conv_padding(self) -> list[int]:
        """``(top, left, bottom, right)`` of the convolution: the non-negative padding not already inserted."""
        bottom, right = (max(self.after[i], 0) - self.kept_zeros(i) for i in range(2))
        return [max(self.before[0], 0), max(self.before[1], 0), bottom, right]


def transpose_conv(call: relax.Call) -> Union[TransposeConv, str]:
    """The :class:`TransposeConv` of a ``relax.nn.conv2d_transpose`` call, or why it has none."""
    a = call.attrs
    layout, kernel_layout = str(a["data_layout"]), str(a["kernel_layout"])
    if layout not in _LAYOUTS or str(a["out_layout"]) != layout or sorted(kernel_layout) != sorted("IOHW"):
        return f"layouts {layout}/{kernel_layout}->{a['out_layout']} (sima.conv2d takes NCHW or NHWC data)"
    w_shape = getattr(call.args[1].ty, "shape", None)
    if w_shape is None:
        return "the weight has no static shape"
    khw = [int(w_shape[kernel_layout.index("H")]), int(w_shape[kernel_layout.index("W")])]
    strides, dilation = [int(s) for s in a["strides"]], [int(d) for d in a["dilation"]]
    top, left, bottom, right = (int(p) for p in a["padding"])
    extra = [int(p) for p in a["output_padding"]]
    before = tuple(dilation[i] * (khw[i] - 1) - (top, left)[i] for i in range(2))
    after = tuple(dilation[i] * (khw[i] - 1) - (bottom, right)[i] + extra[i] for i in range(2))
    return TransposeConv((strides[0], strides[1]), (dilation[0], dilation[1]), int(a["groups"]), layout,
                         kernel_layout, before, after)  # type: ignore[arg-type]


def _insert_zeros(bb: relax.BlockBuilder, x: relax.Expr, zp: int, shape: Sequence[int], tc: TransposeConv
                  ) -> relax.Expr:
    """``x`` with ``s - 1`` codes ``zp`` after every pixel (the last pixel's are cropped below)."""
    sh, sw = tc.strides
    if (sh, sw) == (1, 1):
        return x
    n, c, h, w = shape if tc.layout == "NCHW" else (shape[0], shape[3], shape[1], shape[2])
    split = [n, c, h, 1, w, 1] if tc.layout == "NCHW" else [n, h, 1, w, 1, c]
    pads = [0, 0, 0, 0, 0, 0, 0, sh - 1, 0, 0, 0, sw - 1] if tc.layout == "NCHW" else \
        [0, 0, 0, 0, 0, sh - 1, 0, 0, 0, sw - 1, 0, 0]
    y = bb.emit(relax.op.reshape(x, split))
    y = bb.emit(relax.op.nn.pad(y, pads, "constant", float(zp)))
    joined = [n, c, h * sh, w * sw] if tc.layout == "NCHW" else [n, h * sh, w * sw, c]
    return bb.emit(relax.op.reshape(y, joined))


def _crop(bb: relax.BlockBuilder, x: relax.Expr, shape: Sequence[int], tc: TransposeConv) -> relax.Expr:
    """The negative parts of the padding cropped, and the inserted zeros after the last pixel not used as padding."""
    axes, begin, end = [], [], []
    for i, axis in enumerate((2, 3) if tc.layout == "NCHW" else (1, 2)):
        size = (shape[axis] - 1) * tc.strides[i] + 1  # the zero-inserted rows up to the last pixel
        start, stop = max(-tc.before[i], 0), size + tc.kept_zeros(i) - max(-tc.after[i], 0)
        if stop <= start:
            raise ValueError(f"conv2d_transpose: the padding crops all {size} rows of axis {axis}")
        if (start, stop) != (0, shape[axis] * tc.strides[i]):
            axes.append(axis)
            begin.append(start)
            end.append(stop)
    return bb.emit(relax.op.strided_slice(x, axes, begin, end)) if axes else x


def emit_conv2d_transpose(bb: relax.BlockBuilder, x: relax.Expr, shape: Sequence[int], consts: FusedConstants,
                          zp_x: int, codes: Codes, out_dtype: str, tc: TransposeConv) -> relax.Expr:
    """The integer transposed convolution of ``x`` (codes of ``shape``): zero insertion, then ``sima.conv2d``.

    ``consts`` are of the equivalent convolution (HWIGO weight from :meth:`TransposeConv.hwigo`).
    """
    moved = _crop(bb, _insert_zeros(bb, x, zp_x, shape, tc), shape, tc)
    return emit_conv2d(moved, consts, zp_x, codes, out_dtype, strides=[1, 1], padding=tc.conv_padding(),
                       dilation=list(tc.dilation), groups=tc.groups, layout=tc.layout)

