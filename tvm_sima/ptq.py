"""``tvm_sima.quantize``: post-training quantization of a float Relax module (annotate, calibrate, realize).

::

    mod, params = tvm_sima.load_model("model.onnx")
    with tvm_sima.qconfig(calibration_strategy_for_activation="kl_divergence"):
        qmod = tvm_sima.quantize(mod, params, dataset)
    ex = tvm_sima.build(qmod)

Every run writes, into ``work_dir`` (a new temporary directory unless given): ``layers.json``
(the per-layer template: edit it and pass it back with ``qconfig(layer_config=...)``),
``statistics.npz`` / ``.json`` (the calibration, reloadable with ``statistics=``),
``qconfig.json`` (the effective configuration) and ``report.json`` (what became integer, what
stayed float and why). The report is also attached to the module (``sima.quantize_report``).
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import sys
import tempfile
import time
from typing import Iterable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from . import ops as so
from .calibration import Observer, load_statistics, save_statistics
from .compare import integer_taps
from .config import LayerInfo, QConfig, current_qconfig
from .graph import GraphIndex, op_name, rebuild_main, remap
from .layer_config import read_layer_config, write_layer_config
from .math import Granularity, QScheme
from .params import bind_params
from .passes.annotate import annotate
from .passes.calibrate import CalibrationExecutor, LocalExecutor, calibrate, placeholder_observers
from .passes.canonicalize import canonicalize
from .passes.depthwise_bits import DepthwiseLoss, auto_applies, auto_overrides, depthwise_overrides
from .passes.equalize import equalize
from .passes.grids import log_verdict, output_bounds, tensor_grid
from .passes.precision import search_precision
from .passes.realize import RealizeReport, realize
from .passes.scale_search import float_taps
from .progress import Progress
from .quantize_info import REPORT_ATTR

__all__ = ["quantize", "quantize_plan", "simulate"]

LOG = logging.getLogger(__name__)


def _check_config(config: QConfig) -> None:
    if config.activation_granularity is Granularity.PER_CHANNEL:
        raise ValueError("qconfig: quantize_method_for_activation must be per_tensor_* (the fused ops take one "
                         "scale per activation tensor)")
    if not config.round_for_shift:
        raise ValueError("qconfig: round_for_shift=False (truncating shifts) is not supported: the sima ops always "
                         "round their right shifts (half up)")
    if config.weight_scheme is QScheme.ASYMMETRIC:
        raise ValueError("qconfig: quantize_method_for_weight must be symmetric (the fused ops have no weight "
                         "zero point); use per_channel_symmetric_restricted or *_symmetric_full")


def simulate(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
             layers: Optional[list[LayerInfo]] = None) -> tvm.IRModule:
    """The fake-quantized float graph: every simulated_quantize becomes ``dequantize(quantize(x))``.

    Activations use their calibrated per-tensor parameters; weights their per-channel (or
    per-tensor) parameters. The ``do_simulation=True`` result of :func:`quantize`.
    """
    by_name = {layer.name: layer for layer in layers or []}
    inputs, bounds = set(amod["main"].params), output_bounds(GraphIndex(amod["main"]))

    def emit(bb: relax.BlockBuilder, _var: relax.Var, old: relax.Expr, mapping: dict) -> relax.Expr:
        value = remap(old, mapping)
        if op_name(value) == "sima.simulated_quantize":
            assert isinstance(value, relax.Call)
            name, kind = str(value.attrs["name"]), str(value.attrs["kind"])
            cfg = config.for_tensor(name, by_name)
            if kind == "weight":
                qp = observers[name].compute_qparams(cfg.weight_scheme, cfg.weight_bits)
            else:
                qp, verdict = tensor_grid(observers[name], cfg, model_input=value.args[0] in inputs,
                                          bounds=bounds.get(name))
                if verdict is not None:
                    log_verdict(verdict)
            q = bb.emit(so.quantize(value.args[0], qp, cfg.rounding_mode))
            value = so.dequantize(q, qp)
        return value

    return rebuild_main(amod, emit)


def quantize(
    mod: tvm.IRModule,
    params: Optional[dict[str, np.ndarray]] = None,
    dataset: Optional[Iterable[Union[np.ndarray, dict]]] = None,
    *,
    statistics: Optional[Union[str, os.PathLike, dict[str, Observer]]] = None,
    work_dir: Optional[Union[str, os.PathLike]] = None,
    progress: Optional[bool] = None,
    executor: Optional[CalibrationExecutor] = None,
) -> tvm.IRModule:
    """Quantize a float module under :func:`tvm_sima.current_qconfig` (module docstring).

    Parameters
    ----------
    mod : IRModule
        Float model, e.g. from :func:`tvm_sima.load_model`.
    params : dict, optional
        Weights to bind (``load_model``'s second result).
    dataset : iterable, optional
        Calibration batches: arrays (single-input models) or ``{input name: array}`` dicts.
        Streamed once; memory does not grow with its length.
    statistics : path or dict, optional
        Observers saved by an earlier run (``work_dir/statistics.npz``) instead of a dataset (a
        dataset given too then only feeds the searches: ``scale_search``, mixed precision).
    work_dir : path, optional
        Where the run's files go (default: a new temporary directory, logged).
    progress : bool, optional
        Show a batch counter on stderr (default: when stderr is a terminal).
    executor : CalibrationExecutor, optional
        Where calibration runs the batches: this process (default, :class:`~tvm_sima.passes.calibrate.LocalExecutor`),
        or a Ray cluster (:class:`tvm_sima.distributed.RayExecutor`, which shows finished shards
        itself). Every executor gives the same statistics, so the same module, bit for bit.

    Returns
    -------
    IRModule
        The integer program (``sima.*`` ops, float only at the edges and where the report says),
        or with ``do_simulation=True`` the fake-quantized float graph.

    Raises
    ------
    ValueError
        Neither a dataset nor statistics, an unsupported configuration, bad batches.
    """
    config, statistics = _checked_inputs(mod, dataset, statistics)
    out_dir = str(work_dir) if work_dir is not None else tempfile.mkdtemp(prefix="tvm_sima_")
    os.makedirs(out_dir, exist_ok=True)
    start = time.perf_counter()
    mod = canonicalize(bind_params(mod, params) if params else mod)
    if config.cross_layer_equalization:
        mod, pairs = equalize(mod)
        LOG.info("quantize: cross-layer equalization of %d conv pairs", pairs)
    amod, layers = annotate(mod, config)
    config = _with_depthwise_inputs(amod, config)
    write_layer_config(os.path.join(out_dir, "layers.json"), layers, config)
    observers, kept = _observers(amod, layers, config, dataset, statistics, progress, executor)
    save_statistics(os.path.join(out_dir, "statistics.npz"), observers)
    config, samples, depthwise = _measured_depthwise_inputs(amod, observers, config, layers, kept)
    if any(loss.wide for loss in depthwise):
        write_layer_config(os.path.join(out_dir, "layers.json"), layers, config)
    precision = None
    if config.mixed_precision_sqnr_db is not None:
        precision, overrides = search_precision(amod, observers, config, layers,
                                                kept[:config.mixed_precision_samples])
        config = config.replace(layer_overrides=config.layer_overrides + overrides)
        write_layer_config(os.path.join(out_dir, "layers.json"), layers, config)
    with open(os.path.join(out_dir, "qconfig.json"), "w", encoding="utf-8") as handle:
        json.dump(config.to_dict(), handle, indent=2)
    if config.do_simulation:
        LOG.info("quantize: do_simulation, fake-quantized graph; files in %s", out_dir)
        return simulate(amod, observers, config, layers)
    qmod, report = _realized(amod, observers, config, layers, kept, samples)
    skipped = [layer.name for layer in layers if config.for_layer(layer)[1]]
    payload = {**report.to_dict(), "skipped_layers": skipped, "layers": _layer_rows(layers, config),
               "mixed_precision": precision.to_dict() if precision is not None else None,
               "depthwise_inputs": [loss.to_dict() for loss in depthwise],
               "work_dir": out_dir,
               "seconds": round(time.perf_counter() - start, 3)}
    with open(os.path.join(out_dir, "report.json"), "w", encoding="utf-8") as handle:
        json.dump(payload, handle, indent=2)
    LOG.info("quantize: %s\nfiles in %s", report.summary(), out_dir)
    qmod["main"] = qmod["main"].with_attr(REPORT_ATTR, json.dumps(payload))
    return qmod


def _with_depthwise_inputs(amod: tvm.IRModule, config: QConfig) -> QConfig:
    """``config`` with :func:`~tvm_sima.passes.depthwise_bits.depthwise_overrides` before its own overrides (those it
    already has, e.g. from a run's ``qconfig.json`` given back, once)."""
    wide = tuple(o for o in depthwise_overrides(amod, config) if o not in config.layer_overrides)
    if not wide:
        return config
    LOG.info("quantize: 16-bit codes for the %d activations depthwise convs read (depthwise_input_bits=16)",
             sum(o.match.startswith("tensor:") for o in wide))
    return config.replace(layer_overrides=wide + config.layer_overrides)


def _measured_depthwise_inputs(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
                               layers: list[LayerInfo], kept: list,
                               ) -> tuple[QConfig, Optional[dict[str, np.ndarray]], list[DepthwiseLoss]]:
    """With ``depthwise_input_bits="auto"``: ``config`` with :func:`~tvm_sima.passes.depthwise_bits.auto_overrides`
    before its own overrides (once), the float samples it measured on (the first kept batches; realize's
    searches reuse them) and the measurements; else ``config`` unchanged."""
    if not auto_applies(amod, config):
        return config, None, []
    samples = float_taps(amod, kept[:config.scale_search_samples]) if kept else None
    overrides, losses = auto_overrides(amod, observers, config, samples, layers)
    wide = tuple(o for o in overrides if o not in config.layer_overrides)
    if wide:
        LOG.info("quantize: 16-bit codes for %d of the activations depthwise convs read (depthwise_input_bits='auto')",
                 sum(o.match.startswith("tensor:") for o in wide))
        config = config.replace(layer_overrides=wide + config.layer_overrides)
    return config, samples, losses


def _realized(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig, layers: list[LayerInfo],
              kept: list, samples: Optional[dict[str, np.ndarray]] = None) -> tuple[tvm.IRModule, RealizeReport]:
    """The integer program and realize's report: the searches' float samples (``samples``, else taken from the
    first kept batches), and with ``adaround_quantized_input`` a second realize on the first program's own values."""
    if not _searches_scales(config):
        samples = None
    elif samples is None and kept:
        samples = float_taps(amod, kept[:config.scale_search_samples])
    qmod, report = realize(amod, observers, config, layers, samples=samples)
    if config.adaround and config.adaround_quantized_input and samples is not None:
        # AdaRound again, each layer's input as the first program (AdaRounded on float inputs) computes it.
        quantized = integer_taps(qmod, kept[:config.scale_search_samples])
        qmod, report = realize(amod, observers, config, layers, samples=samples, quantized_samples=quantized)
    return qmod, report


def _checked_inputs(mod: object, dataset: Optional[Iterable], statistics: Optional[Union[str, os.PathLike, dict]],
                    ) -> tuple[QConfig, Optional[dict[str, Observer]]]:
    """The configuration (its ``layer_config`` file read in) and the statistics (a file loaded): a bad
    module, configuration or statistics file fails here, before any work or output."""
    if not isinstance(mod, tvm.IRModule):
        raise TypeError(f"quantize expects a tvm.IRModule, got {type(mod).__name__}")
    config = current_qconfig()
    _check_config(config)
    if config.layer_config is not None:
        config = config.replace(layer_overrides=config.layer_overrides + read_layer_config(config.layer_config))
    if dataset is None and statistics is None:
        raise ValueError("quantize needs calibration data: pass dataset= (an iterable of batches) or statistics= "
                         "(a statistics.npz saved by an earlier run)")
    if isinstance(statistics, (str, os.PathLike)):
        statistics = load_statistics(statistics)
    return config, statistics


def _observers(amod: tvm.IRModule, layers: list[LayerInfo], config: QConfig,
               dataset: Optional[Iterable[Union[np.ndarray, dict]]], statistics: Optional[dict],
               progress: Optional[bool], executor: Optional[CalibrationExecutor] = None,
               ) -> tuple[dict[str, Observer], list]:
    """The observers (given, or calibrated on ``dataset``) and the first batches the mixed-precision search
    measures on (kept while calibrating: the dataset is streamed once; read first for another executor)."""
    keep = max(config.mixed_precision_samples if config.mixed_precision_sqnr_db is not None else 0,
               config.scale_search_samples if _searches_scales(config) or config.depthwise_input_bits == "auto"
               else 0)
    if statistics is not None:  # a dataset given with them only feeds the searches
        return dict(statistics), [] if dataset is None else list(itertools.islice(dataset, keep))
    assert dataset is not None
    show = sys.stderr.isatty() if progress is None else progress
    if executor is not None and not isinstance(executor, LocalExecutor):  # it reads the shards and shows progress
        kept = list(itertools.islice(iter(dataset), keep)) if keep else []
        return calibrate(amod, dataset, config, layers=layers, executor=executor), kept
    data = Progress(dataset, "calibrating", show, keep=keep)
    return calibrate(amod, data, config, layers=layers, executor=executor), data.kept


def _searches_scales(config: QConfig) -> bool:
    """Whether realize needs the float samples: some layer has ``scale_search`` in shift mode (the search's only
    mode) or ``adaround``, given the overrides."""
    settings = [o.settings for o in config.layer_overrides]
    search = config.scale_search or any(bool(s.get("scale_search")) for s in settings)
    shift = config.requant_mode == "shift" or any(s.get("requant_mode") == "shift" for s in settings)
    return (search and shift) or config.adaround or any(bool(s.get("adaround")) for s in settings)


def _layer_rows(layers: list[LayerInfo], config: QConfig) -> list[dict]:
    """Each layer as the report lists it: names, op, weight and activation bits, skipped."""
    rows = []
    for layer in layers:
        effective, skip = config.for_layer(layer)
        rows.append({"name": layer.name, "source": layer.source, "op": layer.op, "weight_bits": effective.weight_bits,
                     "activation_bits": effective.activation_bits, "skipped": skip})
    return rows


def quantize_plan(mod: tvm.IRModule, params: Optional[dict[str, np.ndarray]] = None
                  ) -> tuple[list[LayerInfo], RealizeReport]:
    """What :func:`quantize` would do under the current qconfig, without data: layers, integer ops, float ops.

    Annotates, then realizes with :func:`~tvm_sima.passes.calibrate.placeholder_observers`
    (weights as they are, every activation in [-1, 1]); no build, no calibration. The ops it
    leaves in float, and why, are those :func:`quantize` leaves for reasons of the graph; limits
    that depend on the calibrated scales are checked by :func:`quantize` itself. Names in the
    report are the model's own (``report.sources``) when the module carries them.
    """
    config = current_qconfig()
    _check_config(config)
    amod, layers = annotate(canonicalize(bind_params(mod, params) if params else mod), config)
    config = _with_depthwise_inputs(amod, config)
    _, report = realize(amod, placeholder_observers(amod, config, layers), config, layers, warn=False)
    return layers, report
