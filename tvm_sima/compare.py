"""Where accuracy is lost: the float and the quantized program on the same inputs, tensor by tensor.

Every quantized tensor of a :func:`tvm_sima.quantize` result carries a ``sima.quantize_info``
whose name is the calibration tensor's name. :func:`compare_tensors` builds the float program
with those tensors as extra outputs (as calibration does) and the quantized program with each
``quantize_info`` dequantized as an extra output, runs both on each batch and accumulates, per
tensor, cosine similarity, SQNR, mean squared and max absolute error ("continuous" mode: the
quantized program feeds itself). Streaming: memory does not grow with the dataset.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .config import QConfig, current_qconfig
from .frontends.loader import bind_params
from .passes.annotate import annotate
from .passes.calibrate import _check_batch, _inputs, calibration_graph
from .passes.canonicalize import canonicalize
from .passes.patterns import GraphIndex, op_name

__all__ = ["TensorMetrics", "compare_tensors", "quantized_taps", "sqnr_db"]


def sqnr_db(reference: np.ndarray, test: np.ndarray) -> float:
    """``10 log10(sum(ref^2) / sum((ref - test)^2))``; inf when equal."""
    noise = float(np.sum((np.asarray(reference, np.float64) - test) ** 2))
    signal = float(np.sum(np.asarray(reference, np.float64) ** 2))
    return math.inf if noise == 0 else 10 * math.log10(max(signal, 1e-300) / noise)


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

    def update(self, ref: np.ndarray, test: np.ndarray) -> None:
        r, t = np.asarray(ref, np.float64).ravel(), np.asarray(test, np.float64).ravel()
        self.count += r.size
        self.dot += float(r @ t)
        self.ref_sq += float(r @ r)
        self.test_sq += float(t @ t)
        self.err_sq += float(((r - t) ** 2).sum())
        self.max_abs_error = max(self.max_abs_error, float(np.abs(r - t).max(initial=0.0)))

    @property
    def cosine(self) -> float:
        den = math.sqrt(self.ref_sq * self.test_sq)
        return 1.0 if den == 0 else self.dot / den

    @property
    def sqnr(self) -> float:
        return math.inf if self.err_sq == 0 else 10 * math.log10(max(self.ref_sq, 1e-300) / self.err_sq)

    @property
    def mse(self) -> float:
        return self.err_sq / max(self.count, 1)

    def to_dict(self) -> dict:
        return {"name": self.name, "scale": self.scale, "zero_point": self.zero_point, "dtype": self.dtype,
                "cosine": self.cosine, "sqnr_db": self.sqnr, "mse": self.mse, "max_abs_error": self.max_abs_error}


def quantized_taps(qmod: tvm.IRModule) -> tuple[tvm.IRModule, dict[str, dict]]:
    """``qmod`` returning, after its own outputs, every named ``quantize_info`` tensor dequantized.

    Returns the module and ``{name: quantize_info attributes}`` in output order.
    """
    from . import ops as so
    from .math import QParams

    flat = relax.transform.ToNonDataflow()(qmod)
    func = flat["main"]
    index = GraphIndex(func)
    taps: dict[str, tuple[relax.Var, dict]] = {}
    for var in index.order:
        value = index.producer[var]
        if op_name(value) == "sima.quantize_info":
            assert isinstance(value, relax.Call)
            a = value.attrs
            name = str(a["name"])
            if name not in taps:
                taps[name] = (var, {"scale": [float(s) for s in a["scale"]],
                                    "zero_point": [int(z) for z in a["zero_point"]], "dtype": str(a["dtype"])})
    bb = relax.BlockBuilder()
    with bb.function("main", list(func.params), attrs=dict(func.attrs) if func.attrs else None):
        # Re-emit every binding, then the dequantized taps.
        mapping: dict = {}
        from .passes.annotate import remap

        for block in func.body.blocks:
            for binding in block.bindings:
                mapping[binding.var] = bb.emit(remap(binding.value, mapping), name_hint=binding.var.name)
        extra: list[relax.Expr] = []
        for var, info in taps.values():
            qp = QParams(info["scale"][0], info["zero_point"][0], info["dtype"])
            extra.append(bb.emit(so.dequantize(mapping[var], qp), name_hint=f"tap_{len(extra)}"))
        original = remap(func.body.body, mapping)
        bb.emit_func_output(relax.Tuple([original, *extra]))
    out = qmod.clone()
    out["main"] = bb.get()["main"]
    return out, {name: info for name, (_, info) in taps.items()}


def compare_tensors(mod: tvm.IRModule, params: Optional[dict], qmod: tvm.IRModule,
                    dataset: Iterable[Union[np.ndarray, dict]],
                    config: Optional[QConfig] = None) -> list[TensorMetrics]:
    """Per-tensor metrics of ``qmod`` (a :func:`tvm_sima.quantize` result) against the float ``mod``.

    ``config`` must be the one ``qmod`` was made with (default: the current one), so that tensor
    names agree. Tensors are listed in program order of the quantized program.
    """
    import tvm_sima

    config = config or current_qconfig()
    fmod = canonicalize(bind_params(mod, params) if params else mod)
    amod, _ = annotate(fmod, config)
    float_mod, float_taps, _ = calibration_graph(amod)
    q_mod, q_taps = quantized_taps(qmod)
    float_index = {name: i + 1 for i, name in enumerate(float_taps)}
    metrics = [TensorMetrics(name, info["scale"][0], info["zero_point"][0], info["dtype"], order=k)
               for k, (name, info) in enumerate(q_taps.items()) if name in float_index]
    fvm = relax.VirtualMachine(tvm_sima.build(float_mod), tvm.cpu())
    qvm = relax.VirtualMachine(tvm_sima.build(q_mod), tvm.cpu())
    main = float_mod["main"]
    names = [p.name for p in main.params]
    q_index = {name: i + 1 for i, name in enumerate(q_taps)}
    for number, batch in enumerate(dataset, start=1):
        arrays = _inputs(batch, names)
        _check_batch(arrays, main.params, number)
        args = [tvm.runtime.tensor(a) for a in arrays]
        f_out, q_out = fvm["main"](*args), qvm["main"](*args)
        for m in metrics:
            m.update(f_out[float_index[m.name]].numpy(), q_out[q_index[m.name]].numpy())
    return metrics
