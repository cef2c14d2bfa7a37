"""``tvm-sima inspect MODEL``: inputs, outputs, op counts, and what quantize / convert would do.

For a float model it lists the layers ``quantize`` would fuse and, from a dry run of realize
without data (:func:`tvm_sima.ptq.quantize_plan`), the ops that would stay float and why, each
under the model's own node name (ONNX node, TFLite output tensor) beside tvm-sima's tensor name.
For a quantized model it runs ``convert`` and counts the regions the sima codegen would take.
Nothing here calibrates or builds. Also the small facts about a module the other commands share
(:func:`op_counts`, :func:`data_inputs`, :func:`dims`).
"""

from __future__ import annotations

import argparse
import collections
from typing import Any, Optional

from tvm_sima.cli_model import load_model

__all__ = ["cmd_inspect", "data_inputs", "dims", "is_quantized", "op_counts", "static"]


def op_counts(mod: Any) -> collections.Counter:
    """How many calls of each registered op ``main`` makes."""
    import tvm
    import tvm_ffi
    from tvm import relax

    counts: collections.Counter = collections.Counter()
    tvm_ffi.structural_walk(mod["main"], [(relax.Call, lambda c: counts.update(
        [c.op.name] if isinstance(c.op, tvm.ir.Op) else []))])
    return counts


def is_quantized(counts: collections.Counter) -> bool:
    """Whether op counts are those of a quantized (QDQ) model."""
    return counts["sima.quantize"] + counts["sima.dequantize"] > 0


def data_inputs(main: Any) -> list:
    """The data parameters of ``main`` (weights, when they are parameters, come after ``num_input``)."""
    n_in = int(main.attrs["num_input"]) if main.attrs is not None and "num_input" in main.attrs else len(main.params)
    return list(main.params[:n_in])


def dims(ty: Any) -> str:
    """A tensor type's shape as ``1, 3, n, 224``."""
    return ", ".join(str(d if (n := static(d)) is None else n) for d in ty.shape)


def static(dim: Any) -> Optional[int]:
    """A shape dimension as an int, or None when it is symbolic."""
    return int(dim) if hasattr(dim, "value") or isinstance(dim, int) else None


def _tensor(var: Any) -> str:
    return f"{var.name}: {var.ty.dtype}[{dims(var.ty)}]"


def cmd_inspect(args: argparse.Namespace) -> None:
    """Print what the module docstring says."""
    mod, params = load_model(args.model, args.input_shape)
    main = mod["main"]
    counts = op_counts(mod)
    quantized = is_quantized(counts)
    print(f"model: {args.model} ({'quantized (QDQ)' if quantized else 'float'})")
    for var in data_inputs(main):
        print(f"  input  {_tensor(var)}")
    outs = main.ret_ty.fields if hasattr(main.ret_ty, "fields") else [main.ret_ty]
    for ty in outs:
        print(f"  output {ty.dtype}[{dims(ty)}]")
    print(f"  weights: {len(params)} parameter tensors" if params else "  weights: constants in the graph")
    print("ops:")
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {name}")
    if quantized:
        _inspect_quantized(mod, args.mode)
    else:
        _inspect_float(mod, params)


def _inspect_quantized(mod: Any, mode: str) -> None:
    import tvm_sima
    from tvm_sima.codegen import offloaded_functions, partition_for_sima

    converted, report = tvm_sima.convert(mod, mode)
    print(report.summary())
    regions = offloaded_functions(partition_for_sima(converted))
    print(f"offload: {len(regions)} region(s) to the sima codegen")


def _inspect_float(mod: Any, params: dict) -> None:
    from tvm_sima.ptq import quantize_plan

    layers, report = quantize_plan(mod, params)
    print(f"quantize would quantize {len(layers)} layer(s) (fused conv2d / matmul with their epilogue):")
    width = max([len(layer.name) for layer in layers] + [5])
    ops = max([len(layer.op) for layer in layers] + [2])
    if layers:
        print(f"  {'id':>3s}  {'layer':{width}s}  {'op':{ops}s}  name in the model")
    for layer in layers:
        print(f"  {layer.id:3d}  {layer.name:{width}s}  {layer.op:{ops}s}  {layer.source or '-'}")
    if report.float_ops:
        print(f"would stay float ({len(report.float_ops)} op(s); found from the graph before calibration; "
              "limits that depend on the calibrated scales are checked by quantize):")
        for op, tensor, reason in report.float_ops:
            print(f"  {op} -> {report.named(tensor)}: {reason}")
    else:
        print("would stay float: nothing (from the graph; limits that depend on the calibrated scales are "
              "checked by quantize)")
    print("float model: `tvm-sima quantize MODEL --calib DATA --output DIR` quantizes it; "
          "`tvm-sima report ... --eval DATA` shows where it loses accuracy")
