"""AdaRound (Nagel et al., 2020): each fused layer's weights rounded up or down, for the least output error.

Nearest rounding minimises each weight's own error, not the layer's: the errors of the weights of one
output channel add up over the correlated inputs they read. AdaRound chooses, for every weight *as the
fused op stores it* (:func:`tvm_sima.lowering.float_weight_grid`: shift mode, the folded codes
``round(W * s_x / s_y * 2**n_c)`` on channel ``c``'s power-of-two grid; multiplier_shift, the int8
codes of the weight scale), the code below or above ``W / step`` (never more than one step from
nearest; clipped to the code range), minimising channel ``c``'s output error on calibration data.

For a linear layer before its activation that error is a quadratic form: with ``e_c`` the channel's
weight error (real units) and ``M`` the second moment of its input patches,
``mean((w_c x - w~_c x)**2) = e_c M e_c^T``. ``M`` is the one the scale search uses
(:func:`tvm_sima.passes.scale_search.patch_moments`: the input's float values on the first
``scale_search_samples`` calibration batches, at most ``MAX_PATCHES`` seeded patch positions; centred
when bias correction is on, since the correction, applied after, removes the error's mean part), so
each optimiser step costs one ``(C, K) x (K, K)`` product per layer and no pass over the data.
The relaxation is the paper's: the stored code is ``floor + h(V)`` with the rectified sigmoid
``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)`` (``zeta = 1.1, gamma = -0.1``), ``V``
initialised so that ``h(V)`` is the fractional part (nearest rounding at the start), minimised by Adam
on ``sum_c e_c M e_c^T + lambda sum (1 - |2 h(V) - 1|**beta)`` (the reconstruction summed over output
channels, AIMET's convention), the regulariser off for the warm-start fraction, then ``beta`` annealed
linearly from 20 to 2; at the end a weight rounds up where ``h(V) >= 1/2``. The gradient is exact and
full-batch (the quadratic form holds the data), so the default is fewer steps than the paper's 10000
mini-batch steps, with a larger learning rate (``qconfig(adaround_iterations=1000,
adaround_learning_rate=0.01)``). No randomness: the same data give the same codes.

The layer's quantized input (``qconfig(adaround_quantized_input=True)``; off by default): the paper's
``E[(w x - w~ x~)**2]`` with ``x~`` the input as the quantized layers before it give it. Writing
``w~ = w + e``, it is ``e A e^T + 2 e (A - B) w^T + const`` with ``A = E[x~ x~^T]`` and ``B = E[x~ x^T]``
(:func:`~tvm_sima.passes.scale_search.cross_moments`): the same quadratic plus a linear term, which lets
a layer's rounding also compensate the error its input already carries. ``x~`` comes from a first
integer program (every layer AdaRounded on float inputs), run with every tensor tapped on the same
batches (:func:`tvm_sima.compare.integer_taps`); realize then runs again with it. So the earlier layers' codes ``x~``
reflects are the first pass's, not the second's (one pass of lag), and the cost is one more build,
a short run and a second realize. Measured on EfficientNet-Lite0 (shift mode, 4 batches) it is
*worse* than the float input (logits 16.20 dB against 20.08, nearest 17.99): each layer compensates
errors of its input that the second pass has changed (and fits them on 4 images), so it stays off;
a layer-by-layer pass (each layer's ``x~`` from the final codes before it) would need one run per
layer.

A layer with fewer patches than weights per channel (``M`` rank-deficient: AdaRound would fit the
few samples) keeps nearest rounding (on EfficientNet-Lite0 with 4 batches: the 1x1 convs at 7x7 reading
320 or more channels, and the classifier).

Order: cross-layer equalization, then the scale search (the output scale, hence the shift-mode grid),
then AdaRound on that grid, then bias correction for the weights AdaRound chose
(:func:`tvm_sima.lowering.corrected_float_weights` with ``stored=``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from .. import lowering
from .. import math as sm
from ..config import QConfig
from .scale_search import Window, cross_moments, grouped_product, patch_count, patch_moments

__all__ = ["ZETA", "GAMMA", "AdaRoundChoice", "AdaRoundParams", "LayerObjective", "adaround_layer",
           "layer_objective", "optimise_rounding",
           "rectified_sigmoid"]

#: The rectified sigmoid's stretch (Louizos et al., 2018; the paper's values).
ZETA, GAMMA = 1.1, -0.1
_ADAM = (0.9, 0.999, 1e-8)


@dataclass(frozen=True)
class AdaRoundParams:
    """The optimiser's hyper-parameters (``qconfig(adaround_*=...)``)."""

    iterations: int = 1000
    learning_rate: float = 0.01
    regularization: float = 0.01
    beta: tuple[float, float] = (20.0, 2.0)
    warm_start: float = 0.2

    @classmethod
    def of(cls, config: QConfig) -> "AdaRoundParams":
        return cls(config.adaround_iterations, float(config.adaround_learning_rate),
                   float(config.adaround_regularization), config.adaround_beta, float(config.adaround_warm_start))

    def beta_at(self, step: int) -> Optional[float]:
        """The regulariser's exponent at ``step``, or None during the warm start (no regulariser)."""
        start = int(self.warm_start * self.iterations)
        if step < start:
            return None
        progress = (step - start) / max(1, self.iterations - start)
        return self.beta[1] + (self.beta[0] - self.beta[1]) * max(0.0, 1.0 - progress)


@dataclass(frozen=True)
class AdaRoundChoice:
    """One layer's rounding: its output error (``sum_c e_c M e_c^T``) with nearest rounding and with
    AdaRound's, and the share of weights whose code differs from nearest."""

    layer: str
    error_nearest: float
    error_adaround: float
    changed: float

    quantized_input: bool = False

    def to_dict(self) -> dict:
        return {"layer": self.layer, "error_nearest": self.error_nearest, "error_adaround": self.error_adaround,
                "changed": round(self.changed, 6), "quantized_input": self.quantized_input}


def rectified_sigmoid(v: np.ndarray) -> np.ndarray:
    """``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``."""
    return np.clip(_stretched(v), 0.0, 1.0)


def _stretched(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA


def _initial_v(rest: np.ndarray) -> np.ndarray:
    """``V`` with ``h(V) = rest`` (the fractional part: nearest rounding where it is not 1/2)."""
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def optimise_rounding(ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: np.ndarray, moments: np.ndarray,
                      params: AdaRoundParams, linear: Optional[np.ndarray] = None) -> np.ndarray:
    """The codes AdaRound chooses between ``lo`` and ``hi`` (each (C, K); ``hi - lo`` is 0 or 1).

    ``ratio``: the float weights in grid units (``W / step``); ``step`` (C,) each row's step in real units;
    ``moments`` (G, K, K) the input patches' second moments, G groups of consecutive rows. Minimises
    ``sum_c e_c M e_c^T + 2 e_c g_c^T + lambda sum(1 - |2h - 1|**beta)`` over ``V`` with Adam (module docstring),
    ``e = step (lo + h d - ratio)`` the weight error in real units and ``g`` (C, K) the ``linear`` term of a
    quantized input (None: zero; :func:`adaround_layer`).
    """
    # float32 and in-place updates: each step is one product and a dozen passes over (C, K) arrays.
    f32 = np.float32
    span = (hi - lo).astype(f32)
    step32 = step.astype(f32)[:, None]
    base = (lo - ratio).astype(f32)
    shift = None if linear is None else (linear / step32).astype(f32)
    coef = (2.0 * step32 ** 2 * span).astype(f32)
    moments32 = moments.astype(f32)
    v = _initial_v(ratio - np.floor(ratio)).astype(f32)
    first, second = np.zeros_like(v), np.zeros_like(v)
    sig, h, tmp = (np.empty_like(v) for _ in range(3))
    for t in range(params.iterations):
        np.negative(v, out=sig)
        np.exp(sig, out=sig)
        sig += 1.0
        np.reciprocal(sig, out=sig)  # sigmoid(V)
        np.multiply(sig, ZETA - GAMMA, out=h)
        h += GAMMA  # stretched, before the clip
        inside = (h > 0.0) & (h < 1.0)
        np.clip(h, 0.0, 1.0, out=h)
        np.multiply(h, span, out=tmp)
        tmp += base  # the weight error in grid units
        grad = grouped_product(tmp, moments32)
        if shift is not None:
            grad += shift
        grad *= coef  # d loss / d h
        beta = params.beta_at(t)
        if beta is not None:  # d/dh of lambda (1 - |2h - 1|**beta)
            np.multiply(h, 2.0, out=tmp)
            tmp -= 1.0
            grad -= f32(2.0 * params.regularization * beta) * np.sign(tmp) * np.abs(tmp) ** f32(beta - 1.0)
        grad *= sig * (1.0 - sig) * f32(ZETA - GAMMA) * inside
        _adam_step(v, grad, first, second, t, params.learning_rate)
    return np.where(rectified_sigmoid(v) >= 0.5, hi, lo)


def _adam_step(v: np.ndarray, grad: np.ndarray, first: np.ndarray, second: np.ndarray, t: int, lr: float) -> None:
    """One Adam update of ``v`` in place (step ``t`` from 0; the moments ``first`` / ``second`` updated too)."""
    b1, b2, eps = _ADAM
    first *= b1
    first += np.float32(1 - b1) * grad
    second *= b2
    second += np.float32(1 - b2) * grad * grad
    v -= np.float32(lr / (1 - b1 ** (t + 1))) * first / (np.sqrt(second / np.float32(1 - b2 ** (t + 1)))
                                                         + np.float32(eps))


@dataclass(frozen=True)
class LayerObjective:
    """A layer's output error as a function of its weight error ``e`` (real units):
    ``sum_c e_c A e_c^T + 2 e_c g_c^T + constant``."""

    moments: np.ndarray  # A, (G, K, K)
    linear: Optional[np.ndarray] = None  # g, (C, K)
    constant: float = 0.0

    def error(self, codes: np.ndarray, ratio: np.ndarray, step: np.ndarray) -> float:
        err = (codes - ratio) * step[:, None]
        lin = 0.0 if self.linear is None else 2.0 * float((err * self.linear).sum())
        return float((grouped_product(err, self.moments) * err).sum()) + lin + self.constant


def layer_objective(view: np.ndarray, x: np.ndarray, x_tilde: Optional[np.ndarray], window: Optional[Window],
               centred: bool) -> LayerObjective:
    """Float input: ``e M e^T``. Quantized input ``x~``: ``E[(w x - w~ x~)**2]`` with ``w~ = w + e`` is
    ``e A e^T + 2 e (A - B) w^T + w (A - B - B^T + C) w^T`` (A = E[x~ x~^T], B = E[x~ x^T], C = E[x x^T])."""
    if x_tilde is None:
        return LayerObjective(patch_moments(x, window, centred))
    a, b, c = cross_moments(x, x_tilde, window, centred)
    linear = grouped_product(view, a - b.transpose(0, 2, 1))
    rest = a - b - b.transpose(0, 2, 1) + c
    return LayerObjective(a, linear, float((grouped_product(view, rest) * view).sum()))


def adaround_layer(layer: str, weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams,
                   is_dense: bool, spec: lowering.WeightSpec, mode: sm.RequantMode, x: np.ndarray,
                   window: Optional[Window], centred: bool, params: AdaRoundParams,
                   x_tilde: Optional[np.ndarray] = None) -> tuple[Optional[np.ndarray], Optional[AdaRoundChoice]]:
    """The layer's weights on the op's grid as AdaRound rounds them (``weight``'s layout), and the record.

    ``weight`` / ``bias``: float, epilogue folded in (HWIGO, or OI for dense); ``x`` the layer's float input
    on a few calibration batches, ``x_tilde`` (optional) its value in the integer program there, dequantized;
    ``window`` the conv's (None: dense); ``centred``: bias correction follows. Returns ``(None, None)``
    (nearest rounding) when the samples hold fewer patches than a row has weights.
    """
    view = sm.per_channel_weight_view(weight, is_dense)
    if patch_count(x, window) < view.shape[1]:
        return None, None
    grid = lowering.float_weight_grid(weight, bias, x_q, y_q, is_dense, spec, mode)
    ratio = view / grid.step[:, None]
    lo = np.clip(np.floor(ratio), grid.qmin, grid.qmax)
    hi = np.clip(np.floor(ratio) + 1.0, grid.qmin, grid.qmax)
    nearest = np.clip(sm.round_real(ratio, sm.RoundingMode.HALF_AWAY_FROM_ZERO), grid.qmin, grid.qmax)
    objective = layer_objective(view, x, x_tilde, window, centred)
    codes = optimise_rounding(ratio, lo, hi, grid.step, objective.moments, params, objective.linear)
    before, after = objective.error(nearest, ratio, grid.step), objective.error(codes, ratio, grid.step)
    tilde = x_tilde is not None
    if after >= before:  # the relaxation found nothing better: keep the fold's own rounding
        return None, AdaRoundChoice(layer, before, before, 0.0, tilde)
    stored = sm.per_channel_weight_unview(codes * grid.step[:, None], weight.shape, is_dense)
    return stored, AdaRoundChoice(layer, before, after, float(np.mean(codes != nearest)), tilde)
