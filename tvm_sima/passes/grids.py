"""Each activation's grid: the calibrator's choice, checked on the tensor's sample and rescued if it collapses.

Realize and the simulated graph (``do_simulation``) both take an activation's parameters from
:func:`tensor_grid`, so the two agree; the rule is :mod:`tvm_sima.calibration.grid_check`'s.
"""

from __future__ import annotations

import logging
from typing import Optional

import numpy as np

from .. import math as sm
from ..calibration import Observer
from ..calibration.grid_check import GridVerdict, fit_grid, rescue_grid
from ..config import QConfig

__all__ = ["log_verdict", "tensor_grid", "tensor_qparams"]

LOG = logging.getLogger(__name__)


def tensor_grid(observer: Observer, config: QConfig, model_input: bool = False,
                ) -> tuple[sm.QParams, Optional[GridVerdict]]:
    """Per-tensor activation parameters of one observed tensor under ``config``, and the grid check's verdict.

    A model input uses ``input_bits`` (Relay's ``nbit_input``), any other tensor ``activation_bits``.
    The verdict is None when the calibrated grid keeps the tensor; else the parameters are the
    rescue's (``verdict.after``) or, when nothing saves the tensor, the calibrated ones (the caller
    warns, :func:`log_verdict`, naming it).
    """
    bits = config.input_bits if model_input else config.activation_bits
    qp = observer.compute_qparams(config.activation_scheme, bits)
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
    lo, hi = observer.clip_range()  # only now: the mse observer searches again
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
