"""Where accuracy is lost: the float and the quantized program on the same inputs, tensor by tensor.

Every quantized tensor of a :func:`tvm_sima.quantize` result carries a ``sima.quantize_info``
whose name is the calibration tensor's name. :func:`compare_tensors` builds the float program
with those tensors as extra outputs (as calibration does) and the quantized program with each
``quantize_info`` dequantized as an extra output, runs both on each batch and accumulates, per
tensor, cosine similarity, SQNR, mean squared and max absolute error. Two modes:

* ``"continuous"``: the quantized program feeds itself, so a tensor's error is everything lost
  up to it;
* ``"isolated"``: every quantized tensor's consumers are fed the *float* program's value of that
  tensor, quantized with the tensor's own parameters, so a tensor's error is what the op producing
  it adds on its own (its input rounding included, the upstream error not).

Streaming: memory does not grow with the dataset; a fixed-size uniform sample of float and
dequantized values per tensor (bottom-k of random keys) is kept for histograms. The metrics
(:class:`~tvm_sima.tensor_metrics.TensorMetrics`) merge exactly, so with
``executor=RayExecutor(...)`` shards of the dataset are evaluated on a Ray cluster and the result
is the single-process one, bit for bit.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable, Iterable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .calibration.data_checks import batch_arrays, check_batch
from .config import QConfig, current_qconfig
from .graph import GraphIndex, op_name
from .math import QParams, RoundingMode
from .math.metrics import sqnr_db_from_sums
from .params import bind_params
from .passes.annotate import annotate
from .passes.calibrate import CalibrationInput, calibration_graph, calibration_inputs
from .passes.canonicalize import canonicalize
from .tensor_metrics import TensorMetrics

if TYPE_CHECKING:
    from .distributed import RayExecutor

__all__ = ["MODES", "TensorMetrics", "compare_tensors", "integer_taps", "quantized_taps", "sqnr_db"]

MODES = ("continuous", "isolated")


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum(ref^2) / sum((ref - test)^2))``; inf when equal."""
    noise = float(np.sum((np.asarray(reference, np.float64) - test) ** 2))
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return sqnr_db_from_sums(signal, noise)


def quantized_taps(qmod: tvm.IRModule, feed: Iterable[str] = ()) -> tuple[tvm.IRModule, dict[str, dict]]:
    """``qmod`` returning, after its own outputs, every named ``quantize_info`` tensor dequantized.

    For every name in ``feed`` the module takes one more float32 parameter (after its own, in
    ``feed``'s order) of that tensor's shape; the tensor's consumers then read that value,
    quantized with the tensor's parameters, instead of the value the program computed (which is
    still the tap output). That is the "isolated" mode of :func:`compare_tensors`.

    Returns the module and ``{name: quantize_info attributes}`` in output order.
    """
    from . import ops as so
    from .graph import rebuild_function, remap

    func = relax.transform.ToNonDataflow()(qmod)["main"]
    taps, tap_q, rounding = _taps(func)
    feed = [name for name in feed if name in taps]
    fed_vars = {taps[name][0]: name for name in feed}
    params = {name: relax.Var(f"feed_{k}", relax.TensorType(taps[name][0].ty.shape, "float32"))
              for k, name in enumerate(feed)}
    attrs = dict(func.attrs) if func.attrs else {}
    if params:
        attrs["num_input"] = len(func.params) + len(params)
    computed: dict = {}

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> None:
        emitted = computed[var] = bb.emit(remap(value, mapping), name_hint=var.name)
        fed = fed_vars.get(var)
        mapping[var] = emitted if fed is None else bb.emit(
            so.quantize(params[fed], tap_q[fed], rounding), name_hint=f"fed_{fed}")

    def output(bb: relax.BlockBuilder, body: relax.Expr, mapping: dict) -> relax.Expr:
        extra = [bb.emit(so.dequantize(computed[var], tap_q[name]), name_hint=f"tap_{k}")
                 for k, (name, (var, _)) in enumerate(taps.items())]
        return relax.Tuple([remap(body, mapping), *extra])

    result = qmod.clone()
    result["main"] = rebuild_function(func, emit, params=[*func.params, *params.values()], attrs=attrs,
                                      emit_output=output, dataflow=False)
    return result, {name: info for name, (_, info) in taps.items()}


def _taps(func: relax.Function) -> tuple[dict[str, tuple[relax.Var, dict]], dict[str, QParams], RoundingMode]:
    """The first quantize_info of every name: ``{name: (var, info)}``, its parameters, the input rounding."""
    from . import ops as so

    index = GraphIndex(func)
    taps: dict[str, tuple[relax.Var, dict]] = {}
    tap_q: dict[str, QParams] = {}
    rounding = RoundingMode.HALF_EVEN
    for var in index.order:
        value = index.producer[var]
        if op_name(value) == "sima.quantize" and rounding is RoundingMode.HALF_EVEN:
            assert isinstance(value, relax.Call)
            rounding = RoundingMode.parse(str(value.attrs["rounding"]))  # feed like the program quantizes its inputs
        if op_name(value) == "sima.quantize_info":
            assert isinstance(value, relax.Call)
            a = value.attrs
            name = str(a["name"])
            if name not in taps:
                source = value.args[0]
                producer = op_name(index.producer[source]) if source in index.producer else "input"
                taps[name] = (var, {"scale": [float(s) for s in a["scale"]], "producer": producer or "",
                                    "zero_point": [int(z) for z in a["zero_point"]], "dtype": str(a["dtype"])})
                tap_q[name] = _per_tensor(so.qparams_from_attrs(a))
    return taps, tap_q, rounding


def _per_tensor(qp: QParams) -> QParams:
    """A tap's parameters as the per-tensor report reads them (channel 0 of a per-channel record)."""
    if not qp.per_channel:
        return qp
    return QParams(float(qp.scale[0]), int(qp.zero_point[0]), qp.dtype)


@dataclass(frozen=True)
class _Evaluate:
    """The evaluation of a stream of ``(index, batch)`` pairs: fresh metrics fed every batch.

    Runs where the batches are (this process, or a Ray worker with ``vms`` = the float and the
    quantized program); returns the metrics and, when ``outputs``, ``(index, float output,
    quantized output)`` per batch.
    """

    inputs: list[CalibrationInput]
    float_index: dict[str, int]
    q_index: dict[str, int]
    fed: list[str]
    templates: list[TensorMetrics]
    outputs: bool

    def run(self, vms: list[Any], batches: Iterable[tuple[int, Any]]) -> tuple[list[TensorMetrics], list[tuple]]:
        fvm, qvm = vms
        metrics, pairs = copy.deepcopy(self.templates), []
        names = [i.name for i in self.inputs]
        for index, batch in batches:
            arrays = batch_arrays(batch, names)
            check_batch(arrays, self.inputs, index + 1)
            args = [tvm.runtime.tensor(a) for a in arrays]
            f_out = fvm["main"](*args)
            q_out = qvm["main"](*args, *(f_out[self.float_index[name]] for name in self.fed))
            for m in metrics:
                m.update(f_out[self.float_index[m.name]].numpy(), q_out[self.q_index[m.name]].numpy(), index)
            if self.outputs:
                pairs.append((index, _first(f_out[0]), _first(q_out[0])))
        return metrics, pairs


def compare_tensors(mod: tvm.IRModule, params: Optional[dict], qmod: tvm.IRModule,
                    dataset: Iterable[Union[np.ndarray, dict]],
                    config: Optional[QConfig] = None, *, mode: str = "continuous",
                    outputs: Optional[list] = None, executor: Optional["RayExecutor"] = None) -> list[TensorMetrics]:
    """Per-tensor metrics of ``qmod`` (a :func:`tvm_sima.quantize` result) against the float ``mod``.

    ``config`` must be the one ``qmod`` was made with (default: the current one), so that tensor
    names agree. ``mode`` is ``"continuous"`` or ``"isolated"`` (see the module docstring).
    Tensors are listed in program order of the quantized program. When ``outputs`` is a list,
    ``(float output, quantized output)`` NumPy pairs of the model's first output are appended to
    it, one per batch, in dataset order (for output metrics such as top-1).

    ``executor`` (a :class:`tvm_sima.distributed.RayExecutor`): both programs are built here,
    once, and shards of ``dataset`` (its own, for a
    :class:`~tvm_sima.distributed.ShardedDataset`) evaluated on the workers; their metrics merge
    into exactly those of the single-process run.
    """
    from .driver import build

    if mode not in MODES:
        raise ValueError(f"compare_tensors: mode {mode!r} is not one of {list(MODES)}")
    config = config or current_qconfig()
    fmod = canonicalize(bind_params(mod, params) if params else mod)
    amod, _ = annotate(fmod, config)
    float_mod, float_taps, _ = calibration_graph(amod)
    q_mod, q_taps = quantized_taps(qmod, float_taps if mode == "isolated" else ())
    float_index = {name: i + 1 for i, name in enumerate(float_taps)}
    facts = _tensor_facts(qmod)
    templates = [TensorMetrics(name, info["scale"][0], info["zero_point"][0], info["dtype"], order=k,
                               producer=info["producer"], **facts(name))
                 for k, (name, info) in enumerate(q_taps.items()) if name in float_index]
    job = _Evaluate(calibration_inputs(float_mod), float_index, {name: i + 1 for i, name in enumerate(q_taps)},
                    [name for name in float_taps if name in q_taps] if mode == "isolated" else [], templates,
                    outputs is not None)
    programs = [build(float_mod), build(q_mod)]
    if executor is None:
        metrics, pairs = job.run([relax.VirtualMachine(p, tvm.cpu()) for p in programs], enumerate(dataset))
    else:
        metrics, pairs = _evaluate_shards(executor, programs, job, dataset)
    if outputs is not None:
        outputs.extend((reference, test) for _, reference, test in sorted(pairs, key=lambda p: p[0]))
    return metrics


def _evaluate_shards(executor: "RayExecutor", programs: list[Any], job: _Evaluate,
                     dataset: Iterable[Any]) -> tuple[list[TensorMetrics], list[tuple]]:
    """``job`` over the shards of ``dataset`` on the executor's workers, the shards' results merged."""
    metrics, pairs = copy.deepcopy(job.templates), []
    shards = executor.shards(dataset)
    if shards:
        for part, part_pairs in executor.map_shards(programs, job, shards, "evaluating"):
            for mine, theirs in zip(metrics, part, strict=True):
                mine.merge(theirs)
            pairs.extend(part_pairs)
    return metrics, pairs


def _tensor_facts(qmod: tvm.IRModule) -> Callable[[str], dict]:
    """``facts(tensor)``: its ``source``, ``layer`` and ``weight_bits``, from the report :func:`tvm_sima.quantize`
    attached (nothing for a module it did not make, e.g. a converted one)."""
    from .quantize_info import quantize_report

    try:
        report = quantize_report(qmod)
    except ValueError:
        return lambda _tensor: {}
    sources, outputs = report.get("sources", {}), report.get("layer_outputs", {})
    bits = {row["name"]: row["weight_bits"] for row in report.get("layers", [])}

    def facts(tensor: str) -> dict:
        layer = outputs.get(tensor, "")
        return {"source": sources.get(tensor, ""), "layer": layer, "weight_bits": bits.get(layer, 0)}

    return facts


def _first(value: object) -> np.ndarray:
    """The first output of a VM result (a tensor, or the first field of a tuple)."""
    while not hasattr(value, "numpy"):
        value = value[0]  # type: ignore[index]
    return value.numpy()  # type: ignore[attr-defined]


def integer_taps(qmod: Any, batches: Iterable[Any]) -> dict[str, np.ndarray]:
    """Every named tensor of an integer program (its ``quantize_info``), dequantized, on ``batches``
    (concatenated on axis 0): the layers' quantized inputs for a second AdaRound pass."""
    from .driver import build

    tapped, infos = quantized_taps(qmod)
    vm = relax.VirtualMachine(build(tapped), tvm.cpu())
    names = [p.name for p in qmod["main"].params]
    values: dict[str, list[np.ndarray]] = {name: [] for name in infos}
    for batch in batches:
        out = vm["main"](*[tvm.runtime.tensor(a) for a in batch_arrays(batch, names)])
        for i, name in enumerate(infos, start=1):
            values[name].append(out[i].numpy())
    return {name: np.concatenate(v) for name, v in values.items() if v}
