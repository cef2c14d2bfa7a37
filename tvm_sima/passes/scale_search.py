"""Scale search: each fused layer's output scale chosen, within an octave, for the least layer output error.

In shift mode (SiMa's ``requantize_qnn_convolution_dense``) the fused op has no multiplier: output
channel ``c`` stores ``w' = round(W * s_x / s_y * 2**n_c)`` with the largest shift ``n_c`` that keeps
``|w'| <= 127``. Its weight step, ``s_y / (s_x 2**n_c)``, is between ``max|W_c| / 127`` and twice
that, depending on where ``s_x / s_y`` falls between two powers of two: a channel loses up to one
bit of its weights to the power-of-two grid. The output scale ``s_y`` moves every channel's step
(and the tensor's own grid) at once, so it is worth choosing. This module tries
``s_y * 2**(k / steps)`` for ``k`` in ``[0, steps)`` (one octave above the calibrated scale, so no
value is clipped that calibration kept; the zero point is kept, so the range scales about zero)
and keeps the one with the least

    E(s_y) = mean((Q_y(y) - y)**2)  +  mean_c( p_c * e_c M_c e_c^T )

on a few calibration batches: ``y`` the layer's float output, quantized by the real quantizer
(:func:`tvm_sima.math.quantize` at ``s_y``: rounding and clipping); ``e_c`` channel ``c``'s weight
error from the real fold (:func:`tvm_sima.lowering.from_float_weights`, the weights the op will hold,
in real units, minus the float ones); ``M_c`` the second moment of the input patches channel ``c``
reads (centred when bias correction is on: it removes the mean part of the error) and ``p_c`` the
share of channel ``c``'s outputs the epilogue's clip passes (a clipped output carries no weight
error). Both terms are mean squared errors the layer adds to its output (EasyQuant / OMSE style:
the layer's output error, with the full patch covariance, not a diagonal guess: neighbouring
pixels are strongly correlated and a diagonal estimate ranks candidates wrongly).

Order: cross-layer equalization of the float weights (:mod:`~tvm_sima.passes.equalize`) comes
first; then this search; then bias correction (:func:`tvm_sima.lowering.corrected_float_weights`),
computed for the weights the op holds at the searched scale, so it corrects the rounding the search
left (the search's weight term already assumes it: centred moments). Layers are searched in program
order, each with its input's scale already chosen. In
multiplier_shift mode the weights do not depend on ``s_y``: the search would only weigh a coarser grid
against the calibrated one on a few batches (measured on EfficientNet-Lite0: 20.39 dB against 21.01),
so it leaves those layers alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, Optional, Sequence

import numpy as np

from .. import lowering
from .. import math as sm

__all__ = ["STEPS", "ScaleChoice", "Window", "cross_moments", "float_taps", "grouped_product", "patch_count",
           "patch_moments", "search_output_scale", "window_of"]

#: Candidates per octave.
STEPS = 16
#: Input patches per layer the second moments are taken over (a seeded subsample of the positions).
MAX_PATCHES = 4096


@dataclass(frozen=True)
class Window:
    """A conv's window: kernel, strides, padding (top, left, bottom, right), dilation, groups, data layout."""

    kernel: tuple[int, int]
    strides: tuple[int, int]
    padding: tuple[int, int, int, int]
    dilation: tuple[int, int]
    groups: int
    layout: str


@dataclass(frozen=True)
class ScaleChoice:
    """One layer's search: the factor kept (``s_y = factor * calibrated``) and the errors before and after."""

    layer: str
    factor: float
    error_before: float
    error_after: float

    def to_dict(self) -> dict:
        return {"layer": self.layer, "factor": round(self.factor, 6), "error_before": self.error_before,
                "error_after": self.error_after}


def float_taps(amod: Any, batches: Iterable[Any]) -> dict[str, np.ndarray]:
    """Every activation tensor of the annotated module on ``batches`` (float program), concatenated on axis 0."""
    import tvm
    from tvm import relax

    from ..calibration.data_checks import batch_arrays
    from ..driver import build  # here: the driver imports the codegen, which imports passes
    from .calibrate import calibration_graph

    mod, taps, _ = calibration_graph(amod)
    main = mod["main"]
    vm = relax.VirtualMachine(build(mod), tvm.cpu())
    values: dict[str, list[np.ndarray]] = {name: [] for name in taps}
    for batch in batches:
        out = vm["main"](*[tvm.runtime.tensor(a) for a in batch_arrays(batch, [p.name for p in main.params])])
        for i, name in enumerate(taps, start=1):
            values[name].append(out[i].numpy())
    return {name: np.concatenate(v) for name, v in values.items() if v}


def _output_size(x: np.ndarray, window: Window) -> tuple[int, int]:
    """The conv's output rows and columns for the (unpadded) input ``x``."""
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.strides, window.dilation
    top, left, bottom, right = window.padding
    h, w = (x.shape[1], x.shape[2]) if window.layout == "NHWC" else (x.shape[2], x.shape[3])
    return (h + top + bottom - dh * (kh - 1) - 1) // sh + 1, (w + left + right - dw * (kw - 1) - 1) // sw + 1


def _patches(x: np.ndarray, window: Optional[Window]) -> np.ndarray:
    """``(groups, positions, kh * kw * channels_per_group)`` input patches (columns as the weight view's:
    channel fastest), at most :data:`MAX_PATCHES` positions."""
    if window is None:
        rows = x.reshape(-1, x.shape[-1]).astype(np.float64)
        return rows[_subsample(rows.shape[0])][None]
    oh, ow = _output_size(x, window)
    if window.layout == "NHWC":
        x = x.transpose(0, 3, 1, 2)
    top, left, bottom, right = window.padding
    x = np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)))
    (kh, kw), (sh, sw), (dh, dw) = window.kernel, window.strides, window.dilation
    n, c = x.shape[:2]
    picked = _subsample(n * oh * ow)
    b, rest = np.divmod(picked, oh * ow)
    i, j = np.divmod(rest, ow)
    taps = [x[b, :, i * sh + a * dh, j * sw + e * dw] for a in range(kh) for e in range(kw)]  # each (P, C)
    per = c // window.groups
    patches = np.stack(taps, axis=1).reshape(len(picked), kh * kw, window.groups, per)
    return patches.transpose(2, 0, 1, 3).reshape(window.groups, len(picked), kh * kw * per).astype(np.float64)


def _subsample(count: int) -> np.ndarray:
    if count <= MAX_PATCHES:
        return np.arange(count)
    return np.sort(np.random.default_rng(count).choice(count, MAX_PATCHES, replace=False))


def patch_count(x: np.ndarray, window: Optional[Window]) -> int:
    """How many input patches :func:`patch_moments` averages over (positions, at most :data:`MAX_PATCHES`)."""
    if window is None:
        return min(MAX_PATCHES, int(np.prod(x.shape[:-1])))
    oh, ow = _output_size(x, window)
    return min(MAX_PATCHES, x.shape[0] * oh * ow)


def patch_moments(x: np.ndarray, window: Optional[Window], centred: bool) -> np.ndarray:
    """``(groups, K, K)`` second moments of the input patches of one layer (covariances when ``centred``)."""
    patches = _patches(x, window)
    if centred:
        patches = patches - patches.mean(axis=1, keepdims=True)
    return np.matmul(patches.transpose(0, 2, 1), patches) / patches.shape[1]


def cross_moments(x: np.ndarray, x_tilde: np.ndarray, window: Optional[Window],
                  centred: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(E[p~ p~^T], E[p~ p^T], E[p p^T])``, each ``(groups, K, K)``: the patches ``p`` of the float input ``x`` and
    ``p~`` of its quantized value ``x_tilde`` at the same positions (centred each when ``centred``)."""
    p, q = _patches(x, window), _patches(x_tilde, window)
    if centred:
        p, q = p - p.mean(axis=1, keepdims=True), q - q.mean(axis=1, keepdims=True)
    n = p.shape[1]
    qt = q.transpose(0, 2, 1)
    return np.matmul(qt, q) / n, np.matmul(qt, p) / n, np.matmul(p.transpose(0, 2, 1), p) / n


def grouped_product(err: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """``err M`` per group: ``err`` (C, K), its C / groups consecutive rows sharing each group's ``M`` (G, K, K);
    ``(grouped_product(e, M) * e).sum(axis=1)`` is each row's ``e_c M e_c^T``."""
    groups = moments.shape[0]
    per_group = err.reshape(groups, -1, err.shape[1])
    return np.matmul(per_group, moments).reshape(err.shape)


def _weight_errors(weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams, is_dense: bool,
                   spec: lowering.WeightSpec, mode: sm.RequantMode, moments: np.ndarray) -> np.ndarray:
    """Per output channel, the mean squared output error of the fused op's weights (``e_c M e_c^T``)."""
    _, effective, _ = lowering.from_float_weights(weight, bias, x_q, y_q, is_dense, spec, mode)
    error = effective - sm.per_channel_weight_view(weight, is_dense)
    return (grouped_product(error, moments) * error).sum(axis=1)


def _channel_axis(y: np.ndarray, is_dense: bool, window: Optional[Window]) -> int:
    return y.ndim - 1 if is_dense or (window is not None and window.layout == "NHWC") else 1


def search_output_scale(layer: str, weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams,
                        is_dense: bool, spec: lowering.WeightSpec, mode: sm.RequantMode, x: np.ndarray,
                        y: np.ndarray, clip: tuple[float, float], window: Optional[Window], centred: bool,
                        steps: int = STEPS) -> tuple[sm.QParams, Optional[ScaleChoice]]:
    """The output parameters of least layer output error (module docstring), and the search's record.

    Parameters
    ----------
    weight, bias : ndarray
        The layer's float weights (HWIGO, or OI for dense) and bias, epilogue folded in.
    x_q, y_q : QParams
        The input's parameters and the output's calibrated ones (per-tensor).
    x, y : ndarray
        The layer's float input and output (after the epilogue) on a few calibration batches.
    clip : (float, float)
        The epilogue's clip bounds (infinite: none).
    window : Window, optional
        The conv's window (None: dense, the input's last axis is the reduction).
    centred : bool
        Bias correction is on (the weight error's mean part is corrected away).

    Returns ``(y_q, None)`` unchanged when there is nothing to search (a per-channel output, or not shift mode).
    """
    if np.ndim(y_q.scale) != 0 or y.size == 0 or mode is not sm.RequantMode.SHIFT:
        return y_q, None
    moments = patch_moments(x, window, centred)
    axis = _channel_axis(y, is_dense, window)
    passed = np.moveaxis((y > clip[0]) & (y < clip[1]), axis, 0).reshape(y.shape[axis], -1).mean(axis=1)
    flat = y.reshape(-1).astype(np.float64)
    if flat.size > 16 * MAX_PATCHES:
        flat = flat[np.random.default_rng(flat.size).choice(flat.size, 16 * MAX_PATCHES, replace=False)]
    scale, zp = float(y_q.scale), int(np.asarray(y_q.zero_point))
    errors: list[float] = []
    for k in range(steps):
        qp = sm.QParams(scale * 2.0 ** (k / steps), zp, y_q.dtype, narrow_range=y_q.narrow_range)
        act = float(np.mean((sm.dequantize(sm.quantize(flat, qp, sm.RoundingMode.HALF_UP), qp) - flat) ** 2))
        errors.append(act + float(np.mean(passed * _weight_errors(weight, bias, x_q, qp, is_dense, spec, mode,
                                                                   moments))))
    best = int(np.argmin(errors))
    factor = 2.0 ** (best / steps)
    choice = ScaleChoice(layer, factor, errors[0], errors[best])
    found = y_q if best == 0 else sm.QParams(scale * factor, zp, y_q.dtype, narrow_range=y_q.narrow_range)
    return found, choice


def window_of(attrs: Any, kernel: Sequence[int]) -> Window:
    """The :class:`Window` of a ``relax.nn.conv2d`` call's attributes and its (kh, kw)."""
    pad = [int(p) for p in attrs["padding"]]
    pad = pad * 2 if len(pad) == 2 else pad
    return Window((int(kernel[0]), int(kernel[1])), tuple(int(s) for s in attrs["strides"]),  # type: ignore[arg-type]
                  (pad[0], pad[1], pad[2], pad[3]), tuple(int(d) for d in attrs["dilation"]),  # type: ignore[arg-type]
                  int(attrs["groups"]), str(attrs["data_layout"]))
