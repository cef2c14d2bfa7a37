"""Automatic mixed precision: which tensors get 16 bits, so that the output keeps a target SQNR.

``qconfig(mixed_precision_sqnr_db=30)`` asks :func:`tvm_sima.quantize` for the cheapest set of
tensors at 16 bits -- activations (16-bit codes) and weights (a layer's ``weight_bits=16``), the
layers with a 16-bit operand getting a 48-bit accumulator -- whose integer program's output SQNR
against float reaches 30 dB on the first calibration batches, within ``mixed_precision_max_macs``
(the fraction of conv / dense multiply-accumulates that may have a 16-bit operand). It runs after
calibration and needs no new statistics: a tensor's 8- and 16-bit grids both come from its
observer (:func:`~tvm_sima.passes.grids.tensor_grid`, per-channel extrema for weights).

How:

1. **One switchable program** (one build, then only runs): the fake-quantized float graph, in
   which every quantized tensor is ``x + a_t (q(x) - x) + b_t (q16(x) - x)``, ``(a_t, b_t)`` read
   from an extra input ``sima_mix`` (``(1, 0)`` its own bits, ``(0, 1)`` 16 bits, ``(0, 0)`` float).
2. **Sensitivity**: all at 8 bits, then each tensor alone at 16 bits, on the first
   ``SENSITIVITY_BATCHES`` batches: the output noise it removes.
3. **Greedy Pareto walk**: tensors by SQNR gain per cost (cost: the MACs of the conv / dense
   layers reading the activation, or of the weight's own layer, each layer counted once however many
   of its operands are 16-bit; a tensor none reads costs nothing), the noise of a set predicted as
   the sum of its members' (independent rounding noises add), every tensor that helps within the
   budget. Each step is a point of the predicted curve.
4. **The integer program decides**: the simulated graph does not see the integer ops' own
   rounding (shift-mode weights on a power-of-two grid, bias codes, tables), so the shortest prefix
   of the walk whose *integer program* (realize, build, run on the same batches) reaches the target
   is found by bisection, a few builds (then the shortest of all prefixes measured that reach it:
   the curve is not strictly monotone). When none does, the shortest within ``KNEE_DB`` of the best
   measured is kept, and a warning says by how much the target is missed.

The output SQNR is the worst over the model's outputs, against the float graph, on the first
``mixed_precision_samples`` calibration batches.
"""

from __future__ import annotations

import functools
import logging
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np
import tvm
from tvm import relax

from .. import ops as so
from ..calibration import Observer
from ..calibration.data_checks import Batch, batch_arrays, result_arrays
from ..config import LayerInfo, LayerOverride, QConfig
from ..graph import GraphIndex, op_name, rebuild_main, remap, static_shape
from ..layer_config import exact_pattern
from ..math.metrics import sqnr_db_from_sums
from .grids import output_bounds, tensor_grid

__all__ = ["WIDE", "PrecisionSearch", "search_precision", "wide_overrides"]

LOG = logging.getLogger(__name__)

#: The settings of a 16-bit activation (and of the layers that read one).
WIDE = {"activation_bits": 16, "input_bits": 16, "bias_bits": 48}

_MAC_OPS = ("relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul")


@dataclass
class PrecisionSearch:
    """What the search chose and measured (``report.json``'s ``mixed_precision``)."""

    target_db: float
    max_macs: float
    sqnr_8bit_db: float = 0.0  # every tensor at its own bits (simulated)
    sqnr_16bit_db: float = 0.0  # every activation and weight at 16 bits (simulated): the search's ceiling
    sqnr_db: float = 0.0  # the chosen mix, measured on the integer program
    mac_fraction: float = 0.0  # of conv / dense MACs, with a 16-bit operand
    wide: list[str] = field(default_factory=list)  # the tensors given 16 bits, in the order chosen
    curve: list[tuple[float, float]] = field(default_factory=list)  # simulated: (MAC fraction, SQNR dB) per step
    measured: list[tuple[int, float, float]] = field(default_factory=list)  # integer program: (tensors, MACs, dB)
    runs: int = 0
    builds: int = 0
    seconds: float = 0.0

    @property
    def met(self) -> bool:
        return self.sqnr_db >= self.target_db

    def to_dict(self) -> dict:
        return {"target_db": self.target_db, "max_macs": self.max_macs, "met": self.met,
                "sqnr_8bit_db": round(self.sqnr_8bit_db, 3), "sqnr_16bit_db": round(self.sqnr_16bit_db, 3),
                "sqnr_db": round(self.sqnr_db, 3), "mac_fraction": round(self.mac_fraction, 5),
                "wide_tensors": list(self.wide), "curve": [[round(c, 5), round(s, 3)] for c, s in self.curve],
                "measured": [list(m) for m in self.measured], "runs": self.runs, "builds": self.builds,
                "seconds": round(self.seconds, 2)}


def _sq_name(index: GraphIndex, expr: Any) -> Optional[str]:
    """The tensor name of the simulated_quantize producing ``expr``, else None."""
    value = index.producer.get(expr) if isinstance(expr, relax.Var) else None
    return str(value.attrs["name"]) if op_name(value) == "sima.simulated_quantize" else None  # type: ignore[union-attr]


def _tensors(index: GraphIndex) -> list[str]:
    """The quantized tensors' names: the activations in program order, then the weights in program order."""
    marks = [v for v in (index.producer[var] for var in index.order) if op_name(v) == "sima.simulated_quantize"]
    kinds = [(str(v.attrs["name"]), str(v.attrs["kind"]) == "weight") for v in marks]  # type: ignore[attr-defined]
    return [n for n, weight in kinds if not weight] + [n for n, weight in kinds if weight]


def mac_readers(amod: tvm.IRModule) -> tuple[dict[str, list[tuple[str, int]]], int]:
    """``{tensor: [(layer, MACs), ...]}``: the conv / dense layers reading each activation (and each weight's
    own layer), and the total MACs of those layers (the cost model: a layer with a 16-bit operand costs its
    MACs)."""
    index = GraphIndex(amod["main"])
    readers: dict[str, list[tuple[str, int]]] = {}
    total = 0
    for var in index.order:
        call = index.producer[var]
        if op_name(call) not in _MAC_OPS:
            continue
        assert isinstance(call, relax.Call)
        data, weight = _sq_name(index, call.args[0]), _sq_name(index, call.args[1])
        macs = _macs(call, var)
        total += macs
        if data is not None and weight is not None:
            readers.setdefault(data, []).append((weight.rsplit(".", 1)[0], macs))
            readers[weight] = [(weight.rsplit(".", 1)[0], macs)]  # 16-bit weights: that layer's MACs, 16-bit
    return readers, total


def _macs(call: relax.Call, var: relax.Var) -> int:
    """Multiply-accumulates of one conv / matmul from its static shapes (0 when a shape is unknown)."""
    x_shape, w_shape, y_shape = (static_shape(e) for e in (call.args[0], call.args[1], var))
    if x_shape is None or w_shape is None or y_shape is None:
        return 0
    op = op_name(call)
    if op == "relax.matmul":
        return int(np.prod(y_shape)) * int(x_shape[-1])
    layout = str(call.attrs["kernel_layout"])
    if op == "relax.nn.conv2d":
        return int(np.prod(y_shape)) * int(np.prod(w_shape)) // max(int(w_shape[layout.index("O")]), 1)
    return int(np.prod(x_shape)) * int(np.prod(w_shape)) // max(int(w_shape[layout.index("I")]), 1)


def mixed_graph(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
                layers: Sequence[LayerInfo]) -> tuple[tvm.IRModule, list[str], int]:
    """The switchable fake-quantized graph (module docstring, step 1), its tensors (the rows of ``sima_mix``:
    the activations, then the weights; :func:`_tensors`) and their count. A row is ``(1, 0)`` for the
    tensor's own bits, ``(0, 1)`` for 16 bits, ``(0, 0)`` for float (all zeros: the float model)."""
    by_name = {layer.name: layer for layer in layers}
    main = amod["main"]
    index = GraphIndex(main)
    names = _tensors(index)
    row = {name: i for i, name in enumerate(names)}
    mix = relax.Var("sima_mix", relax.TensorType((max(len(names), 1), 2), "float32"))
    inputs, bounds = set(main.params), output_bounds(index)

    def emit(bb: relax.BlockBuilder, _var: relax.Var, old: relax.Expr, mapping: dict) -> relax.Expr:
        value = remap(old, mapping)
        if op_name(value) != "sima.simulated_quantize":
            return value
        assert isinstance(value, relax.Call)
        name, x = str(value.attrs["name"]), value.args[0]
        cfg = config.for_tensor(name, by_name)
        a, b = (_mix_entry(bb, mix, row[name], k, str(x.ty.dtype)) for k in (0, 1))
        if str(value.attrs["kind"]) == "weight":
            q8, q16 = (bb.emit(so.dequantize(bb.emit(so.quantize(x, qp, cfg.rounding_mode)), qp)) for qp in
                       (observers[name].compute_qparams(cfg.weight_scheme, bits) for bits in (cfg.weight_bits, 16)))
        else:
            model_input = old.args[0] in inputs  # type: ignore[attr-defined]
            q8 = _fake(bb, x, tensor_grid(observers[name], cfg, model_input, bounds.get(name))[0])
            q16 = _fake(bb, x, tensor_grid(observers[name], cfg.replace(**WIDE), model_input, bounds.get(name))[0])
        d8 = bb.emit(relax.op.multiply(a, bb.emit(relax.op.subtract(q8, x))))
        d16 = bb.emit(relax.op.multiply(b, bb.emit(relax.op.subtract(q16, x))))
        return relax.op.add(x, bb.emit(relax.op.add(d8, d16)))

    attrs = {k: v for k, v in main.attrs.items()} if main.attrs else {}
    attrs.pop("num_input", None)
    return rebuild_main(amod, emit, params=[*main.params, mix], attrs=attrs), names, int(mix.ty.shape[0])


def _mix_entry(bb: relax.BlockBuilder, mix: relax.Var, row: int, column: int, dtype: str) -> relax.Expr:
    """``mix[row, column]`` as a scalar of ``dtype``."""
    picked = relax.op.take(relax.op.take(mix, relax.const(row, "int64"), axis=0, mode="clip"),
                           relax.const(column, "int64"), axis=0, mode="clip")
    return bb.emit(relax.op.astype(picked, dtype))


def _fake(bb: relax.BlockBuilder, x: relax.Expr, qp: Any) -> relax.Expr:
    """``x`` on the per-tensor grid ``qp``, in ``x``'s float type (a simulation: no bit-exactness needed, speed is)."""
    scale, zp = float(np.atleast_1d(qp.scale)[0]), float(np.atleast_1d(qp.zero_point)[0])
    dtype = str(x.ty.dtype)  # type: ignore[attr-defined]
    q = bb.emit(relax.op.round(bb.emit(relax.op.multiply(x, relax.const(1.0 / scale, dtype)))))
    q = bb.emit(relax.op.clip(q, float(qp.qmin) - zp, float(qp.qmax) - zp))
    return bb.emit(relax.op.multiply(q, relax.const(scale, dtype)))


def _default_build() -> Callable[[tvm.IRModule], Any]:
    """:func:`tvm_sima.build` without offload: the TIR kernels, the same integers as the C++ ones, and no C++
    compile per measurement."""
    from ..driver import build  # here, not at the top: the driver imports the codegen, which imports passes

    return functools.partial(build, offload=False)


class _Runner:
    """The switchable program on the kept calibration batches: output SQNR of one choice of 16-bit tensors."""

    def __init__(self, mod: tvm.IRModule, samples: Sequence[Batch], count: int, rows: int,
                 build: Callable[[tvm.IRModule], Any]) -> None:
        self.vm = relax.VirtualMachine(build(mod), tvm.cpu())
        names = [p.name for p in mod["main"].params[:-1]]
        self.inputs = [[tvm.runtime.tensor(a) for a in batch_arrays(batch, names)] for batch in samples]
        self.count, self.rows = count, rows
        self.runs = 0
        self.reference = self._outputs(np.zeros((rows, 2), np.float32), len(self.inputs))  # all float
        self.signal = _per_batch(self.reference, self.reference)[0]  # (batches, outputs)

    def _outputs(self, mix: np.ndarray, first: int) -> list[list[np.ndarray]]:
        self.runs += 1
        mix_t = tvm.runtime.tensor(mix)
        return [result_arrays(self.vm["main"](*args, mix_t)) for args in self.inputs[:first]]

    def noise(self, wide: set[int], first: Optional[int] = None) -> np.ndarray:
        """The noise power of each output on each of the first ``first`` batches, ``(batches, outputs)``, with
        the tensors ``wide`` at 16 bits and the others at their own bits."""
        first = len(self.inputs) if first is None else first
        mix = np.zeros((self.rows, 2), np.float32)
        mix[:, 0] = 1.0
        rows = sorted(wide)
        mix[rows, 0], mix[rows, 1] = 0.0, 1.0
        return _per_batch(self.reference[:first], self._outputs(mix, first))[1]


def search_precision(amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
                     layers: Sequence[LayerInfo], samples: Sequence[Batch],
                     build: Optional[Callable[[tvm.IRModule], Any]] = None,
                     ) -> tuple[PrecisionSearch, tuple[LayerOverride, ...]]:
    """The search of the module docstring under ``config.mixed_precision_*``: what it found, and the overrides
    that give the chosen tensors 16 bits (add them to the configuration realize uses)."""
    if config.mixed_precision_sqnr_db is None:
        raise ValueError("search_precision: set qconfig(mixed_precision_sqnr_db=...) (the output SQNR to reach)")
    if not samples:
        raise ValueError("mixed precision needs calibration batches to measure on (quantize with a dataset, "
                         "not only statistics=)")
    start = time.perf_counter()
    build = build or _default_build()
    mod, names, rows = mixed_graph(amod, observers, config, layers)
    runner = _Runner(mod, samples, len(names), rows, build)
    result = PrecisionSearch(float(config.mixed_precision_sqnr_db), float(config.mixed_precision_max_macs))
    base, floor = runner.noise(set()), runner.noise(set(range(len(names))))  # floor: activations and weights
    result.sqnr_8bit_db = _worst_db(runner.signal.sum(axis=0), base.sum(axis=0))
    result.sqnr_16bit_db = _worst_db(runner.signal.sum(axis=0), floor.sum(axis=0))
    readers, total = mac_readers(amod)
    cost = _Cost(names, readers, total)
    LOG.info("mixed precision: %d tensors, simulated output SQNR %.2f dB at their bits, %.2f dB at 16; target "
             "%.2f dB", len(names), result.sqnr_8bit_db, result.sqnr_16bit_db, result.target_db)
    order = _walk(runner, cost, result, base, floor)
    measure = _Measure(amod, observers, config, layers, samples, runner.reference, build, names, readers)
    length = _shortest(measure, len(order), order, result.target_db)
    wide = order[:length]
    result.wide = [names[i] for i in wide]
    result.mac_fraction = cost.of(wide)
    result.sqnr_db = measure.sqnr(wide)
    result.measured = sorted((k, round(cost.of(order[:k]), 5), round(v, 3))
                             for k, v in measure.cache.items())
    result.runs, result.builds, result.seconds = runner.runs, len(measure.cache), time.perf_counter() - start
    LOG.log(logging.INFO if result.met else logging.WARNING,
            "mixed precision: %d tensors at 16 bits (a 16-bit operand in %.1f %% of the MACs): the integer program "
            "measures %.2f dB (target %.2f dB%s); %d simulated runs, %d integer builds, %.1f s", len(wide),
            100 * result.mac_fraction, result.sqnr_db, result.target_db, "" if result.met else ", NOT met",
            result.runs, result.builds, result.seconds)
    return result, wide_overrides(result.wide, readers)


#: Batches the sensitivity of each tensor is measured on (the first ones kept).
SENSITIVITY_BATCHES = 4


class _Cost:
    """The share of conv / dense MACs with a 16-bit operand, for a set of 16-bit tensors (a layer counts once)."""

    def __init__(self, names: list[str], readers: dict[str, list[tuple[str, int]]], total: int) -> None:
        self.layers = [dict(readers.get(name, ())) for name in names]
        self.total = max(total, 1)

    def __len__(self) -> int:
        return len(self.layers)

    def alone(self, i: int) -> float:
        return sum(self.layers[i].values()) / self.total

    def of(self, wide: Sequence[int]) -> float:
        merged = {layer: macs for i in wide for layer, macs in self.layers[i].items()}
        return sum(merged.values()) / self.total


def _walk(runner: _Runner, cost: _Cost, result: PrecisionSearch, base_noise: np.ndarray,
          floor_noise: np.ndarray) -> list[int]:
    """Steps 2 and 3 on the simulated graph: every tensor that helps, in the order they are added, within the MAC
    budget; ``result.curve`` gets each step.

    The noise each tensor removes when it alone gets 16 bits is measured (one run per tensor); the noise of
    a set is predicted as the sum of its members' (independent rounding noises add), so the walk costs no
    further runs. ``base_noise`` / ``floor_noise``: every tensor at its own bits / at 16 bits, per batch.
    """
    first = min(SENSITIVITY_BATCHES, len(runner.inputs))
    signal, base = runner.signal[:first].sum(axis=0), base_noise[:first].sum(axis=0)
    floor = floor_noise[:first].sum(axis=0)  # all at 16 bits: no set removes more
    removed = [np.clip(base - runner.noise({i}, first).sum(axis=0), 0.0, None) for i in range(len(cost))]
    current = _worst_db(signal, base)
    gains = [_worst_db(signal, np.maximum(base - r, 1e-300)) - current for r in removed]
    ranked = sorted((i for i, g in enumerate(gains) if g > 0), key=lambda i: (-gains[i] / (cost.alone(i) + 1e-3), i))
    result.curve = [(0.0, result.sqnr_8bit_db)]
    offset = result.sqnr_8bit_db - current  # the curve is shown on all the kept batches' scale
    order: list[int] = []
    noise, spent = base.copy(), 0.0
    for i in ranked:
        if cost.of([*order, i]) > result.max_macs + 1e-12:
            continue
        order.append(i)
        spent = cost.of(order)
        noise = np.maximum(noise - removed[i], floor)
        result.curve.append((spent, _worst_db(signal, noise) + offset))
    return order


#: When no prefix reaches the target, the shortest within this many dB of the best one measured.
KNEE_DB = 0.25


def _shortest(measure: "_Measure", n: int, order: list[int], target: float) -> int:
    """The shortest prefix of ``order`` whose integer program reaches ``target``: bisection, as the measured SQNR
    mostly grows with the prefix, then the shortest of every prefix measured that reaches it (the curve is not
    strictly monotone). When none does, the shortest within ``KNEE_DB`` of the best measured (the rest costs
    MACs for nothing), or none if that is no better than 8 bits."""
    base = measure.sqnr(order[:0])
    if base >= target or n == 0:
        return 0
    whole = measure.sqnr(order)
    goal = target if whole >= target else whole - KNEE_DB
    lo, hi = 0, n  # sqnr(lo) < goal <= sqnr(hi), when goal > base
    while goal > base and hi - lo > 1:
        mid = (lo + hi) // 2
        if measure.sqnr(order[:mid]) >= goal:
            hi = mid
        else:
            lo = mid
    best = max(measure.cache.values())
    goal = target if best >= target else best - KNEE_DB
    return min((k for k, v in measure.cache.items() if v >= goal and v > base), default=0)


class _Measure:
    """The output SQNR of the real integer program (realize, build, run) with some tensors at 16 bits."""

    def __init__(self, amod: tvm.IRModule, observers: dict[str, Observer], config: QConfig,
                 layers: Sequence[LayerInfo], samples: Sequence[Batch], reference: list[list[np.ndarray]],
                 build: Callable[[tvm.IRModule], Any], names: list[str],
                 readers: dict[str, list[tuple[str, int]]]) -> None:
        self.amod, self.observers, self.config, self.layers = amod, observers, config, list(layers)
        self.samples, self.reference, self.build = samples, reference, build
        self.names, self.readers = names, readers
        self.cache: dict[int, float] = {}

    def sqnr(self, wide: Sequence[int]) -> float:
        if len(wide) in self.cache:
            return self.cache[len(wide)]
        from .realize import realize  # here: realize imports the lowering, which this module's users need not

        overrides = wide_overrides([self.names[i] for i in wide], self.readers)
        config = self.config.replace(layer_overrides=self.config.layer_overrides + overrides)
        qmod, _ = realize(self.amod, self.observers, config, self.layers, warn=False)
        vm = relax.VirtualMachine(self.build(qmod), tvm.cpu())
        names = [p.name for p in qmod["main"].params]
        outputs = [result_arrays(vm["main"](*[tvm.runtime.tensor(a) for a in batch_arrays(b, names)]))
                   for b in self.samples]
        signal, noise = _per_batch(self.reference, outputs)
        self.cache[len(wide)] = _worst_db(signal.sum(axis=0), noise.sum(axis=0))
        LOG.info("mixed precision: %d tensors at 16 bits: the integer program measures %.2f dB", len(wide),
                 self.cache[len(wide)])
        return self.cache[len(wide)]


def _per_batch(reference: list[list[np.ndarray]], outputs: list[list[np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Per batch and output, ``(batches, outputs)``: ``sum(ref^2)`` and ``sum((ref - out)^2)``."""
    signal = np.zeros((len(reference), len(reference[0])))
    noise = np.zeros_like(signal)
    for b, (ref, out) in enumerate(zip(reference, outputs, strict=True)):
        for k, (r, o) in enumerate(zip(ref, out, strict=True)):
            r64 = r.astype(np.float64)
            signal[b, k] = float(np.sum(r64 * r64))
            noise[b, k] = float(np.sum(np.square(r64 - o)))
    return signal, noise


def _worst_db(signal: np.ndarray, noise: np.ndarray) -> float:
    """The worst output's SQNR in dB."""
    return float(min(sqnr_db_from_sums(float(p), float(n)) for p, n in zip(signal, noise, strict=True)))


def wide_overrides(tensors: Sequence[str], readers: dict[str, list[tuple[str, int]]]) -> tuple[LayerOverride, ...]:
    """Overrides giving ``tensors`` 16 bits: ``tensor:`` ones for activations, ``name:`` ones (16-bit weights) for
    a layer's ``.weight``, and a 48-bit bias to every conv / dense layer with a 16-bit operand."""
    weights = [t for t in tensors if t.endswith(".weight")]
    out = [LayerOverride(f"tensor:{exact_pattern(t)}", dict(WIDE)) for t in tensors if t not in weights]
    wide_weights = {t.rsplit(".", 1)[0] for t in weights}
    layers = dict.fromkeys(layer for t in tensors for layer, _ in readers.get(t, ()))
    return tuple(out + [LayerOverride(f"name:{exact_pattern(layer)}", {"bias_bits": 48, **(
        {"weight_bits": 16} if layer in wide_weights else {})}) for layer in layers])
