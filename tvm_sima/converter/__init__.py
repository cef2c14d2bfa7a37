"""``tvm_sima.convert``: fold the QDQ chains of a pre-quantized model into integer sima ops.

Convolutions and dense layers (NHWC or NCHW data, per-tensor or per-channel int8 weights)::

    quantize(act?(add?(conv2d | matmul(dequantize(x), dequantize(W)), dequantize(b) | b)))
    [-> dequantize -> act -> quantize with the same parameters: an activation after the quantize]

where ``W`` is an int8 constant, ``b`` an int32 constant (optionally reshaped) and ``act`` relu /
relu6 / clip, become one ``sima.conv2d`` / ``sima.dense`` on the raw integers (a ``conv2d_transpose``:
zero insertion of the codes, then ``sima.conv2d``, :mod:`tvm_sima.lowering.transpose_conv`):

* ``mode="tflite"``: ``tflite_requantization_constants`` (Q31 multiplier and shift), the
  activation range as TFLite computes it (float32, round half away from zero), LiteRT's rounding
  per op (double rounding for convolutions, single for FULLY_CONNECTED / matmul): bit-exact with
  LiteRT's reference kernels;
* ``mode="shift"``: ``requantize_qnn_convolution_dense`` folds the scale into the weights so the
  op needs only a right shift (SiMa); its error against the tflite mode is measured in the tests.

Other ops between dequantize and quantize get an integer form (:mod:`.integer_ops`): add / sub /
mul, average / max / global pool, mean, concat, reshape / flatten / transpose / slice (chains of
them, as DepthToSpace imports: :mod:`.layout_moves`), resize, and the activations as clips on the
codes; add / sub / mul / div of a tensor and a float constant are a table per constant value
(:mod:`.constant_ops`); a dequantize read by a quantize with other parameters (TFLite's int8 ->
int8 QUANTIZE) is one ``sima.requantize`` (:mod:`.requantize`). Each chain is checked against the
hardware rules (:mod:`.rules`); what is not converted stays float between its dequantize and
quantize and is listed in the report with the reason (the rule it broke, or the pattern it did not fit).
Every quantized activation of the result is followed by a ``sima.quantize_info`` (its parameters,
and as ``source`` the model's name for the node writing it), as after realize.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Union

import tvm
from tvm import relax

from .. import lowering
from .. import math as sm
from .. import ops as so
from ..graph import GraphIndex, op_name, rebuild_main, remap
from ..source_names import SourceNames
from .chains import Match
from .layout_moves import hoist_zero_pads, sink_dequantize
from .rules import DEFAULT_LIMITS, HardwareLimits

__all__ = ["convert", "MODES", "HardwareLimits", "ConversionReport"]

#: Requantization mode -> the numerics of every op family (:class:`~tvm_sima.lowering.Numerics`).
NUMERICS = {sm.RequantMode.MULTIPLIER_SHIFT: lowering.Numerics.tflite(),
            sm.RequantMode.SHIFT: lowering.Numerics.npu_shift()}
#: The names ``mode`` takes: ``"tflite"`` is ``"multiplier_shift"`` rounded as LiteRT (``RequantMode.parse``).
MODES = sm.REQUANT_MODE_NAMES
_ROOTS = ("relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul")
#: Ops that may take a float constant operand (:mod:`.constant_ops`).
_WITH_CONSTANT = ("relax.add", "relax.subtract", "relax.multiply", "relax.divide")
_NOT_COMPUTE = ("sima.quantize", "sima.dequantize", "sima.quantize_info", "sima.requantize", "sima.conv2d",
                "sima.dense")

@dataclass
class ConversionReport:
    """What :func:`convert` did: one entry per converted chain, one per float op left, with the reason."""

    mode: str
    converted: list[dict] = field(default_factory=list)
    unconverted: list[dict] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[dict]:  # report["converted"], as the dict it used to be
        return {"converted": self.converted, "unconverted": self.unconverted}[key]

    def to_dict(self) -> dict:
        return {"mode": self.mode, "converted": self.converted, "unconverted": self.unconverted}

    def summary(self) -> str:
        lines = [f"convert (mode={self.mode}): {len(self.converted)} chain(s) converted to integer ops, "
                 f"{len(self.unconverted)} op(s) left in float"]
        lines += [f"  float: {u['op']} -> {u['tensor']}: {u['reason']}" for u in self.unconverted]
        return "\n".join(lines)


def convert(mod: tvm.IRModule, mode: Union[str, sm.RequantMode] = "tflite", *,
            limits: HardwareLimits = DEFAULT_LIMITS) -> tuple[tvm.IRModule, ConversionReport]:
    """Fold every matched QDQ chain of ``main`` into integer sima ops; returns the module and a report.

    Parameters
    ----------
    mod : tvm.IRModule
        A QDQ module (``tvm_sima.load_model`` of an int8 TFLite or a QDQ ONNX model).
    mode : "tflite" (= "multiplier_shift", :class:`~tvm_sima.math.RequantMode`) or "shift"
        Requantization of convolutions and dense layers (module docstring).
    limits : HardwareLimits
        The NPU's limits; chains that break one stay float and are reported with the rule's name.

    Returns
    -------
    (module, ConversionReport)
        ``report.converted``: ``{"op", "tensor", "from"}`` per chain; ``report.unconverted``:
        ``{"op", "tensor", "reason"}`` per float compute op left in the graph.
    """
    if mode not in MODES:
        raise ValueError(f"convert: mode={mode!r}; use one of {MODES}")
    requant = sm.RequantMode.parse(mode)
    if not isinstance(mod, tvm.IRModule) or "main" not in [g.name_hint for g in mod.get_global_vars()]:
        raise TypeError("convert expects a tvm.IRModule with a 'main' function (tvm_sima.load_model's output)")
    mod = sink_dequantize(hoist_zero_pads(mod))  # pad(relu6(x)): relu6(pad(x)); DepthToSpace's moves: on the codes
    index = GraphIndex(mod["main"])
    matches, skip, reasons = _find_matches(index, NUMERICS[requant], limits)
    report = ConversionReport(str(getattr(mode, "value", mode)))
    mapping: dict = {}
    sources = SourceNames(mod["main"])
    result_mod = relax.transform.DeadCodeElimination(["main"])(_rebuild(mod, matches, skip, report, mapping,
                                                                        sources))
    left = set(GraphIndex(result_mod["main"]).producer)
    # Float compute that is left, under the input module's names (the rebuilt one may rename a var
    # whose name an emitted integer op took).
    for var in index.order:
        name = op_name(index.producer[var])
        if name is not None and name not in _NOT_COMPUTE and _is_float(var) and mapping.get(var) in left:
            report.unconverted.append({"op": name, "tensor": var.name,
                                       "reason": reasons.get(var.name, "no integer form for this op")})
    return result_mod, report


def _find_matches(index: GraphIndex, numerics: lowering.Numerics,
                  limits: HardwareLimits) -> tuple[dict[relax.Var, Match], set, dict[str, str]]:
    """Every chain to replace (by root var), the vars they swallow, and why other ops did not match."""
    from .constant_ops import match_with_constant
    from .fused import match_fused
    from .integer_ops import match_chain, match_integer
    from .requantize import match_requantize

    matches: dict[relax.Var, Match] = {}
    skip: set = set()
    reasons: dict[str, str] = {}
    chains = {c.members[0]: c for c in lowering.find_chains(index)}
    for var in index.order:
        if var in skip:
            continue
        name = op_name(index.producer[var])
        found: Union[Match, str, None] = None
        if var in chains:
            found = match_chain(index, chains[var], numerics)
            if isinstance(found, str):  # the chain's ops on their own
                found = match_integer(index, var, numerics, limits) if name in lowering.FAMILIES else found
        elif name in _ROOTS:
            found = match_fused(index, var, numerics, limits)
        elif name in _WITH_CONSTANT and lowering.binary_with_constant(index.producer[var]) is not None:
            found = match_with_constant(index, var, numerics)
        elif name == "sima.quantize":
            found = match_requantize(index, var, numerics, limits)
        elif name in lowering.FAMILIES:
            found = match_integer(index, var, numerics, limits)
        if isinstance(found, Match):
            matches[var] = found
            skip.update(found.tail.vars)
        elif found:
            reasons[var.name] = found
    return matches, skip, reasons


def _rebuild(mod: tvm.IRModule, matches: dict[relax.Var, Match], skip: set, report: ConversionReport,
             mapping: dict, sources: SourceNames) -> tvm.IRModule:
    """``mod`` with each match's chain replaced by its integer ops and a quantize_info (its ``source``:
    the model's name for the node writing the chain's codes, e.g. the ONNX ``QuantizeLinear``). A
    quantize left as it is (of the float input, after an op left float) gets its quantize_info too,
    so that every quantized activation's parameters are readable, as after realize."""

    def emit(bb: relax.BlockBuilder, var: relax.Var, value: relax.Expr, mapping: dict) -> Optional[relax.Expr]:
        found = matches.get(var)
        if var in skip:
            return None
        if found is None and op_name(value) == "sima.quantize" and isinstance(value.args[0], relax.Var):  # type: ignore
            codes = bb.emit(remap(value, mapping), name_hint=var.name)
            qp = so.qparams_from_attrs(value.attrs)  # type: ignore[attr-defined]
            mapping[var] = bb.emit(so.quantize_info(codes, qp, name=var.name, source=sources.of(var)),
                                   name_hint=f"{var.name}_qi")
            return None
        if found is None:
            return remap(value, mapping)
        tail = found.tail
        assert tail.out is not None and tail.out_q is not None
        result = bb.emit(found.emit(bb, mapping), name_hint=tail.out.name)
        info = so.quantize_info(result, tail.out_q, name=tail.out.name, source=sources.of(tail.out))
        mapping[tail.out] = bb.emit(info, name_hint=f"{tail.out.name}_qi")
        report.converted.append({"op": found.op, "tensor": tail.out.name, "from": op_name(value)})
        return None

    return rebuild_main(mod, emit, mapping=mapping)


def _is_float(var: relax.Var) -> bool:
    dtype = getattr(var.ty, "dtype", None)
    return dtype is not None and str(dtype).startswith(("float", "bfloat"))
