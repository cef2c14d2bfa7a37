"""Calibrate: stream a dataset through the float graph once and fill one observer per tensor.

The annotated module (see :mod:`tvm_sima.passes.annotate`) marks every quantized tensor with a
named ``sima.simulated_quantize``. Calibration builds, once, a float program in which those
calls are identities and every *activation* they mark is an extra output; it then runs the
dataset through it batch by batch, feeding the observer of each tensor (keyed by the tensor's
name). Weights are constants: their observers see them directly, per output channel when the
layer's weight method is per-channel. Memory stays flat: observers stream, and at most two
batches' outputs exist at a time (one being observed on worker threads while the next runs).

Where the batches run is the ``executor``'s business (:class:`LocalExecutor`: here, today's
path; :class:`tvm_sima.distributed.RayExecutor`: shards on a Ray cluster). Every observer is fed
each batch with its index in the dataset, and observers merge exactly
(:meth:`~tvm_sima.calibration.Observer.merge`), so every executor gives the same statistics.
"""

from __future__ import annotations

import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, Protocol

import numpy as np
import tvm
from tvm import relax

from ..calibration import Observer, make_observer
from ..calibration.data_checks import Batch, batch_arrays, check_batch
from ..config import LayerInfo, QConfig, current_qconfig
from ..math import Granularity

__all__ = ["PLACEHOLDER_RANGE", "CalibrationExecutor", "CalibrationInput", "LocalExecutor", "calibrate",
           "calibration_graph", "calibration_inputs", "observe_batches", "placeholder_observers"]

LOG = logging.getLogger(__name__)

#: Most threads :func:`observer_threads` gives the observers (their updates are memory-bound).
MAX_OBSERVER_THREADS = 4
#: Compiles a Relax module into an executable for ``relax.VirtualMachine`` (like :func:`tvm_sima.build`).
CompileFunction = Callable[[tvm.IRModule], Any]


def _is_sq(expr: Any) -> bool:
    return isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op) and \
        expr.op.name == "sima.simulated_quantize"


@relax.expr_functor.mutator
class _StripSimulated(relax.PyExprMutator):
    """Replace every simulated_quantize by its input; remember each one's input and attributes."""

    def __init__(self, mod: tvm.IRModule) -> None:
        super().__init__(mod)
        self.marks: dict[str, tuple[relax.Expr, Any]] = {}

    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        if not _is_sq(call):
            return call
        name = str(call.attrs["name"])
        if name in self.marks:
            raise ValueError(f"two simulated_quantize calls share the tensor name {name!r}")
        self.marks[name] = (call.args[0], call.attrs)
        return call.args[0]


def calibration_graph(amod: tvm.IRModule, only: Optional[set] = None,
                      ) -> tuple[tvm.IRModule, dict[str, Any], dict[str, tuple[np.ndarray, Any]]]:
    """The float program with the activation taps as extra outputs (all, or the names in ``only``).

    Returns ``(module, {tap name: attrs} in output order, {weight tensor name: (array, attrs)})``.
    """
    flat = relax.transform.ToNonDataflow()(amod)
    stripper = _StripSimulated(flat)
    func = stripper.visit_expr(flat["main"])
    taps, weights = {}, {}
    for name, (expr, attrs) in stripper.marks.items():
        if isinstance(expr, tvm.ir.GenericConst):
            weights[name] = (expr.value.numpy(), attrs)
        elif only is None or name in only:
            taps[name] = (expr, attrs)
    body = func.body
    outputs = relax.Tuple([body.body, *(expr for expr, _ in taps.values())])
    seq = relax.BlockBuilder().normalize(relax.SeqExpr(body.blocks, outputs))
    new_func = relax.Function(func.params, seq, attrs=func.attrs)
    mod = tvm.IRModule({"main": new_func})
    mod = relax.transform.Normalize()(mod)
    return mod, {name: attrs for name, (_, attrs) in taps.items()}, weights


def _observer(name: str, attrs: Any, config: QConfig, weight: bool) -> Observer:
    strategy = config.calibration_strategy_for_weight if weight else config.calibration_strategy_for_activation
    granularity = config.weight_granularity if weight else config.activation_granularity
    axis = int(attrs["axis"]) if weight and granularity is Granularity.PER_CHANNEL and int(attrs["axis"]) >= 0 else None
    scheme = (config.weight_scheme if weight else config.activation_scheme).value  # observer options stay strings
    bits = config.weight_bits if weight else config.activation_bits
    return make_observer(strategy if axis is None else "extrema", name, axis=axis,
                         trim_infinity=config.trim_infinity_before_statistic, percentile=config.percentile,
                         nstd=config.nstd, kl_top_n=config.kl_top_n, histc_bins=config.histc_bins,
                         running_statistic_momentum=config.running_statistic_momentum,
                         global_scale=config.global_scale, bits=bits, scheme=scheme,
                         **({} if weight or int(attrs["axis"]) < 0 else {"channel_mean_axis": int(attrs["axis"])}))


def _tensor_configs(config: QConfig, layers: Optional[list[LayerInfo]]) -> Callable[[str], QConfig]:
    """``config_of(tensor name)``: :meth:`QConfig.for_tensor` (its layer's, then its own overrides)."""
    by_name = {layer.name: layer for layer in layers or []}
    return lambda tensor: config.for_tensor(tensor, by_name)


def _weight_observers(weights: dict[str, tuple[np.ndarray, Any]],
                      config_of: Callable[[str], QConfig]) -> dict[str, Observer]:
    observers: dict[str, Observer] = {}
    for name, (array, attrs) in weights.items():
        observers[name] = _observer(name, attrs, config_of(name), weight=True)
        observers[name].update(array)
    return observers


#: The range every activation gets in :func:`placeholder_observers`.
PLACEHOLDER_RANGE = (-1.0, 1.0)


def placeholder_observers(amod: tvm.IRModule, config: Optional[QConfig] = None,
                          layers: Optional[list[LayerInfo]] = None) -> dict[str, Observer]:
    """Observers for an annotated module without data: weights see their values, activations :data:`PLACEHOLDER_RANGE`.

    For realize to say, before any calibration, which ops become integer and which stay float
    (``tvm-sima inspect``): the reasons that depend on the graph are the real ones; the scales
    are not, so limits that depend on them (an accumulator that could overflow, a shift out of
    range) are only checked by a real calibration.
    """
    config = config or current_qconfig()
    _, taps, weights = calibration_graph(amod)
    observers = _weight_observers(weights, _tensor_configs(config, layers))
    for name in taps:
        observers[name] = make_observer("extrema", name)
        observers[name].update(np.asarray(PLACEHOLDER_RANGE))
    return observers


class CalibrationExecutor(Protocol):
    """Where calibration runs the batches: ``observe(mod, dataset, tap_observers, build, log_every) -> batches``.

    Run every batch of ``dataset`` through ``build(mod)`` and merge into ``tap_observers[i]`` the
    statistics of output ``i + 1``, each batch observed with its index in the dataset (so that any
    split of the work merges into the same statistics); return the number of batches.
    """

    def observe(self, mod: tvm.IRModule, dataset: Iterable[Batch], tap_observers: list[Observer],
                build: CompileFunction, log_every: int) -> int: ...


def calibrate(amod: tvm.IRModule, dataset: Iterable[Batch], config: Optional[QConfig] = None,
              log_every: int = 10, layers: Optional[list[LayerInfo]] = None,
              build: Optional[CompileFunction] = None,
              executor: Optional[CalibrationExecutor] = None) -> dict[str, Observer]:
    """Observers for every quantized tensor of an annotated module, filled from ``dataset``.

    Parameters
    ----------
    amod : IRModule
        Output of :func:`tvm_sima.passes.annotate`.
    dataset : iterable
        Batches: arrays (single-input models) or dicts ``{input name: array}``.
    config : QConfig, optional
        Defaults to :func:`tvm_sima.current_qconfig`.
    log_every : int
        Progress is logged every ``log_every`` batches (and at the end).
    layers : list of LayerInfo, optional
        The layers :func:`~tvm_sima.passes.annotate` returned: their per-layer overrides
        (strategy, bits, method) then apply to their tensors' observers.
    build : callable, optional
        Compiles the calibration program (``IRModule -> executable``); default
        :func:`tvm_sima.driver.build`.
    executor : CalibrationExecutor, optional
        Where the batches run: default :class:`LocalExecutor` (this process);
        :class:`tvm_sima.distributed.RayExecutor` runs shards of the dataset on a Ray cluster and
        gives the same statistics, bit for bit.

    Per-channel weights are observed by ``extrema`` per output channel whatever the strategy
    (the other observers are per-tensor). With ``calibrate_chunk_by=N`` (big graphs), one graph per
    N tensors is built and the dataset is streamed once per graph, so at most N extra outputs
    exist at a time; the dataset must then be re-iterable.

    Raises
    ------
    ValueError
        Empty dataset, batches that do not fit the inputs, non-finite values (unless trimmed).
    """

    config = config or current_qconfig()
    config_of = _tensor_configs(config, layers)
    mod, taps, weights = calibration_graph(amod)
    observers = _weight_observers(weights, config_of)
    for name, attrs in taps.items():
        observers[name] = _observer(name, attrs, config_of(name), weight=False)
    names = list(taps)
    chunk = config.calibrate_chunk_by if config.calibrate_chunk_by > 0 else max(len(names), 1)
    chunks = [names[i:i + chunk] for i in range(0, len(names), chunk)] or [[]]
    if len(chunks) > 1 and (iter(dataset) is dataset or getattr(dataset, "one_shot", False)):
        raise ValueError(f"calibrate_chunk_by={config.calibrate_chunk_by} streams the dataset once per chunk of "
                         f"tensors ({len(chunks)} chunks): pass a re-iterable dataset (a list, or an object "
                         "whose __iter__ starts over), not an iterator or generator")
    start = time.perf_counter()
    executor = executor or LocalExecutor()
    for part, tap_names in enumerate(chunks, start=1):
        if len(chunks) > 1:
            mod = calibration_graph(amod, only=set(tap_names))[0]
            LOG.info("calibration chunk %d/%d: %d tensors", part, len(chunks), len(tap_names))
        count = executor.observe(mod, dataset, [observers[n] for n in tap_names], build or _default_build(),
                                 log_every)
    LOG.info("calibration: %d batches, %d tensors, %.1f s", count, len(observers), time.perf_counter() - start)
    return observers


def _default_build() -> CompileFunction:
    from ..driver import build  # here, not at the top: the driver imports the codegen, which imports passes

    return build


@dataclass(frozen=True)
class CalibrationInput:
    """One input of the calibration program, as :func:`~tvm_sima.calibration.data_checks.check_batch` reads it.

    Picklable (unlike a ``relax.Var``): workers check their batches without the module.
    """

    name: str
    shape: Optional[tuple[int, ...]]
    dtype: str

    @property
    def ty(self) -> "CalibrationInput":  # check_batch reads ``param.ty.shape`` / ``param.ty.dtype``
        return self


def calibration_inputs(mod: tvm.IRModule) -> list[CalibrationInput]:
    """The data inputs of ``mod["main"]`` (its first ``num_input`` parameters, or all)."""
    main = mod["main"]
    count = int(main.attrs["num_input"]) if main.attrs and "num_input" in main.attrs else len(main.params)
    return [CalibrationInput(p.name, None if p.ty.shape is None else tuple(int(d) for d in p.ty.shape),
                             str(p.ty.dtype)) for p in main.params[:count]]


class LocalExecutor:
    """Calibration in this process: one build, batches in order, observers updated on worker threads."""

    def observe(self, mod: tvm.IRModule, dataset: Iterable[Batch], tap_observers: list[Observer],
                build: CompileFunction, log_every: int) -> int:
        vm = relax.VirtualMachine(build(mod), tvm.cpu())
        count = observe_batches(vm, calibration_inputs(mod), tap_observers, enumerate(dataset), log_every)
        if count == 0:
            raise ValueError("the calibration dataset is empty")
        return count


def observe_batches(vm: Any, inputs: list[CalibrationInput], tap_observers: list[Observer],
                    batches: Iterable[tuple[int, Batch]], log_every: int = 0) -> int:
    """Run ``(index, batch)`` pairs through ``vm`` and feed output ``i + 1`` to ``tap_observers[i]``; the batch count.

    The observers of one batch are updated on :func:`observer_threads` worker threads (NumPy releases
    the GIL) while the next batch runs through the model; each observer still sees the batches one
    at a time and in order, so its statistics are those of a serial run. At most two batches'
    outputs exist at a time. Errors name the batch by its number in the dataset (``index + 1``).
    """
    names, start, count = [i.name for i in inputs], time.perf_counter(), 0
    with ThreadPoolExecutor(max_workers=observer_threads(), thread_name_prefix="sima-observe") as pool:
        pending: list[Future] = []
        for index, batch in batches:
            count += 1
            try:
                arrays = batch_arrays(batch, names)
                check_batch(arrays, inputs, index + 1)
                outputs = vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
            except Exception:
                _wait(pending)  # an error of the previous batch's observers comes first, as in a serial run
                raise
            values = [outputs[k].numpy() for k in range(1, len(tap_observers) + 1)]
            _wait(pending)  # the previous batch is observed before this one is
            pending = [pool.submit(obs.update, value, index) for obs, value in zip(tap_observers, values, strict=True)]
            if log_every and count % log_every == 0:
                LOG.info("calibration: %d batches, %.1f s", count, time.perf_counter() - start)
        _wait(pending)
    return count


def observer_threads() -> int:
    """Worker threads updating observers: one per usable CPU, at most :data:`MAX_OBSERVER_THREADS`."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cpus, MAX_OBSERVER_THREADS))


def _wait(futures: list[Future]) -> None:
    """Wait for every update; the first failure (e.g. a NaN it refused) is raised after all have ended."""
    errors = [f.exception() for f in futures]
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
