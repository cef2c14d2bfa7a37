"""The ``"sima"`` Relax pipeline (registered here, where it is defined).

Order (QDQ-safe): pattern rewrites that must see ``dequantize(constant)`` run *before*
FoldConstant; float NHWC ``conv2d_transpose`` (TFLite's TRANSPOSE_CONV, which TVM legalizes only
in NCHW) becomes NCHW between two transposes; float ``conv2d`` becomes NHWC / HWIO, the layout the
CPU schedule vectorizes (:mod:`.schedule_layout`); then legalization (FLegalize may read
``Target.current().keys``), TIR op patterns, FoldConstant, FuseOps and FuseTIR; the quantize_info
record; CPU scheduling (:mod:`.schedule`: inlining, register tiles, vectors, parallel loops); then
TVM's CPU lowering and finalization passes.
:func:`tvm_sima.build` (:mod:`tvm_sima.driver`) compiles with it.
"""

from __future__ import annotations

from typing import Callable

import tvm
from tvm import relax
from tvm.relax.backend.cpu_generic import pipeline as cpu
from tvm.target import Target

from ..quantize_info import RecordQuantizeInfo
from ..targets import target as sima_target
from .schedule import CPUParallelSchedule
from .schedule_layout import FloatConvLayout

__all__ = ["PIPELINE", "PRE_FOLD_PASSES", "SCHEDULE_PASSES", "sima_pipeline"]

#: Registered pipeline name: ``tvm.compile(mod, target=..., relax_pipeline="sima")``.
PIPELINE = "sima"

#: Factories of passes that must run before FoldConstant (QDQ pattern rewrites register here).
PRE_FOLD_PASSES: list[Callable[[Target], tvm.transform.Pass]] = []

#: Factories of TIR scheduling passes run after fusion (parallel loops on every core).
SCHEDULE_PASSES: list[Callable[[Target], tvm.transform.Pass]] = [CPUParallelSchedule]


@relax.expr_functor.mutator
class _NCHWTransposeConv(relax.PyExprMutator):
    def visit_call_(self, call: relax.Call) -> relax.Expr:  # noqa: N802 (TVM's visitor name)
        call = super().visit_call_(call)
        if not (isinstance(call.op, tvm.ir.Op) and call.op.name == "relax.nn.conv2d_transpose"):
            return call
        a = call.attrs
        if str(a["data_layout"]) != "NHWC" or str(a["out_layout"]) != "NHWC":
            return call
        x = relax.op.permute_dims(call.args[0], [0, 3, 1, 2])
        y = relax.op.nn.conv2d_transpose(x, call.args[1], a["strides"], a["padding"], a["output_padding"],
                                         a["dilation"], int(a["groups"]), "NCHW", str(a["kernel_layout"]), "NCHW",
                                         a["out_dtype"] if str(a["out_dtype"]) else None)
        return relax.op.permute_dims(y, [0, 2, 3, 1])


@tvm.transform.module_pass(opt_level=0, name="NCHWTransposeConv")
def _nchw_transpose_conv(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
    """NHWC ``conv2d_transpose`` as ``NCHW`` between transposes (TVM legalizes only NCHW)."""
    for gvar, func in list(mod.functions.items()):
        if isinstance(func, relax.Function):
            mod[gvar] = _NCHWTransposeConv(mod).visit_expr(func)
    return mod


def _passes(tgt: Target) -> list[tvm.transform.Pass]:
    return [
        *(make(tgt) for make in PRE_FOLD_PASSES),
        _nchw_transpose_conv,
        FloatConvLayout,
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
        relax.transform.FuseTIR(),
        RecordQuantizeInfo(),
        *(make(tgt) for make in SCHEDULE_PASSES),
        *cpu.dataflow_lower_passes(tgt),
        *cpu.finalize_passes(tgt),
    ]


def sima_pipeline() -> tvm.transform.Pass:
    """The sima pipeline as one module pass (uses ``Target.current()``, or the sima target).

    Returns
    -------
    tvm.transform.Pass
        The passes of the module docstring, in that order, under the current (or the sima) target.
    """

    @tvm.transform.module_pass(opt_level=0, name="SimaPipeline")
    def _pipeline(mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        tgt = Target.current(allow_none=True) or sima_target()
        with tgt:
            return tvm.transform.Sequential(_passes(tgt))(mod)

    return _pipeline


if PIPELINE not in relax.pipeline.PIPELINE_MAP:
    relax.register_pipeline(PIPELINE)(sima_pipeline)
