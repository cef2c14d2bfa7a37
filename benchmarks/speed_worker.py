"""A worker process of ``bench_speed.py`` (``speed_harness.py``): one configuration, timed on request.

Started as ``speed_worker.py SPEC_JSON``. ``SPEC["kind"]`` is ``ort`` (an ``.onnx`` file, default
session options: onnxruntime's own graph optimisations and fused int8 kernels), ``litert`` (a
``.tflite`` file, default op resolver: XNNPACK) or ``tvm`` (an exported tvm-sima program ``.so``
run by the Relax VM); ``SPEC["input"]`` is an ``.npy`` input, ``SPEC["threads"]`` the runtime's
thread count. The worker loads the session, runs it a few times, picks ``reps`` so a round takes
about ``SPEC["round_s"]``, answers ``{"ready": ...}``, then serves ``run`` (``reps`` timed
inferences: input in, every output out as NumPy; answers their mean in ms) and ``quit`` (answers
its peak RSS). Every answer is one JSON line on stdout.

``kind = "calibrate"`` is a one-shot job instead: calibration + quantization of a model by
tvm-sima or onnxruntime on the benchmark's crops (``bench_speed.calibration_job``), answering its
wall time and peak RSS.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any, Callable

import numpy as np
from speed_harness import peak_rss_mb

Run = Callable[[], Any]
WARMUP = 3


def ort_session(path: str, x: np.ndarray, threads: int) -> Run:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda: session.run(None, {name: x})


def litert_session(path: str, x: np.ndarray, threads: int) -> Run:
    from ai_edge_litert.interpreter import Interpreter
    from zoo_peers import _from_io, _to_io

    interpreter = Interpreter(model_path=path, num_threads=threads)
    interpreter.allocate_tensors()
    (inp,), outs = interpreter.get_input_details(), interpreter.get_output_details()

    def run() -> list[np.ndarray]:
        interpreter.set_tensor(inp["index"], _to_io(x, inp))
        interpreter.invoke()
        return [_from_io(interpreter.get_tensor(d["index"]), d) for d in outs]

    return run


def tvm_session(path: str, x: np.ndarray, _threads: int) -> Run:
    import tvm
    from tvm import relax

    from tvm_sima.calibration.data_checks import result_arrays

    vm = relax.VirtualMachine(tvm.runtime.load_module(path), tvm.cpu())
    return lambda: result_arrays(vm["main"](tvm.runtime.tensor(x)))


SESSIONS: dict[str, Callable[[str, np.ndarray, int], Run]] = {
    "ort": ort_session, "litert": litert_session, "tvm": tvm_session}


def timed(run: Run, reps: int) -> dict[str, float]:
    start = time.perf_counter()
    clock = time.monotonic()
    for _ in range(reps):
        run()
    seconds = time.perf_counter() - start
    return {"ms": seconds * 1000 / reps, "start": clock, "end": time.monotonic()}


def serve(spec: dict[str, Any]) -> None:
    x = np.load(spec["input"])
    start = time.perf_counter()
    run = SESSIONS[spec["kind"]](spec["path"], x, int(spec["threads"]))
    load_s = time.perf_counter() - start
    for _ in range(WARMUP):
        one = timed(run, 1)["ms"] / 1000
    reps = max(1, int(round(float(spec.get("round_s", 0.3)) / max(one, 1e-6))))
    answer({"ready": True, "load_s": load_s, "reps": reps})
    for line in sys.stdin:
        if line.strip() == "run":
            answer(timed(run, reps))
        elif line.strip() == "quit":
            answer({"peak_rss_mb": peak_rss_mb()})
            return
        else:
            answer({"error": f"unknown command {line.strip()!r} (run / quit)"})


def answer(reply: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(reply) + "\n")
    sys.stdout.flush()


def main() -> None:
    spec = json.loads(sys.argv[1])
    try:
        if spec["kind"] == "calibrate":
            from bench_speed import calibration_job

            answer({**calibration_job(spec), "peak_rss_mb": peak_rss_mb()})
        else:
            serve(spec)
    except Exception as err:  # noqa: BLE001 - the parent reports the configuration's failure and goes on
        answer({"error": f"{type(err).__name__}: {str(err).strip().splitlines()[0] if str(err).strip() else ''}"})
        raise


if __name__ == "__main__":
    main()
