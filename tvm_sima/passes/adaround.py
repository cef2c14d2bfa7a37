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

Not done: the paper's asymmetric reconstruction ``||W x - W~ x~||**2`` with ``x~`` the input as the
already-quantized layers before give it (it needs ``E[x~ x~^T]`` and ``E[x x~^T]``, so taps of the
integer program as it is being built); here ``x`` is the float input. A layer with fewer patches than
weights per channel (``M`` rank-deficient: AdaRound would fit the few samples) keeps nearest rounding.

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
from .scale_search import Window, patch_count, patch_moments

__all__ = ["ZETA", "GAMMA", "AdaRoundChoice", "AdaRoundParams", "adaround_layer", "optimise_rounding",
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

    def to_dict(self) -> dict:
        return {"layer": self.layer, "error_nearest": self.error_nearest, "error_adaround": self.error_adaround,
                "changed": round(self.changed, 6)}


def rectified_sigmoid(v: np.ndarray) -> np.ndarray:
    """``h(V) = clip(sigmoid(V) (zeta - gamma) + gamma, 0, 1)``."""
    return np.clip(_stretched(v), 0.0, 1.0)


def _stretched(v: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-v)) * (ZETA - GAMMA) + GAMMA


def _initial_v(rest: np.ndarray) -> np.ndarray:
    """``V`` with ``h(V) = rest`` (the fractional part: nearest rounding where it is not 1/2)."""
    p = np.clip((rest - GAMMA) / (ZETA - GAMMA), 1e-6, 1 - 1e-6)
    return np.log(p / (1.0 - p))


def _quadratic(err: np.ndarray, moments: np.ndarray) -> np.ndarray:
    """``(err M)`` per group: ``err`` (C, K) with C / groups rows sharing each group's ``M`` (G, K, K)."""
    groups = moments.shape[0]
    per_group = err.reshape(groups, -1, err.shape[1])
    return np.matmul(per_group, moments).reshape(err.shape)


def optimise_rounding(ratio: np.ndarray, lo: np.ndarray, hi: np.ndarray, step: np.ndarray, moments: np.ndarray,
                      params: AdaRoundParams) -> np.ndarray:
    """The codes AdaRound chooses between ``lo`` and ``hi`` (each (C, K); ``hi - lo`` is 0 or 1).

    ``ratio``: the float weights in grid units (``W / step``); ``step`` (C,) each row's step in real units;
    ``moments`` (G, K, K) the input patches' second moments, G groups of consecutive rows. Minimises
    ``sum_c step_c**2 (lo + h d - ratio)_c M (lo + h d - ratio)_c^T + lambda sum(1 - |2h - 1|**beta)``
    over ``V`` with Adam (module docstring).
    """
    span = (hi - lo).astype(np.float64)
    scale = (step.astype(np.float64) ** 2)[:, None]
    v = _initial_v(ratio - np.floor(ratio))
    first, second = np.zeros_like(v), np.zeros_like(v)
    b1, b2, eps = _ADAM
    for t in range(params.iterations):
        stretched = _stretched(v)
        h = np.clip(stretched, 0.0, 1.0)
        grad_h = 2.0 * scale * _quadratic(lo + h * span - ratio, moments) * span
        beta = params.beta_at(t)
        if beta is not None:
            centred = 2.0 * h - 1.0
            grad_h -= params.regularization * beta * 2.0 * np.abs(centred) ** (beta - 1.0) * np.sign(centred)
        inside = (stretched > 0.0) & (stretched < 1.0)
        sig = (stretched - GAMMA) / (ZETA - GAMMA)
        grad = grad_h * inside * sig * (1.0 - sig) * (ZETA - GAMMA)
        first = b1 * first + (1 - b1) * grad
        second = b2 * second + (1 - b2) * grad * grad
        v = v - params.learning_rate * (first / (1 - b1 ** (t + 1))) / (np.sqrt(second / (1 - b2 ** (t + 1))) + eps)
    return np.where(rectified_sigmoid(v) >= 0.5, hi, lo)


def _error(codes: np.ndarray, ratio: np.ndarray, step: np.ndarray, moments: np.ndarray) -> float:
    err = (codes - ratio) * step[:, None]
    return float((_quadratic(err, moments) * err).sum())


def adaround_layer(layer: str, weight: np.ndarray, bias: np.ndarray, x_q: sm.QParams, y_q: sm.QParams,
                   is_dense: bool, spec: lowering.WeightSpec, mode: sm.RequantMode, x: np.ndarray,
                   window: Optional[Window], centred: bool,
                   params: AdaRoundParams) -> tuple[Optional[np.ndarray], Optional[AdaRoundChoice]]:
    """The layer's weights on the op's grid as AdaRound rounds them (``weight``'s layout), and the record.

    ``weight`` / ``bias``: float, epilogue folded in (HWIGO, or OI for dense); ``x`` the layer's float input
    on a few calibration batches; ``window`` the conv's (None: dense); ``centred``: bias correction follows.
    Returns ``(None, None)`` (nearest rounding) when the samples hold fewer patches than a row has weights.
    """
    view = sm.per_channel_weight_view(weight, is_dense)
    if patch_count(x, window) < view.shape[1]:
        return None, None
    grid = lowering.float_weight_grid(weight, bias, x_q, y_q, is_dense, spec, mode)
    ratio = view / grid.step[:, None]
    lo = np.clip(np.floor(ratio), grid.qmin, grid.qmax)
    hi = np.clip(np.floor(ratio) + 1.0, grid.qmin, grid.qmax)
    nearest = np.clip(sm.round_real(ratio, sm.RoundingMode.HALF_AWAY_FROM_ZERO), grid.qmin, grid.qmax)
    moments = patch_moments(x, window, centred)
    codes = optimise_rounding(ratio, lo, hi, grid.step, moments, params)
    before, after = _error(nearest, ratio, grid.step, moments), _error(codes, ratio, grid.step, moments)
    if after >= before:  # the relaxation found nothing better: keep the fold's own rounding
        return None, AdaRoundChoice(layer, before, before, 0.0)
    stored = sm.per_channel_weight_unview(codes * grid.step[:, None], weight.shape, is_dense)
    return stored, AdaRoundChoice(layer, before, after, float(np.mean(codes != nearest)))
