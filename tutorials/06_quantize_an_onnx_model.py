"""Tutorial 6: quantize a float ONNX model with the Python API, and the same from the command line.

The bundled float ONNX CNN (``tests/fixtures/digits_cnn_float.onnx``, trained on scikit-learn
digits; written by ``tools/make_onnx_fixture.py``) with its bundled data: 64 calibration images
(``digits_calib_nchw.npy``) and 64 labelled held-out images (``digits_eval_nchw.npz``, the first
64 of the 297 held-out digits of ``digits_split.npz``).

1. ``tvm_sima.load_model`` + ``with tvm_sima.qconfig(): tvm_sima.quantize(...)`` on the 64
   calibration images (the recommended defaults: per-channel int8 weights, 99.99th-percentile
   activations, shift-only requantization); ``tvm_sima.quantize_report`` says what was fused.
2. ``tvm_sima.build`` the float and the integer program and classify the 297 held-out digits;
   beside them, onnxruntime's own route (``quant_pre_process``, then ``quantize_static``: QDQ,
   per-channel int8 weights, int8 activations, its default MinMax calibration, the same 64
   images), run by onnxruntime as its graph says, node by node (its fused int8 kernels give other
   numbers on CPUs without AVX-512 VNNI; see ``run_onnxruntime``). Every int8 model is also
   compared with the float one: the share of images given the float model's class, and the SQNR
   of the logits.
3. ``tvm_sima.compare.compare_tensors``: cosine and SQNR of every quantized tensor against the
   float model on the bundled evaluation images, in both modes (``continuous``: errors accumulate;
   ``isolated``: each op fed the float value, quantized).
4. The same from a shell: ``tvm-sima quantize`` and ``tvm-sima report`` are run here (as
   ``python -m tvm_sima.cli``) on the same files; the tutorial checks that the command line's
   ``model.so`` gives the same outputs as the Python API's program, bit for bit, and that the
   report's SQNR and accuracy are the numbers computed above.

Run:  .venv/bin/python tutorials/06_quantize_an_onnx_model.py [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import pathlib
import shlex
import subprocess
import sys
import tempfile
import time

import numpy as np
import tvm
from tvm import relax

import tvm_sima
from tvm_sima.compare import compare_tensors, sqnr_db
from tvm_sima.frontends.loader import bind_params

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = pathlib.Path("tests") / "fixtures"  # relative to ROOT: the command lines below are copyable
MODEL, CALIB, EVAL = (FIXTURES / name for name in ("digits_cnn_float.onnx", "digits_calib_nchw.npy",
                                                   "digits_eval_nchw.npz"))
DIGITS = FIXTURES / "digits_split.npz"  # tools/make_digits_dataset.py


def held_out_digits() -> tuple[np.ndarray, np.ndarray]:
    """All 297 held-out digits as NCHW float32 in [0, 1], and their labels."""
    split = np.load(ROOT / DIGITS)
    return (split["test"].astype(np.float32) / 16.0).reshape(-1, 1, 8, 8), split["test_labels"].astype(np.int64)


def run_tvm(ex: object, images: np.ndarray) -> np.ndarray:
    """Logits of a built model (executable or loaded .so), one image at a time (the model's batch is 1)."""
    vm = relax.VirtualMachine(ex, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(x[None])).numpy() for x in images])


def onnxruntime_quantized(model: pathlib.Path, calib: np.ndarray, out: pathlib.Path) -> pathlib.Path:
    """onnxruntime's recommended route: ``quant_pre_process``, then ``quantize_static`` on the same images."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter([{"image": x[None]} for x in calib])

        def get_next(self) -> dict | None:
            return next(self.batches, None)

    prepared = out.with_suffix(".pre.onnx")
    quant_pre_process(str(model), str(prepared), skip_symbolic_shape=True)  # the symbolic pass needs sympy
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8)
    return out


def run_onnxruntime(model: pathlib.Path, images: np.ndarray) -> np.ndarray:
    """Logits from onnxruntime, node by node (``ORT_DISABLE_ALL``).

    For the int8 QDQ model this is its own meaning (DequantizeLinear -> float op ->
    QuantizeLinear), the same on every CPU. With graph optimizations on, onnxruntime fuses the
    chains into int8 kernels whose results depend on the CPU: without AVX-512 VNNI, pairs of
    u8 x s8 products saturate in int16 (``vpmaddubsw``), which costs this model accuracy there.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
    return np.concatenate([session.run(None, {"image": x[None]})[0] for x in images])


def cli(*argv: str) -> str:
    """Run ``tvm-sima ARGV`` in a fresh process (as ``python -m tvm_sima.cli``); print and return its stdout."""
    print(f"$ tvm-sima {shlex.join(argv)}")
    result = subprocess.run([sys.executable, "-m", "tvm_sima.cli", *argv], capture_output=True, text=True, cwd=ROOT)
    if result.returncode != 0:
        raise SystemExit(f"error: tvm-sima {argv[0]} failed (exit {result.returncode}): {result.stderr.strip()}")
    print("".join(f"    {line}\n" for line in result.stdout.splitlines()), end="")
    return result.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=None, help="where the runs' files go (default: temp)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    out = (args.out or pathlib.Path(tempfile.mkdtemp(prefix="tvm_sima_tutorial06_"))).resolve()

    calib = np.load(ROOT / CALIB)                       # (64, 1, 8, 8) float32
    evaluation = np.load(ROOT / EVAL)                   # image (64, 1, 8, 8), labels (64,)
    images, labels = held_out_digits()
    if not (np.array_equal(evaluation["image"], images[:64]) and np.array_equal(evaluation["labels"], labels[:64])):
        raise SystemExit(f"error: {EVAL} is not the first 64 held-out digits; run tools/make_onnx_fixture.py")

    # 1. load and quantize: calibration batches are arrays (one input) or {input name: array}
    mod, params = tvm_sima.load_model(ROOT / MODEL)
    start = time.perf_counter()
    with tvm_sima.qconfig() as config:
        qmod = tvm_sima.quantize(mod, params, [x[None] for x in calib], work_dir=out / "python")
    report = tvm_sima.quantize_report(qmod)
    print(f"quantized {MODEL.name} in {time.perf_counter() - start:.1f} s on {len(calib)} calibration images "
          f"({config.calibration_strategy_for_activation} activations, {config.quantize_method_for_weight} "
          f"weights, requant_mode {config.requant_mode})")
    print(f"  fused: {', '.join(report['fused'])}; {len(report['float_ops'])} op(s) left in float")
    print("  integer ops:", ", ".join(f"{op} x{n}" for op, n in sorted(report["integer_ops"].items())))

    # 2. accuracy on the 297 held-out digits: float, tvm-sima int8, onnxruntime's quantize_static
    float_logits = run_tvm(tvm_sima.build(bind_params(mod, params)), images)  # ONNX weights are parameters
    int8_logits = run_tvm(tvm_sima.build(qmod), images)
    ort_path = onnxruntime_quantized(ROOT / MODEL, calib, out / "digits_cnn_ort_qdq.onnx")
    ort_float = run_onnxruntime(ROOT / MODEL, images)
    ort_int8 = run_onnxruntime(ort_path, images)
    predictions = {"float (TVM)": float_logits, "float (onnxruntime)": ort_float,
                   "int8 tvm-sima": int8_logits, "int8 onnxruntime": ort_int8}
    float_pred = float_logits.argmax(1)
    print(f"\naccuracy on {len(images)} held-out digits (agreement: same class as the float model; SQNR of the "
          "logits against the float model's):")
    for name, logits in predictions.items():
        pred = logits.argmax(1)
        versus = "(the reference)" if logits is float_logits else f"{sqnr_db(float_logits, logits):6.2f} dB"
        print(f"  {name:20s} accuracy {np.mean(pred == labels):.4f}   agreement {np.mean(pred == float_pred):.4f}   "
              f"logits SQNR {versus}")
    if not np.array_equal(ort_float.argmax(1), float_pred):
        raise SystemExit("error: TVM and onnxruntime disagree on the float model")

    # 3. where the error comes from, tensor by tensor, on the bundled evaluation images
    batches = [x[None] for x in evaluation["image"]]
    metrics = {mode: compare_tensors(mod, params, qmod, batches, config, mode=mode)
               for mode in ("continuous", "isolated")}
    isolated = {m.name: m for m in metrics["isolated"]}
    print(f"\nper tensor, on the {len(batches)} images of {EVAL.name} (quantized vs float):")
    print(f"  {'tensor':22} {'scale':>9} {'zp':>5} {'cosine':>8} {'SQNR dB':>8} {'isolated':>9}")
    for m in metrics["continuous"]:
        print(f"  {m.name:22} {m.scale:9.5f} {m.zero_point:5d} {m.cosine:8.5f} {m.sqnr:8.2f} "
              f"{isolated[m.name].sqnr:9.2f}")

    # 4. the same from a shell, run here on the same files
    print("\nthe same from a shell (run here as python -m tvm_sima.cli, from the repository root):")
    cli("quantize", str(MODEL), "--calib", str(CALIB), "--output", str(out / "cli_q"))
    cli_logits = run_tvm(tvm.runtime.load_module(str(out / "cli_q" / "model.so")), images)
    same = int(np.sum(np.all(cli_logits == int8_logits, axis=1)))
    print(f"  {out / 'cli_q' / 'model.so'} vs the Python API's program: {same}/{len(images)} outputs bit-identical")
    if same != len(images):
        raise SystemExit("error: the command line's model differs from the Python API's")
    cli("report", str(MODEL), "--calib", str(CALIB), "--eval", str(EVAL), "--output", str(out / "cli_r"))
    check_report(json.loads((out / "cli_r" / "per_layer.json").read_text()), metrics,
                 {"top1": float(np.mean(int8_logits[:64].argmax(1) == labels[:64])),
                  "float_top1": float(np.mean(float_pred[:64] == labels[:64]))})
    print("  the report's per-tensor SQNR and top-1 (int8 and float) are the numbers computed above with the "
          "Python API")
    print(f"\nfiles in {out}")


def check_report(report: dict, metrics: dict, accuracy: dict[str, float]) -> None:
    """The command line's per_layer.json against the Python API's metrics: same tensors, same numbers."""
    for mode, ours in metrics.items():
        theirs = {t["name"]: t for t in report["modes"][mode]}
        if sorted(theirs) != sorted(m.name for m in ours):
            raise SystemExit(f"error: tvm-sima report ({mode}) lists {sorted(theirs)}, the Python API "
                             f"{sorted(m.name for m in ours)}")
        for m in ours:
            reported = theirs[m.name]["sqnr_db"]  # strict JSON: None for an exact tensor (inf dB)
            if not np.isclose(math.inf if reported is None else reported, m.sqnr, rtol=0, atol=1e-6):
                raise SystemExit(f"error: {m.name} ({mode}): report {reported} dB, Python API "
                                 f"{m.sqnr} dB")
    for key, ours in accuracy.items():
        if not np.isclose(report["output_metrics"][key], ours, rtol=0, atol=1e-9):
            raise SystemExit(f"error: report {key} {report['output_metrics'][key]}, Python API {ours}")


if __name__ == "__main__":
    main()
