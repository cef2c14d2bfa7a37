"""Calibration on Ray against the single-process path: wall time and peak memory, 1 and 2 workers.

Model: the digits CNN (``tests/fixtures/digits_cnn_float.onnx``, 1x1x8x8, 1 input per batch), default
qconfig (percentile activations, bias correction). Data: the 256 calibration digits of the fixtures' split,
repeated with small Gaussian noise to ``--samples`` (1,000 and 10,000 by default), written as
``.npy`` shards of ``--shard-samples`` samples each that the workers read themselves.

Each configuration runs in its own process (so each peak RSS is its own), alternating:

* ``local``: ``calibrate(amod, npy_shards(...))`` in the process (``LocalExecutor``);
* ``ray1`` / ``ray2``: ``calibrate(..., executor=RayExecutor(workers=N))`` on a local Ray cluster of
  N CPUs started in that process (``ray.init`` not timed; shown as "ray start s").

Wall time is :func:`~tvm_sima.passes.calibrate.calibrate` (for Ray: build, export, ship, actors
started, every shard observed, merged). Peak RSS: the driver's ``ru_maxrss``; each Ray worker's
``VmHWM`` (``/proc/PID/status``) read as the last shard finishes. Every run's statistics are
checked equal (qparams of every tensor) to the local run's.

Run::

    .venv/bin/python benchmarks/bench_ray.py [--samples 1000,10000] [--shard-samples 500] [--rounds 1]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"


def _write_shards(folder: pathlib.Path, samples: int, per_shard: int) -> None:
    split = np.load(FIXTURES / "digits_split.npz")
    base = (split["calib"].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    rng = np.random.default_rng(0)
    reps = -(-samples // len(base))
    data = np.concatenate([base + (rng.standard_normal(base.shape) * 0.02 * (k > 0)).astype(np.float32)
                           for k in range(reps)])[:samples]
    for k, start in enumerate(range(0, samples, per_shard)):
        np.save(folder / f"shard{k:04d}.npy", data[start:start + per_shard])


def _vm_hwm_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    return 0


def run_one(config: str, folder: str) -> dict:
    """One configuration in this process; its figures as a dict."""
    import tvm_sima
    from tvm_sima.distributed import RayExecutor, npy_shards
    from tvm_sima.params import bind_params
    from tvm_sima.passes.annotate import annotate
    from tvm_sima.passes.calibrate import calibrate
    from tvm_sima.passes.canonicalize import canonicalize

    mod, params = tvm_sima.load_model(str(FIXTURES / "digits_cnn_float.onnx"))
    amod, layers = annotate(canonicalize(bind_params(mod, params)), tvm_sima.current_qconfig())
    data = npy_shards(folder, _inputs(mod))
    result: dict = {"config": config, "samples": len(data), "shards": len(data.shards)}
    executor, peaks = None, {}
    if config.startswith("ray"):
        import ray

        workers = int(config[3:])
        start = time.perf_counter()
        ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        result["ray_start_s"] = round(time.perf_counter() - start, 2)

        def sample_memory(done: int, total: int) -> None:
            for pid in executor.worker_pids:
                peaks[pid] = max(peaks.get(pid, 0), _vm_hwm_kib(pid))

        executor = RayExecutor(workers=workers, on_shard=sample_memory)
    start = time.perf_counter()
    observers = calibrate(amod, data, layers=layers, executor=executor)
    result["wall_s"] = round(time.perf_counter() - start, 2)
    result["driver_peak_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    result["worker_peak_mib"] = [round(v / 1024, 1) for v in peaks.values()]
    result["qparams"] = {name: [np.asarray(q.scale).tolist(), np.asarray(q.zero_point).tolist()]
                         for name, obs in sorted(observers.items())
                         for q in [obs.compute_qparams("asymmetric")]}
    return result


def _inputs(mod) -> list:
    main = mod["main"]
    return [(p.name, tuple(int(d) for d in p.ty.shape), str(p.ty.dtype)) for p in main.params[:1]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", default="1000,10000")
    parser.add_argument("--shard-samples", type=int, default=500)
    parser.add_argument("--configs", default="local,ray1,ray2")
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "FOLDER"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    rows = []
    for samples in (int(s) for s in args.samples.split(",")):
        with tempfile.TemporaryDirectory(prefix="bench_ray_") as folder:
            _write_shards(pathlib.Path(folder), samples, min(args.shard_samples, samples))
            reference = None
            for config in args.configs.split(","):
                done = subprocess.run([sys.executable, __file__, "--one", config, folder], capture_output=True,
                                      text=True, check=True, cwd=ROOT)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                reference = reference or row["qparams"]
                row["same_qparams"] = row.pop("qparams") == reference
                rows.append(row)
                print(json.dumps(row), flush=True)
    print("\n| samples | shards | config | wall s | samples/s | ray start s | driver peak MiB | "
          "worker peak MiB | same qparams |\n|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['samples']} | {r['shards']} | {r['config']} | {r['wall_s']} | "
              f"{r['samples'] / r['wall_s']:.0f} | {r.get('ray_start_s', '')} | {r['driver_peak_mib']} | "
              f"{', '.join(map(str, r['worker_peak_mib']))} | {r['same_qparams']} |")


if __name__ == "__main__":
    main()
