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
dequantized values per tensor (bottom-k of random keys) is kept for histograms.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .calibration.data_checks import batch_arrays, check_batch
from .config import QConfig, current_qconfig
from .graph import GraphIndex, op_name
from .math import QParams, RoundingMode
from .math.metrics import cosine_from_sums, sqnr_db_from_sums
from .math.qtypes import parse_qtype
from .params import bind_params
from .passes.annotate import annotate
from .passes.calibrate import calibration_graph
from .passes.canonicalize import canonicalize

__all__ = ["MODES", "TensorMetrics", "compare_tensors", "quantized_taps", "sqnr_db"]

MODES = ("continuous", "isolated")


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum(ref^2) / sum((ref - test)^2))``; inf when equal."""
    noise = float(np.sum((np.asarray(reference, np.float64) - test) ** 2))
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return sqnr_db_from_sums(signal, noise)


@dataclass
class TensorMetrics:
    """Streaming float-vs-quantized statistics of one tensor."""

    name: str
    scale: float = 0.0
    zero_point: int = 0
    dtype: str = ""
    count: int = 0
    dot: float = 0.0
    ref_sq: float = 0.0
    test_sq: float = 0.0
    err_sq: float = 0.0
    max_abs_error: float = 0.0
    order: int = 0
    producer: str = ""  # the quantized program's op computing the tensor (sima.conv2d, ...)
    source: str = ""  # the model's own name for the node computing it (tvm_sima.source_names)
    layer: str = ""  # the fused layer computing it, if one does
    weight_bits: int = 0  # that layer's weight bits (0: no weights)
    sample_size: int = 4096
    _keys: np.ndarray = field(default_factory=lambda: np.zeros(0), repr=False)
    _ref_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)
    _test_sample: np.ndarray = field(default_factory=lambda: np.zeros(0, np.float32), repr=False)

    @property
    def bits(self) -> int:
        return parse_qtype(self.dtype).bits if self.dtype else 0

    @property
    def samples(self) -> tuple[np.ndarray, np.ndarray]:
        """A uniform sample (``sample_size`` at most) of the float and the dequantized values, paired."""
        return self._ref_sample, self._test_sample

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        r, t = np.asarray(ref, np.float64).ravel(), np.asarray(test, np.float64).ravel()
        self._sample(r, t)
        self.count += r.size
        self.dot += float(r @ t)
        self.ref_sq += float(r @ r)
        self.test_sq += float(t @ t)
        self.err_sq += float(((r - t) ** 2).sum())
        self.max_abs_error = max(self.max_abs_error, float(np.abs(r - t).max(initial=0.0)))

    def _sample(self, r: np.ndarray, t: np.ndarray) -> None:
        # Bottom-k sampling: every value gets a random key; the k smallest keys seen so far are a
        # uniform sample of everything seen, whatever the batch sizes.
        rng = np.random.default_rng([self.order, self.count])
        keys = np.concatenate([self._keys, rng.random(r.size)])
        ref = np.concatenate([self._ref_sample, r.astype(np.float32)])
        test = np.concatenate([self._test_sample, t.astype(np.float32)])
        if keys.size > self.sample_size:
            keep = np.argpartition(keys, self.sample_size)[: self.sample_size]
            keys, ref, test = keys[keep], ref[keep], test[keep]
        self._keys, self._ref_sample, self._test_sample = keys, ref, test

    @property
    def cosine(self) -> float:
        return cosine_from_sums(self.dot, self.ref_sq, self.test_sq)

    @property
    def sqnr(self) -> float:
        return sqnr_db_from_sums(self.ref_sq, self.err_sq)

    @property
    def mse(self) -> float:
        return self.err_sq / max(self.count, 1)

    def to_dict(self) -> dict:
        return {"name": self.name, "producer": self.producer, "source": self.source, "layer": self.layer,
                "scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype,
                "bits": self.bits, "weight_bits": self.weight_bits, "cosine": self.cosine, "sqnr_db": self.sqnr,
                "mse": self.mse, "max_abs_error": self.max_abs_error}


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


def compare_tensors(mod: tvm.IRModule, params: Optional[dict], qmod: tvm.IRModule,
                    dataset: Iterable[Union[np.ndarray, dict]],
                    config: Optional[QConfig] = None, *, mode: str = "continuous",
                    outputs: Optional[list] = None) -> list[TensorMetrics]:
    """Per-tensor metrics of ``qmod`` (a :func:`tvm_sima.quantize` result) against the float ``mod``.

    ``config`` must be the one ``qmod`` was made with (default: the current one), so that tensor
    names agree. ``mode`` is ``"continuous"`` or ``"isolated"`` (see the module docstring).
    Tensors are listed in program order of the quantized program. When ``outputs`` is a list,
    ``(float output, quantized output)`` NumPy pairs of the model's first output are appended to
    it, one per batch (for output metrics such as top-1).
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
    fed = [name for name in float_taps if name in q_taps] if mode == "isolated" else []
    facts = _tensor_facts(qmod)
    metrics = [TensorMetrics(name, info["scale"][0], info["zero_point"][0], info["dtype"], order=k,
                             producer=info["producer"], **facts(name))
               for k, (name, info) in enumerate(q_taps.items()) if name in float_index]
    fvm = relax.VirtualMachine(build(float_mod), tvm.cpu())
    qvm = relax.VirtualMachine(build(q_mod), tvm.cpu())
    main = float_mod["main"]
    names = [p.name for p in main.params]
    q_index = {name: i + 1 for i, name in enumerate(q_taps)}
    for number, batch in enumerate(dataset, start=1):
        arrays = batch_arrays(batch, names)
        check_batch(arrays, main.params, number)
        args = [tvm.runtime.tensor(a) for a in arrays]
        f_out = fvm["main"](*args)
        q_out = qvm["main"](*args, *(f_out[float_index[name]] for name in fed))
        for m in metrics:
            m.update(f_out[float_index[m.name]].numpy(), q_out[q_index[m.name]].numpy())
        if outputs is not None:
            outputs.append((_first(f_out[0]), _first(q_out[0])))
    return metrics


def _tensor_facts(qmod: tvm.IRModule) -> Callable[[str], dict]:
    """``facts(tensor)``: its ``source``, ``layer`` and ``weight_bits``, from the report :func:`tvm_sima.quantize`
    attached (nothing for a module it did not make, e.g. a converted one)."""
    from .ptq import quantize_report

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
