"""The converter route on the peers' own quantized models (``bench_zoo.py``'s second table).

Each peer quantizer's int8 model (:mod:`zoo_peers`) goes through ``tvm_sima.load_model`` ->
``tvm_sima.convert`` -> ``tvm_sima.build(..., offload=False)`` and runs on the evaluation inputs;
its outputs are compared with the runtime that defines the quantized model's meaning:

* ONNX (onnxruntime QDQ): ``convert`` in its default mode, against onnxruntime with
  ``ORT_DISABLE_ALL`` (dequantize -> float op -> quantize, independent of the CPU's int8
  kernels). The graph outputs are float after a final ``DequantizeLinear``; the difference is
  divided by that scale (output LSB). An output not behind a ``DequantizeLinear`` is compared as
  it is (integer codes: LSB; float: absolute, and said so).
* TFLite (ai-edge-quantizer, int8 inputs and outputs): ``convert(mode="tflite")``, against LiteRT
  ``BUILTIN_REF`` on the same int8 input codes; the output codes are compared (bit-exact is 0 LSB).

Both report the ops converted and left float (``ConversionReport``) and the converted model's
outputs (dequantized) for the task metric. On request (``per_op=True``) an ONNX model is also
checked op by op: every quantized activation in codes, each op fed the oracle's codes of its
inputs (:mod:`zoo_per_op`), since one LSB of an output whose grid is finer than its input's can
be many output LSB.
"""

from __future__ import annotations

import pathlib
import time
from dataclasses import dataclass, field
from typing import Any, Optional, Sequence

import numpy as np
from zoo_peers import Outputs, _from_io, _to_io, one_line, ort_run, ort_session
from zoo_per_op import PerOpCheck, per_op_check


@dataclass
class LsbStats:
    """|converted - oracle| of one output in its LSB, over every element of every input."""

    max: float
    mean: float
    exact: float  # fraction of elements with no difference
    count: int
    unit: str = "LSB"  # "abs" when the output has no quantization scale (a float compared as it is)


@dataclass
class ConvertRun:
    """One peer model through the converter route, or why it failed."""

    peer: str  # the peer model, e.g. "onnxruntime QDQ Percentile"
    oracle: str
    converted: Optional[int] = None
    left_float: Optional[int] = None
    float_ops: list[tuple[str, str]] = field(default_factory=list)  # (op, reason) of each op left float
    stats: list[LsbStats] = field(default_factory=list)  # per output
    outputs: Optional[Outputs] = None  # dequantized, for the task metric
    per_op: Optional[PerOpCheck] = None  # every quantized activation, isolated (ONNX, on request)
    error: str = ""
    seconds: float = 0.0

    def pooled(self) -> Optional[LsbStats]:
        """The outputs' stats together: the worst max, the mean and exact share over all elements."""
        if not self.stats:
            return None
        count = sum(s.count for s in self.stats)
        return LsbStats(max(s.max for s in self.stats), sum(s.mean * s.count for s in self.stats) / count,
                        sum(s.exact * s.count for s in self.stats) / count, count,
                        "LSB" if all(s.unit == "LSB" for s in self.stats) else "abs")


def lsb_stats(got: Outputs, ref: Outputs, scales: Sequence[Optional[float]]) -> list[LsbStats]:
    """Per output: max / mean |got - ref| divided by its scale (None: as it is) and the share that is exact."""
    if len(got) != len(ref) or not ref:
        raise ValueError(f"lsb_stats: {len(got)} converted runs against {len(ref)} oracle runs; give the same inputs")
    stats = []
    for k, scale in enumerate(scales):
        diff = np.concatenate([np.abs(g[k].astype(np.float64).ravel() - r[k].astype(np.float64).ravel())
                               for g, r in zip(got, ref, strict=True)])
        integer = np.issubdtype(ref[0][k].dtype, np.integer)
        unit = "LSB" if scale or integer else "abs"
        diff = diff / scale if scale else diff
        if scale:
            diff = np.round(diff, 3)  # codes dequantized with one scale differ by whole LSB, up to float32 rounding
        stats.append(LsbStats(float(diff.max()), float(diff.mean()), float(np.mean(diff == 0)), diff.size, unit))
    return stats


def vm_run(executable: Any, inputs: Sequence[np.ndarray]) -> Outputs:
    """Run a ``tvm_sima.build`` executable on each input; its outputs flattened to a list."""
    import tvm
    from tvm import relax

    from tvm_sima.calibration.data_checks import result_arrays

    vm = relax.VirtualMachine(executable, tvm.cpu())
    return [result_arrays(vm["main"](tvm.runtime.tensor(x))) for x in inputs]


def _converted(path: pathlib.Path, mode: Optional[str], input_shapes: Optional[dict], run: ConvertRun
               ) -> tuple[Any, Any]:
    """load_model -> convert (``mode``, or its default): the module and its report (whose counts go in ``run``)."""
    import tvm_sima

    mod, _params = tvm_sima.load_model(path, input_shapes=input_shapes)
    converted, report = tvm_sima.convert(mod) if mode is None else tvm_sima.convert(mod, mode)
    run.converted, run.left_float = len(report.converted), len(report.unconverted)
    run.float_ops = [(u["op"], u["reason"]) for u in report.unconverted]
    return converted, report


def _built(converted: Any) -> Any:
    import tvm_sima

    return tvm_sima.build(converted, offload=False)


def onnx_output_scales(path: str) -> list[Optional[float]]:
    """Per graph output: the scale of the ``DequantizeLinear`` that makes it (None when another op does)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(path).graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    constants.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                      if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    producer = {o: n for n in graph.node for o in n.output}
    scales: list[Optional[float]] = []
    for output in graph.output:
        node = producer.get(output.name)
        scale = constants.get(node.input[1]) if node is not None and node.op_type == "DequantizeLinear" else None
        scales.append(None if scale is None or scale.size != 1 else float(scale.reshape(())))
    return scales


def convert_onnx(path: str, peer: str, evals: Sequence[np.ndarray], input_shapes: Optional[dict] = None,
                 oracle: Optional[Outputs] = None, per_op: bool = False) -> ConvertRun:
    """An onnxruntime QDQ model through the converter route, against ``ORT_DISABLE_ALL`` (module docstring);
    with ``per_op``, also every quantized activation, isolated (:func:`zoo_per_op.per_op_check`)."""
    run = ConvertRun(peer, "onnxruntime ORT_DISABLE_ALL")
    start = time.perf_counter()
    try:
        ref = oracle if oracle is not None else ort_run(ort_session(path, disable_all=True), evals)
        converted, report = _converted(pathlib.Path(path), None, input_shapes, run)
        got = vm_run(_built(converted), evals)
        got = [[g.reshape(r.shape) for g, r in zip(gs, rs, strict=True)] for gs, rs in zip(got, ref, strict=True)]
        run.stats = lsb_stats(got, ref, onnx_output_scales(path))
        run.outputs = got
        if per_op:
            run.per_op = per_op_check(path, converted, report, evals)
    except Exception as err:  # noqa: BLE001 - the benchmark reports every failure and goes on
        run.error = one_line(err)
    run.seconds = time.perf_counter() - start
    return run


def convert_tflite(model: bytes, peer: str, evals: Sequence[np.ndarray], work: pathlib.Path) -> ConvertRun:
    """An int8 TFLite model through ``convert(mode="tflite")``, against LiteRT ``BUILTIN_REF`` in output codes."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    run = ConvertRun(peer, "LiteRT BUILTIN_REF")
    start = time.perf_counter()
    try:
        interpreter = Interpreter(model_content=model, experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
        interpreter.allocate_tensors()
        (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
        feeds = [_to_io(x, inp) for x in evals]
        ref = []
        for x in feeds:
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            ref.append([interpreter.get_tensor(d["index"]).copy() for d in outs])
        work.mkdir(parents=True, exist_ok=True)
        path = work / "peer_int8.tflite"
        path.write_bytes(model)
        got = vm_run(_built(_converted(path, "tflite", None, run)[0]), feeds)
        got = [[g.reshape(r.shape) for g, r in zip(gs, rs, strict=True)] for gs, rs in zip(got, ref, strict=True)]
        run.stats = lsb_stats(got, ref, [None] * len(outs))
        run.outputs = [[_from_io(g, d) for g, d in zip(gs, outs, strict=True)] for gs in got]
    except Exception as err:  # noqa: BLE001 - the benchmark reports every failure and goes on
        run.error = one_line(err)
    run.seconds = time.perf_counter() - start
    return run
