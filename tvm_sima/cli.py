"""The ``tvm-sima`` command line (``python -m tvm_sima.cli``).

Subcommands so far:

* ``tvm-sima inspect MODEL`` — inputs, outputs, op counts, whether the model is quantized, and
  for a quantized model what ``convert`` would turn into integer ops and what would be offloaded;
* ``tvm-sima quantize MODEL --calib DATA --output DIR [--config FILE.toml]`` — quantize a float
  ONNX / TFLite model with ``tvm_sima.quantize`` on calibration data (``.npy``: one array, split
  along its first axis into batches of the model's batch size; ``.npz``: one array per model input),
  options from a TOML file (the keys of ``tvm_sima.qconfig``; unknown keys are errors), and write
  the run's files (layers.json, statistics.npz, qconfig.json, report.json), ``model.so`` and
  ``artifacts/`` to DIR;
* ``tvm-sima report MODEL --calib DATA --eval DATA --output DIR [--config FILE.toml]`` — quantize
  as ``quantize`` does, then run the float and the quantized program on the evaluation data and
  write, per quantized tensor, cosine similarity, SQNR, MSE, max error, scale / zero point / dtype
  (``DIR/per_layer.json``, "continuous" mode: the quantized program feeds itself), and print them;
* ``tvm-sima convert MODEL_INT8 --output DIR [--mode tflite|shift]`` — load an int8 TFLite or
  quantized ONNX model, convert it, build it (offloaded to the sima codegen) and write
  ``DIR/model.so``, ``DIR/artifacts/<region>/`` and ``DIR/convert_report.json``.

Exit status: 0 on success, 1 on an error the message explains (one line on stderr, starting
``tvm-sima: error:``), 2 on a usage error.
"""

from __future__ import annotations

import argparse
import collections
import json
import pathlib
import sys
from typing import Any, Optional, Sequence

import numpy as np

__all__ = ["main"]


class CliError(Exception):
    """An error for the user: printed as one line, exit status 1."""


def _shapes(values: Optional[list[str]]) -> Optional[dict[str, tuple[int, ...]]]:
    if not values:
        return None
    shapes = {}
    for item in values:
        name, sep, dims = item.rpartition("=")
        try:
            if not sep or not name:
                raise ValueError
            shapes[name] = tuple(int(d) for d in dims.split(","))
        except ValueError:
            raise CliError(f"--input-shape {item!r}: write NAME=D1,D2,... (e.g. image=1,3,224,224)") from None
    return shapes


def _load(path: str, shapes: Optional[list[str]]) -> tuple[Any, dict]:
    import tvm_sima

    if not pathlib.Path(path).is_file():
        raise CliError(f"model file {path} not found")
    try:
        return tvm_sima.load_model(path, _shapes(shapes))
    except (ValueError, FileNotFoundError) as err:
        raise CliError(str(err)) from None


def _op_counts(mod: Any) -> collections.Counter:
    import tvm
    import tvm_ffi
    from tvm import relax

    counts: collections.Counter = collections.Counter()
    tvm_ffi.structural_walk(mod["main"], [(relax.Call, lambda c: counts.update(
        [c.op.name] if isinstance(c.op, tvm.ir.Op) else []))])
    return counts


def _is_quantized(counts: collections.Counter) -> bool:
    return counts["sima.quantize"] + counts["sima.dequantize"] > 0


def _data_inputs(main: Any) -> list:
    """The data parameters of ``main`` (weights, when they are parameters, come after ``num_input``)."""
    n_in = int(main.attrs["num_input"]) if main.attrs is not None and "num_input" in main.attrs else len(main.params)
    return list(main.params[:n_in])


def _dims(ty: Any) -> str:
    return ", ".join(str(int(d)) if hasattr(d, "value") or isinstance(d, int) else str(d) for d in ty.shape)


def _tensor(var: Any) -> str:
    return f"{var.name}: {var.ty.dtype}[{_dims(var.ty)}]"


def cmd_inspect(args: argparse.Namespace) -> None:
    import tvm_sima
    from tvm_sima.codegen import offloaded_functions, partition_for_sima

    mod, params = _load(args.model, args.input_shape)
    main = mod["main"]
    counts = _op_counts(mod)
    quantized = _is_quantized(counts)
    print(f"model: {args.model} ({'quantized (QDQ)' if quantized else 'float'})")
    for var in _data_inputs(main):
        print(f"  input  {_tensor(var)}")
    outs = main.ret_ty.fields if hasattr(main.ret_ty, "fields") else [main.ret_ty]
    for ty in outs:
        print(f"  output {ty.dtype}[{_dims(ty)}]")
    print(f"  weights: {len(params)} parameter tensors" if params else "  weights: constants in the graph")
    print("ops:")
    for name, count in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])):
        print(f"  {count:4d}  {name}")
    if quantized:
        converted, report = tvm_sima.convert(mod, args.mode)
        print(report.summary())
        regions = offloaded_functions(partition_for_sima(converted))
        print(f"offload: {len(regions)} region(s) to the sima codegen")
    else:
        print("float model: `tvm-sima quantize MODEL --calib DATA --output DIR` quantizes it")


def _config(path: Optional[str]) -> dict:
    import tomllib

    if path is None:
        return {}
    file = pathlib.Path(path)
    if not file.is_file():
        raise CliError(f"config file {file} not found")
    try:
        return tomllib.loads(file.read_text())
    except tomllib.TOMLDecodeError as err:
        raise CliError(f"{file}: not valid TOML ({err})") from None


def _calibration(path: str, main: Any) -> list:
    file = pathlib.Path(path)
    if not file.is_file():
        raise CliError(f"calibration data {file} not found")
    inputs = _data_inputs(main)
    n_in = len(inputs)
    batch = int(inputs[0].ty.shape[0])
    if file.suffix == ".npy":
        if n_in != 1:
            raise CliError(f"{file}: the model has {n_in} inputs; give an .npz with one array per input name")
        arrays = {inputs[0].name: np.load(file)}
    elif file.suffix == ".npz":
        with np.load(file) as npz:
            arrays = {k: npz[k] for k in npz.files}
        if n_in == 1 and len(arrays) == 1:
            arrays = {inputs[0].name: next(iter(arrays.values()))}
        missing = [v.name for v in inputs if v.name not in arrays]
        if missing:
            raise CliError(f"{file}: no array for input(s) {missing}; it has {sorted(arrays)}")
    else:
        raise CliError(f"{file}: calibration data must be .npy or .npz")
    count = min(len(a) for a in arrays.values()) // batch
    if count == 0:
        raise CliError(f"{file}: fewer samples than one batch of {batch}")
    if n_in == 1:
        only = arrays[inputs[0].name]
        return [only[i * batch:(i + 1) * batch] for i in range(count)]
    return [{v.name: arrays[v.name][i * batch:(i + 1) * batch] for v in inputs} for i in range(count)]


def cmd_quantize(args: argparse.Namespace) -> None:
    import tvm_sima

    mod, params = _load(args.model, args.input_shape)
    if _is_quantized(_op_counts(mod)):
        raise CliError(f"{args.model} is already quantized; use `tvm-sima convert`")
    options = _config(args.config)
    data = _calibration(args.calib, mod["main"])
    out = pathlib.Path(args.output)
    try:
        with tvm_sima.qconfig(**options):
            qmod = tvm_sima.quantize(mod, params, data, work_dir=out, progress=True)
    except ValueError as err:
        raise CliError(str(err).splitlines()[0]) from None
    report = tvm_sima.quantize_report(qmod)
    print(f"quantized: {len(report.get('fused', []))} fused layer(s), {len(report.get('float_ops', []))} float op(s)")
    ex = tvm_sima.build(qmod, artifact_dir=str(out / "artifacts"))
    ex.export_library(str(out / "model.so"))
    print(f"wrote {out / 'model.so'}, {out / 'artifacts'} and the run's files (report.json, qconfig.json, "
          f"layers.json, statistics.npz) in {out}")


def cmd_report(args: argparse.Namespace) -> None:
    import tvm_sima
    from tvm_sima.compare import compare_tensors

    mod, params = _load(args.model, args.input_shape)
    options = _config(args.config)
    calib = _calibration(args.calib, mod["main"])
    evaluation = _calibration(args.eval, mod["main"])
    out = pathlib.Path(args.output)
    try:
        with tvm_sima.qconfig(**options) as config:
            qmod = tvm_sima.quantize(mod, params, calib, work_dir=out, progress=True)
            metrics = compare_tensors(mod, params, qmod, evaluation, config)
    except ValueError as err:
        raise CliError(str(err).splitlines()[0]) from None
    # strict JSON: an exact tensor's infinite SQNR is written as null
    rows = [{k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in m.to_dict().items()}
            for m in metrics]
    payload = {"model": str(args.model), "mode": "continuous", "eval_batches": len(evaluation), "tensors": rows}
    (out / "per_layer.json").write_text(json.dumps(payload, indent=1))
    print(f"{'tensor':40s} {'SQNR dB':>8s} {'cosine':>8s} {'max err':>9s} {'scale':>10s}")
    for m in metrics:
        print(f"{m.name[:40]:40s} {m.sqnr:8.2f} {m.cosine:8.5f} {m.max_abs_error:9.4f} {m.scale:10.6f}")
    if metrics:
        worst = min(metrics, key=lambda m: m.sqnr)
        print(f"lowest SQNR: {worst.name} ({worst.sqnr:.2f} dB)")
    print(f"wrote {out / 'per_layer.json'}")


def cmd_convert(args: argparse.Namespace) -> None:
    import tvm_sima

    mod, _ = _load(args.model, args.input_shape)
    if not _is_quantized(_op_counts(mod)):
        raise CliError(f"{args.model} is a float model; convert takes int8 TFLite or quantized ONNX models")
    out = pathlib.Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    converted, report = tvm_sima.convert(mod, args.mode)
    print(report.summary())
    ex = tvm_sima.build(converted, artifact_dir=str(out / "artifacts"))
    ex.export_library(str(out / "model.so"))
    (out / "convert_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    print(f"wrote {out / 'model.so'}, {out / 'artifacts'}, {out / 'convert_report.json'}")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvm-sima", description="Post-training quantization and an NPU converter on Apache TVM (Relax).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    shape_help = "shape of a dynamic input, NAME=D1,D2,... (repeatable)"

    def command(name: str, run: Any, help_: str, model_help: str, output_help: Optional[str] = None,
                data: Sequence[tuple[str, str]] = (), mode_help: Optional[str] = None, config: bool = False) -> None:
        p = sub.add_parser(name, help=help_)
        p.add_argument("model", help=model_help)
        for flag, text in data:
            p.add_argument(flag, required=True, metavar="DATA", help=text)
        if output_help is not None:
            p.add_argument("--output", required=True, metavar="DIR", help=output_help)
        if config:
            p.add_argument("--config", metavar="FILE", help="TOML file of qconfig options (calibrate_mode = 'mse')")
        if mode_help is not None:
            p.add_argument("--mode", choices=("tflite", "shift"), default="tflite", help=mode_help)
        p.add_argument("--input-shape", action="append", metavar="NAME=SHAPE", help=shape_help)
        p.set_defaults(run=run)

    calib = ("--calib", "calibration data: .npy (one input) or .npz")
    command("inspect", cmd_inspect, "show a model's inputs, ops, and what would be converted / offloaded",
            "a .onnx or .tflite file, float or quantized", mode_help="requantization of convert")
    command("quantize", cmd_quantize, "quantize a float model on calibration data and build it for the NPU",
            "a float .onnx or .tflite file", "where model.so, artifacts/ and the report go", [calib], config=True)
    command("report", cmd_report, "quantize, then compare float and quantized tensors layer by layer",
            "a float .onnx or .tflite file", "where per_layer.json and the run's files go",
            [calib, ("--eval", "evaluation data, same format as --calib")], config=True)
    command("convert", cmd_convert, "convert an int8 TFLite / quantized ONNX model and build it for the NPU",
            "an int8 .tflite or a quantized (QDQ / QOperator) .onnx file",
            "where model.so, artifacts/ and the report go",
            mode_help="tflite: Q31 multiplier + shift, bit-exact with LiteRT; shift: scale folded into weights")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status."""
    args = _parser().parse_args(argv)
    try:
        args.run(args)
    except CliError as err:
        print(f"tvm-sima: error: {err}", file=sys.stderr)
        return 1
    except BrokenPipeError:  # `tvm-sima inspect m.onnx | head`: stop quietly
        import os

        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


if __name__ == "__main__":
    sys.exit(main())
