"""Tutorial 7: your own BYOC codegen on tvm-sima's integer programs, reading every op and every qparam.

For a backend engineer whose NPU is not tvm-sima's ``sima``: how to take a quantized program,
offload the parts your hardware runs to a codegen of your own, and read in it everything a
real codegen needs — each op's integer attributes (per-channel shift, multiplier, rounding, zero
points, clip range, padding, strides, groups), its int8 weights and int32 bias, and the
``sima.quantize_info`` (name, scale, zero point, dtype) of every tensor.

1. Quantize the bundled float ONNX CNN (as tutorial 6) into an integer program of ``sima.conv2d``
   / ``sima.dense`` and int8 layout ops, each result followed by its ``sima.quantize_info``.
2. Partition for a made-up NPU, ``toy_npu``, with patterns of our own (``FuseOpsByPattern`` +
   ``MergeCompositeFunctions``, as ``tvm_sima.codegen.partition_for_sima`` does for ``sima``):
   each pattern is an op *with its quantize_info*, so every composite carries its output's
   qparams; a check function states the hardware rules (int8 in and out, windows up to 5x5 and
   strides up to 2). Unlike the ``sima`` partitioner, ours also takes the int8 layout ops
   (``permute_dims``, ``reshape``), so the whole integer part becomes one region; quantize and
   dequantize stay on the host. A codegen sees only its regions, so the quantize_info of each
   region *input* (it follows the producer, outside the region) is attached to the region as a
   function attribute before the codegen runs.
3. ``relax.ext.toy_npu``, registered with ``tvm_ffi.register_global_func``, is what
   ``relax.transform.RunCodegen`` calls with the regions. It walks each region's composite
   functions, checks the program is self-consistent (every zero point an op was given is the
   quantize_info's of that tensor), and prints the op and tensor tables a codegen would turn into
   its instruction stream.
4. The check: the numbers read are all the NPU needs. The "compiled" region is a NumPy program
   built from them alone (``tvm_sima.math``: exact integer accumulation, then
   ``requantize`` with the read multiplier / shift / rounding); the Relax VM runs the model
   calling it, and its outputs must equal tvm-sima's own build (pure TIR) bit for bit on the 64
   bundled held-out digits. The logits must equal ``scale * (q - zero_point)`` of the region's
   int8 output with the read quantize_info, and ``tvm_sima.read_quantize_info`` of the built
   executable must list the same qparams.

Why a NumPy "kernel": a real codegen returns runtime modules (``relax.ext.sima`` in
``tvm_sima/codegen/byoc.py`` returns a ``CSourceModule`` of C++ per region, compiled with the
host code; see ``docs/prototypes/byoc_tvm027.md``). Emitting and compiling code is not what this
tutorial is about (tutorial 5 builds, exports and deploys the ``sima`` one), so this codegen
returns no module and registers, under each region's global symbol, a Python function; the VM
finds it in the global function registry at run time. That runs in this process only:
``export_library`` still writes a ``.so``, but a fresh process cannot create a VM from it
("Cannot find ffi::Function <region symbol>"): the region is not in it.

Run:  .venv/bin/python tutorials/07_read_quantize_info_in_a_codegen.py [--requant-mode multiplier_shift]
"""

from __future__ import annotations

import argparse
import json
import logging
import pathlib
import tempfile
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

import tvm_sima
import tvm_sima.ops  # noqa: F401  (registers the sima.* ops the patterns name)
from tvm_sima import math as sm
from tvm_sima.quantize_info import QuantizeInfo, RecordQuantizeInfo

ROOT = pathlib.Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "tests" / "fixtures"
CODEGEN = "toy_npu"  # composite names "toy_npu.*" route to the global function "relax.ext.toy_npu"
INPUTS_ATTR = "toy_npu.input_quantize_info"  # the region inputs' quantize_info, as JSON

# ------------------------------------------------------------------------------------ 2. partition


def toy_npu_supports(ctx: relax.transform.PatternCheckContext) -> bool:
    """The toy NPU's rules: int8 in and out ("int8-io"); NCHW convolutions ("layout") with windows up to
    5x5 and strides up to 2 ("window"). False keeps the op on the host."""
    call = ctx.annotated_expr["op"]
    if str(call.args[0].ty.dtype) != "int8" or str(call.ty.dtype) != "int8":  # int8-io
        return False
    if call.op.name == "sima.conv2d":
        if str(call.attrs["data_layout"]) != "NCHW":  # layout
            return False
        kernel = [int(call.args[1].ty.shape[i]) for i in (2, 3)]  # OIHW
        return max(kernel) <= 5 and max(int(s) for s in call.attrs["strides"]) <= 2  # window
    return True


def _with_info(op: Any) -> Any:
    return is_op("sima.quantize_info")(op)


CONV = is_op("sima.conv2d")(wildcard(), is_const(), is_const())  # bias forms (add bias-free ones if needed)
DENSE = is_op("sima.dense")(wildcard(), is_const(), is_const())
PERMUTE = is_op("relax.permute_dims")(wildcard())
RESHAPE = is_op("relax.reshape")(wildcard(), wildcard())
#: (composite name, pattern, annotations, check), in priority order.
PATTERNS = [(f"{CODEGEN}.{name}", _with_info(op), {"op": op}, toy_npu_supports)
            for name, op in (("conv2d", CONV), ("dense", DENSE), ("permute_dims", PERMUTE), ("reshape", RESHAPE))]


def partition_for_toy_npu(mod: tvm.IRModule) -> tvm.IRModule:
    """Offload what the toy NPU runs; attach each region's input quantize_info (see the docstring)."""
    mod = relax.transform.FuseOpsByPattern(PATTERNS, bind_constants=True, annotate_codegen=False)(mod)
    mod = relax.transform.MergeCompositeFunctions()(mod)
    producers = {b.var: b.value for block in mod["main"].body.blocks for b in block.bindings}
    info_op = tvm.ir.Op.get("sima.quantize_info")
    for gvar, func in list(mod.functions.items()):
        if not (isinstance(func, relax.Function) and func.attrs and str(func.attrs.get("Codegen", "")) == CODEGEN):
            continue
        calls = [v for v in producers.values() if isinstance(v, relax.Call) and v.op.same_as(gvar)]
        infos = []
        for arg in calls[0].args:
            producer = producers.get(arg)
            if not (isinstance(producer, relax.Call) and producer.op.same_as(info_op)):
                raise ValueError(f"{gvar.name_hint}: input {arg.name} has no quantize_info")
            infos.append(QuantizeInfo.from_attrs(producer.attrs).to_json())
        mod[gvar] = func.with_attr(INPUTS_ATTR, json.dumps(infos))
    return mod

# ------------------------------------------------------------------------------------ 3. codegen


@dataclass
class NpuOp:
    """One op as the codegen reads it: the composite's op call, its weights and its output's qparams."""

    kind: str                      # "conv2d", "dense", "permute_dims", "reshape" (the composite name)
    inputs: list[str]              # tensor names (the quantize_info names)
    output: QuantizeInfo
    attrs: dict                    # the op's attributes as Python values
    weight: Optional[np.ndarray] = None
    bias: Optional[np.ndarray] = None


@dataclass
class NpuProgram:
    """A region as the codegen reads it: ops in order, and every tensor's quantize_info by name."""

    symbol: str
    inputs: list[str]
    outputs: list[str]
    ops: list[NpuOp] = field(default_factory=list)
    tensors: dict[str, QuantizeInfo] = field(default_factory=dict)


def _attrs(call: relax.Call) -> dict:
    """DictAttrs (sima ops) by key; typed attrs (Relax ops) by the fields this NPU uses."""
    if call.op.name == "relax.permute_dims":
        return {"axes": [int(a) for a in call.attrs.axes]}
    if call.op.name == "relax.reshape":
        return {"shape": [int(d) for d in call.ty.shape]}
    return {key: (list(v) if isinstance(v, (tuple, tvm_ffi.Array)) else v)
            for key, v in ((k, call.attrs[k]) for k in call.attrs.keys())}


def read_region(region: relax.Function) -> NpuProgram:
    """Walk a merged region: each binding is a composite function, or a call of one."""
    symbol = str(region.attrs["global_symbol"])
    program = NpuProgram(symbol, [], [])
    names: dict = {}
    for param, item in zip(region.params, json.loads(str(region.attrs[INPUTS_ATTR])), strict=True):
        info = QuantizeInfo.from_attrs(item)
        names[param], program.tensors[info.name] = info.name, info
        program.inputs.append(info.name)
    composites: dict = {}
    for block in region.body.blocks:
        for binding in block.bindings:
            if isinstance(binding.value, relax.Function):  # R.func_attr({"Composite": "toy_npu.conv2d"})
                composites[binding.var] = binding.value
                continue
            composite = composites[binding.value.op]
            op_call, info_call = (b.value for b in composite.body.blocks[0].bindings)  # the pattern's two calls
            info = QuantizeInfo.from_attrs(info_call.attrs)
            consts = [a.value.numpy() for a in op_call.args[1:] if isinstance(a, tvm.ir.GenericConst)]
            program.ops.append(NpuOp(str(composite.attrs["Composite"]).split(".", 1)[1],
                                     [names[a] for a in binding.value.args], info, _attrs(op_call), *consts))
            names[binding.var], program.tensors[info.name] = info.name, info
    if region.body.body not in names:
        raise ValueError(f"{symbol}: toy_npu handles regions with one output, got {region.body.body}")
    program.outputs = [names[region.body.body]]
    check_consistent(program)
    return program


def zero_point_in_bias(op: NpuOp) -> bool:
    """SiMa's shift-only fold: ``b' = round(b * r * 2**N) - zp_in * sum(w') + zp_out * 2**N``, so the op's
    ``output_zero_point`` is 0 and the tensor's zero point (its quantize_info's) is in the bias."""
    return op.attrs["multiplier"] == [1] and op.attrs["output_zero_point"] == 0 and op.output.zero_point[0] != 0


def check_consistent(program: NpuProgram) -> None:
    """What a backend must be able to rely on: the zero points an op was given are its tensors' qparams."""
    for op in program.ops:
        source, out = program.tensors[op.inputs[0]], op.output
        where = f"{program.symbol}: {op.kind} -> {out.name}"
        if op.kind in ("conv2d", "dense"):
            a = op.attrs
            if a["input_zero_point"] != source.zero_point[0] or \
                    not (a["output_zero_point"] == out.zero_point[0] or zero_point_in_bias(op)):
                raise ValueError(f"{where}: zero points {a['input_zero_point']} / {a['output_zero_point']}, "
                                 f"quantize_info {source.zero_point} / {out.zero_point}")
            if a["out_dtype"] != out.dtype or not out.qmin <= a["qmin"] <= a["qmax"] <= out.qmax:
                raise ValueError(f"{where}: {a['out_dtype']} [{a['qmin']}, {a['qmax']}] outside the quantize_info's "
                                 f"{out.dtype} [{out.qmin}, {out.qmax}]")
        elif (source.scale, source.zero_point) != (out.scale, out.zero_point):
            raise ValueError(f"{where}: a layout op changed the qparams {source.scale} -> {out.scale}")


def _range(values: list[int]) -> str:
    return f"{values[0]}" if min(values) == max(values) else f"{min(values)}..{max(values)} ({len(values)} ch)"


def print_tables(program: NpuProgram, constants: int) -> None:
    print(f"region {program.symbol[:60]}... ({len(program.ops)} ops, {constants} constants)")
    print(f"  tensors: {'name':22} {'kind':10} {'dtype':5} {'scale':>9} {'zp':>5}  {'clip range':>17}")
    for t in program.tensors.values():
        print(f"           {t.name:22} {t.kind:10} {t.dtype:5} {t.scale[0]:9.6f} {t.zero_point[0]:5d}  "
              f"[{t.clip_min:7.3f}, {t.clip_max:7.3f}]")
    print(f"  ops: {'#':>2} {'op':12} {'input -> output':44} {'zp in/out':>10}  {'shift':16} {'multiplier':30} "
          f"{'rounding':8} weight, bias")
    for k, op in enumerate(program.ops):
        a = op.attrs
        flow = f"{op.inputs[0]} -> {op.output.name}"
        if op.weight is None:
            detail = f"axes {a['axes']}" if "axes" in a else f"shape {a['shape']}"
            print(f"       {k:2d} {op.kind:12} {flow:44} {'':>10}  {detail}")
            continue
        weights = f"{op.weight.dtype}{list(op.weight.shape)}, {op.bias.dtype}[{op.bias.size}]"
        zps = f"{a['input_zero_point']}/{a['output_zero_point']}" + ("*" if zero_point_in_bias(op) else "")
        print(f"       {k:2d} {op.kind:12} {flow:44} {zps:>10}  "
              f"{_range(a['shift']):16} {_range(a['multiplier']):30} {a['rounding']:8} {weights}")
    if any(op.weight is not None and zero_point_in_bias(op) for op in program.ops):
        print("  * output_zero_point 0: the output tensor's zero point (its quantize_info's) is folded into the bias,"
              "\n    b' = round(b * r * 2**shift) - zp_in * sum(w') + zp_out * 2**shift (SiMa's shift-only form)")


# -------------------------------------------------------------------- the "compiled" region (NumPy)

def _requantize(acc: np.ndarray, bias: np.ndarray, a: dict) -> np.ndarray:
    """Per output channel (axis 1): ``clip(round((acc + bias) * M / 2**N) + zp_out, qmin, qmax)``."""
    acc = acc + bias.astype(np.int64).reshape([-1 if i == 1 else 1 for i in range(acc.ndim)])
    per_channel = max(len(a["multiplier"]), len(a["shift"])) > 1
    m, n = (np.broadcast_to(np.asarray(a[k]), (acc.shape[1],)) if per_channel else a[k][0]
            for k in ("multiplier", "shift"))
    y = sm.requantize(acc, m, n, a["rounding"], a["output_zero_point"], a["qmin"], a["qmax"],
                      axis=1 if per_channel else None)
    return y.astype(a["out_dtype"])


def _conv2d(op: NpuOp, x: np.ndarray) -> np.ndarray:
    a = op.attrs  # NCHW, OIHW weights (toy_npu_supports)
    acc = sm.conv2d_accumulate(x, sm.oihw_to_hwigo(op.weight, a["groups"]), strides=a["strides"],
                               padding=tuple(a["padding"]), dilation=a["dilation"], pad_value=a["input_zero_point"],
                               layout="NCHW")  # the input zero point is folded into the bias; padding holds it
    return _requantize(acc, op.bias, a)


EXECUTE: dict[str, Callable[[NpuOp, np.ndarray], np.ndarray]] = {
    "conv2d": _conv2d,
    "dense": lambda op, x: _requantize(sm.dense_accumulate(x, op.weight), op.bias, op.attrs),
    "permute_dims": lambda op, x: np.transpose(x, op.attrs["axes"]),
    "reshape": lambda op, x: x.reshape(op.attrs["shape"]),
}

#: symbol -> int8 outputs of every call (for the checks)
RECORDED: dict[str, list[np.ndarray]] = {}


def compile_region(program: NpuProgram) -> Callable[..., None]:
    """The region as a packed function: inputs..., then the output to fill (destination passing)."""
    def run(*args: Any) -> None:
        values = {name: arg.numpy() for name, arg in zip(program.inputs, args[:-1], strict=True)}
        for op in program.ops:
            values[op.output.name] = EXECUTE[op.kind](op, values[op.inputs[0]])
        result = values[program.outputs[0]]
        args[-1].copyfrom(result)
        RECORDED[program.symbol].append(result)

    return run


#: symbol -> the program the codegen read (for the checks)
PROGRAMS: dict[str, NpuProgram] = {}


@tvm_ffi.register_global_func(f"relax.ext.{CODEGEN}", override=True)
def toy_npu_codegen(functions: Any, options: Any, constant_names: Any) -> list:
    """Called by ``RunCodegen`` with every ``Codegen="toy_npu"`` region (and ``options``, the target options)."""
    names = [str(n) for n in constant_names.values()]  # "<symbol>_toy_npu_const_<i>": for a separate weights blob
    for region in functions:
        program = read_region(region)
        print_tables(program, sum(name.startswith(program.symbol) for name in names))
        PROGRAMS[program.symbol], RECORDED[program.symbol] = program, []
        tvm_ffi.register_global_func(program.symbol, compile_region(program), override=True)
    return []  # a real codegen returns its runtime modules here (see the module docstring)


# ------------------------------------------------------------------------------------ 1 and 4


def quantize(requant_mode: str) -> tvm.IRModule:
    mod, params = tvm_sima.load_model(FIXTURES / "digits_cnn_float.onnx")
    calib = np.load(FIXTURES / "digits_calib_nchw.npy")
    with tvm_sima.qconfig(requant_mode=requant_mode), tempfile.TemporaryDirectory() as work_dir:
        return tvm_sima.quantize(mod, params, [x[None] for x in calib], work_dir=work_dir)  # run files: not kept


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requant-mode", choices=("shift", "multiplier_shift"), default="shift",
                        help="shift: scale folded into the weights, right shift only; multiplier_shift: Q31 "
                             "multiplier and shift (TFLite style)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    qmod = quantize(args.requant_mode)
    print(f"quantized digits_cnn_float.onnx (requant_mode {args.requant_mode}); integer ops: "
          + ", ".join(f"{op} x{n}" for op, n in sorted(tvm_sima.quantize_report(qmod)["integer_ops"].items())))

    recorded = RecordQuantizeInfo()(qmod)  # keeps every quantize_info readable from the executable (as build does)
    partitioned = partition_for_toy_npu(recorded)
    regions = [g.name_hint for g, f in partitioned.functions.items()
               if isinstance(f, relax.Function) and f.attrs and str(f.attrs.get("Codegen", "")) == CODEGEN]
    host = sorted({c.op.name for b in partitioned["main"].body.blocks for c in (x.value for x in b.bindings)
                   if isinstance(c, relax.Call) and isinstance(c.op, tvm.ir.Op)})
    print(f"partitioned: {len(regions)} region(s) for {CODEGEN}; on the host: {', '.join(host)}\n")
    if not regions:
        raise SystemExit("error: nothing was offloaded to toy_npu")

    offloaded = relax.transform.RunCodegen({CODEGEN: {}})(partitioned)  # calls relax.ext.toy_npu
    offloaded = offloaded.without_attr("const_name_to_constant")  # the region holds its weights
    ours_ex = tvm_sima.build(offloaded, offload=False)  # the rest (quantize, dequantize) legalized to TIR
    ours = relax.VirtualMachine(ours_ex, tvm.cpu())
    reference = relax.VirtualMachine(tvm_sima.build(qmod, offload=False), tvm.cpu())  # tvm-sima's own, all TIR

    images = np.load(FIXTURES / "digits_eval_nchw.npz")["image"]
    ours_out = np.stack([ours["main"](tvm.runtime.tensor(x[None])).numpy() for x in images])
    ref_out = np.stack([reference["main"](tvm.runtime.tensor(x[None])).numpy() for x in images])
    exact = int(np.sum(np.all(ours_out == ref_out, axis=(1, 2))))
    calls = {symbol: len(outs) for symbol, outs in RECORDED.items()}
    print(f"\n{len(images)} images: the VM called the toy_npu region(s) {sum(calls.values())} time(s) in all")
    print(f"toy_npu (NumPy from the numbers read) vs tvm-sima's TIR build: {exact}/{len(images)} outputs bit-exact")

    program = PROGRAMS[regions[0]]
    out_info = program.tensors[program.outputs[0]]
    logits = sm.dequantize(np.stack(RECORDED[regions[0]]), out_info.qparams).astype(np.float32)
    gap = float(np.max(np.abs(logits - ours_out)))
    print(f"logits vs scale * (q - zero_point) of {out_info.name} (scale {out_info.scale[0]:.6f}, zero point "
          f"{out_info.zero_point[0]}): max |difference| {gap}")

    in_executable = tvm_sima.read_quantize_info(ours_ex)
    read = {name: info for p in PROGRAMS.values() for name, info in p.tensors.items()}
    agree = sum(in_executable.get(name) == info for name, info in read.items())
    print(f"quantize_info read by the codegen = tvm_sima.read_quantize_info(executable): {agree}/{len(read)} tensors")
    if exact != len(images) or calls != {r: len(images) for r in regions} or gap != 0 or agree != len(read):
        raise SystemExit("error: the numbers the codegen read do not reproduce tvm-sima's program")


if __name__ == "__main__":
    main()
