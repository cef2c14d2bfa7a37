"""NumPy integer reference kernels: the one numerical oracle for conv and dense.

Weights of a convolution are in **HWIGO** layout: kernel height, kernel width, input
channels per group, groups, output channels per group. Output channel ``g * O + o``
is group ``g``'s ``o``-th filter (the order TFLite depthwise and ONNX grouped
convolutions use). Dense weights are **OI**. Accumulation is exact, in int64.
"""

from __future__ import annotations

from typing import Sequence, Union

import numpy as np
import numpy.typing as npt

__all__ = [
    "Padding",
    "check_weight",
    "same_padding",
    "conv2d_accumulate",
    "conv2d_transpose_accumulate",
    "dense_accumulate",
    "output_channels",
    "per_channel_weight_view",
    "ohwi_to_hwigo",
    "depthwise_to_hwigo",
    "oihw_to_hwigo",
    "hwigo_to_oihw",
]

#: Explicit ``(top, left, bottom, right)`` padding, or ``"same"`` / ``"valid"``.
Padding = Union[str, Sequence[int]]


def _int_array(value: npt.ArrayLike, argument: str) -> np.ndarray:
    arr = np.asarray(value)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{argument} must be an integer array, got dtype {arr.dtype}")
    return arr


def check_weight(weight: np.ndarray, is_dense: bool, argument: str = "weight") -> None:
    """Raise ValueError unless ``weight`` has the rank of its layout: OI (dense) or HWIGO (conv)."""
    want = 2 if is_dense else 5
    if weight.ndim != want:
        layout = "OI (out, in)" if is_dense else "HWIGO (kh, kw, in/group, groups, out/group)"
        raise ValueError(f"{argument} must have rank {want} in layout {layout}, got shape {weight.shape}")


def output_channels(weight: np.ndarray, is_dense: bool) -> int:
    """Number of output channels of an OI (dense) or HWIGO (conv) weight."""
    check_weight(weight, is_dense)
    return int(weight.shape[0]) if is_dense else int(weight.shape[3] * weight.shape[4])


def per_channel_weight_view(weight: npt.ArrayLike, is_dense: bool) -> np.ndarray:
    """The weight as ``(output_channels, reduction)``: one row per output channel (any dtype)."""
    w = np.asarray(weight)
    check_weight(w, is_dense)
    if is_dense:
        return w
    kh, kw, i, g, o = w.shape
    return w.transpose(3, 4, 0, 1, 2).reshape(g * o, kh * kw * i)


def per_channel_weight_unview(rows: npt.ArrayLike, shape: tuple[int, ...], is_dense: bool) -> np.ndarray:
    """Inverse of :func:`per_channel_weight_view`: ``(output_channels, reduction)`` rows back to ``shape``."""
    w2 = np.asarray(rows)
    if is_dense:
        return w2.reshape(shape)
    kh, kw, i, g, o = shape
    return w2.reshape(g, o, kh, kw, i).transpose(2, 3, 4, 0, 1)


def ohwi_to_hwigo(weight: np.ndarray) -> np.ndarray:
    """TFLite CONV_2D filter ``[O, H, W, I]`` to HWIGO (one group)."""
    return np.asarray(weight).transpose(1, 2, 3, 0)[:, :, :, None, :]


def depthwise_to_hwigo(weight: np.ndarray, depth_multiplier: int = 1) -> np.ndarray:
    """TFLite DEPTHWISE_CONV_2D filter ``[1, H, W, C * M]`` to HWIGO ``[H, W, 1, C, M]``.

    Output channel ``c * M + m`` of TFLite is group ``c``'s ``m``-th filter, the HWIGO order.
    """
    w = np.asarray(weight)
    if w.ndim != 4 or w.shape[0] != 1 or w.shape[3] % depth_multiplier:
        raise ValueError(
            f"weight shape {w.shape} is not [1, H, W, C * M] with depth_multiplier={depth_multiplier}"
        )
    _, kh, kw, cm = w.shape
    return w.reshape(kh, kw, 1, cm // depth_multiplier, depth_multiplier)


def oihw_to_hwigo(weight: np.ndarray, groups: int = 1) -> np.ndarray:
    """ONNX / PyTorch ``[O, I/groups, H, W]`` to HWIGO."""
    w = np.asarray(weight)
    o, i, kh, kw = w.shape
    if o % groups:
        raise ValueError(f"groups={groups} does not divide the {o} output channels")
    return w.reshape(groups, o // groups, i, kh, kw).transpose(3, 4, 2, 0, 1)


def hwigo_to_oihw(weight: np.ndarray) -> np.ndarray:
    """HWIGO back to ``[O, I/groups, H, W]``."""
    w = np.asarray(weight)
    kh, kw, i, g, o = w.shape
    return w.transpose(3, 4, 2, 0, 1).reshape(g * o, i, kh, kw)


def same_padding(size: int, kernel: int, stride: int, dilation: int = 1) -> tuple[int, int]:
    """TFLite / TensorFlow ``SAME`` padding of one spatial axis: ``(before, after)``."""
    out = -(-size // stride)
    total = max((out - 1) * stride + (kernel - 1) * dilation + 1 - size, 0)
    return total // 2, total - total // 2


def _explicit_padding(
    padding: Padding, hw: tuple[int, int], khw: tuple[int, int], strides: Sequence[int], dilation: Sequence[int]
) -> tuple[int, int, int, int]:
    if isinstance(padding, str):
        if padding.lower() == "valid":
            return (0, 0, 0, 0)
        if padding.lower() == "same":
            top, bottom = same_padding(hw[0], khw[0], strides[0], dilation[0])
            left, right = same_padding(hw[1], khw[1], strides[1], dilation[1])
            return (top, left, bottom, right)
        raise ValueError(f"padding={padding!r}: use 'same', 'valid' or (top, left, bottom, right)")
    pads = tuple(int(p) for p in padding)
    if len(pads) != 4 or min(pads) < 0:
        raise ValueError(f"padding={padding!r}: need four non-negative ints (top, left, bottom, right)")
    return pads  # type: ignore[return-value]


def conv2d_accumulate(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    *,
    strides: Sequence[int] = (1, 1),
    padding: Padding = "valid",
    dilation: Sequence[int] = (1, 1),
    pad_value: int = 0,
    layout: str = "NHWC",
) -> np.ndarray:
    """Exact integer 2-D convolution ``acc = sum(x * w)``, int64, no bias.

    Parameters
    ----------
    x : array_like of int
        Input, ``NHWC`` or ``NCHW`` (``layout``), ``groups * I`` channels.
    weight : array_like of int
        HWIGO weight.
    strides, dilation : (int, int)
        Along height and width.
    padding : 'same', 'valid' or (top, left, bottom, right)
        Padded positions hold ``pad_value``: the input zero point when the zero point is
        folded into the bias, so that a padded position contributes real 0.
    pad_value : int
        Value of padded positions.
    layout : 'NHWC' or 'NCHW'
        Layout of ``x`` and of the result.

    Returns
    -------
    numpy.ndarray of int64, shape ``(N, Ho, Wo, G*O)`` or ``(N, G*O, Ho, Wo)``
    """
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout={layout!r}: use 'NHWC' or 'NCHW'")
    xi = _int_array(x, "x").astype(np.int64)
    w = _int_array(weight, "weight").astype(np.int64)
    check_weight(w, is_dense=False)
    if xi.ndim != 4:
        raise ValueError(f"x must be 4-D {layout}, got shape {xi.shape}")
    if layout == "NCHW":
        xi = xi.transpose(0, 2, 3, 1)
    kh, kw, cin_g, groups, cout_g = w.shape
    n, h, wd, cin = xi.shape
    if cin != cin_g * groups:
        raise ValueError(f"x has {cin} channels but weight expects {groups} groups x {cin_g} = {cin_g * groups}")
    top, left, bottom, right = _explicit_padding(padding, (h, wd), (kh, kw), strides, dilation)
    xp = np.pad(xi, ((0, 0), (top, bottom), (left, right), (0, 0)), constant_values=pad_value)
    sh, sw = strides
    dh, dw = dilation
    ho = (h + top + bottom - dh * (kh - 1) - 1) // sh + 1
    wo = (wd + left + right - dw * (kw - 1) - 1) // sw + 1
    if ho <= 0 or wo <= 0:
        raise ValueError(f"kernel {kh}x{kw} (dilation {dh}x{dw}) does not fit the padded {h}x{wd} input")
    acc = np.zeros((n, ho, wo, groups, cout_g), dtype=np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = xp[:, i * dh : i * dh + sh * (ho - 1) + 1 : sh, j * dw : j * dw + sw * (wo - 1) + 1 : sw, :]
            patch = patch.reshape(n, ho, wo, groups, cin_g)
            acc += np.einsum("nhwgi,igo->nhwgo", patch, w[i, j])
    acc = acc.reshape(n, ho, wo, groups * cout_g)
    return acc.transpose(0, 3, 1, 2) if layout == "NCHW" else acc


def conv2d_transpose_accumulate(
    x: npt.ArrayLike,
    weight: npt.ArrayLike,
    *,
    strides: Sequence[int] = (1, 1),
    padding: Sequence[int] = (0, 0, 0, 0),
    output_padding: Sequence[int] = (0, 0),
    dilation: Sequence[int] = (1, 1),
    groups: int = 1,
    layout: str = "NHWC",
) -> np.ndarray:
    """Exact integer transposed convolution (ONNX ConvTranspose, TFLite TRANSPOSE_CONV), int64, no bias.

    Every input pixel ``(iy, ix)`` scatters ``x * w`` to the output rows ``iy * s + ky * d - top``
    (and columns alike); the output has ``(H - 1) * s + d * (kh - 1) + 1 - top - bottom + output_padding``
    rows. ``weight`` is ``[I, O / groups, kh, kw]`` (relax's IOHW); output channel ``g * O + o`` is
    group ``g``'s ``o``-th filter. ``x`` holds centred codes (input minus its zero point).
    """
    if layout not in ("NHWC", "NCHW"):
        raise ValueError(f"layout={layout!r}: use 'NHWC' or 'NCHW'")
    xi = _int_array(x, "x").astype(np.int64)
    w = _int_array(weight, "weight").astype(np.int64)
    if xi.ndim != 4 or w.ndim != 4:
        raise ValueError(f"x must be 4-D {layout} and weight 4-D [I, O/groups, kh, kw], got {xi.shape}, {w.shape}")
    if layout == "NCHW":
        xi = xi.transpose(0, 2, 3, 1)
    n, h, wd, cin = xi.shape
    if w.shape[0] != cin or cin % groups:
        raise ValueError(f"x has {cin} channels, weight {w.shape[0]} input channels, groups={groups}")
    _, cout_g, kh, kw = w.shape
    (sh, sw), (dh, dw) = strides, dilation
    top, left, bottom, right = (int(p) for p in padding)
    ho = (h - 1) * sh + dh * (kh - 1) + 1 - top - bottom + int(output_padding[0])
    wo = (wd - 1) * sw + dw * (kw - 1) + 1 - left - right + int(output_padding[1])
    reach = ((h - 1) * sh + dh * (kh - 1) + 1, (wd - 1) * sw + dw * (kw - 1) + 1)  # rows / columns scattered to
    full = np.zeros((n, max(ho + top, reach[0]), max(wo + left, reach[1]), groups, cout_g), dtype=np.int64)
    xg = xi.reshape(n, h, wd, groups, cin // groups)
    wg = w.reshape(groups, cin // groups, cout_g, kh, kw)
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dh, i * dh + (h - 1) * sh + 1, sh)
            cols = slice(j * dw, j * dw + (wd - 1) * sw + 1, sw)
            full[:, rows, cols] += np.einsum("nhwgi,gio->nhwgo", xg, wg[:, :, :, i, j])
    acc = full[:, top:top + ho, left:left + wo].reshape(n, ho, wo, groups * cout_g)
    return acc.transpose(0, 3, 1, 2) if layout == "NCHW" else acc


def dense_accumulate(x: npt.ArrayLike, weight: npt.ArrayLike) -> np.ndarray:
    """Exact integer ``acc[n, o] = sum_i x[n, i] * w[o, i]`` in int64 (weight OI)."""
    xi = _int_array(x, "x").astype(np.int64)
    w = _int_array(weight, "weight").astype(np.int64)
    check_weight(w, is_dense=True)
    if xi.shape[-1] != w.shape[1]:
        raise ValueError(f"x has {xi.shape[-1]} features but weight expects {w.shape[1]}")
    return xi @ w.T
