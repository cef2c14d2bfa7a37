"""The real-model zoo end to end: each model through import, float build, quantize, int8 build and run, on real inputs.

For each zoo model (``tools/fetch_zoo.py`` puts them in ``build/zoo``) and EfficientNet-Lite0
(``make models``), on real inputs sized and normalised as the model's own pipeline does
(``benchmarks/zoo_data.py``; calibration and evaluation images disjoint), it prints: each stage's
success and time, the share of conv/dense multiply-accumulates in integer ops, the ops left in
float with their reason (``tvm_sima.quantize_report``), the int8-vs-float SQNR of every output
and the model's task metric (``benchmarks/zoo_metrics.py``) for the float model, tvm-sima's int8
program and the peer quantizers side by side (``benchmarks/zoo_peers.py``: onnxruntime's
``quantize_static`` for the ONNX models, ai-edge-quantizer for the TFLite ones). The float
reference is the model's own runtime (onnxruntime / LiteRT), or tvm-sima's float build where that
runtime cannot run the model. A failing stage is reported with its one-line reason; the run goes on.

The converter route runs on the peers' own quantized models (``benchmarks/zoo_convert.py``): the
onnxruntime QDQ Percentile model through ``load_model`` -> ``convert`` -> ``build`` against
onnxruntime ``ORT_DISABLE_ALL``, the ai-edge-quantizer int8 model through ``convert(mode="tflite")``
against LiteRT ``BUILTIN_REF``: output LSB (max, mean, exact share), ops converted / left float,
the task metric; with ``--per-op``, every quantized activation of the ONNX models too, each op fed
the oracle's codes of its inputs (``benchmarks/zoo_per_op.py``, alone: ``bench_per_op.py``; max
LSB, tensors exact / within 1 LSB, the worst ones). It ends with two markdown tables (the zoo; the converter route)::

    .venv/bin/python tools/fetch_zoo.py && make models
    .venv/bin/python benchmarks/bench_zoo.py [--models blazeface,ppocr_det] [--calib 32] [--eval 64]
    .venv/bin/python benchmarks/bench_zoo.py --quick      # stages only: 4 / 4 inputs, no peers, no converter route
    .venv/bin/python benchmarks/bench_zoo.py --no-convert # without the converter route
    .venv/bin/python benchmarks/bench_zoo.py --per-op     # the converter route op by op (ONNX; 16-90 s a model)
    .venv/bin/python benchmarks/bench_zoo.py --min-sqnr 22 --no-peers  # with the mixed-precision search

The int8 program is built with ``offload=False`` (the TIR route: the same integers as the
offloaded C++ kernels, without compiling them; ``--offload`` builds them).
"""

from __future__ import annotations

import argparse
import collections
import json
import logging
import pathlib
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import zoo_metrics as zm
from zoo_convert import ConvertRun, convert_onnx, convert_tflite, vm_run
from zoo_data import MODELS, ZooModel
from zoo_macs import count_macs, wide_macs
from zoo_peers import Outputs, PeerRun, aeq_static, litert_run, one_line, ort_quantize_static, ort_run, ort_session

STAGES = ("import", "float build", "quantize", "int8 build", "run")
#: Default calibration / evaluation inputs per model (``ZooModel.n_eval`` overrides the second).
N_CALIB, N_EVAL = 32, 64


@dataclass
class Result:
    """Everything measured on one model."""

    name: str
    stages: dict[str, tuple[bool, float, str]] = field(default_factory=dict)  # stage -> (ok, seconds, error)
    reference: str = ""  # which runtime gave the float outputs
    ref: Optional[Outputs] = None
    ours: Optional[Outputs] = None
    float_vs_runtime_db: Optional[float] = None
    report: Optional[dict] = None
    macs: Optional[tuple[int, int]] = None  # (integer, float) multiply-accumulates per inference
    wide_macs: int = 0  # of the integer ones, those of layers with a 16-bit operand
    peers: list[PeerRun] = field(default_factory=list)
    converts: list[ConvertRun] = field(default_factory=list)  # the converter route on the peers' models
    labels: Optional[np.ndarray] = None
    notes: list[str] = field(default_factory=list)

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        """Run one stage, record its time and success; None when it fails."""
        start = time.perf_counter()
        try:
            value = fn()
        except Exception as err:  # noqa: BLE001 - the benchmark reports every failure and goes on
            self.stages[name] = (False, time.perf_counter() - start, one_line(err))
            return None
        self.stages[name] = (True, time.perf_counter() - start, "")
        return value


# -- one model -------------------------------------------------------------------------------------------------------

def runtime_float(model: ZooModel, inputs: list[np.ndarray]) -> tuple[str, Outputs]:
    if model.file.suffix == ".onnx":
        return "onnxruntime", ort_run(ort_session(str(model.file)), inputs)
    return "LiteRT", litert_run(model.file.read_bytes(), inputs)


def check_outputs(ref: Outputs, out: Outputs, who: str) -> Outputs:
    """``out`` if its outputs have the reference's count and sizes, else a ValueError naming them."""
    want, got = [r.size for r in ref[0]], [o.size for o in out[0]]
    if want != got:
        raise ValueError(f"{who} gives outputs of sizes {got}, the float model {want}")
    return [[o.reshape(r.shape) for r, o in zip(rs, os_, strict=True)] for rs, os_ in zip(ref, out, strict=True)]


def bench_tvm_sima(model: ZooModel, result: Result, calib: list[np.ndarray], evals: list[np.ndarray],
                   work: pathlib.Path, offload: bool) -> None:
    import tvm_sima

    loaded = result.stage("import", lambda: tvm_sima.load_model(model.file, input_shapes=model.input_shapes))
    if loaded is None:
        return
    mod, params = loaded
    float_out = result.stage("float build", lambda: vm_run(tvm_sima.build(mod, params=params, offload=False),
                                                           evals[:1] if result.ref else evals))
    if float_out is not None and result.ref is not None:
        checked = check_outputs(result.ref[:1], float_out, "float build")
        result.float_vs_runtime_db = zm.output_sqnr(result.ref[:1], checked, model.primary)
    elif float_out is not None:
        result.reference, result.ref = "tvm-sima float build", float_out
    qmod = result.stage("quantize", lambda: tvm_sima.quantize(mod, params, calib, work_dir=work / "tvm_sima",
                                                              progress=False))
    if qmod is None:
        return
    result.report = tvm_sima.quantize_report(qmod)
    try:
        result.macs = count_macs(qmod)
        result.wide_macs = wide_macs(qmod)
    except Exception as err:  # noqa: BLE001 - a shape this count does not know: say so, go on
        result.notes.append(f"MAC count fails: {one_line(err)}")
    executable = result.stage("int8 build", lambda: tvm_sima.build(qmod, offload=offload))
    if executable is None:
        return
    out = result.stage("run", lambda: vm_run(executable, evals))
    if out is not None and result.ref is not None:
        try:
            result.ours = check_outputs(result.ref, out, "the int8 program")
        except ValueError as err:
            result.notes.append(str(err))


#: The peer run whose quantized model the converter route takes, and the oracle it is compared with.
CONVERT_PEER = {".onnx": "QDQ Percentile, ORT_DISABLE_ALL", ".tflite": "static_wi8_ai8, LiteRT BUILTIN_REF"}


def converter_route(model: ZooModel, result: Result, evals: list[np.ndarray], work: pathlib.Path,
                    per_op: bool = False) -> list[ConvertRun]:
    """The peer's own quantized model (``CONVERT_PEER``) through load_model -> convert -> build -> run
    (with ``per_op``, an ONNX model is also checked op by op: ``zoo_per_op``)."""
    suffix = model.file.suffix
    run = next((r for r in result.peers if r.config == CONVERT_PEER[suffix] and r.model is not None), None)
    if run is None:
        why = next((r.error for r in result.peers if r.error), "no peer model")
        return [ConvertRun(f"{CONVERT_PEER[suffix].split(',')[0]}", "", error=f"no peer model: {why}")]
    label = f"{run.tool} {run.config.split(',')[0]}"
    if suffix == ".onnx":
        return [convert_onnx(str(run.model), label, evals, model.input_shapes, run.outputs, per_op=per_op)]
    return [convert_tflite(bytes(run.model), label, evals, work / "convert")]


def bench_model(model: ZooModel, n_calib: int, n_eval: int, peers: bool, offload: bool,
                convert: bool = True, per_op: bool = False) -> Result:
    result = Result(model.name)
    if not model.file.is_file():
        how = "tools/fetch_zoo.py" if "zoo" in model.file.parts else "make models"
        result.stages["import"] = (False, 0.0, f"FileNotFoundError: {model.file} (run {how})")
        return result
    data = result.stage("inputs", lambda: (model.inputs("calib", n_calib), model.inputs("eval", n_eval)))
    if data is None:
        return result
    (calib, _), (evals, result.labels) = data
    try:
        result.reference, result.ref = runtime_float(model, evals)
    except Exception as err:  # noqa: BLE001 - e.g. LiteRT lacks a custom op: tvm-sima's float build is the reference
        result.notes.append(f"float runtime cannot run the model: {one_line(err)}")
    with tempfile.TemporaryDirectory(prefix=f"bench_zoo_{model.name}_") as tmp:
        work = pathlib.Path(tmp)
        bench_tvm_sima(model, result, calib, evals, work, offload)
        if peers and model.file.suffix == ".onnx":
            result.peers = ort_quantize_static(str(model.file), calib, evals, work / "ort")
        elif peers:
            result.peers = aeq_static(str(model.file), calib, evals)
        if peers and convert:
            result.converts = converter_route(model, result, evals, work, per_op)
    if result.ref is not None:
        for run in result.peers:
            if run.outputs is not None:
                try:
                    run.outputs = check_outputs(result.ref, run.outputs, run.config)
                except ValueError as err:
                    run.outputs, run.error = None, str(err)
        for route in result.converts:
            if route.outputs is not None:
                try:
                    route.outputs = check_outputs(result.ref, route.outputs, "the converted peer model")
                except ValueError as err:
                    route.outputs, route.error = None, str(err)
    return result


# -- reporting -------------------------------------------------------------------------------------------------------

def best_peer(model: ZooModel, result: Result) -> Optional[PeerRun]:
    """The peer configuration with the highest SQNR on the table's output."""
    runs = [r for r in result.peers if r.outputs is not None]
    if result.ref is None or not runs:
        return None
    return max(runs, key=lambda r: zm.output_sqnr(result.ref, r.outputs, model.primary))


def _metric(model: ZooModel, result: Result, outputs: Optional[Outputs], index: int = 0) -> str:
    if outputs is None or result.ref is None:
        return "-"
    metric = model.metrics[index]
    return metric.fmt.format(metric.fn(result.ref, outputs, result.labels))


def _db(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.2f} dB"


def _float_ops(report: Optional[dict]) -> collections.Counter:
    return collections.Counter((f["op"], f["reason"]) for f in (report or {}).get("float_ops", []))


def print_result(model: ZooModel, result: Result) -> None:
    print(f"\n== {model.name} ({model.file.name}): {model.data}; float reference: {result.reference or 'none'}")
    for name in ("inputs", *STAGES):
        if name in result.stages and (name != "inputs" or not result.stages[name][0]):
            ok, seconds, error = result.stages[name]
            print(f"  {name:12s} {'ok  ' if ok else 'FAILS'} {seconds:7.1f} s  {error}")
    if result.float_vs_runtime_db is not None:
        print(f"  float build vs {result.reference}: {_db(result.float_vs_runtime_db)}")
    if result.report is not None:
        print(f"  {len(result.report['fused'])} fused layers, {len(result.report['float_ops'])} ops left in float")
        for (op, reason), n in _float_ops(result.report).most_common():
            print(f"    {n:3d} x {op}: {reason}")
        depthwise = result.report.get("depthwise_inputs") or []
        if depthwise:
            wide = [f"{d['layer']} ({_db(d['loss_db'])})" for d in depthwise if d["bits"] == 16]
            kept = max([d["loss_db"] for d in depthwise if d["bits"] == 8 and d["loss_db"] is not None], default=0.0)
            print(f"  depthwise convs reading 16-bit codes: {len(wide)} of {len(depthwise)} {', '.join(wide)}; "
                  f"largest loss kept at 8 bits {kept:.1f} dB")
        found = result.report.get("mixed_precision")
        if found:
            met = "" if found["met"] else ", not met"
            print(f"  mixed precision: {len(found['wide_tensors'])} tensors at 16 bits, "
                  f"{100 * found['mac_fraction']:.2f} % of the MACs have a 16-bit operand; "
                  f"{found['sqnr_db']:.2f} dB on the calibration batches (target {found['target_db']:.2f} dB{met}), "
                  f"{found['seconds']:.0f} s")
    if result.macs is not None:
        integer, floating = result.macs
        print(f"  conv/dense MACs: {integer / 1e6:.1f} M integer ({result.wide_macs / 1e6:.1f} M with a 16-bit "
              f"operand), {floating / 1e6:.1f} M float")
    for note in result.notes:
        print(f"  note: {note}")
    if result.ref is None:
        sys.stdout.flush()
        return
    shapes = [list(r.shape) for r in result.ref[0]]
    for label, outputs in [("tvm-sima", result.ours)] + [(f"{r.tool} {r.config}", r.outputs) for r in result.peers]:
        if outputs is None:
            continue
        sqnr = ", ".join(f"{shape}: {zm.output_sqnr(result.ref, outputs, i):.2f} dB" for i, shape in enumerate(shapes))
        tasks = ", ".join(f"{m.label} {_metric(model, result, outputs, i)}" for i, m in enumerate(model.metrics))
        print(f"  {label}: SQNR {sqnr}; {tasks}")
    own = ", ".join(f"{m.label} {_metric(model, result, result.ref, i)}" for i, m in enumerate(model.metrics))
    print(f"  float: {own}")
    for run in result.peers:
        status = f"FAILS {run.error}" if run.error else f"calib+quant {run.seconds:.1f} s"
        print(f"  {run.tool} {run.config}: {status}")
    for route in result.converts:
        print_convert(model, result, route)
    sys.stdout.flush()


def print_convert(model: ZooModel, result: Result, route: ConvertRun) -> None:
    head = f"  converter route on {route.peer}"
    if route.converted is not None:
        head += f": {route.converted} converted / {route.left_float} float ops"
    if route.error:
        print(f"{head}: FAILS {route.error}")
        return
    print(f"{head}, {route.seconds:.1f} s")
    for (op, reason), n in collections.Counter(route.float_ops).most_common():
        print(f"    {n:3d} x {op} left float: {reason}")
    for k, s in enumerate(route.stats):
        print(f"    output {k}: vs {route.oracle} max {s.max:g} {s.unit}, mean {s.mean:.3f}, "
              f"exact {100 * s.exact:.1f} %")
    tasks = ", ".join(f"{m.label} {_metric(model, result, route.outputs, i)}" for i, m in enumerate(model.metrics))
    print(f"    {tasks}")
    if route.per_op is not None:
        check = route.per_op
        print(f"    per op (isolated): {check.summary()}, {len(check.unchecked)} unchecked, {check.seconds:.0f} s")
        for t in check.worst(3):
            ratio = "" if t.scale_ratio is None else f", input / output scale {t.scale_ratio:.2f}"
            print(f"      {t.max} LSB ({100 * t.exact:.2f} % exact) {t.name}: {t.op} -> {t.converted}{ratio}")


def _stages_cell(result: Result) -> str:
    failed = [n for n in ("inputs", *STAGES) if n in result.stages and not result.stages[n][0]]
    seconds = sum(t for _ok, t, _e in result.stages.values())
    if failed:
        return f"{failed[0]} FAILS"
    done = sum(1 for n in STAGES if n in result.stages)
    return f"{done}/{len(STAGES)} ok, {seconds:.0f} s"


def table_row(model: ZooModel, result: Result) -> str:
    if result.macs is not None and sum(result.macs):
        mac = f"{100 * result.macs[0] / sum(result.macs):.1f} %"
        mac += f" ({100 * result.wide_macs / sum(result.macs):.1f} % 16-bit)" if result.wide_macs else ""
    else:
        mac = "-"
    ops = _float_ops(result.report)
    by_op = collections.Counter()
    for (op, _reason), n in ops.items():
        by_op[op.removeprefix("relax.")] += n
    float_ops = "-" if result.report is None else (", ".join(f"{n} {op}" for op, n in by_op.most_common()) or "0")
    ours = None if result.ours is None or result.ref is None else zm.output_sqnr(result.ref, result.ours, model.primary)
    peer = best_peer(model, result)
    peer_db = "-" if peer is None else f"{_db(zm.output_sqnr(result.ref, peer.outputs, model.primary))} ({peer.config})"
    if not result.peers:
        peer_db = "-"
    elif peer is None:
        peer_db = f"fails: {result.peers[0].error[:60]}"
    task = " / ".join([_metric(model, result, result.ref), _metric(model, result, result.ours),
                       _metric(model, result, None if peer is None else peer.outputs)])
    return (f"| {model.name} | {_stages_cell(result)} | {mac} | {float_ops} | {_db(ours)} | {peer_db} "
            f"| {_gap_cell(model, result, peer)} | {model.metrics[0].label}: {task} |")


def _gap_cell(model: ZooModel, result: Result, peer: Optional[PeerRun]) -> str:
    """Our SQNR minus the best peer's, with its 95 % paired-bootstrap interval over the evaluation inputs."""
    if peer is None or peer.outputs is None or result.ours is None or result.ref is None:
        return "-"
    try:
        gap, low, high = zm.sqnr_gap(result.ref, result.ours, peer.outputs, model.primary)
    except ValueError:
        return "-"
    return f"{gap:+.2f} dB [{low:+.2f}, {high:+.2f}]"


TABLE_HEAD = ("| model | stages | int MAC % | float ops | SQNR ours | SQNR peer best | ours - peer (95 %) "
              "| task metric: float / ours / peer |\n|---|---|---|---|---|---|---|---|")


CONVERT_HEAD = ("| model | peer model | converted / float ops | max LSB vs oracle | mean LSB | exact % "
                "| per-op max LSB (isolated) | task metric |\n|---|---|---|---|---|---|---|---|")


def per_op_cell(route: ConvertRun) -> str:
    """``"1 (145 tensors: 70 exact, 145 <= 1; worst Conv 3 LSB)"``, or "-" when not checked."""
    check = route.per_op
    if check is None:
        return "-"
    cell = f"{check.max} ({len(check.tensors)} tensors: {check.within(0)} exact, {check.within(1)} <= 1"
    over = [t for t in check.worst(2) if t.max > 1]
    if over:
        cell += "; " + ", ".join(f"{t.op} {t.max}" for t in over)
    return cell + ")"


def convert_rows(model: ZooModel, result: Result) -> list[str]:
    """The second table's rows: the converter route on each peer model of ``result``."""
    rows = []
    for route in result.converts:
        ops = "-" if route.converted is None else f"{route.converted} / {route.left_float}"
        pooled = route.pooled()
        if route.error or pooled is None:
            rows.append(f"| {model.name} | {route.peer} | {ops} | fails: {route.error[:80]} | - | - | - | - |")
            continue
        unit = "" if pooled.unit == "LSB" else " (abs)"
        task = f"{model.metrics[0].label}: {_metric(model, result, route.outputs)}" if model.metrics else "-"
        rows.append(f"| {model.name} | {route.peer} | {ops} | {pooled.max:g}{unit} vs {route.oracle} "
                    f"| {pooled.mean:.3f} | {100 * pooled.exact:.1f} | {per_op_cell(route)} | {task} |")
    return rows


def _qconfig_json(text: str) -> dict:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not JSON: {err}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"a JSON object of qconfig settings, got {text!r}")
    return value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--calib", type=int, default=None, help=f"calibration inputs per model (default {N_CALIB})")
    parser.add_argument("--eval", type=int, default=None,
                        help=f"evaluation inputs per model (default {N_EVAL}; BlazeFace 100)")
    parser.add_argument("--quick", action="store_true", help="stages only: 4 calibration / 4 evaluation inputs, "
                        "no peers")
    parser.add_argument("--no-peers", action="store_true", help="skip onnxruntime / ai-edge-quantizer")
    parser.add_argument("--no-convert", action="store_true", help="skip the converter route on the peers' "
                        "quantized models (it needs the peers)")
    parser.add_argument("--per-op", action="store_true", help="check the converter route op by op: every quantized "
                        "activation of the ONNX peer model, isolated (benchmarks/zoo_per_op.py)")
    parser.add_argument("--offload", action="store_true", help="build the int8 program with the offloaded C++ kernels")
    parser.add_argument("--min-sqnr", type=float, metavar="DB",
                        help="quantize with the mixed-precision search: qconfig(mixed_precision_sqnr_db=DB)")
    parser.add_argument("--preset", help="quantize with qconfig(preset=NAME), e.g. accurate")
    parser.add_argument("--qconfig", type=_qconfig_json, default={}, metavar="JSON",
                        help='more qconfig settings, a JSON object, e.g. \'{"scale_search": true}\'')
    parser.add_argument("--json", type=pathlib.Path, help="also write the table's numbers here")
    args = parser.parse_args()
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    n_calib = args.calib or (4 if args.quick else N_CALIB)
    logging.basicConfig(level=logging.WARNING, format="%(message)s")
    logging.getLogger("tvm_sima").setLevel(logging.ERROR)
    import tvm_sima  # sets the thread count before TVM's runtime starts

    settings = {**({} if args.preset is None else {"preset": args.preset}), **args.qconfig,
                **({} if args.min_sqnr is None else {"mixed_precision_sqnr_db": args.min_sqnr})}
    try:  # a bad setting fails here, before any model runs
        tvm_sima.current_qconfig().replace(**settings)
    except ValueError as err:
        parser.error(f"--qconfig / --preset: {err}")
    if settings:
        print(f"qconfig: {json.dumps(settings)}")
    start, rows, records, converts = time.perf_counter(), [], [], []
    for name in names:
        model = MODELS[name]
        n_eval = args.eval or (4 if args.quick else model.n_eval or N_EVAL)
        with tvm_sima.qconfig(**settings):
            result = bench_model(model, n_calib, n_eval, peers=not (args.quick or args.no_peers),
                                 offload=args.offload, convert=not args.no_convert, per_op=args.per_op)
        print_result(model, result)
        rows.append(table_row(model, result))
        converts += convert_rows(model, result)
        records.append({"model": name, "qconfig": settings, "calib": n_calib, "eval": n_eval, "row": rows[-1],
                        "stages": result.stages,
                        "macs": result.macs, "wide_macs": result.wide_macs, "convert_rows": convert_rows(model, result),
                        "per_op": [r.per_op.to_dict() for r in result.converts if r.per_op is not None]})
    seconds = time.perf_counter() - start
    counts = sorted({r["eval"] for r in records})
    print(f"\n{n_calib} calibration / {', '.join(map(str, counts))} evaluation inputs per model, "
          f"{seconds:.0f} s in all\n")
    print(TABLE_HEAD)
    print("\n".join(rows))
    if converts:
        print("\nconverter route on the peer's quantized model (load_model -> convert -> build, offload=False):\n")
        print(CONVERT_HEAD)
        print("\n".join(converts))
    if args.json:
        args.json.write_text(json.dumps({"seconds": seconds, "models": records}, indent=2))


if __name__ == "__main__":
    main()
