"""bench_ptq_accuracy.py's PyTorch rows: EfficientNet-Lite0 as an ``nn.Module`` (``tools/efficientnet_lite0.py``).

* **float**: ``tvm_sima.load_model(module, example_inputs=...)``, built and run by TVM, against
  onnxruntime running the ONNX export of the same module (the ONNX route's reference);
* **tvm-sima (PyTorch)**: ``tvm_sima.quantize`` of that import, the same calibration crops and
  configurations as the ONNX route's rows;
* **torchao PT2E**: the PyTorch user's own PTQ, ``prepare_pt2e`` / ``convert_pt2e`` with the XNNPACK
  quantizer (symmetric int8, per-channel weights), calibrated on the same crops, evaluated in PyTorch;
* **tvm-sima convert (PT2E)**: that PT2E model through ``load_model`` -> ``convert`` -> build,
  and its per-op check against PyTorch (``torch_per_op.py``).
"""

from __future__ import annotations

import logging
import pathlib
import sys
import time
from typing import Callable, Sequence

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))

Metrics = Callable[[list[np.ndarray], list[np.ndarray]], dict]


def _vm_outputs(executable, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    import tvm
    from tvm import relax

    vm = relax.VirtualMachine(executable, tvm.cpu())
    return [vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs]


def _torch_outputs(model, inputs: Sequence[np.ndarray]) -> list[np.ndarray]:  # type: ignore[no-untyped-def]
    import torch

    with torch.no_grad():
        return [model(torch.from_numpy(x)).numpy() for x in inputs]


def float_route(module, evals: Sequence[np.ndarray], ref: list[np.ndarray]) -> tuple[object, dict, dict]:  # type: ignore[no-untyped-def]
    """The PyTorch route's import, its params, and its float outputs against onnxruntime and PyTorch."""
    import torch
    import tvm

    import tvm_sima

    mod, params = tvm_sima.load_model(module, example_inputs=(torch.zeros(1, 3, 224, 224),))
    built = tvm.compile(tvm_sima.bind_params(mod, params), target=tvm.target.Target({"kind": "llvm"}))
    out = _vm_outputs(built, evals)
    own = _torch_outputs(module, evals)
    diff = {"vs_onnxruntime": max(float(np.abs(o - r).max()) for o, r in zip(out, ref, strict=True)),
            "vs_pytorch": max(float(np.abs(o - t).max()) for o, t in zip(out, own, strict=True)),
            "logit_range": max(float(np.abs(r).max()) for r in ref)}
    logging.info("PyTorch route, float: max |TVM - onnxruntime| %.2e, max |TVM - PyTorch| %.2e (logits up to %.1f)",
                 diff["vs_onnxruntime"], diff["vs_pytorch"], diff["logit_range"])
    return mod, params, diff


def quantize_rows(mod, params, calib: Sequence[np.ndarray], evals: Sequence[np.ndarray],  # type: ignore[no-untyped-def]
                  ref: list[np.ndarray], work: pathlib.Path, strategies: Sequence[str], metrics: Metrics) -> list[dict]:
    """``tvm_sima.quantize`` of the PyTorch import: one calibration per strategy, both requantization modes."""
    import tvm_sima

    rows = []
    for strategy in strategies:
        stats = None
        for mode in ("shift", "multiplier_shift"):
            start = time.perf_counter()
            with tvm_sima.qconfig(calibration_strategy_for_activation=strategy, requant_mode=mode):
                qmod = tvm_sima.quantize(mod, params, None if stats else calib, statistics=stats,
                                         work_dir=work / f"torch_{strategy}_{mode}")
            rows.append({"tool": "tvm-sima (PyTorch)", "config": f"{strategy} / {mode}", "calibrated": stats is None,
                         "seconds": time.perf_counter() - start,
                         **metrics(ref, _vm_outputs(tvm_sima.build(qmod), evals))})
            stats = stats or work / f"torch_{strategy}_{mode}" / "statistics.npz"
            logging.info("%s", rows[-1])
    return rows


def pt2e_rows(module, calib: Sequence[np.ndarray], evals: Sequence[np.ndarray],  # type: ignore[no-untyped-def]
              ref: list[np.ndarray], metrics: Metrics, per_op_inputs: int) -> tuple[list[dict], dict]:
    """torchao's PT2E PTQ evaluated in PyTorch, then converted by tvm-sima; and the converted program's per-op check."""
    import torch
    from torch_per_op import per_op_check
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    import tvm_sima

    example = (torch.zeros(1, 3, 224, 224),)
    start = time.perf_counter()
    prepared = prepare_pt2e(torch.export.export(module, example).module(),
                            XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True)))
    with torch.no_grad():
        for x in calib:
            prepared(torch.from_numpy(x))
    quantized = convert_pt2e(prepared)
    seconds = time.perf_counter() - start
    rows = [{"tool": "torchao PT2E", "config": "XNNPACK, symmetric int8, per-channel (PyTorch)",
             "seconds": seconds, **metrics(ref, _torch_outputs(quantized, evals))}]
    logging.info("%s", rows[-1])
    start = time.perf_counter()
    mod, _ = tvm_sima.load_model(quantized, example_inputs=example)
    converted, report = tvm_sima.convert(mod)
    seconds = time.perf_counter() - start
    rows.append({"tool": "tvm-sima convert", "config": "that PT2E model, converted (tflite mode)",
                 "seconds": seconds, "float_ops": len(report.unconverted),
                 **metrics(ref, _vm_outputs(tvm_sima.build(converted), evals))})
    logging.info("%s", rows[-1])
    check = per_op_check(quantized, example, converted, report, evals[:per_op_inputs])
    logging.info("PT2E per-op check (isolated, %d crops): %s", per_op_inputs, check.summary())
    return rows, {**check.to_dict(), "inputs": per_op_inputs, "converted": len(report.converted),
                  "unconverted": report.unconverted}


def torch_rows(calib: Sequence[np.ndarray], evals: Sequence[np.ndarray], ref: list[np.ndarray],
               work: pathlib.Path, strategies: Sequence[str], metrics: Metrics,
               per_op_inputs: int = 4) -> tuple[list[dict], dict]:
    """Every PyTorch row of the table, and the float and per-op figures (module docstring)."""
    from efficientnet_lite0 import load_model

    module = load_model()
    mod, params, float_diff = float_route(module, evals, ref)
    rows = quantize_rows(mod, params, calib, evals, ref, work, strategies, metrics)
    pt2e, per_op = pt2e_rows(module, calib, evals, ref, metrics, per_op_inputs)
    return rows + pt2e, {"float": float_diff, "pt2e_per_op": per_op}
