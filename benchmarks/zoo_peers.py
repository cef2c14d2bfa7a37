"""The float runtimes and peer quantizers the benchmarks compare with (``bench_zoo.py``, ``bench_ptq_accuracy.py``).

* ONNX: onnxruntime runs the float model; the peer is ``onnxruntime.quantization.quantize_static``
  (QDQ, per-channel symmetric int8 weights, int8 activations, MinMax / Percentile / Entropy),
  evaluated as deployed (default session options: onnxruntime fuses the QDQ pairs into its int8
  kernels) and as the QDQ model means (``ORT_DISABLE_ALL``: dequantize -> float op -> quantize,
  independent of the CPU's int8 kernels). Models below opset 13 (PP-OCR: 11 / 12) are converted
  to opset 13 first: per-channel ``DequantizeLinear`` needs its ``axis``.
* TFLite: LiteRT runs the float model; the peer is Google's ``ai-edge-quantizer`` (static int8,
  ``recipe.static_wi8_ai8()``: min/max, per-channel weights), run by LiteRT with its default
  kernels (XNNPACK) and with the reference kernels (``BUILTIN_REF``). ai-edge-quantizer calibrates
  through a SignatureDef runner, reads each op's ``builtin_code`` only (a code kept in the
  deprecated int8 field reads as ADD: weights quantized as activations, which LiteRT refuses) and
  fails on float16 weights behind DEQUANTIZE (``AttributeError``). The MediaPipe models have no
  SignatureDef, their op codes in the deprecated field and float16 weights:
  :func:`tflite_for_quantizer` gives it the same float model with a ``serving_default``
  signature, the op codes in ``builtin_code`` and the float16 weights widened to float32
  constants (the float outputs are unchanged: LiteRT's DEQUANTIZE of float16 is that widening).
"""

from __future__ import annotations

import contextlib
import io
import logging
import pathlib
import time
from dataclasses import dataclass
from typing import Optional, Sequence, Union

import numpy as np

Outputs = list[list[np.ndarray]]
SIGNATURE = "serving_default"


@dataclass
class PeerRun:
    """One peer configuration: its outputs on the evaluation inputs, or why it failed."""

    tool: str
    config: str
    outputs: Optional[Outputs] = None
    error: str = ""
    seconds: float = 0.0  # calibration + quantization
    model: Union[str, bytes, None] = None  # the quantized model: a path (ONNX) or the flatbuffer (TFLite)


def one_line(err: BaseException) -> str:
    """``Type: first line`` of an exception, at most 200 characters."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else ""
    return f"{type(err).__name__}: {text[:200]}"


# -- onnxruntime ---------------------------------------------------------------------------------------------------

def ort_session(path: str, disable_all: bool = False):  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    options = ort.SessionOptions()
    if disable_all:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])


def ort_run(session, inputs: Sequence[np.ndarray]) -> Outputs:  # type: ignore[no-untyped-def]
    name = session.get_inputs()[0].name
    return [list(session.run(None, {name: x})) for x in inputs]


def _ort_prepared(model: str, work: pathlib.Path) -> str:
    """The model at opset >= 13, pre-processed by onnxruntime's ``quant_pre_process`` when it can be."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    proto = onnx.load(model)
    if next(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) < 13:
        proto = version_converter.convert_version(proto, 13)
        model = str(work / "opset13.onnx")
        onnx.save(proto, model)
    pre = work / "pre.onnx"
    try:
        quant_pre_process(model, str(pre), skip_symbolic_shape=True)
        return str(pre)
    except Exception as err:  # noqa: BLE001 - pre-processing is an optimisation; quantize the model as it is
        logging.info("quant_pre_process failed (%s); quantizing the model as it is", one_line(err))
        return model


def ort_quantize_static(model: str, calib: Sequence[np.ndarray], evals: Sequence[np.ndarray], work: pathlib.Path,
                        methods: Sequence[str] = ("MinMax", "Percentile"),
                        sessions: Sequence[str] = ("deployed", "ORT_DISABLE_ALL")) -> list[PeerRun]:
    """onnxruntime's ``quantize_static`` per calibration method, each run in every session mode of ``sessions``."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    name = ort_session(model).get_inputs()[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter([{name: x} for x in calib])

        def get_next(self):  # type: ignore[no-untyped-def]
            return next(self.items, None)

    work.mkdir(parents=True, exist_ok=True)
    runs = []
    try:
        source = _ort_prepared(model, work)
    except Exception as err:  # noqa: BLE001 - the benchmark reports every failure and goes on
        return [PeerRun("onnxruntime", f"QDQ {m}", error=one_line(err)) for m in methods]
    for method in methods:
        out_path = work / f"ort_{method}.onnx"
        start = time.perf_counter()
        try:
            with contextlib.redirect_stdout(io.StringIO()):  # quantize_static prints its progress
                quantize_static(source, str(out_path), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                                activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                                calibrate_method=getattr(CalibrationMethod, method))
        except Exception as err:  # noqa: BLE001
            runs.append(PeerRun("onnxruntime", f"QDQ {method}", error=one_line(err)))
            continue
        seconds = time.perf_counter() - start
        for mode in sessions:
            run = PeerRun("onnxruntime", f"QDQ {method}, {mode}", seconds=seconds, model=str(out_path))
            try:
                run.outputs = ort_run(ort_session(str(out_path), disable_all=mode == "ORT_DISABLE_ALL"), evals)
            except Exception as err:  # noqa: BLE001
                run.error = one_line(err)
            runs.append(run)
    return runs


# -- LiteRT and ai-edge-quantizer ----------------------------------------------------------------------------------

def litert_run(model: bytes, inputs: Sequence[np.ndarray], reference_kernels: bool = False) -> Outputs:
    """Run a ``.tflite`` (float or int8 I/O: inputs quantized, outputs dequantized with their own parameters)."""
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    resolver = OpResolverType.BUILTIN_REF if reference_kernels else OpResolverType.AUTO
    interpreter = Interpreter(model_content=model, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()
    results = []
    for x in inputs:
        interpreter.set_tensor(inp["index"], _to_io(x, inp))
        interpreter.invoke()
        results.append([_from_io(interpreter.get_tensor(d["index"]), d) for d in outs])
    return results


def _to_io(x: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return x.astype(np.float32)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale) + zero_point, info.min, info.max).astype(detail["dtype"])


def _from_io(y: np.ndarray, detail: dict) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return y.copy()
    scale, zero_point = detail["quantization"]
    return ((y.astype(np.float64) - zero_point) * scale).astype(np.float32)


def tflite_for_quantizer(data: bytes) -> bytes:
    """The float model as ai-edge-quantizer reads it (module docstring): signature, op codes, float32 weights."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model_from_bytearray(bytearray(data))
    if len(model.subgraphs) != 1:
        raise ValueError(f"tflite_for_quantizer: {len(model.subgraphs)} subgraphs; only single-subgraph models")
    for code in model.operatorCodes:
        code.builtinCode = max(code.builtinCode, code.deprecatedBuiltinCode)
    graph = model.subgraphs[0]
    kept = []
    for op in graph.operators:
        source = graph.tensors[op.inputs[0]] if op.inputs else None
        constant = source is not None and model.buffers[source.buffer].data is not None
        if (model.operatorCodes[op.opcodeIndex].builtinCode == schema.BuiltinOperator.DEQUANTIZE and constant
                and source.type == schema.TensorType.FLOAT16):
            wide = np.frombuffer(bytes(model.buffers[source.buffer].data), dtype=np.float16).astype(np.float32)
            buffer = schema.BufferT()
            buffer.data = np.frombuffer(wide.tobytes(), dtype=np.uint8)
            model.buffers.append(buffer)
            graph.tensors[op.outputs[0]].buffer = len(model.buffers) - 1
        else:
            kept.append(op)
    graph.operators = kept
    if not model.signatureDefs:
        model.signatureDefs = [_signature(schema, graph)]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _signature(schema, graph):  # type: ignore[no-untyped-def]
    def entry(index: int):  # type: ignore[no-untyped-def]
        tensor_map = schema.TensorMapT()
        name = graph.tensors[index].name
        tensor_map.name = name.decode() if isinstance(name, bytes) else name
        tensor_map.tensorIndex = index
        return tensor_map

    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = SIGNATURE, 0
    signature.inputs = [entry(i) for i in graph.inputs]
    signature.outputs = [entry(i) for i in graph.outputs]
    return signature


def aeq_static(model_path: str, calib: Sequence[np.ndarray], evals: Sequence[np.ndarray]) -> list[PeerRun]:
    """ai-edge-quantizer's static int8 recipe calibrated on ``calib``, run by LiteRT (default and reference kernels)."""
    from ai_edge_quantizer import quantizer, recipe

    start = time.perf_counter()
    try:
        model = tflite_for_quantizer(pathlib.Path(model_path).read_bytes())
        from ai_edge_litert.interpreter import Interpreter

        name = Interpreter(model_content=model).get_signature_list()[SIGNATURE]["inputs"][0]
        q = quantizer.Quantizer(model)
        q.load_quantization_recipe(recipe.static_wi8_ai8())
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            stats = q.calibrate({SIGNATURE: [{name: x.astype(np.float32)} for x in calib]})
            quantized = bytes(q.quantize(stats, enable_progress_report=False).quantized_model)
    except Exception as err:  # noqa: BLE001 - the benchmark reports every failure and goes on
        return [PeerRun("ai-edge-quantizer", "static_wi8_ai8", error=one_line(err))]
    seconds = time.perf_counter() - start
    runs = []
    for kernels, reference in (("LiteRT default kernels", False), ("LiteRT BUILTIN_REF", True)):
        run = PeerRun("ai-edge-quantizer", f"static_wi8_ai8, {kernels}", seconds=seconds, model=quantized)
        try:
            run.outputs = litert_run(quantized, evals, reference_kernels=reference)
        except Exception as err:  # noqa: BLE001
            run.error = one_line(err)
        runs.append(run)
    return runs
