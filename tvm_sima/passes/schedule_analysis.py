"""What the CPU schedule rules need to know about one TIR block: its loops, their kinds, its accesses.

:class:`BlockView` maps each loop of a block to the block iterator it binds (spatial ``"S"`` or
reduction ``"R"``) and finds the loop worth vectorizing: the one bound to the innermost index
of the block's single output, provided every read is either contiguous in it (unit stride in
its last dimension) or invariant to it. Nothing here changes a schedule.
"""

from __future__ import annotations

from typing import Any, Optional

import tvm
from tvm import s_tir, tirx
from tvm.tirx.analysis import undefined_vars

__all__ = ["BlockView", "extent", "has_if_then_else", "is_annotated", "is_injective", "product", "uses",
           "vector_factor", "vector_lanes"]

_get_realize = tvm.get_global_func("s_tir.schedule.GetSBlockRealize")
_has_if_then_else = tvm.get_global_func("s_tir.schedule.HasIfThenElse")
_DATA_PAR = tirx.IterVar.DataPar
_COMM_REDUCE = tirx.IterVar.CommReduce
#: Largest constant stride a vectorized read may have in its last dimension (stride-2 convs).
MAX_READ_STRIDE = 4


def extent(sch: s_tir.Schedule, loop: Any) -> Optional[int]:
    """A loop's static extent, None when it is symbolic."""
    e = sch.get(loop).extent
    return int(e) if isinstance(e, tirx.IntImm) else None


def product(sch: s_tir.Schedule, loops: list) -> Optional[int]:
    """The number of iterations of a loop nest, None when an extent is symbolic."""
    total = 1
    for loop in loops:
        e = extent(sch, loop)
        if e is None:
            return None
        total *= e
    return total


def uses(expr: Any, var: Any) -> bool:
    """Does ``expr`` read the variable ``var``?"""
    return any(v.same_as(var) for v in undefined_vars(expr))


def _stride_ok(expr: Any, var: Any, allow_strided: bool) -> bool:
    """``expr == c * var + (terms free of var)`` with c == 1 (or 1 <= c <= MAX_READ_STRIDE)."""
    coef = tvm.sym.detect_linear_equation(expr, [var])
    if len(coef) != 2 or not isinstance(coef[0], tirx.IntImm):
        return False
    c = int(coef[0])
    return c == 1 or (allow_strided and 1 <= c <= MAX_READ_STRIDE)


def vector_lanes(target: Any, dtype_bits: int) -> int:
    """Lanes of one vector register of ``target`` for elements of ``dtype_bits`` bits (at least 2)."""
    bits = 128
    if target is not None:
        from tvm.target.codegen import llvm_get_vector_width

        bits = int(llvm_get_vector_width(target)) or 128
    return max(bits // max(dtype_bits, 8), 2)


def vector_factor(length: Optional[int], max_lanes: int, min_lanes: int) -> Optional[int]:
    """The largest power of two dividing ``length`` in ``[min_lanes, max_lanes]``, None if none.

    Powers of two only: odd widths such as ``<28 x float>`` become long shuffle chains in LLVM
    (the prototype measured them 5-10x slower than ``<4 x float>``); a divisor leaves no tail.
    """
    if length is None or length < 2:
        return None
    d = 1
    while d * 2 <= max_lanes:
        d *= 2
    while d >= max(min_lanes, 2):
        if length % d == 0:
            return d
        d //= 2
    return None


def is_annotated(sch: s_tir.Schedule, block: Any) -> bool:
    """Blocks with annotations (the ``sima.*`` records) are never inlined, nor inlined into."""
    return len(sch.get(block).annotations) > 0


def has_if_then_else(sch: s_tir.Schedule, block: Any) -> bool:
    """Does the block compute an ``if_then_else`` (TOPI's ``pad`` does)?"""
    return bool(_has_if_then_else(sch.get(block)))


def is_injective(sch: s_tir.Schedule, block: Any) -> bool:
    stmt = sch.get(block)
    return stmt.init is None and all(iv.iter_type == _DATA_PAR for iv in stmt.iter_vars)


class BlockView:
    """Loops of one block and the iterator each binds; ``ok`` is False for non-trivial bindings."""

    def __init__(self, sch: s_tir.Schedule, block: Any, allow_strided: bool = True) -> None:
        self.allow_strided = allow_strided
        self.stmt = sch.get(block)
        self.loops = list(sch.get_loops(block))
        self.kind: dict[int, str] = {}
        self.var_of: dict[int, Any] = {}
        realize = _get_realize(sch, block)
        self.ok = not isinstance(realize.predicate, tirx.IntImm) or int(realize.predicate) == 1
        self._bind(sch, realize)
        for i in range(len(self.loops)):
            self.kind.setdefault(i, "S")  # loops bound to no iterator (unit loops) count as spatial
        self.spatial = [i for i, k in sorted(self.kind.items()) if k == "S"]
        self.reduce = [i for i, k in sorted(self.kind.items()) if k == "R"]

    def _bind(self, sch: s_tir.Schedule, realize: Any) -> None:
        loop_vars = [sch.get(loop).loop_var for loop in self.loops]
        for iv, value in zip(self.stmt.iter_vars, realize.iter_values, strict=True):
            index = next((i for i, lv in enumerate(loop_vars) if lv.same_as(value)), None)
            if index is None or index in self.kind:
                self.ok = self.ok and isinstance(value, tirx.IntImm)  # constant bindings of unit iterators
                continue
            if iv.iter_type not in (_DATA_PAR, _COMM_REDUCE):
                self.ok = False
            self.kind[index] = "S" if iv.iter_type == _DATA_PAR else "R"
            self.var_of[index] = iv.var

    def vector_candidate(self, sch: s_tir.Schedule) -> tuple[Optional[int], bool]:
        """(loop bound to the innermost varying output index, are all accesses contiguous in it?)"""
        if len(self.stmt.writes) != 1:
            return None, False
        region = list(self.stmt.writes[0].region)
        pick = None
        for rg in reversed(region):
            pick = next((i for i in self.spatial if i in self.var_of and uses(rg.min, self.var_of[i])
                         and (extent(sch, self.loops[i]) or 0) > 1), None)
            if pick is not None or not isinstance(rg.min, tirx.IntImm):
                break
        if pick is None:
            return None, False
        var = self.var_of[pick]
        if not uses(region[-1].min, var) or not _stride_ok(region[-1].min, var, False):
            return pick, False  # strided stores
        return pick, all(self._read_ok(read, var) for read in self.stmt.reads)

    def _read_ok(self, read: Any, var: Any) -> bool:
        index = [rg.min for rg in read.region]
        if any(not (isinstance(rg.extent, tirx.IntImm) and int(rg.extent) == 1) for rg in read.region):
            return False
        if not index:
            return True
        if any(uses(e, var) for e in index[:-1]):
            return False  # the vector loop moves an outer dimension: a gather
        return not uses(index[-1], var) or _stride_ok(index[-1], var, self.allow_strided)
