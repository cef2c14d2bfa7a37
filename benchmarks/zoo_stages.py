"""Each zoo model (``tools/fetch_zoo.py``) through import, quantize, int8 build and run: what breaks, what stays float.

A first step towards the zoo benchmark of issue 15: it checks the *stages* only. Calibration is 4
batches of uniform random inputs in [0, 1), so it says nothing about accuracy (no task metric,
no peer); it finds crashes and ops left in float, with the reason realize gives::

    .venv/bin/python tools/fetch_zoo.py && .venv/bin/python benchmarks/zoo_stages.py [NAME ...]
"""

from __future__ import annotations

import collections
import logging
import pathlib
import sys
import tempfile
import time

import numpy as np
import tvm
from tvm import relax

import tvm_sima

ZOO = pathlib.Path(__file__).resolve().parents[1] / "build" / "zoo"
#: Inputs the models leave dynamic (PP-OCR: batch and image size).
SHAPES = {"ppocr_cls.onnx": {"x": (1, 3, 48, 192)}, "ppocr_v4_det.onnx": {"x": (1, 3, 320, 320)},
          "ppocr_v4_rec.onnx": {"x": (1, 3, 48, 320)}}


def _one_line(err: Exception) -> str:
    text = str(err).splitlines()[0] if str(err) else ""
    return f"{type(err).__name__}: {text[:200]}"


def stages(path: pathlib.Path) -> list[str]:
    """The report lines of one model."""
    start = time.perf_counter()
    try:
        mod, params = tvm_sima.load_model(path, input_shapes=SHAPES.get(path.name))
    except Exception as err:  # noqa: BLE001 - the survey reports every failure and goes on
        return [f"{path.name}: import FAILS: {_one_line(err)}"]
    shape = [int(d) for d in mod["main"].params[0].ty.shape]
    rng = np.random.default_rng(0)
    calib = [rng.uniform(0, 1, size=shape).astype("float32") for _ in range(4)]
    lines = [f"{path.name}: import {time.perf_counter() - start:.1f} s, input {shape}"]
    try:
        start = time.perf_counter()
        qmod = tvm_sima.quantize(mod, params, calib, work_dir=tempfile.mkdtemp(prefix="zoo_"))
        report = tvm_sima.quantize_report(qmod)
    except Exception as err:  # noqa: BLE001
        return lines + [f"  quantize FAILS: {_one_line(err)}"]
    lines.append(f"  quantize {time.perf_counter() - start:.1f} s: {len(report['fused'])} fused layers, "
                 f"{len(report['float_ops'])} ops left in float")
    reasons = collections.Counter((f["op"], f["reason"]) for f in report["float_ops"])
    lines += [f"    {n:3d} x {op}: {reason}" for (op, reason), n in reasons.most_common()]
    try:
        start = time.perf_counter()
        vm = relax.VirtualMachine(tvm_sima.build(qmod, offload=False), tvm.cpu())
        vm["main"](tvm.runtime.tensor(calib[0]))
        lines.append(f"  int8 build + run {time.perf_counter() - start:.1f} s")
    except Exception as err:  # noqa: BLE001
        lines.append(f"  int8 build FAILS: {_one_line(err)}")
    return lines


def main() -> None:
    logging.disable(logging.WARNING)
    names = sys.argv[1:] or sorted(p.name for p in ZOO.glob("*.*") if p.suffix in (".tflite", ".onnx"))
    if not names:
        raise SystemExit(f"no models in {ZOO}: run tools/fetch_zoo.py first")
    for name in names:
        print("\n".join(stages(ZOO / name)), flush=True)


if __name__ == "__main__":
    main()
