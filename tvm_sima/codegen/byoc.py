"""BYOC for the sima NPU: ``partition_for_sima`` and the ``relax.ext.sima`` codegen.

* :func:`partition_for_sima`: ``FuseOpsByPattern`` with the patterns of :data:`PATTERNS` (their order
  is their priority: a fused op with its ``quantize_info`` before the bare op, the bias form before
  the bias-free one), each guarded by the hardware checks of :mod:`tvm_sima.converter.rules`, then
  ``MergeCompositeFunctions``: neighbouring offloaded ops become one region. Ops the NPU cannot run
  stay on the host; :func:`refusal` says which rule each broke, and the check logs it (``DEBUG``,
  logger ``tvm_sima.codegen.byoc``).
* ``relax.ext.sima`` (called by ``relax.transform.RunCodegen``): for each region, inlines its
  composite functions into one program (:mod:`.artifact`), writes the artifact when asked
  (``RunCodegen({"sima": {"artifact_dir": path}})``: ``path/region_000/``, ... in the order of the
  regions, see :func:`region_directory`; the region's symbol is the program's ``name``), and
  returns a ``CSourceModule`` whose C++ (:mod:`.csource`) implements the region as one packed
  function ``__tvm_ffi_<symbol>`` with the weights as constant arrays. TVM compiles it with the
  host code (in process when the VM is created, or into the ``.so`` by ``export_library``).
"""

from __future__ import annotations

import logging
import pathlib
from typing import Any, Callable, Optional

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.relax.dpl import is_const, is_op, wildcard

from ..converter.rules import DEFAULT_LIMITS, HardwareLimits, check_bias, check_requant, check_tensors, check_window
from ..graph import constant_value, rebuild_function, remap
from .artifact import Program, program_from_function, write_program
from .csource import CTYPES, KERNELS, PRELUDE, kernel_source

__all__ = ["PATTERNS", "partition_for_sima", "offloaded_functions", "refusal", "region_directory", "CODEGEN"]

LOG = logging.getLogger(__name__)
CODEGEN = "sima"


def _static_int(ty: Any) -> bool:
    shape = getattr(ty, "shape", None)
    return shape is not None and all(isinstance(d, (int, tvm.tirx.IntImm)) for d in shape) and \
        str(ty.dtype) in CTYPES


def refusal(call: relax.Call, limits: HardwareLimits = DEFAULT_LIMITS) -> Optional[str]:
    """Why the NPU cannot run ``call`` (a sima.conv2d / sima.dense / sima.requantize), or ``None``.

    Parameters
    ----------
    call : relax.Call
        The fused op a pattern matched.
    limits : HardwareLimits
        The device's limits (:mod:`tvm_sima.converter.rules`).

    Returns
    -------
    str or None
        The rule broken, as :mod:`~tvm_sima.converter.rules` words it (``hardware rule 'shift-range'
        (...): ...``), or the codegen's own (static shapes and C types, requantize out_dtype).
    """
    a = call.attrs
    if not all(_static_int(arg.ty) for arg in call.args[:1]) or not _static_int(call.ty):
        return "codegen rule 'static-int': input and output need static shapes and a dtype the C++ kernels take"
    dtypes = [str(call.args[0].ty.dtype), str(a["out_dtype"])]
    wide = limits.int16_activations
    if call.op.name == "sima.requantize":
        outs = ("int8", "uint8", "int16", "int32") if wide else ("int8", "uint8", "int32")
        if str(a["out_dtype"]) not in outs:
            return f"codegen rule 'requantize-out-dtype': out_dtype {a['out_dtype']} is not {', '.join(outs)}"
        return check_requant(limits, list(a["shift"]), list(a["multiplier"]))
    reason = check_tensors(dtypes, str(call.args[1].ty.dtype), int16=wide)
    if reason is None and len(call.args) > 2:
        bias = constant_value(call.args[2])
        reason = "codegen rule 'bias-constant': the bias is not a constant" if bias is None else check_bias(bias, wide)
    if reason is None:
        mult = [int(m) for m in a["multiplier"]]
        reason = check_requant(limits, [int(s) for s in a["shift"]], None if mult == [1] else mult)
    if reason is None and call.op.name == "sima.conv2d":
        w = call.args[1].ty.shape
        layout = str(a["kernel_layout"])
        khw = [int(w[layout.index("H")]), int(w[layout.index("W")])]
        reason = check_window(limits, khw, [int(s) for s in a["strides"]], [int(d) for d in a["dilation"]])
    return reason


def _checker(limits: HardwareLimits) -> Callable[[Any], bool]:
    def check(ctx: relax.transform.PatternCheckContext) -> bool:
        call = ctx.annotated_expr["op"]  # the fused op (the pattern may end in its quantize_info)
        reason = refusal(call, limits)
        if reason is not None and LOG.isEnabledFor(logging.DEBUG):
            var = ctx.value_to_bound_var.get(call)
            LOG.debug("partition_for_sima: %s %s stays on the host: %s", call.op.name,
                      repr(var.name) if var is not None else "(unbound)", reason)
        return reason is None

    return check


def _patterns(limits: HardwareLimits) -> list[tuple]:
    check = _checker(limits)
    out = []
    for op, with_bias in (("sima.conv2d", True), ("sima.conv2d", False), ("sima.dense", True), ("sima.dense", False)):
        fused = is_op(op)(wildcard(), is_const(), is_const()) if with_bias else is_op(op)(wildcard(), is_const())
        base = op.split(".")[1] + ("_bias" if with_bias else "")
        out.append((f"{CODEGEN}.{base}_qi", is_op("sima.quantize_info")(fused), {"op": fused}, check))
        out.append((f"{CODEGEN}.{base}", fused, {"op": fused}, check))
    requantize = is_op("sima.requantize")(wildcard())
    out.append((f"{CODEGEN}.requantize_qi", is_op("sima.quantize_info")(requantize), {"op": requantize}, check))
    out.append((f"{CODEGEN}.requantize", requantize, {"op": requantize}, check))
    return out


#: The patterns with the default limits, in priority order (name, pattern, annotations, check).
PATTERNS = _patterns(DEFAULT_LIMITS)


def partition_for_sima(mod: tvm.IRModule, limits: HardwareLimits = DEFAULT_LIMITS) -> tvm.IRModule:
    """Offload every sima.conv2d / sima.dense / sima.requantize the NPU can run (see the module docstring)."""
    from .. import ops  # noqa: F401  (registers the sima ops the patterns name)

    patterns = PATTERNS if limits == DEFAULT_LIMITS else _patterns(limits)
    mod = relax.transform.FuseOpsByPattern(patterns, bind_constants=True, annotate_codegen=False)(mod)
    return relax.transform.MergeCompositeFunctions()(mod)


def offloaded_functions(mod: tvm.IRModule) -> dict[str, relax.Function]:
    """The regions of a partitioned module, by global symbol."""
    return {str(f.attrs["global_symbol"]): f for _, f in mod.functions.items()
            if isinstance(f, relax.Function) and f.attrs is not None and "Codegen" in f.attrs
            and str(f.attrs["Codegen"]) == CODEGEN}


def _inline(region: relax.Function) -> relax.Function:
    """The region with its composite functions inlined: one flat dataflow function of sima ops."""
    local: dict = {}
    params = [relax.Var(p.name, p.ty) for p in region.params]
    mapping: dict = dict(zip(region.params, params, strict=True))

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> Optional[relax.Expr]:
        if isinstance(value, relax.Function):
            local[var] = value
            return None
        if isinstance(value, relax.Call) and isinstance(value.op, relax.Var) and value.op in local:
            composite = local[value.op]
            inner = {p: remap(arg, mapping) for p, arg in zip(composite.params, value.args, strict=True)}
            result = None
            for cblock in composite.body.blocks:
                for cb in cblock.bindings:
                    inner[cb.var] = bb.emit(remap(cb.value, inner), name_hint=cb.var.name)
                    result = inner[cb.var]
            body = composite.body.body
            mapping[var] = inner.get(body, result) if isinstance(body, relax.Var) else result
            return None
        return remap(value, mapping)

    return rebuild_function(region, emit, name="region", params=params, attrs={}, mapping=mapping)


def region_program(region: relax.Function, symbol: str) -> Program:
    """The artifact of one offloaded region."""
    return program_from_function(_inline(region), name=symbol)


#: The includes every region needs, once per compiled source (after the kernel library).
_HEADERS = "#include <tvm/ffi/c_api.h>\n#include <dlpack/dlpack.h>\n#include <vector>\n"


def program_source(regions: list[tuple[Program, str]]) -> str:
    """One C++ source for every region of a build: the kernel library once, then each region.

    g++ compiles the library's templates once per source, so one source for all regions (each in
    its own namespace) compiles once per build instead of once per region.
    """
    return "".join([PRELUDE, _HEADERS] + [region_source(program, symbol, k) for k, (program, symbol) in
                                          enumerate(regions)])


def region_source(program: Program, symbol: str, index: int = 0) -> str:
    """C++ of a region (after :data:`PRELUDE`): its kernels in namespace ``sima_region_<index>`` and the
    packed function ``__tvm_ffi_<symbol>(inputs..., output)``."""
    graph = program.graph
    tensors = graph["tensors"]
    src = [f"namespace sima_region_{index} {{\n"]
    for k, op in enumerate(graph["ops"]):
        src.append(kernel_source(f"k{k}", op, graph, program.weights))
    n_in, outputs = len(graph["inputs"]), graph["outputs"]
    n_args = n_in + len(outputs)
    body = [f"""
DLTensor* as_dl(const TVMFFIAny* a) {{
  if (a->type_index == kTVMFFIDLTensorPtr) return (DLTensor*)a->v_ptr;
  if (a->type_index == kTVMFFITensor) return (DLTensor*)((char*)a->v_obj + sizeof(TVMFFIObject));
  return nullptr;
}}
}}  // namespace sima_region_{index}
extern "C" TVM_FFI_DLL_EXPORT int __tvm_ffi_{symbol}(void*, const TVMFFIAny* args, int32_t num_args,
                                                    TVMFFIAny*) {{
  using namespace sima_region_{index};
  if (num_args != {n_args}) {{
    TVMFFIErrorSetRaisedFromCStr("ValueError", "{symbol}: expected {n_args} arguments");
    return -1;
  }}
  DLTensor* t[{n_args}];
  for (int i = 0; i < {n_args}; ++i) {{
    t[i] = as_dl(&args[i]);
    if (t[i] == nullptr) {{ TVMFFIErrorSetRaisedFromCStr("TypeError", "{symbol}: expected tensors"); return -1; }}
  }}
"""]
    buffers: dict[str, str] = {}
    for i, name in enumerate(graph["inputs"]):
        ctype = CTYPES[tensors[name]["dtype"]]
        buffers[name] = f"in{i}"
        body.append(f"  const {ctype}* in{i} = (const {ctype}*)((char*)t[{i}]->data + t[{i}]->byte_offset);\n")
    copies = []  # an output repeated, or an input passed through: copied from its first buffer at the end
    for j, name in enumerate(outputs):
        ctype = CTYPES[tensors[name]["dtype"]]
        k = n_in + j
        if name in buffers:
            copies.append(f"  std::memcpy(out{j}, {buffers[name]}, sizeof({ctype}) * "
                          f"{int(np.prod(tensors[name]['shape']))});\n")
        else:
            buffers[name] = f"out{j}"
        body.append(f"  {ctype}* out{j} = ({ctype}*)((char*)t[{k}]->data + t[{k}]->byte_offset);\n")
    for k, op in enumerate(graph["ops"]):
        name = op["outputs"][0]
        spec = tensors[name]
        if name not in buffers:
            # kept between calls (per thread): a call allocates, zero-fills and page-faults nothing
            size = int(np.prod(spec["shape"]))
            body.append(f"  static thread_local std::vector<{CTYPES[spec['dtype']]}> b{k};\n"
                        f"  if (b{k}.size() < {size}) b{k}.resize({size});\n")
            buffers[name] = f"b{k}.data()"
        body.append(f"  k{k}({buffers[op['inputs'][0]]}, {buffers[name]});\n")
    body.extend(copies)
    body.append("  return 0;\n}\n")
    return "".join(src + body)


def region_directory(index: int, count: int) -> str:
    """The artifact directory name of region ``index`` of ``count``: ``region_000``, ``region_001``, ...

    Region symbols are built by ``MergeCompositeFunctions`` from the names of every op they hold
    (hundreds of characters on a real network, past the 255-byte file name limit), so the directory
    is named by the region's position in the codegen's list (zero-padded, so that sorted names keep
    that order); the symbol is the ``name`` in its ``program.json``.
    """
    return f"region_{index:0{max(3, len(str(max(count - 1, 0))))}d}"


@tvm_ffi.register_global_func(f"relax.ext.{CODEGEN}", override=True)
def _sima_codegen(functions: Any, options: Any, _constant_names: Any) -> list:
    artifact_dir: Optional[str] = str(options["artifact_dir"]) if options is not None and \
        "artifact_dir" in options else None
    create = tvm.get_global_func("runtime.CSourceModuleCreate")
    regions = []
    for index, func in enumerate(functions):
        symbol = str(func.attrs["global_symbol"])
        program = region_program(func, symbol)
        unknown = sorted({op["op"] for op in program.graph["ops"]} - set(KERNELS))
        if unknown:
            raise ValueError(f"relax.ext.sima: region {symbol} holds {unknown}, which have no kernel")
        if artifact_dir is not None:
            write_program(program, pathlib.Path(artifact_dir) / region_directory(index, len(functions)))
        regions.append((program, symbol))
    if not regions:
        return []
    return [create(program_source(regions), "cc", [symbol for _, symbol in regions], [])]
