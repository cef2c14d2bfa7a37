"""Speed: tvm-sima's float and int8 programs against onnxruntime and LiteRT, in one run; calibration time.

Models (``zoo_data.MODELS``; ``make models`` and ``tools/fetch_zoo.py`` put them in ``build/``):
EfficientNet-Lite0 (ONNX, 1x3x224x224), BlazeFace short range (TFLite, 1x128x128x3), PP-OCR v4 det
(ONNX, fixed at 1x3x192x384). Batch 1, one real input each (its evaluation split).

Configurations of each model, each in its own worker process (``speed_harness.py``,
``speed_worker.py``), timed in interleaved rounds (round-robin, ``--rounds``; the median round is
the figure), every runtime on ``--threads`` threads:

* the float runtime, the ratios' denominator: onnxruntime (ONNX models) or LiteRT with XNNPACK
  (TFLite models);
* the peer's int8: onnxruntime's ``quantize_static`` QDQ (MinMax, per-channel int8 weights, int8
  activations) in a default session (onnxruntime fuses QDQ into its int8 kernels); for TFLite
  models ai-edge-quantizer's ``static_wi8_ai8`` run by LiteRT's default resolver (XNNPACK);
* tvm-sima float (``tvm_sima.build`` of ``load_model``), tvm-sima int8 offloaded
  (``tvm_sima.build(qmod)``: the sima codegen's C++ kernels and TIR) and int8 TIR-only
  (``offload=False``), each exported to a ``.so`` that the worker loads (on a CPU with AVX-512 VNNI,
  the offloaded program again with ``TVM_SIMA_KERNEL_ISA=avx2``: the kernels a CPU without it runs); "build s" is
  ``tvm_sima.build`` + ``export_library`` (the C++ compile of offloaded kernels happens there).
  ``qmod`` is ``tvm_sima.quantize`` with the default qconfig on ``--speed-calib`` crops.

Peak RSS is each worker's ``VmHWM`` (``/proc/self/status``) when it quits: interpreter, runtime
libraries, model and session together.

Calibration + quantization wall time (EfficientNet-Lite0, ``--calib-samples`` crops made by
``bench_ptq_accuracy.py``'s ``zoo_data.crops`` of the calibration photos): ``tvm_sima.quantize``
(percentile, extrema) against onnxruntime's ``quantize_static`` (Percentile, MinMax; timed without
its ``quant_pre_process``), each run once in its own process, alternating; ``--memory-samples
100,1000`` adds tvm-sima percentile runs on that many samples (beyond 104: the crops again with
Gaussian noise, streamed by a generator) to show that memory does not grow with the dataset.

Run::

    .venv/bin/python benchmarks/bench_speed.py [--models efficientnet_lite0,blazeface,ppocr_det]
        [--rounds 15] [--threads 2] [--skip-calibration] [--memory-samples 100,1000] [--depthwise-bits 8,16]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import subprocess
import sys
import tempfile
import time
from typing import Any, Callable, Iterator, Optional

import numpy as np
from speed_harness import WORKER, Row, Worker, cpu_info, run_interleaved, table
from zoo_data import CALIB_PHOTOS, MODELS, ROOT, ZooModel, crops
from zoo_peers import aeq_static, one_line, ort_quantize_static

LOG = logging.getLogger("bench_speed")
SPEED_MODELS = ("efficientnet_lite0", "blazeface", "ppocr_det")
EFFNET = ROOT / "build" / "models" / "efficientnet_lite0.onnx"
#: Whether the offloaded kernels run their AVX-512 VNNI path here (else AVX2 or plain C++, chosen by CPUID).
AVX512_VNNI = all(cpu_info()[1].get(flag, False) for flag in ("avx512f", "avx512bw", "avx512_vnni"))
#: Standard deviation of the noise added to the repeated crops beyond the first 104 (inputs are ~[-1, 1]).
NOISE = 0.02


# -- the configurations of one model ---------------------------------------------------------------------------------

def _built(name: str, build: Callable[[], Any], path: pathlib.Path) -> tuple[Optional[str], float, str]:
    """``build()`` exported to ``path``: (path or None, seconds of build + export, error)."""
    start = time.perf_counter()
    try:
        build().export_library(str(path))
    except Exception as err:  # noqa: BLE001 - the table says why this configuration has no figure
        LOG.info("%s: %s", name, one_line(err))
        return None, 0.0, one_line(err)
    return str(path), time.perf_counter() - start, ""


def peer_configs(model: ZooModel, calib: list[np.ndarray], work: pathlib.Path) -> list[tuple[Row, Optional[dict]]]:
    """The float runtime and the peer int8 model: (row, worker spec or None when it failed)."""
    name, path = model.name, str(model.file)
    if model.file.suffix == ".onnx":
        (run,) = ort_quantize_static(path, calib, [], work / "ort", methods=("MinMax",), sessions=("deployed",))
        return [(Row(name, "onnxruntime float", baseline=True), {"kind": "ort", "path": path}),
                (Row(name, "onnxruntime int8 (QDQ MinMax, per-channel)", note=run.error),
                 {"kind": "ort", "path": str(run.model)} if run.model else None)]
    runs = aeq_static(path, calib, [])
    int8 = work / "aeq_static_wi8_ai8.tflite"
    if runs[0].model is not None:
        int8.write_bytes(bytes(runs[0].model))
    return [(Row(name, "LiteRT float (XNNPACK)", baseline=True), {"kind": "litert", "path": path}),
            (Row(name, "LiteRT int8 (ai-edge-quantizer static_wi8_ai8, XNNPACK)", note=runs[0].error),
             {"kind": "litert", "path": str(int8)} if runs[0].model is not None else None)]


def tvm_sima_configs(model: ZooModel, calib: list[np.ndarray], work: pathlib.Path, depthwise_bits: tuple = ()
                     ) -> list[tuple[Row, Optional[dict]]]:
    """tvm-sima float, int8 offloaded and int8 TIR-only (the default qconfig), each built and exported to a
    ``.so``; and for each of ``depthwise_bits`` the offloaded program of ``qconfig(depthwise_input_bits=...)``."""
    import tvm_sima

    labels = ("tvm-sima float", "tvm-sima int8 offloaded", "tvm-sima int8 TIR-only")
    try:
        mod, params = tvm_sima.load_model(model.file, input_shapes=model.input_shapes)
    except Exception as err:  # noqa: BLE001 - the table says why
        return [(Row(model.name, label, note=f"load_model: {one_line(err)}"), None) for label in labels]
    out = []
    so, seconds, error = _built("float", lambda: tvm_sima.build(mod, params=params), work / "float.so")
    out.append((Row(model.name, "tvm-sima float", build_s=seconds if so else None, note=error),
                {"kind": "tvm", "path": so} if so else None))
    try:
        qmod = tvm_sima.quantize(mod, params, calib, work_dir=work / "quantize", progress=False)
    except Exception as err:  # noqa: BLE001
        return out + [(Row(model.name, label, note=f"quantize: {one_line(err)}"), None) for label in labels[1:]]
    for label, offload in (("tvm-sima int8 offloaded", True), ("tvm-sima int8 TIR-only", False)):
        path = work / f"int8_{'offload' if offload else 'tir'}.so"
        so, seconds, error = _built(label, lambda offload=offload: tvm_sima.build(qmod, offload=offload), path)
        out.append((Row(model.name, label, build_s=seconds if so else None, note=error),
                    {"kind": "tvm", "path": so} if so else None))
        if offload and so and AVX512_VNNI:  # the same program on the kernels a CPU without AVX-512 runs
            out.append((Row(model.name, "tvm-sima int8 offloaded, AVX2 kernels"),
                        {"kind": "tvm", "path": so, "env": {"TVM_SIMA_KERNEL_ISA": "avx2"}}))
    return out + [row for bits in depthwise_bits for row in _depthwise_config(model, mod, params, calib, work, bits)]


def _depthwise_config(model: ZooModel, mod: Any, params: Any, calib: list[np.ndarray], work: pathlib.Path,
                      bits: int) -> list[tuple[Row, Optional[dict]]]:
    import tvm_sima

    label = f"tvm-sima int8 offloaded, depthwise_input_bits={bits}"
    try:
        with tvm_sima.qconfig(depthwise_input_bits=bits):
            qmod = tvm_sima.quantize(mod, params, calib, work_dir=work / f"quantize_dw{bits}", progress=False)
    except Exception as err:  # noqa: BLE001 - the table says why
        return [(Row(model.name, label, note=f"quantize: {one_line(err)}"), None)]
    so, seconds, error = _built(label, lambda: tvm_sima.build(qmod), work / f"int8_dw{bits}.so")
    return [(Row(model.name, label, build_s=seconds if so else None, note=error), {"kind": "tvm", "path": so}
             if so else None)]


def bench_model(model: ZooModel, args: argparse.Namespace, work: pathlib.Path) -> list[Row]:
    """Every configuration of ``model``: prepared, then timed in interleaved rounds."""
    if not model.file.is_file():
        return [Row(model.name, "all", note=f"{model.file} missing (tools/fetch_zoo.py / make models)")]
    (x,), _ = model.inputs("eval", 1)
    np.save(work / "input.npy", x)
    calib = model.inputs("calib", args.speed_calib)[0]
    configs = peer_configs(model, calib, work) + tvm_sima_configs(model, calib, work, args.depthwise_bits)
    workers = {row.config: Worker(row.config, {**spec, "input": str(work / "input.npy"), "round_s": args.round_s},
                                  args.threads) for row, spec in configs if spec is not None}
    LOG.info("%s: timing %d configurations, %d rounds", model.name, len(workers), args.rounds)
    timings = run_interleaved(list(workers.values()), args.rounds)
    rows = []
    for row, _ in configs:
        timing = timings.get(row.config)
        if timing is not None and timing.error:
            row.note = timing.error
        elif timing is not None:
            row.ms, row.peak_rss_mb = timing.median_ms, timing.peak_rss_mb
        rows.append(row)
    return rows


# -- calibration + quantization --------------------------------------------------------------------------------------

def calibration_crops(n: int) -> list[np.ndarray]:
    """The first ``min(n, 104)`` EfficientNet-Lite0 calibration crops (15 of each calibration photo, in turn)."""
    return crops(CALIB_PHOTOS, 15, seed=0)[:min(n, 104)]


def calibration_stream(base: list[np.ndarray], n: int) -> Iterator[np.ndarray]:
    """``n`` samples: ``base`` in turn, every one after the first pass with Gaussian noise (seeded by its index)."""
    for i in range(n):
        x = base[i % len(base)]
        if i >= len(base):
            x = (x + np.random.default_rng(i).normal(0.0, NOISE, x.shape)).astype(np.float32)
        yield x


def calibration_job(spec: dict[str, Any]) -> dict[str, Any]:
    """One calibration + quantization (run in a worker process): its wall seconds."""
    n = int(spec["samples"])
    base = calibration_crops(n)
    with tempfile.TemporaryDirectory(prefix="bench_speed_calib_") as tmp:
        if spec["tool"] == "onnxruntime":
            (run,) = ort_quantize_static(spec["model"], base, [], pathlib.Path(tmp), methods=(spec["method"],),
                                         sessions=("deployed",))
            if run.error:
                raise RuntimeError(run.error)
            return {"seconds": run.seconds}
        import tvm_sima

        mod, params = tvm_sima.load_model(spec["model"])
        start = time.perf_counter()
        with tvm_sima.qconfig(calibration_strategy_for_activation=spec["method"]):
            tvm_sima.quantize(mod, params, calibration_stream(base, n), work_dir=tmp, progress=False)
        return {"seconds": time.perf_counter() - start}


def run_job(spec: dict[str, Any], threads: int) -> dict[str, Any]:
    """A calibration job in its own process: its answer (seconds, peak RSS) or ``{"error": ...}``."""
    env_spec = {**spec, "threads": threads}
    done = subprocess.run([sys.executable, str(WORKER), json.dumps(env_spec)], capture_output=True, text=True,
                          env={**os.environ, "TVM_NUM_THREADS": str(threads)}, check=False)
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if not lines:
        return {"error": f"exit {done.returncode}: {done.stderr.strip().splitlines()[-1:]}"}
    return json.loads(lines[-1])


def bench_calibration(args: argparse.Namespace) -> list[str]:
    """The calibration table's lines."""
    jobs = [("onnxruntime", "Percentile", args.calib_samples), ("tvm-sima", "percentile", args.calib_samples),
            ("onnxruntime", "MinMax", args.calib_samples), ("tvm-sima", "extrema", args.calib_samples)]
    jobs += [("tvm-sima", "percentile", int(n)) for n in filter(None, args.memory_samples.split(","))]
    results = []
    for tool, method, n in jobs:
        LOG.info("calibration: %s %s, %d samples", tool, method, n)
        reply = run_job({"kind": "calibrate", "tool": tool, "method": method, "samples": n, "model": str(EFFNET)},
                        args.threads)
        results.append((tool, method, n, reply))
    base = next((r.get("seconds") for t, m, n, r in results if m == "Percentile"), None)
    lines = ["| tool | calibration | samples | wall s | vs onnxruntime Percentile | peak RSS MiB |",
             "|---|---|---:|---:|---:|---:|"]
    for tool, method, n, reply in results:
        if "error" in reply:
            lines.append(f"| {tool} | {method} | {n} | n/a | n/a | n/a ({reply['error']}) |")
            continue
        ratio = f"{reply['seconds'] / base:.2f}x" if base else "n/a"
        lines.append(f"| {tool} | {method} | {n} | {reply['seconds']:.1f} | {ratio} | {reply['peak_rss_mb']:.0f} |")
    return lines


# -- the run ---------------------------------------------------------------------------------------------------------

def header(threads: int) -> str:
    import onnxruntime
    import tvm

    model, features = cpu_info()
    flags = ", ".join(f"{name} {'yes' if has else 'no'}" for name, has in features.items())
    return (f"CPU: {model} ({flags}); {threads} threads; onnxruntime {onnxruntime.__version__}, "
            f"apache-tvm {tvm.__version__}")


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(SPEED_MODELS), help=f"comma-separated, of {SPEED_MODELS}")
    parser.add_argument("--rounds", type=int, default=15, help="interleaved rounds per configuration")
    parser.add_argument("--threads", type=int, default=2, help="threads of every runtime")
    parser.add_argument("--round-s", type=float, default=0.3, help="about this long a round (inferences per round)")
    parser.add_argument("--speed-calib", type=int, default=16, help="calibration crops of the int8 programs timed")
    parser.add_argument("--skip-calibration", action="store_true", help="no calibration + quantization timing")
    parser.add_argument("--depthwise-bits", default="", metavar="BITS",
                        help="e.g. 8,16: also the offloaded program of qconfig(depthwise_input_bits=B) for each "
                             "(the default rows use the default, 'auto')")
    parser.add_argument("--depthwise16", action="store_true", help="the same as --depthwise-bits 16")
    parser.add_argument("--calib-samples", type=int, default=104)
    parser.add_argument("--memory-samples", default="", help="e.g. 100,1000: tvm-sima percentile runs on that many")
    parser.add_argument("--json", default=str(ROOT / "build" / "bench_speed.json"))
    args = parser.parse_args(argv)
    try:
        args.depthwise_bits = tuple(int(b) for b in args.depthwise_bits.split(",") if b.strip())
    except ValueError:
        parser.error(f"--depthwise-bits: {args.depthwise_bits!r} is not a comma-separated list of 8 / 16")
    if sorted(set(args.depthwise_bits) - {8, 16}):
        parser.error(f"--depthwise-bits: {args.depthwise_bits} has a value other than 8 and 16")
    if args.depthwise16 and 16 not in args.depthwise_bits:
        args.depthwise_bits += (16,)
    unknown = sorted(set(args.models.split(",")) - set(SPEED_MODELS))
    if unknown:
        parser.error(f"--models: unknown {unknown}; choose from {SPEED_MODELS}")
    if args.rounds < 1 or args.threads < 1:
        parser.error("--rounds and --threads must be >= 1")
    return args


def main(argv: Optional[list[str]] = None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tvm_sima").setLevel(logging.WARNING)
    print(header(args.threads), flush=True)
    rows: list[Row] = []
    for name in args.models.split(","):
        with tempfile.TemporaryDirectory(prefix=f"bench_speed_{name}_") as tmp:
            rows += bench_model(MODELS[name], args, pathlib.Path(tmp))
    print(f"\nBatch 1, {args.threads} threads, median of {args.rounds} interleaved rounds; ratios to the model's "
          "float runtime (onnxruntime for ONNX, LiteRT for TFLite)\n")
    print(table(rows))
    calib = [] if args.skip_calibration else bench_calibration(args)
    if calib:
        print(f"\nCalibration + quantization, EfficientNet-Lite0, {args.calib_samples} crops, one run each\n")
        print("\n".join(calib))
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    pathlib.Path(args.json).write_text(json.dumps({"rows": [r.__dict__ for r in rows], "calibration": calib},
                                                  indent=2), encoding="utf-8")
    print(f"\nrows written to {args.json}")


if __name__ == "__main__":
    main()
