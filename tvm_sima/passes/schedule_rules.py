"""The rules of the CPU schedule, one per kind of block; each works on a schedule copy.

* :func:`tile_reduction`: a reduction (a convolution, a matmul) as a register tile. The loop
  of the innermost output index is split into a vector (``v``), a second spatial loop into a
  register block (``u``); the loop order is ``[spatial outer..., u_o, v_o | reductions | u_i, v_i]``
  with the outer spatial loops fused into one parallel loop, so ``u x v`` accumulators stay in
  registers for the whole reduction. The accumulator is a local cache whose write-back carries
  the element-wise epilogue (bias, clip) inlined into it, once per tile.
* :func:`channel_vector_reduction`: a reduction whose output's innermost axis has no vector width
  (NCHW at 14 x 14): a vector of accumulators along another axis (its channels).
* :func:`parallel_reduction`: when neither applies: its spatial loops parallel.
* :func:`schedule_injective`: an element-wise block: outer loops parallel, innermost vectorized.

Each returns a short label of what it did, or None when it does not apply; a schedule error
means the same (the caller keeps its schedule copy only on success).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

from tvm import s_tir

from .schedule_analysis import (
    BlockView,
    extent,
    has_if_then_else,
    is_annotated,
    is_injective,
    product,
    uses,
    vector_factor,
)

__all__ = ["RuleOptions", "channel_vector_reduction", "parallel_reduction", "schedule_injective", "tile_reduction"]


@dataclass(frozen=True)
class RuleOptions:
    """Knobs of the rules (measured defaults; see ``benchmarks/bench_float_cnn.py``).

    lanes : vector register lanes for 32-bit elements (from the target).
    max_accumulators : vector registers a register tile may hold (x86: 16 ymm, 32 zmm registers).
    vector_scale : a vector may span this many registers (``v = vector_scale * lanes``).
    min_lanes : narrowest vector worth using.
    min_parallel_work : iterations below which a nest stays on one core.
    """

    lanes: int = 8
    max_accumulators: int = 12
    vector_scale: int = 4
    min_lanes: int = 4
    min_parallel_work: int = 16384

    def lanes_for(self, bits: int) -> int:
        return max(self.lanes * 32 // max(bits, 8), 2)


def _parallel(sch: s_tir.Schedule, loops: list, work: Optional[int], opts: RuleOptions) -> Any:
    """Fuse ``loops`` into one loop, parallel when the nest is worth two threads; returns it."""
    if not loops:
        return None
    fused = sch.fuse(*loops) if len(loops) > 1 else loops[0]
    if (work is None or work >= opts.min_parallel_work) and (extent(sch, fused) or 2) > 1:
        sch.parallel(fused)
    return fused


def _bits(sch: s_tir.Schedule, block: Any) -> int:
    writes = sch.get(block).writes
    return int(writes[0].source.dtype.bits) if writes else 32


def schedule_injective(sch: s_tir.Schedule, block: Any, opts: RuleOptions, vectorize: bool = True) -> Optional[str]:
    """Element-wise block: fused parallel outer loops, vectorized innermost (a power-of-two part)."""
    view = BlockView(sch, block)
    if not view.ok or not view.loops:
        return None
    loops, work = list(view.loops), product(sch, view.loops)
    pick = view.vector_candidate(sch) if vectorize else (None, False)
    lanes = opts.vector_scale * opts.lanes_for(_bits(sch, block))
    factor = vector_factor(extent(sch, loops[-1]), lanes, opts.min_lanes) if pick == (len(loops) - 1, True) else None
    if factor is not None:
        if factor == extent(sch, loops[-1]):
            vec, loops = loops[-1], loops[:-1]
        else:
            outer, vec = sch.split(loops[-1], factors=[None, factor])
            loops = [*loops[:-1], outer]
        _parallel(sch, loops, work, opts)
        sch.vectorize(vec)
        return "parallel+vector"
    # Not vectorized: the innermost loop stays serial, out of the parallel loop (a fused loop of one
    # element per iteration pays a div/mod per element and loses LLVM's own loop vectorizer).
    if len(loops) == 1:
        inner = next((d for d in (64, 32, 16, 8) if (extent(sch, loops[0]) or 1) % d == 0), None)
        if inner is None or (extent(sch, loops[0]) or 0) < 128:
            _parallel(sch, loops, work, opts)
            return "parallel"
        loops = list(sch.split(loops[0], factors=[None, inner]))
    _parallel(sch, loops[:-1], work, opts)
    return "parallel(inner serial)"


def channel_vector_reduction(sch: s_tir.Schedule, block: Any, opts: RuleOptions) -> Optional[str]:
    """A reduction whose output's innermost axis has no vector width (an NCHW conv at 14 x 14):
    the innermost spatial loop whose extent is a multiple of the lanes (its channels) is split, its
    inner part moved below the reduction loops and vectorized (a vector of accumulators, the
    weights gathered), the other spatial loops fused into one parallel loop."""
    view = BlockView(sch, block)
    first = min(view.reduce) if view.reduce else len(view.loops)
    if not view.ok or not view.reduce or any(view.kind[i] != "S" for i in range(first)):
        return None
    lanes = opts.lanes_for(_bits(sch, block))
    spatial = view.loops[:first]
    picks = [i for i, loop in enumerate(spatial) if (extent(sch, loop) or 0) % lanes == 0 and extent(sch, loop)]
    if not picks:
        return None
    work = product(sch, view.loops)
    outer, inner = sch.split(spatial[picks[-1]], factors=[None, lanes])
    later = spatial[picks[-1] + 1:]
    sch.reorder(*later, *view.loops[first:], inner)
    sch.vectorize(inner)  # before decompose_reduction (as in tile_reduction)
    _parallel(sch, [*spatial[:picks[-1]], outer, *later], work, opts)
    if not is_annotated(sch, block):
        _vectorize_innermost(sch, sch.decompose_reduction(block, view.loops[first]))
    return f"channel vector({lanes})"


def parallel_reduction(sch: s_tir.Schedule, block: Any, opts: RuleOptions) -> Optional[str]:
    """The spatial loops outside every reduction loop fused and parallel; the reduction serial."""
    view = BlockView(sch, block)
    if not view.ok:
        return None
    first = min(view.reduce) if view.reduce else len(view.loops)
    if any(view.kind[i] != "S" for i in range(first)):
        return None
    _parallel(sch, view.loops[:first], product(sch, view.loops), opts)
    return "reduction parallel"


@dataclass(frozen=True)
class _Tile:
    v: int  # loop index of the vector axis
    v_factor: int
    vectorized: bool
    u: Optional[int]  # loop index of the register-block axis
    u_factor: Optional[int]


def _register_block(sch: s_tir.Schedule, view: BlockView, v: int, vectors: int, opts: RuleOptions) -> tuple:
    """(reuse, factor, loop) of the register-block axis: reuse first, then most accumulators, then the
    innermost loop (neighbouring pixels share cache lines); ``(0, 1, None)`` when no loop divides.

    A loop "reuses" when the reads that move with the vector axis do not move with it (a conv's
    input pixel times a vector of output channels: the pixel is loaded once per weight vector).
    """
    reads_v = [r for r in view.stmt.reads if any(uses(rg.min, view.var_of[v]) for rg in r.region)]
    budget = max(opts.max_accumulators // vectors, 1)
    best: tuple = (0, 1, None)
    for i in view.spatial:
        e = extent(sch, view.loops[i])
        if i == v or i not in view.var_of or not e or e < 2:
            continue
        reuse = int(not any(uses(rg.min, view.var_of[i]) for r in reads_v for rg in r.region))
        factor = max((f for f in range(2, min(e, budget) + 1) if e % f == 0), default=None)
        if factor is not None and (reuse, factor) >= best[:2]:
            best = (reuse, factor, i)
    return best


def _choose_tile(sch: s_tir.Schedule, view: BlockView, block: Any, opts: RuleOptions) -> Optional[_Tile]:
    """The tile with the most accumulators in the register budget (ties: the narrower vector)."""
    v, vectorized = view.vector_candidate(sch)
    if v is None:
        return None
    lanes = opts.lanes_for(_bits(sch, block))
    length = extent(sch, view.loops[v])
    best: Optional[tuple] = None
    widths = [lanes * k for k in (1, 2, 4) if k <= opts.vector_scale] if vectorized else [4]
    for width in widths:  # gathered reads (not vectorized): a register tile of scalars, unrolled
        factor = vector_factor(length, width, opts.min_lanes if vectorized else 2)
        if factor is None or (best is not None and factor == best[0].v_factor):
            continue
        vectors = -(-factor // lanes) if vectorized else factor
        reuse, u_factor, u = _register_block(sch, view, v, vectors, opts)
        score = (reuse, min(u_factor * vectors, opts.max_accumulators))
        if best is None or score > best[1]:
            best = (_Tile(v, factor, vectorized, u, u_factor if u is not None else None), score)
    return None if best is None else best[0]


def _buffer_size(buffer: Any) -> int:
    size = 1
    for dim in buffer.shape:
        size *= int(dim) if hasattr(dim, "value") else 1
    return size


def _vector_operands_dominate(view: BlockView, v: int) -> bool:
    """Do the reads that move with the vector axis (a conv's weights) outweigh the others (its input)?

    Then the vector axis's outer loop goes first: the tiles of one weight slice run one after
    the other and find it in cache (a 1x1 conv of 320 -> 1280 channels at 7x7: 1.6 MB of weights).
    """
    sizes = {True: 0, False: 0}
    for read in view.stmt.reads:
        moves = any(uses(rg.min, view.var_of[v]) for rg in read.region)
        sizes[moves] += _buffer_size(read.source)
    return sizes[True] > sizes[False]


def _cache_with_epilogue(sch: s_tir.Schedule, block: Any) -> Any:
    """A local accumulator for ``block``; its write-back absorbs the element-wise consumers after it."""
    write_back = sch.cache_write(block, 0, "local")
    for _ in range(8):
        consumers = list(sch.get_consumers(write_back))
        if len(consumers) != 1 or not is_injective(sch, consumers[0]) or is_annotated(sch, consumers[0]):
            break
        try:
            sch.reverse_compute_inline(consumers[0])
        except s_tir.ScheduleError:
            break
    return write_back


def _vectorize_innermost(sch: s_tir.Schedule, block: Any) -> None:
    loops = sch.get_loops(block)
    if len(loops) > 1 and (extent(sch, loops[-1]) or 0) > 1:
        sch.vectorize(loops[-1])


def _pad_per_tile(sch: s_tir.Schedule, block: Any, loop: Any) -> None:
    """Each tile pads the input window it reads (in cache) instead of reading a padded copy of the input.

    Only for an element-wise producer with an ``if_then_else`` (TOPI's ``pad``) feeding this block alone.
    """
    for producer in sch.get_producers(block):
        if (not is_injective(sch, producer) or is_annotated(sch, producer) or not has_if_then_else(sch, producer)
                or len(sch.get_consumers(producer)) != 1):
            continue
        try:
            sch.compute_at(producer, loop, preserve_unit_loops=True)
        except s_tir.ScheduleError:
            continue
        _vectorize_innermost(sch, producer)


def tile_reduction(sch: s_tir.Schedule, block: Any, opts: RuleOptions) -> Optional[str]:
    """The register tile of the module docstring; None when the block has no vectorizable output axis."""
    view = BlockView(sch, block)
    if not view.ok or not view.reduce:
        return None
    tile = _choose_tile(sch, view, block, opts)
    if tile is None:
        return None
    work, reduction_work = product(sch, view.loops), product(sch, [view.loops[i] for i in view.reduce])
    write_back = _cache_with_epilogue(sch, block)
    loops = sch.get_loops(block)
    v_o, v_i = sch.split(loops[tile.v], factors=[None, tile.v_factor])
    u_o = u_i = None
    if tile.u is not None:
        u_o, u_i = sch.split(loops[tile.u], factors=[None, tile.u_factor])
    outer = [v_o if i == tile.v else u_o if i == tile.u else loops[i] for i in view.spatial]
    if _vector_operands_dominate(view, tile.v):  # consecutive tiles share their slice of the weights
        outer = [v_o, *(loop for loop in outer if loop is not v_o)]
    reductions = [loops[i] for i in view.reduce]
    sch.reorder(*outer, *reductions, *([u_i] if u_i is not None else []), v_i)
    fused = _parallel(sch, outer, work, opts)
    sch.reverse_compute_at(write_back, fused, preserve_unit_loops=True)
    _pad_per_tile(sch, block, fused)
    # vectorize / unroll before decompose_reduction: after it the update block is no longer a
    # complete reduction and vectorize() refuses it
    (sch.vectorize if tile.vectorized else sch.unroll)(v_i)
    if u_i is not None:
        sch.unroll(u_i)
    if not is_annotated(sch, block):  # annotated blocks keep their name and their T.init
        _vectorize_innermost(sch, sch.decompose_reduction(block, reductions[0]))
    _vectorize_innermost(sch, write_back)
    if reduction_work and reduction_work <= 16:
        sch.unroll(reductions[-1])
    return f"tile(v={tile.v_factor}{'' if tile.vectorized else ' scalar'}, u={tile.u_factor})"
