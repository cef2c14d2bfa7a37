"""The ``tvm-sima`` command line (``python -m tvm_sima.cli``).

* ``tvm-sima inspect MODEL`` — inputs, outputs, op counts; for a float model the layers
  ``quantize`` would quantize, for a quantized one what ``convert`` would turn into integer ops
  and how many regions would be offloaded;
* ``tvm-sima quantize MODEL --calib DATA --output DIR [--config FILE]`` — quantize a float ONNX /
  TFLite / PyTorch (``.pt2``, ``torch.export.save``) model on calibration data and write
  ``model.so``, ``artifacts/`` and the run's files (layers.json, statistics.npz, qconfig.json, report.json) to DIR;
* ``tvm-sima report MODEL --calib DATA --eval DATA --output DIR`` — quantize, then compare the
  float and the quantized program tensor by tensor ("continuous" and "isolated" modes) and on the
  output (``--metric``): ``DIR/per_layer.json`` and the page ``DIR/report.html``;
* ``tvm-sima convert MODEL_INT8 --output DIR [--mode tflite|shift]`` — an int8 TFLite,
  quantized ONNX or PT2E-quantized ``.pt2`` model to integer sima ops, built: ``model.so``,
  ``artifacts/``, ``convert_report.json``;
* ``tvm-sima build MODEL --output DIR [--statistics FILE]`` — build without calibration data:
  a float model from the statistics of an earlier ``quantize`` run (with an edited per-layer file
  through the config's ``layer_config``), a quantized model as ``convert`` does.

DATA is any dataset plugin's source (``tvm_sima.plugins``): ``.npy``, ``.npz`` (arrays per input
name, optional ``labels``), an image folder (``--data-option resize=256 --data-option crop=224x224``),
``file.py:function``, or ``NAME:SOURCE`` for an installed plugin. Config files are TOML, YAML or
JSON (the ``qconfig.json`` a run writes) with ``tvm_sima.qconfig`` keys and an optional
``dataset`` table of data options; unknown keys are errors.

An ``--output DIR`` is written whole or not at all (:mod:`tvm_sima.cli_output`): into a temporary
directory beside it, renamed to DIR at the end; a failed run leaves DIR as it was. An existing DIR
is replaced if it is empty or holds only an earlier run's files, refused otherwise (and if a file).
Data is checked when loaded (:mod:`tvm_sima.calibration.data_checks`): shape, dtype, NaN / Inf.

Exit status: 0 on success, 1 on any error (one line on stderr, starting ``tvm-sima: error:``; an
unanticipated one as its type and first message line, with the traceback when ``TVM_SIMA_DEBUG=1``),
2 on a usage error, 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import pathlib
import sys
import textwrap
from typing import Any, Callable, Iterator, Optional, Sequence

from tvm_sima.cli_errors import CliError, one_line, unexpected
from tvm_sima.cli_inspect import cmd_inspect, data_inputs, dims, is_quantized, op_counts, static
from tvm_sima.cli_model import data_shapes, load_model, read_dataset
from tvm_sima.cli_report import DEFAULT_METRICS
from tvm_sima.config import PRESETS
from tvm_sima.math.requant import REQUANT_MODE_NAMES

__all__ = ["main"]


def _config(path: Optional[str]) -> tuple[dict, dict]:
    """``(qconfig options, dataset options)`` from a TOML / YAML / JSON file."""
    if path is None:
        return {}, {}
    file = pathlib.Path(path)
    if not file.is_file():
        raise CliError(f"config file {file} not found")
    text = file.read_text()
    try:
        if file.suffix in (".yaml", ".yml"):
            import yaml

            options = yaml.safe_load(text) or {}
        elif file.suffix == ".json":
            options = json.loads(text)
        else:
            import tomllib

            options = tomllib.loads(text)
    except Exception as err:  # the parsers' own errors carry line and column
        kind = {".yaml": "YAML", ".yml": "YAML", ".json": "JSON"}.get(file.suffix, "TOML")
        raise CliError(f"{file}: not valid {kind} ({' '.join(str(err).split())})") from None
    if not isinstance(options, dict):
        raise CliError(f"{file}: expected a table of qconfig options at the top level")
    data = options.pop("dataset", {})
    if not isinstance(data, dict):
        raise CliError(f"{file}: 'dataset' must be a table of data options (resize = 256, ...)")
    return options, data


def _data_options(args: argparse.Namespace, from_config: dict) -> dict:
    options = dict(from_config)
    for item in args.data_option or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--data-option {item!r}: write KEY=VALUE (e.g. resize=256)")
        options[key] = value
    return options


def _dataset(spec: str, main: Any, options: dict, allow_nonfinite: bool = False) -> Any:
    """The batches of ``spec`` for ``main``'s inputs, checked (NaN / Inf refused unless ``allow_nonfinite``)."""
    return read_dataset(spec, _inputs(main), options, allow_nonfinite)


def _inputs(main: Any) -> list:
    from tvm_sima.plugins import InputSpec

    return [InputSpec(v.name, tuple(-1 if (n := static(d)) is None else n for d in v.ty.shape), str(v.ty.dtype))
            for v in data_inputs(main)]


def _ray_dataset(spec: str, main: Any, options: dict, allow_nonfinite: bool = False) -> Any:
    """``--ray``'s data: a folder of ``.npy`` files or of images is read by the workers, shard by shard;
    any other DATA is read here and its batches travel with their shards."""
    from tvm_sima.distributed import image_shards, npy_shards
    from tvm_sima.plugins import PluginError

    folder = pathlib.Path(spec)
    try:
        if folder.is_dir() and any(folder.glob("*.npy")):
            return npy_shards(folder, _inputs(main), allow_nonfinite)
        if folder.is_dir():
            return image_shards(folder, _inputs(main), options, allow_nonfinite=allow_nonfinite)
    except PluginError as err:
        raise CliError(str(err)) from None
    return _dataset(spec, main, options, allow_nonfinite)


def _ray_executor(address: str) -> Any:
    try:
        from tvm_sima.distributed import RayExecutor

        executor = RayExecutor(address=address, progress=sys.stderr.isatty())
        executor.connect()  # a missing Ray or an unreachable cluster fails before the model is annotated
    except ImportError as err:
        raise CliError(str(err)) from None
    except ConnectionError as err:
        raise CliError(f"--ray {address}: no Ray cluster there ({one_line(err)}); start one with `ray start --head` "
                       "or give --ray local") from None
    return executor


def _quantize(args: argparse.Namespace, mod: Any, params: dict, out: pathlib.Path, **extra: Any) -> tuple[Any, Any]:
    """Quantize with the config file's options; returns ``(qmod, config)``."""
    import tvm_sima

    _refuse_quantized(args.model, mod)
    options, data_options = _config(args.config)
    if getattr(args, "min_sqnr", None) is not None:
        options["mixed_precision_sqnr_db"] = args.min_sqnr
    if getattr(args, "preset", None) is not None:  # the config file's other options still override its settings
        options["preset"] = args.preset
    try:
        with tvm_sima.qconfig(**options) as config:
            if "statistics" not in extra:  # NaN / Inf in the data only when the config trims them
                read = _ray_dataset if getattr(args, "ray", None) else _dataset
                extra["dataset"] = read(args.calib, mod["main"], _data_options(args, data_options),
                                        config.trim_infinity_before_statistic)
            if getattr(args, "ray", None):
                extra["executor"] = _ray_executor(args.ray)
            qmod = tvm_sima.quantize(mod, params, work_dir=out, progress=sys.stderr.isatty(), **extra)
    except ValueError as err:
        raise CliError(one_line(err)) from None
    _name_final_dir(out / "report.json", args.output)
    report = tvm_sima.quantize_report(qmod)
    print(f"quantized: {len(report.get('fused', []))} fused layer(s), {len(report.get('float_ops', []))} float op(s)")
    for grid in report.get("rescued", []):  # collapsed grids nothing saved are warnings already
        print(f"re-gridded {grid['tensor']}: {grid['choice']} ({grid['problem']})")
    found = report.get("mixed_precision")
    if found:
        print(f"mixed precision: {len(found['wide_tensors'])} tensor(s) at 16 bits, a 16-bit "
              f"operand in {100 * found['mac_fraction']:.1f} % of the MACs: output SQNR {found['sqnr_db']:.2f} dB on "
              f"{config.mixed_precision_samples} calibration batches (target {found['target_db']:.2f} dB"
              f"{'' if found['met'] else ', NOT met'})")
    return qmod, config


def _name_final_dir(report_file: pathlib.Path, output: str) -> None:
    """report.json names the run's directory: the ``--output`` it is renamed to, not the staging one."""
    if report_file.is_file():
        report = json.loads(report_file.read_text())
        report["work_dir"] = str(output)
        report_file.write_text(json.dumps(report, indent=2))


def _refuse_quantized(path: str, mod: Any) -> None:
    if is_quantized(op_counts(mod)):
        raise CliError(f"{path} is already quantized; use `tvm-sima convert` (or `tvm-sima build`)")


def _build(qmod: Any, out: pathlib.Path, offload: bool = True) -> None:
    import tvm_sima

    ex = tvm_sima.build(qmod, artifact_dir=str(out / "artifacts") if offload else None, offload=offload)
    ex.export_library(str(out / "model.so"))


def _calib_shapes(args: argparse.Namespace) -> Callable[[], dict[str, tuple[int, ...]]]:
    """The shapes of the first ``--calib`` batch, read only when a model's dynamic dimension needs them."""
    return lambda: data_shapes(args.model, args.calib, _data_options(args, _config(args.config)[1]))


def cmd_quantize(args: argparse.Namespace) -> None:
    from tvm_sima.cli_output import staged_output

    with staged_output(args.output) as staging:
        mod, params = load_model(args.model, args.input_shape, _calib_shapes(args))
        qmod, _ = _quantize(args, mod, params, staging)
        _build(qmod, staging)
    out = pathlib.Path(args.output)
    print(f"wrote {out / 'model.so'}, {out / 'artifacts'} and the run's files (report.json, qconfig.json, "
          f"layers.json, statistics.npz) in {out}")


def _progress(data: Any, label: str) -> Any:
    from tvm_sima.progress import Progress

    return Progress(data, label, sys.stderr.isatty())


def _metrics(names: Sequence[str]) -> dict[str, Any]:
    """Fresh output metrics by name (checked before the slow part)."""
    from tvm_sima.plugins import PluginError, get_metric

    try:
        return {name: get_metric(name) for name in names}
    except PluginError as err:
        raise CliError(str(err)) from None


def _default_metrics(main: Any, labelled: bool) -> list[str]:
    """The output metrics without ``--metric`` (:func:`tvm_sima.cli_report.default_metrics`).

    Prints the line saying why top1 is left out, when it is.
    """
    from tvm_sima.cli_report import default_metrics

    ty = main.ret_ty.fields[0] if hasattr(main.ret_ty, "fields") else main.ret_ty
    shape = getattr(ty, "shape", None)
    names, note = default_metrics([static(d) for d in shape or []], f"{ty.dtype}[{dims(ty)}]" if shape else "",
                                  labelled)
    if note:
        print(note)
    return names


def _compare(args: argparse.Namespace, mod: Any, params: dict, qmod: Any, evaluation: Any,
             config: Any) -> tuple[dict[str, list], list]:
    """Per-tensor metrics per ``--mode``, and the model's ``(float, quantized)`` outputs per batch."""
    from tvm_sima.cli_report import nonfinite_batch
    from tvm_sima.compare import compare_tensors

    modes = ["continuous", "isolated"] if args.mode == "both" else [args.mode]
    results: dict[str, list] = {}
    outputs: list = []
    executor = _ray_executor(args.ray) if args.ray else None  # shows its own progress, shard by shard
    try:
        for k, mode in enumerate(modes):  # the model outputs are the same in both modes: keep the first's
            data = evaluation if executor else _progress(evaluation, f"evaluation ({mode})")
            results[mode] = compare_tensors(mod, params, qmod, data, config, mode=mode,
                                            outputs=outputs if k == 0 else None, executor=executor)
    except ValueError as err:
        raise CliError(one_line(err)) from None
    bad = nonfinite_batch(outputs)
    if bad is not None:
        raise CliError(f"{args.eval}: batch {bad}: the float model's output holds NaN / Inf on finite input; "
                       "no metric can compare it (check the model and the scale of the data)")
    return results, outputs


def cmd_report(args: argparse.Namespace) -> None:
    from tvm_sima import quantize_report as tvm_sima_report
    from tvm_sima.cli_output import staged_output
    from tvm_sima.cli_report import output_scores, print_report
    from tvm_sima.html_report import write_report

    metrics = _metrics(args.metric) if args.metric else None  # unknown names fail before the slow part
    with staged_output(args.output) as staging:
        mod, params = load_model(args.model, args.input_shape, _calib_shapes(args))
        _refuse_quantized(args.model, mod)
        _, data_options = _config(args.config)
        evaluation = _dataset(args.eval, mod["main"], _data_options(args, data_options))  # before the slow part
        metrics = metrics or _metrics(_default_metrics(mod["main"], evaluation.labels is not None))
        qmod, config = _quantize(args, mod, params, staging)
        results, outputs = _compare(args, mod, params, qmod, evaluation, config)
        scores = output_scores(metrics, outputs, evaluation.labels)
        write_report(staging, results, model=str(args.model), eval_batches=len(evaluation), output_metrics=scores,
                     precision=tvm_sima_report(qmod).get("mixed_precision"))
    print_report(results, scores, len(outputs), evaluation.labels is not None)
    out = pathlib.Path(args.output)
    print(f"wrote {out / 'per_layer.json'} and {out / 'report.html'} (open it in a browser)")


def cmd_convert(args: argparse.Namespace) -> None:
    import tvm_sima
    from tvm_sima.cli_output import staged_output

    with staged_output(args.output) as staging:
        mod, _ = load_model(args.model, args.input_shape)
        if not is_quantized(op_counts(mod)):
            raise CliError(f"{args.model} is a float model; convert takes int8 TFLite or quantized ONNX models")
        converted, report = tvm_sima.convert(mod, args.mode)
        print(report.summary())
        _build(converted, staging)
        (staging / "convert_report.json").write_text(json.dumps(report.to_dict(), indent=1))
    out = pathlib.Path(args.output)
    print(f"wrote {out / 'model.so'}, {out / 'artifacts'}, {out / 'convert_report.json'}")


def cmd_build(args: argparse.Namespace) -> None:
    from tvm_sima.cli_output import staged_output

    with staged_output(args.output) as staging:
        _build(_build_input(args, staging), staging, offload=not args.no_offload)
    out = pathlib.Path(args.output)
    print(f"wrote {out / 'model.so'}" + (f" and {out / 'artifacts'}" if not args.no_offload else " (TIR only)"))


def _build_input(args: argparse.Namespace, staging: pathlib.Path) -> Any:
    """What ``build`` builds: a quantized model converted, a float one quantized from its statistics."""
    import tvm_sima

    mod, params = load_model(args.model, args.input_shape)
    if is_quantized(op_counts(mod)):
        qmod, report = tvm_sima.convert(mod, args.mode)
        print(report.summary())
        (staging / "convert_report.json").write_text(json.dumps(report.to_dict(), indent=1))
        return qmod
    if args.statistics is None:
        raise CliError(f"{args.model} is a float model: give --statistics DIR/statistics.npz from a "
                       "`tvm-sima quantize` run (or quantize it with --calib)")
    if not pathlib.Path(args.statistics).is_file():
        raise CliError(f"statistics file {args.statistics} not found")
    return _quantize(args, mod, params, staging, statistics=args.statistics)[0]


EXAMPLES = """examples (from the repository root):
  tvm-sima inspect tests/fixtures/digits_cnn_float.onnx
  tvm-sima quantize tests/fixtures/digits_cnn_float.onnx --calib tests/fixtures/digits_calib_nchw.npy --output build/q
  tvm-sima report tests/fixtures/digits_cnn_float.onnx --calib tests/fixtures/digits_calib_nchw.npy \\
      --eval tests/fixtures/digits_eval_nchw.npz --output build/r      # then open build/r/report.html
  tvm-sima convert tests/fixtures/digits_int8.tflite --output build/c
  tvm-sima build tests/fixtures/digits_cnn_float.onnx --statistics build/q/statistics.npz --output build/b

exit status: 0 done; 1 error, one line on stderr (TVM_SIMA_DEBUG=1 adds the traceback of an unexpected
one); 2 usage error; 130 interrupted. A failed run leaves --output DIR as it was.
"""

OUTPUT_POLICY = ("; written to a temporary directory beside DIR and renamed to DIR at the end, so a failed run "
                 "leaves nothing; an existing DIR is replaced if empty or from an earlier run, else refused")


_DATA_HELP = ("DATA: .npy, .npz (one array per input, optional 'labels'), an image folder, file.py:function, "
              "or NAME:SOURCE for an installed dataset plugin")


def _command(sub: Any, name: str, run: Any, help_: str, model_help: str, output_help: Optional[str] = None,
             data: Sequence[tuple[str, str]] = (), mode_help: Optional[str] = None, config: bool = False,
             example: str = "") -> argparse.ArgumentParser:
    """One sub-command with the options its arguments ask for (data, --output, --config, --mode)."""
    p = sub.add_parser(name, help=help_, description=help_[0].upper() + help_[1:] + ".",
                       epilog=f"example:\n  {example}\n\n{_DATA_HELP if data else ''}".rstrip(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", help=model_help)
    for flag, text in data:
        p.add_argument(flag, required=True, metavar="DATA", help=text)
    if data:
        p.add_argument("--data-option", action="append", metavar="KEY=VALUE",
                       help="dataset option, repeatable (images: resize=256, crop=224x224, mean=0.485,0.456,0.406,"
                            " std=..., scale=...; python: keyword arguments)")
    if output_help is not None:
        p.add_argument("--output", required=True, metavar="DIR", help=output_help + OUTPUT_POLICY)
    if config:
        p.add_argument("--config", metavar="FILE",
                       help="qconfig options: .toml, .yaml or .json (e.g. calibrate_mode = 'mse'; "
                            "layer_config = 'layers.json'); a 'dataset' table holds data options")
    if config and data:
        p.add_argument("--min-sqnr", type=float, metavar="DB",
                       help="mixed precision: give 16 bits to the cheapest activations that bring the output SQNR "
                            "to DB on the first calibration batches (qconfig mixed_precision_sqnr_db)")
        p.add_argument("--preset", choices=sorted(PRESETS), help="a qconfig preset (accurate: " +
                       ", ".join(f"{k}={v}" for k, v in PRESETS["accurate"].items()) + "; slower)")
    if mode_help is not None:
        p.add_argument("--mode", choices=REQUANT_MODE_NAMES, default="tflite", help=mode_help)
    p.add_argument("--input-shape", action="append", metavar="NAME=SHAPE",
                   help="shape of a dynamic input, NAME=D1,D2,... (repeatable)")
    p.set_defaults(run=run)
    return p


_RAY_HELP = ("on a Ray cluster (the ray extra): auto (the cluster this machine is in), ray://HOST:10001, or local "
             "(a new one here); a --calib folder of .npy files or of images is read by the workers")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tvm-sima", description="Post-training quantization and an NPU converter on Apache TVM (Relax).",
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(*args: Any, **kwargs: Any) -> argparse.ArgumentParser:
        return _command(sub, *args, **kwargs)

    onnx, npy, npz = ("tests/fixtures/digits_cnn_float.onnx", "tests/fixtures/digits_calib_nchw.npy",
                      "tests/fixtures/digits_eval_nchw.npz")
    calib = ("--calib", "calibration data (see DATA below)")
    convert_mode = ("tflite (= multiplier_shift): Q31 multiplier + shift, bit-exact with LiteRT; "
                    "shift: scale folded into weights")
    command("inspect", cmd_inspect, "show a model's inputs, ops, and what would be quantized / converted / offloaded",
            "a .onnx, .tflite or .pt2 file, float or quantized", mode_help="requantization of convert",
            example=f"tvm-sima inspect {onnx}")
    quantize = command("quantize", cmd_quantize, "quantize a float model on calibration data and build it for the NPU",
                       "a float .onnx, .tflite or .pt2 file", "where model.so, artifacts/ and the run's files go",
                       [calib], config=True, example=f"tvm-sima quantize {onnx} --calib {npy} --output build/q")
    quantize.add_argument("--ray", metavar="ADDRESS", help="calibrate " + _RAY_HELP + ". The same model.so as "
                                                                                     "without --ray")
    report = command("report", cmd_report, "quantize, then compare float and quantized tensors layer by layer",
                     "a float .onnx, .tflite or .pt2 file", "where per_layer.json, report.html and the run's files go",
                     [calib, ("--eval", "evaluation data (labels, if any, are used by top-k)")], config=True,
                     example=f"tvm-sima report {onnx} --calib {npy} --eval {npz} --output build/r")
    report.add_argument("--mode", choices=("continuous", "isolated", "both"), default="both",
                        help="continuous: the quantized program feeds itself; isolated: every tensor's producer is "
                             "fed the float values (default: both)")
    report.add_argument("--ray", metavar="ADDRESS",
                        help="calibrate and evaluate " + _RAY_HELP + "; the --eval batches are read here (labels "
                             "stay here) and travel with their shards. The same per_layer.json as without --ray")
    report.add_argument("--metric", action="append", metavar="NAME",
                        help=f"output metric, repeatable (default: {', '.join(DEFAULT_METRICS)}; also top5, or "
                             "any installed 'tvm_sima.metrics' entry point)")
    command("convert", cmd_convert, "convert an int8 TFLite / quantized ONNX / PT2E model and build it for the NPU",
            "an int8 .tflite, a quantized (QDQ / QOperator) .onnx or a PT2E-quantized .pt2 file",
            "where model.so, artifacts/ and the report go", mode_help=convert_mode,
            example="tvm-sima convert tests/fixtures/digits_int8.tflite --output build/c")
    build = command("build", cmd_build, "build for the NPU without data: a float model from saved statistics, "
                    "a quantized one by converting it", "a .onnx, .tflite or .pt2 file, float or quantized",
                    "where model.so and artifacts/ go", config=True, mode_help=convert_mode,
                    example=f"tvm-sima build {onnx} --statistics build/q/statistics.npz --output build/b")
    build.description = textwrap.fill(
        "Build for the NPU without calibration data. A quantized model (int8 TFLite, QDQ / QOperator ONNX) is "
        "converted to integer sima ops (--mode) and built, as `convert` does. A float model is quantized from "
        "the statistics.npz of an earlier `quantize` run, with the --config options (e.g. layer_config = an "
        "edited layers.json: skip a layer, change its bits), so a per-layer fix needs no data and no "
        "recalibration. Writes model.so and artifacts/ (none with --no-offload), plus convert_report.json "
        "(quantized model) or the run's files (float model).", width=88, break_on_hyphens=False)
    build.add_argument("--statistics", metavar="FILE",
                       help="statistics.npz of a `tvm-sima quantize` run (float models)")
    build.add_argument("--no-offload", action="store_true", help="legalize everything to TIR (no sima codegen)")
    return parser


_SHAPE_NOTES = "tvm_sima.frontends.loader"  # its INFO lines say which shape a dynamic dimension was given


class _StderrHandler(logging.Handler):
    """Warnings of the library, and the loader's shape notes, as ``tvm-sima: message`` on the current stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or record.name == _SHAPE_NOTES

    def emit(self, record: logging.LogRecord) -> None:
        print(f"tvm-sima: {record.getMessage()}", file=sys.stderr)


@contextlib.contextmanager
def _log_to_stderr() -> Iterator[None]:
    """While a command runs, :class:`_StderrHandler` prints the ``tvm_sima`` loggers' records."""
    package, notes = logging.getLogger("tvm_sima"), logging.getLogger(_SHAPE_NOTES)
    handler, level = _StderrHandler(), notes.level
    package.addHandler(handler)
    notes.setLevel(logging.INFO)
    try:
        yield
    finally:
        package.removeHandler(handler)
        notes.setLevel(level)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Run the command line; returns the exit status.

    0 on success; 1 on any error, printed as one line ``tvm-sima: error: ...`` on stderr (an
    error no check anticipated is printed as its type and first message line; with the
    environment variable ``TVM_SIMA_DEBUG=1`` its traceback too); 2 on a usage error (argparse);
    130 on Ctrl-C, quietly. A failed run leaves its ``--output`` as it was (:mod:`tvm_sima.cli_output`).
    """
    args = _parser().parse_args(argv)
    try:
        with _log_to_stderr():
            args.run(args)
    except CliError as err:  # also an OutputError (cli_output)
        print(f"tvm-sima: error: {one_line(err)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `tvm-sima inspect m.onnx | head`: stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except Exception as err:  # last resort: one line, never a traceback (unless TVM_SIMA_DEBUG)
        print(f"tvm-sima: error: {unexpected(err, args.command, getattr(args, 'model', ''))}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
