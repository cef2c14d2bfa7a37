"""Does onnxruntime's int8 result depend on the CPU? Its fused kernels: yes; its unfused QDQ graph: no.

The digits CNN of ``tests/helpers/onnx_models.py``, quantized by onnxruntime's ``quantize_static`` (QDQ,
per-channel int8), runs on 32 held-out digits in two sessions: ``ORT_ENABLE_ALL`` (QDQ chains
fused into int8 kernels picked by CPUID) and ``ORT_DISABLE_ALL`` (DequantizeLinear -> float op ->
QuantizeLinear, node by node). Each session runs on this machine's CPU and again under QEMU user
mode as a Haswell CPU (AVX2, no AVX-512 / VNNI); the table gives, for each pair, the share of
outputs that are equal and the largest difference in output LSBs.

Run:  .venv/bin/python benchmarks/bench_ort_cpu_dependence.py    (needs Debian's qemu-user)
"""

from __future__ import annotations

import argparse
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
QEMU = ["qemu-x86_64", "-cpu", "Haswell,-pcid,-x2apic,-tsc-deadline,-hle,-invpcid,-rtm"]
LEVELS = {"fused": "ORT_ENABLE_ALL", "unfused": "ORT_DISABLE_ALL"}


def run_sessions(model: pathlib.Path, images: pathlib.Path, out: pathlib.Path) -> None:
    """Both sessions' outputs on ``images``, saved to ``out`` (this runs on the CPU it is given)."""
    import onnxruntime as ort

    x = np.load(images)
    results = {}
    for name, level in LEVELS.items():
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        results[name] = np.stack([session.run(None, {"image": v})[0] for v in x])
    np.savez(out, **results)


def cpu_flags() -> str:
    text = pathlib.Path("/proc/cpuinfo").read_text()
    model = re.search(r"^model name\s*:\s*(.+)$", text, re.MULTILINE)
    vnni = "avx512_vnni" in text.split()
    return f"{model[1] if model else 'unknown CPU'} ({'with' if vnni else 'without'} AVX-512 VNNI)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("MODEL", "IMAGES", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        run_sessions(*(pathlib.Path(a) for a in args.child))
        return
    if shutil.which(QEMU[0]) is None:
        raise SystemExit("error: qemu-x86_64 not found; install Debian's qemu-user (apt-get install qemu-user)")
    sys.path.insert(0, str(ROOT / "tests"))
    from helpers.onnx_models import digits_cnn, held_out_images, output_scale, quantize_with_onnxruntime

    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        model = quantize_with_onnxruntime(digits_cnn(work / "cnn.onnx"), work / "cnn_pc.onnx", per_channel=True)
        np.save(work / "x.npy", held_out_images(32)[:, None])
        runs = {}
        for cpu, prefix in (("host", []), ("Haswell (QEMU)", QEMU)):
            out = work / f"{len(runs)}.npz"
            subprocess.run([*prefix, sys.executable, __file__, "--child", str(model), str(work / "x.npy"), str(out)],
                           check=True, stderr=subprocess.DEVNULL)
            runs[cpu] = dict(np.load(out))
        scale = output_scale(model)
    print(f"host: {cpu_flags()}; emulated: Haswell (AVX2, no AVX-512); 32 digits x 10 logits")
    print(f"{'session':10s} {'host vs Haswell: equal':>24s} {'max LSB':>8s}")
    for name in LEVELS:
        diff = np.round(np.abs(runs["host"][name] - runs["Haswell (QEMU)"][name]) / scale).astype(np.int64)
        print(f"{name:10s} {np.mean(diff == 0):24.4f} {int(diff.max()):8d}")


if __name__ == "__main__":
    main()
