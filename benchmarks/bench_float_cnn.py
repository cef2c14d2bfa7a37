"""Latency of a float CNN built with the sima pipeline, onnxruntime side by side, interleaved in one run.

Default model: ImageNet EfficientNet-Lite0 as ONNX, made by ``tools/make_efficientnet_lite0_onnx.py``
(see its docstring) at ``build/models/efficientnet_lite0.onnx``. ``--model PATH`` takes any
float ONNX file with one static-shaped input.

Rows: onnxruntime float with as many threads as TVM; ``tvm_sima.build`` of the float model (the
sima pipeline: NHWC convs, the rule-based CPU schedule, this CPU's ``mcpu``); with ``--int8``, the
model quantized by ``tvm_sima.quantize`` (``--calibration`` random batches) and built without
offload (the TIR-only integer route, same schedule); with ``--default``, TVM's default Relax
pipeline (untuned, no fusion). Each round runs every row once, in turn; the table gives each
row's median over ``--rounds`` rounds after warm-up and its ratio to onnxruntime.

onnxruntime runs with ``session.intra_op.allow_spinning=0``: its worker threads otherwise spin
after each run and take the cores from the next row (measured: tvm-sima 2-3x slower when it
runs right after a spinning onnxruntime session).

Run:  .venv/bin/python benchmarks/bench_float_cnn.py [--model M.onnx] [--rounds 30] [--int8] [--default]
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import sys
import time
from typing import Callable

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
import tvm  # noqa: E402
from tvm import relax  # noqa: E402
from tvm.relax.frontend.onnx import from_onnx  # noqa: E402

import tvm_sima  # noqa: E402
from tvm_sima.targets import use_all_cores  # noqa: E402

LOG = logging.getLogger("bench_float_cnn")
DEFAULT_MODEL = ROOT / "build" / "models" / "efficientnet_lite0.onnx"


def interleaved_medians(rows: dict[str, Callable[[], object]], rounds: int, warmup: int = 3) -> dict[str, float]:
    """Median milliseconds of each callable, the callables run in turn once per round."""
    times: dict[str, list[float]] = {name: [] for name in rows}
    for i in range(warmup + rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            fn()
            if i >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def _vm_runner(ex, x: np.ndarray) -> tuple[Callable[[], object], np.ndarray]:
    vm = relax.VirtualMachine(ex, tvm.cpu())
    data = tvm.runtime.tensor(x)
    result = vm["main"](data)
    out = result.numpy() if hasattr(result, "numpy") else result[0].numpy()
    return (lambda: vm["main"](data)), out


def _timed_build(label: str, build: Callable[[], object]) -> tuple[object, float]:
    LOG.info("building %s", label)
    start = time.perf_counter()
    ex = build()
    seconds = time.perf_counter() - start
    LOG.info("  built in %.1f s", seconds)
    return ex, seconds


def _int8_build(path: pathlib.Path, shape: tuple, batches: int):
    mod, params = tvm_sima.load_model(str(path))
    rng = np.random.default_rng(1)
    data = [rng.standard_normal(shape).astype("float32") for _ in range(batches)]
    qmod = tvm_sima.quantize(mod, params, data)
    return tvm_sima.build(qmod, offload=False)


def _onnxruntime(path: pathlib.Path, threads: int) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=pathlib.Path, default=DEFAULT_MODEL)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--int8", action="store_true", help="add the quantized model, TIR-only (offload=False)")
    parser.add_argument("--calibration", type=int, default=4, help="random calibration batches for --int8")
    parser.add_argument("--default", action="store_true", help="add TVM's default Relax pipeline (slow)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if not args.model.is_file():
        raise SystemExit(f"error: {args.model} not found; create it with tools/make_efficientnet_lite0_onnx.py "
                         "(see its docstring) or pass --model")
    threads = use_all_cores()
    model = onnx.load(str(args.model))
    (inp,) = [i for i in model.graph.input if i.name not in {t.name for t in model.graph.initializer}]
    shape = tuple(d.dim_value for d in inp.type.tensor_type.shape.dim)
    x = np.random.default_rng(0).standard_normal(shape).astype("float32")

    session = _onnxruntime(args.model, threads)
    ort_out = session.run(None, {inp.name: x})[0]
    ort_label = f"onnxruntime {ort.__version__} float"
    rows: dict[str, Callable[[], object]] = {ort_label: lambda: session.run(None, {inp.name: x})}
    notes: dict[str, tuple[float, float]] = {ort_label: (0.0, 0.0)}
    mod, params = tvm_sima.load_model(str(args.model))
    builds = [("tvm-sima float", lambda: tvm_sima.build(mod, params=params))]
    if args.int8:
        builds.append(("tvm-sima int8, TIR only", lambda: _int8_build(args.model, shape, args.calibration)))
    if args.default:
        plain = from_onnx(model, shape_dict={inp.name: shape}, keep_params_in_input=False)
        builds.append(("tvm default pipeline float", lambda: tvm.compile(plain, target=tvm_sima.target(),
                                                                          relax_pipeline="default")))
    for label, build in builds:
        ex, seconds = _timed_build(label, build)
        rows[label], out = _vm_runner(ex, x)
        notes[label] = (seconds, float(np.abs(out - ort_out).max()))

    medians = interleaved_medians(rows, args.rounds)
    ort_ms = medians[ort_label]
    print(f"\n{args.model.name}, input {shape}, {threads} threads, target {tvm_sima.target().attrs.get('mcpu')}, "
          f"interleaved medians of {args.rounds} rounds\n")
    print("| runtime | ms / image | ratio to onnxruntime | build s | max abs diff vs onnxruntime |")
    print("|---|---|---|---|---|")
    for label, ms in medians.items():
        seconds, diff = notes[label]
        print(f"| {label} | {ms:.2f} | {ms / ort_ms:.2f}x | {seconds:.1f} | {diff:.2e} |")


if __name__ == "__main__":
    main()
