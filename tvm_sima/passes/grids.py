"""Each activation's grid: the calibrator's choice, checked on the tensor's sample and rescued if it collapses.

Realize and the simulated graph (``do_simulation``) both take an activation's parameters from
:func:`tensor_grid`, so the two agree; the rule is :mod:`tvm_sima.calibration.grid_check`'s.

A model output read straight from a bounded activation (sigmoid, softmax: ``[0, 1]``; tanh:
``[-1, 1]``) gets a grid over its whole interval (:func:`output_bounds`), whatever calibration saw, as
TFLite fixes those ops' int8 output grid; so does the activation's input, over the inputs whose
outputs that grid tells apart (a sigmoid's logits in [-6.2, 6.2]), joined with its calibrated range.
A detector's presence score calibrated on images without the object spans ``[0.0005, 0.0058]``, its
logit ``[-7.7, -5.1]`` (MediaPipe's hand landmark model on photos without hands): those grids could
never say "present" -- every score above 0.0058 would read 0.0058.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Optional

import numpy as np
from tvm import relax

from .. import math as sm
from ..calibration import Observer
from ..calibration.grid_check import GridVerdict, fit_grid, rescue_grid
from ..config import QConfig
from ..graph import GraphIndex, op_name

__all__ = ["BOUNDED", "Bounds", "log_verdict", "output_bounds", "tensor_grid", "tensor_qparams"]

#: Where sigmoid's 8-bit output grid over [0, 1] saturates: within half a step of 0 or 1 (``log(509)``);
#: tanh's over [-1, 1] saturates at half of it.
_SATURATES = math.log(2 * 255 - 1)
#: Activations whose value lies in a fixed interval whatever their input: ``(output interval, input interval)``,
#: the second the inputs whose outputs the 8-bit grid still tells apart (None: softmax reads differences).
BOUNDED: dict[str, tuple[tuple[float, float], Optional[tuple[float, float]]]] = {
    "relax.sigmoid": ((0.0, 1.0), (-_SATURATES, _SATURATES)),
    "relax.tanh": ((-1.0, 1.0), (-_SATURATES / 2, _SATURATES / 2)),
    "relax.nn.softmax": ((0.0, 1.0), None)}

LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class Bounds:
    """An interval a tensor's grid must span. ``fixed``: the op's own output interval, the grid is that
    interval (no grid check); else a floor joined with the calibrated range, then checked as any grid."""

    lo: float
    hi: float
    fixed: bool


def output_bounds(index: GraphIndex) -> dict[str, Bounds]:
    """The intervals the grids of some activation tensors (``simulated_quantize`` names) must span: a model
    output read straight from a :data:`BOUNDED` op, the op's output interval (fixed); the op's input, the
    inputs whose outputs differ on that grid (a sigmoid's logits in about [-6.2, 6.2]; a floor). ``index``: the
    annotated function's."""
    bounds: dict[str, Bounds] = {}
    for var in index.order:
        value = index.producer[var]
        if op_name(value) != "sima.simulated_quantize" or not _is_output(index, var):
            continue
        assert isinstance(value, relax.Call)
        op = index.producer.get(value.args[0]) if isinstance(value.args[0], relax.Var) else None
        found = BOUNDED.get(op_name(op) or "")
        if found is None or str(value.attrs["kind"]) == "weight":
            continue
        bounds[str(value.attrs["name"])] = Bounds(*found[0], fixed=True)
        assert isinstance(op, relax.Call)
        source = index.producer.get(op.args[0]) if isinstance(op.args[0], relax.Var) else None
        if found[1] is not None and op_name(source) == "sima.simulated_quantize":
            assert isinstance(source, relax.Call)
            name = str(source.attrs["name"])
            lo, hi = found[1]
            if name in bounds:
                lo, hi = min(lo, bounds[name].lo), max(hi, bounds[name].hi)
            bounds[name] = Bounds(lo, hi, fixed=bounds[name].fixed if name in bounds else False)
    return bounds


def _is_output(index: GraphIndex, var: relax.Var) -> bool:
    """``var`` is a model output: the function returns it, or a tuple it returns holds it."""
    for user in index.users.get(var, []):
        if user is None or (isinstance(index.producer.get(user), relax.Tuple) and None in index.users.get(user, [])):
            return True
    return False


def tensor_grid(observer: Observer, config: QConfig, model_input: bool = False,
                bounds: Optional[Bounds] = None) -> tuple[sm.QParams, Optional[GridVerdict]]:
    """Per-tensor activation parameters of one observed tensor under ``config``, and the grid check's verdict.

    A model input uses ``input_bits`` (Relay's ``nbit_input``), any other tensor ``activation_bits``.
    The verdict is None when the calibrated grid keeps the tensor; else the parameters are the
    rescue's (``verdict.after``) or, when nothing saves the tensor, the calibrated ones (the caller
    warns, :func:`log_verdict`, naming it). ``bounds`` (:func:`output_bounds`): an interval the grid spans
    with the calibrated range; a fixed one is not checked (it is the op's own), a floor is, and a rescue
    may then narrow it (a collapsed tensor is worse than a clipped one).
    """
    bits = config.input_bits if model_input else config.activation_bits
    if bounds is not None and observer.min_val is None:
        return sm.choose_qparams(bounds.lo, bounds.hi, config.activation_scheme, bits), None
    qp = observer.compute_qparams(config.activation_scheme, bits)
    calibrated: Optional[tuple[float, float]] = None
    if bounds is not None:
        low, high = observer.clip_range()
        calibrated = (min(float(np.min(low)), bounds.lo), max(float(np.max(high)), bounds.hi))
        qp = sm.choose_qparams(*calibrated, config.activation_scheme, bits)
        if bounds.fixed:
            return qp, None
    if observer.min_val is None or observer.max_val is None or np.ndim(observer.min_val) != 0:
        return qp, None
    sample = observer.sample.values
    if sample.size == 0:  # statistics saved before samples were kept
        return qp, None
    before = fit_grid(sample, qp)
    if not before.collapsed:
        return qp, None
    if not config.rescue_collapsed_tensors:
        return qp, GridVerdict(observer.tensor, before, None, "rescue disabled (rescue_collapsed_tensors=False)")
    lo, hi = calibrated or observer.clip_range()  # only now: the mse observer searches again
    verdict = rescue_grid(observer.tensor, sample, before, (float(observer.min_val), float(observer.max_val)),
                          (float(lo), float(hi)), config.activation_scheme)
    return (qp if verdict.after is None else verdict.after.qparams), verdict


def log_verdict(verdict: GridVerdict) -> None:
    """A warning for a collapsed tensor nothing saves (the layer outputs nearly a constant), info for a rescue."""
    if verdict.rescued:
        LOG.info("re-gridded %s", verdict.message())
    else:
        LOG.warning("%s", verdict.message())


def tensor_qparams(observer: Observer, config: QConfig, model_input: bool = False) -> sm.QParams:
    """:func:`tensor_grid`'s parameters alone."""
    return tensor_grid(observer, config, model_input)[0]
