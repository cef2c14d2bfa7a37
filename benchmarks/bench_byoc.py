"""Latency of the offloaded sima kernels (BYOC C++) against the pure-TIR route, in one run.

Models: the three bundled int8 TFLite digits models converted with ``tvm_sima.convert``, and a
synthetic int8 layer stack at a realistic size (NHWC 1x56x56x32: conv 3x3 32->64, depthwise
3x3, conv 1x1 64->64, per-channel, tflite mode). Both routes are built from the same module; the
outputs are compared bit for bit; medians over ``--runs`` calls after warm-up, and the ratio
offloaded / TIR (below 1: the C++ kernels are faster). Also: the build time of each route.

Run:  .venv/bin/python benchmarks/bench_byoc.py [--runs 50]
"""

from __future__ import annotations

import argparse
import pathlib
import sys
import time

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tvm  # noqa: E402
from tvm import relax  # noqa: E402

import tvm_sima  # noqa: E402
from tvm_sima import math as sm  # noqa: E402
from tvm_sima import ops as so  # noqa: E402


def layer_stack() -> tvm.IRModule:
    rng = np.random.default_rng(0)
    x = relax.Var("x", relax.TensorType((1, 56, 56, 32), "int8"))
    bb = relax.BlockBuilder()

    def conv(y: relax.Expr, cin: int, cout: int, k: int, groups: int) -> relax.Expr:
        w = rng.integers(-127, 128, (k, k, cin // groups, cout)).astype(np.int8)
        b = rng.integers(-5000, 5000, cout).astype(np.int32)
        m, e = sm.tflite_quantize_multiplier(rng.uniform(0.0005, 0.002, cout))
        return bb.emit(so.conv2d(y, relax.const(w), relax.const(b), shift=(31 - np.asarray(e)).tolist(),
                                 multiplier=np.asarray(m).tolist(), rounding="tflite", padding=k // 2,
                                 groups=groups, data_layout="NHWC", input_zero_point=-3, output_zero_point=2))

    with bb.function("main", [x], attrs={"num_input": 1}):
        with bb.dataflow():
            y = conv(x, 32, 64, 3, 1)
            y = conv(y, 64, 64, 3, 64)
            y = conv(y, 64, 64, 1, 1)
            out = bb.emit_output(y)
        bb.emit_func_output(out)
    return bb.get()


def models() -> dict[str, tuple[tvm.IRModule, tuple[int, ...]]]:
    out = {}
    for name in ("digits_int8", "digits_mlp_int8", "digits_ops_int8"):
        mod, _ = tvm_sima.load_model(ROOT / "tests" / "fixtures" / f"{name}.tflite")
        qmod, _ = tvm_sima.convert(mod)
        out[name] = (qmod, tuple(int(d) for d in qmod["main"].params[0].ty.shape))
    out["conv stack 56x56x32"] = (layer_stack(), (1, 56, 56, 32))
    return out


def median_ms(vm: relax.VirtualMachine, x: tvm.runtime.Tensor, runs: int) -> float:
    for _ in range(3):
        vm["main"](x)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        vm["main"](x)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    args = parser.parse_args()
    rows = []
    for name, (mod, shape) in models().items():
        x = tvm.runtime.tensor(np.random.default_rng(1).integers(-128, 128, shape).astype(np.int8))
        timing, outputs = {}, {}
        for route, offload in (("offloaded (C++)", True), ("TIR", False)):
            start = time.perf_counter()
            vm = relax.VirtualMachine(tvm_sima.build(mod, offload=offload), tvm.cpu())
            build_s = time.perf_counter() - start
            outputs[route] = vm["main"](x).numpy()
            timing[route] = (median_ms(vm, x, args.runs), build_s)
        exact = np.array_equal(outputs["offloaded (C++)"], outputs["TIR"])
        off, tir = timing["offloaded (C++)"], timing["TIR"]
        rows.append((name, off[0], tir[0], off[0] / tir[0], off[1], tir[1], exact))
    print("| model | offloaded ms | TIR ms | ratio | build s (offloaded / TIR) | bit-exact |")
    print("|---|---|---|---|---|---|")
    for name, off, tir, ratio, b_off, b_tir, exact in rows:
        print(f"| {name} | {off:.3f} | {tir:.3f} | {ratio:.2f}x | {b_off:.1f} / {b_tir:.1f} | {exact} |")


if __name__ == "__main__":
    main()
