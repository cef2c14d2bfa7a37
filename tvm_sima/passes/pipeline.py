"""The ``"sima"`` Relax pipeline (registered here, where it is defined).

Order (QDQ-safe): pattern rewrites that must see ``dequantize(constant)`` run *before*
FoldConstant; then legalization (FLegalize may read ``Target.current().keys``), TIR op
patterns, FoldConstant, FuseOps and FuseTIR; the quantize_info record; CPU scheduling
(parallel and vectorized loops); then TVM's CPU lowering and finalization passes.
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

__all__ = ["PIPELINE", "PRE_FOLD_PASSES", "SCHEDULE_PASSES", "sima_pipeline"]

#: Registered pipeline name: ``tvm.compile(mod, target=..., relax_pipeline="sima")``.
PIPELINE = "sima"

#: Factories of passes that must run before FoldConstant (QDQ pattern rewrites register here).
PRE_FOLD_PASSES: list[Callable[[Target], tvm.transform.Pass]] = []

#: Factories of TIR scheduling passes run after fusion (parallel loops on every core).
SCHEDULE_PASSES: list[Callable[[Target], tvm.transform.Pass]] = [lambda _target: CPUParallelSchedule()]


def _passes(tgt: Target) -> list[tvm.transform.Pass]:
    return [
        *(make(tgt) for make in PRE_FOLD_PASSES),
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
