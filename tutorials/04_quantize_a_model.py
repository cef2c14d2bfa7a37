"""Tutorial 4 (the main job, ``make demo``): quantize a float model to an integer program and check it.

1. ``tvm_sima.load_model`` reads the bundled float TFLite CNN (trained on scikit-learn digits).
2. ``with tvm_sima.qconfig(): tvm_sima.quantize(mod, params, dataset)`` annotates, calibrates
   on 256 training digits and realizes the integer program: fused ``sima.conv2d`` / ``sima.dense``
   (int8 weight, int32 bias, shift), every tensor's ``sima.quantize_info``.
3. ``tvm_sima.build`` compiles float and integer programs; both classify the 297 held-out digits.
4. ``tvm_sima.compare.compare_tensors`` shows, tensor by tensor, where accuracy goes (cosine
   similarity and SQNR of the quantized tensor against the float one).

Run:  make demo     (or .venv/bin/python tutorials/04_quantize_a_model.py [--out DIR])
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import time

import numpy as np
import tvm
from tvm import relax

import tvm_sima
from tvm_sima.compare import compare_tensors

ROOT = pathlib.Path(__file__).resolve().parents[1]
MODEL = ROOT / "tests" / "fixtures" / "digits_cnn_float.tflite"
DIGITS = ROOT / "tests" / "fixtures" / "digits_split.npz"  # tools/make_digits_dataset.py


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "demo")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    data = np.load(DIGITS)
    calib = [(image / 16.0).astype("float32")[None] for image in data["calib"]]
    test = [(image / 16.0).astype("float32")[None] for image in data["test"]]
    labels = data["test_labels"]

    mod, params = tvm_sima.load_model(MODEL)
    start = time.perf_counter()
    with tvm_sima.qconfig() as config:  # the recommended defaults; see tvm_sima.QConfig
        qmod = tvm_sima.quantize(mod, params, calib, work_dir=args.out)
        seconds = time.perf_counter() - start
        report = tvm_sima.quantize_report(qmod)
        print(f"quantized {MODEL.name} in {seconds:.1f} s ({len(calib)} calibration images): "
              f"{len(report['fused'])} fused conv/dense layers, {len(report['float_ops'])} ops left in float")
        print("integer ops:", ", ".join(f"{op} x{n}" for op, n in sorted(report["integer_ops"].items())))

        float_vm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
        int_vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
        float_pred = np.array([float_vm["main"](tvm.runtime.tensor(x)).numpy().argmax() for x in test])
        int_pred = np.array([int_vm["main"](tvm.runtime.tensor(x)).numpy().argmax() for x in test])
        print(f"\naccuracy on {len(test)} held-out digits: float {np.mean(float_pred == labels):.4f}, "
              f"int8 {np.mean(int_pred == labels):.4f}; int8 agrees with float on "
              f"{np.mean(float_pred == int_pred):.4f}")

        print("\nper tensor (quantized program vs float, on the held-out digits):")
        print(f"  {'tensor':22} {'scale':>9} {'zp':>5} {'cosine':>8} {'SQNR dB':>8}")
        for m in compare_tensors(mod, params, qmod, test, config):
            print(f"  {m.name:22} {m.scale:9.5f} {m.zero_point:5d} {m.cosine:8.5f} {m.sqnr:8.2f}")

    print(f"\nartifacts in {args.out}: layers.json (per-layer template: edit, pass back with "
          "qconfig(layer_config=...)), statistics.npz, qconfig.json, report.json")


if __name__ == "__main__":
    main()
