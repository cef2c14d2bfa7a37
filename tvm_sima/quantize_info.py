"""Reading ``sima.quantize_info`` back: from Relax calls, fused TIR blocks, and built executables.

A ``quantize_info`` records one tensor's quantization (scale, zero point, clip range, dtype,
axis, kind) under a name. The information is readable at every stage:

- in a Relax module, as the attributes of ``sima.quantize_info`` calls (also inside BYOC
  composite functions);
- after legalization and fusion, as ``sima.*`` annotations of the identity TIR blocks;
- after ``tvm.compile(..., relax_pipeline="sima")``, from the JSON that the pipeline stores in
  the executable as the function :data:`INFO_FUNCTION` (it survives ``export_library``).

The report :func:`tvm_sima.quantize` attaches to its result (``main``'s :data:`REPORT_ATTR`) is
read back here too (:func:`quantize_report`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Union

import numpy as np
import tvm
import tvm_ffi
from tvm import relax
from tvm.s_tir.stmt import SBlock

from .math import QParams, parse_qtype

__all__ = ["QuantizeInfo", "INFO_FUNCTION", "REPORT_ATTR", "read_quantize_info", "RecordQuantizeInfo",
           "quantize_report"]

#: Name of the Relax function, added by the sima pipeline, that returns the infos as JSON.
INFO_FUNCTION = "__sima_quantize_info"

_FIELDS = ("scale", "zero_point", "axis", "dtype", "qmin", "qmax", "clip_min", "clip_max", "kind", "name")


@dataclass(frozen=True)
class QuantizeInfo:
    """One tensor's quantization, as the backend reads it. ``real = scale * (q - zero_point)``."""

    name: str
    kind: str
    scale: tuple[float, ...]
    zero_point: tuple[int, ...]
    axis: int  # -1 for per-tensor
    dtype: str
    qmin: int
    qmax: int
    clip_min: float
    clip_max: float
    source: str = ""  # the model file's own name of the node computing the tensor, when known

    @classmethod
    def from_attrs(cls, attrs: Any, prefix: str = "") -> "QuantizeInfo":
        """From call attributes or JSON (``prefix=""``), or block annotations (``prefix="sima."``)."""
        get = {key: attrs[prefix + key] for key in _FIELDS}
        keys = {str(k) for k in attrs.keys()}
        return cls(
            name=str(get["name"]), kind=str(get["kind"]),
            scale=tuple(float(s) for s in get["scale"]), zero_point=tuple(int(z) for z in get["zero_point"]),
            axis=int(get["axis"]), dtype=str(get["dtype"]), qmin=int(get["qmin"]), qmax=int(get["qmax"]),
            clip_min=float(get["clip_min"]), clip_max=float(get["clip_max"]),
            source=str(attrs[prefix + "source"]) if prefix + "source" in keys else "",
        )

    @property
    def qparams(self) -> QParams:
        """The :class:`~tvm_sima.math.QParams` described."""
        qtype = parse_qtype(self.dtype)
        narrow = self.qmin == qtype.qmin + 1
        if self.axis < 0:
            return QParams(self.scale[0], self.zero_point[0], qtype, narrow_range=narrow)
        return QParams(np.array(self.scale), np.array(self.zero_point), qtype, axis=self.axis, narrow_range=narrow)

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {key: list(v) if isinstance(v, tuple) else v for key, v in self.__dict__.items()}


def _merge(found: dict[str, QuantizeInfo], info: QuantizeInfo, where: str) -> None:
    old = found.get(info.name)
    if old is not None and old != info:
        raise ValueError(f"tensor '{info.name}' has two different quantize_info records ({where}): {old} vs {info}")
    found[info.name] = info


def _recorded_json(func: relax.Function) -> str:
    body = func.body.body if isinstance(func.body, relax.SeqExpr) else func.body
    return str(body.value)


def _from_module(mod: tvm.IRModule) -> dict[str, QuantizeInfo]:
    found: dict[str, QuantizeInfo] = {}
    # Before tvm_sima.ops is imported the op does not exist, and neither can calls of it.
    registered = "sima.quantize_info" in tvm.ir._ffi_api.ListOpNames()
    info_op = tvm.ir.Op.get("sima.quantize_info") if registered else None

    def on_call(call: relax.Call) -> None:
        if info_op is not None and call.op.same_as(info_op):
            _merge(found, QuantizeInfo.from_attrs(call.attrs), "Relax call")

    def on_block(block: SBlock) -> None:
        annotations = block.annotations
        if annotations.get("sima.op") == "sima.quantize_info":
            _merge(found, QuantizeInfo.from_attrs(annotations, "sima."), f"TIR block {block.name_hint}")

    for gvar, func in mod.functions.items():
        if isinstance(func, tvm.tirx.PrimFunc):
            tvm_ffi.structural_walk(func, [(SBlock, on_block)])
        elif isinstance(func, relax.Function):
            tvm_ffi.structural_walk(func, [(relax.Call, on_call)])
            if gvar.name_hint == INFO_FUNCTION:
                for item in json.loads(_recorded_json(func)):
                    _merge(found, QuantizeInfo.from_attrs(item), "recorded JSON")
    return found


def _from_executable(ex: Any) -> dict[str, QuantizeInfo]:
    vm = relax.VirtualMachine(ex, tvm.cpu())
    try:
        fn = vm[INFO_FUNCTION]
    except (AttributeError, KeyError, ValueError, RuntimeError) as err:
        raise ValueError(
            "this executable holds no quantize_info: build it with tvm_sima.build(mod) or "
            "tvm.compile(mod, target=tvm_sima.target(), relax_pipeline='sima')"
        ) from err
    return {item["name"]: QuantizeInfo.from_attrs(item) for item in json.loads(str(fn()))}


def read_quantize_info(obj: Union[tvm.IRModule, Any]) -> dict[str, QuantizeInfo]:
    """Every quantize_info of a module or executable, keyed by tensor name.

    Parameters
    ----------
    obj : IRModule, relax.Function, or a built executable / loaded ``.so``
        Relax calls, fused PrimFunc block annotations, composite functions and the recorded
        JSON of the sima pipeline are all read.

    Raises
    ------
    ValueError
        If two records of one tensor disagree, or an executable was built without the sima
        pipeline.
    """
    if isinstance(obj, tvm.IRModule):
        return _from_module(obj)
    if isinstance(obj, relax.Function):
        return _from_module(tvm.IRModule({"main": obj}))
    return _from_executable(obj)


@tvm.transform.module_pass(opt_level=0, name="RecordQuantizeInfo")
class RecordQuantizeInfo:
    """Store every quantize_info of the module as JSON in a function :data:`INFO_FUNCTION`.

    Runs after fusion and before codegen, so the record lands in the executable.
    """

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        infos = sorted(_from_module(mod).values(), key=lambda i: i.name)
        payload = json.dumps([i.to_json() for i in infos], sort_keys=True)
        mod = tvm.IRModule({g: f for g, f in mod.functions.items() if g.name_hint != INFO_FUNCTION}, attrs=mod.attrs)
        bb = relax.BlockBuilder(mod)
        with bb.function(INFO_FUNCTION, [], attrs={"global_symbol": INFO_FUNCTION}, pure=True):
            bb.emit_func_output(relax.expr.String(payload))
        return bb.get()


#: The ``main`` attribute holding the report :func:`tvm_sima.quantize` attaches to its result (JSON).
REPORT_ATTR = "sima.quantize_report"


def quantize_report(qmod: tvm.IRModule) -> dict:
    """The report :func:`tvm_sima.quantize` attached to its result (fused layers, float ops, work_dir)."""
    attrs = qmod["main"].attrs
    if attrs is None or REPORT_ATTR not in attrs:
        raise ValueError("this module carries no quantize report (it was not made by tvm_sima.quantize)")
    return json.loads(str(attrs[REPORT_ATTR]))
