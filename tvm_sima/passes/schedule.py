"""A tuning-free CPU schedule for every PrimFunc: inlining, register tiles, vectors, both cores.

Untuned TIR from LegalizeOps runs on one core, one scalar at a time. Per PrimFunc:

1. Element-wise producers are inlined into their consumers (``compute_inline``), element-wise
   consumers into element-wise producers (``reverse_compute_inline``). Padding (an
   ``if_then_else``) is not inlined into a reduction, where it would be evaluated once per
   multiply-add. Blocks carrying annotations (the ``sima.*`` records of
   :mod:`tvm_sima.quantize_info`) are never inlined away and nothing is inlined into them.
2. Each remaining root block gets the first rule of :mod:`.schedule_rules` that applies: a
   reduction its register tile (with its element-wise epilogue, e.g. bias and clip, computed in
   the accumulator's write-back), else parallel spatial loops; an element-wise block parallel
   outer loops and a vectorized innermost one. Each rule runs on a copy of the schedule; one
   that fails leaves the block as it was.

Only loops change and values move between buffers: every integer result is bit-exact with the
unscheduled program (``tests/passes/test_schedule.py``), float results up to the rounding of a
contracted multiply-add. Functions already marked ``tirx.is_scheduled`` are left alone.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import tvm
from tvm import s_tir
from tvm.target import Target

from .schedule_analysis import has_if_then_else, is_annotated, is_injective, vector_lanes
from .schedule_rules import (
    RuleOptions,
    channel_vector_reduction,
    parallel_reduction,
    schedule_injective,
    tile_reduction,
)

__all__ = ["CPUParallelSchedule", "rule_options", "schedule_function"]

LOG = logging.getLogger(__name__)
_ERRORS = (s_tir.ScheduleError, tvm.error.InternalError, ValueError)
Rule = Callable[[s_tir.Schedule, Any, RuleOptions], Optional[str]]


def rule_options(target: Optional[Target]) -> RuleOptions:
    """The rules' options for ``target``: its vector width; 32 vector registers with AVX-512, else 16."""
    lanes = vector_lanes(target, 32)
    return RuleOptions(lanes=lanes, max_accumulators=24 if lanes >= 16 else 12)


def _root_blocks(sch: s_tir.Schedule) -> list:
    return list(sch.get_child_blocks(sch.get_sblock("root")))


def _inline_one(sch: s_tir.Schedule) -> bool:
    """Inline one element-wise block (step 1 of the module docstring); False when none is left."""
    for block in _root_blocks(sch):
        if not is_injective(sch, block) or is_annotated(sch, block):
            continue
        consumers = list(sch.get_consumers(block))
        if not consumers or any(is_annotated(sch, c) for c in consumers):
            continue
        pads = has_if_then_else(sch, block)
        if not (pads and any(not is_injective(sch, c) for c in consumers)):
            try:
                sch.compute_inline(block)
                return True
            except _ERRORS:
                pass
        producers = list(sch.get_producers(block))
        if len(producers) == 1 and is_injective(sch, producers[0]) and not is_annotated(sch, producers[0]):
            try:
                sch.reverse_compute_inline(block)
                return True
            except _ERRORS:
                pass
    return False


def _rules(sch: s_tir.Schedule, block: Any) -> list[Rule]:
    if is_injective(sch, block):
        return [schedule_injective, lambda s, b, o: schedule_injective(s, b, o, vectorize=False)]
    return [tile_reduction, channel_vector_reduction, parallel_reduction]


def _schedule_block(sch: s_tir.Schedule, block: Any, opts: RuleOptions) -> tuple[s_tir.Schedule, str]:
    for rule in _rules(sch, block):
        trial = sch.copy()
        try:
            done = rule(trial, block, opts)
        except _ERRORS as err:
            LOG.debug("%s: %s", sch.get(block).name_hint, str(err).splitlines()[0])
            continue
        if done is not None:
            return trial, done
    return sch, "untouched"


def _same_nests(sch: s_tir.Schedule, names: set) -> set:
    """``names`` and the blocks in the same outermost loop as one of them (a tile's init, padding, write-back)."""
    nests: list = []
    for block in _root_blocks(sch):
        loops = sch.get_loops(block)
        outer = sch.get(loops[0]) if loops else None
        nests.append((sch.get(block).name_hint, outer))
    tops = [outer for name, outer in nests if name in names and outer is not None]
    return set(names) | {name for name, outer in nests if outer is not None and any(outer.same_as(t) for t in tops)}


def schedule_function(func: tvm.tirx.PrimFunc, opts: RuleOptions) -> tuple[tvm.tirx.PrimFunc, list]:
    """``func`` scheduled as the module docstring says, and ``[(block name, what was done), ...]``."""
    sch = s_tir.Schedule(func)
    trial = sch.copy()
    try:
        while _inline_one(trial):
            pass
        sch = trial
    except _ERRORS as err:
        LOG.debug("inlining failed: %s", str(err).splitlines()[0])
    decisions: list = []
    seen: set = set()
    while True:  # re-read the blocks each round: a rule adds blocks (write-back, init)
        todo = sorted((b for b in _root_blocks(sch) if sch.get(b).name_hint not in seen),
                      key=lambda b: is_injective(sch, b))  # reductions first: their tiles take in their padding
        if not todo:
            break
        name = sch.get(todo[0]).name_hint
        before = {sch.get(b).name_hint for b in _root_blocks(sch)}
        sch, done = _schedule_block(sch, todo[0], opts)
        decisions.append((name, done))
        seen |= _same_nests(sch, {name} | ({sch.get(b).name_hint for b in _root_blocks(sch)} - before))
    return sch.mod["main"].with_attr("tirx.is_scheduled", True), decisions


@tvm.transform.module_pass(opt_level=0, name="CPUParallelSchedule")
class CPUParallelSchedule:
    """Schedule every PrimFunc of a module for this CPU (see the module docstring).

    Parameters
    ----------
    target : Target, optional
        The target whose vector width the rules use; default ``Target.current()`` when the pass
        runs (``tvm.compile`` enters the build target), else 128-bit vectors.
    """

    def __init__(self, target: Optional[Target] = None) -> None:
        self.target = target
        self.decisions: dict[str, list] = {}

    def transform_module(self, mod: tvm.IRModule, _ctx: tvm.transform.PassContext) -> tvm.IRModule:
        opts = rule_options(self.target or Target.current(allow_none=True))
        updates = {}
        for gvar, func in mod.functions.items():
            if not isinstance(func, tvm.tirx.PrimFunc) or (func.attrs and "tirx.is_scheduled" in func.attrs):
                continue
            updates[gvar], self.decisions[gvar.name_hint] = schedule_function(func, opts)
        if not updates:
            return mod
        mod = mod.clone()  # never modify the caller's module in place
        for gvar, func in updates.items():
            mod.update_func(gvar, func)
        return mod
