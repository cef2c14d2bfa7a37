"""Element-wise chains of one input: any such chain is one lookup table.

Importers write many activations as several element-wise ops of one tensor: hard-swish as
``x * clip(x + 3, 0, 6) / 6``, HardSigmoid as ``clip(alpha * x + beta, 0, 1)``, swish as
``x * sigmoid(x)``, a scale after a tanh, clip chains. Whatever the ops, the chain is a function of
the codes of its one input ``x``, so :func:`lower_chain` builds one table
``quantize(f(dequantize(code)))`` (``f`` evaluated in float64 on every code, :func:`~.tables.table`):
exact up to the output's own rounding, one ``take`` instead of one integer op per step, and the
chain's intermediate tensors need no parameters of their own (both routes give them none).
A hard-swish chain in a route whose numerics ask for LiteRT's kernels (``Numerics.tflite_hard_swish``)
is instead the table of LiteRT's int16 fixed-point HARD_SWISH (:func:`tvm_sima.math.tflite_hard_swish`),
bit-exact with it.

:func:`find_chains` finds the chains of a function: sets of bindings, each an op of
:data:`ELEMENTWISE` whose operands are the chain's input, earlier members or size-1 constants,
where every member but the last is used only inside the chain and the output has the input's
shape. Chains have at least two ops (one op is its own family).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Collection, Optional, Sequence, Union

import numpy as np
from tvm import relax

from .. import math as sm
from ..graph import GraphIndex, clip_bounds, constant_value, op_name
from .base import Lowered, Request
from .tables import LUT_FUNCTIONS, emit_table, table

__all__ = ["ELEMENTWISE", "Chain", "computes_hard_swish", "find_chains", "lower_chain"]

#: ``fn(operand values, call)`` on float64 arrays (constants as size-1 arrays).
ElementwiseFunction = Callable[[list[np.ndarray], relax.Call], np.ndarray]


def _clip(values: list[np.ndarray], call: relax.Call) -> np.ndarray:
    bounds = clip_bounds(call)
    assert bounds is not None
    return np.clip(values[0], bounds[1], bounds[2])


def _unary(op: str) -> ElementwiseFunction:
    return lambda v, call: LUT_FUNCTIONS[op](v[0], call)


#: Element-wise ops a chain may hold, with their real function.
ELEMENTWISE: dict[str, ElementwiseFunction] = {
    **{op: _unary(op) for op in LUT_FUNCTIONS},
    "relax.add": lambda v, c: v[0] + v[1],
    "relax.subtract": lambda v, c: v[0] - v[1],
    "relax.multiply": lambda v, c: v[0] * v[1],
    "relax.divide": lambda v, c: v[0] / v[1],
    "relax.power": lambda v, c: np.power(v[0], v[1]),
    "relax.square": lambda v, c: v[0] * v[0],
    "relax.nn.relu": _clip,
    "relax.nn.relu6": _clip,
    "relax.clip": _clip,
}
#: maximum / minimum join a chain with a constant bound, or of two members of the chain.
_MAX_MIN = {"relax.maximum": np.maximum, "relax.minimum": np.minimum}


@dataclass(frozen=True)
class Chain:
    """``output = f(source)``: ``members`` (in program order, the last is ``output``) compute ``f``."""

    source: relax.Var
    members: tuple[relax.Var, ...]
    calls: tuple[relax.Call, ...]

    @property
    def output(self) -> relax.Var:
        return self.members[-1]

    def ops(self) -> list[str]:
        return [str(op_name(c)) for c in self.calls]

    def function(self, x: np.ndarray) -> np.ndarray:
        """The chain's real function on ``x`` (float64)."""
        values: dict[relax.Var, np.ndarray] = {self.source: np.asarray(x, dtype=np.float64)}
        for var, call in zip(self.members, self.calls, strict=True):
            args = [values[a] if isinstance(a, relax.Var) else np.asarray(constant_value(a), dtype=np.float64)
                    for a in call.args if isinstance(a, relax.Var) or constant_value(a) is not None]
            op = str(op_name(call))
            if op in _MAX_MIN and len(args) == 2:
                values[var] = _MAX_MIN[op](args[0], args[1])
            else:
                values[var] = ELEMENTWISE[op](args, call)
        return values[self.output]


def _shape(expr: relax.Expr) -> Optional[tuple]:
    ty = getattr(expr, "ty", None)
    if not isinstance(ty, relax.TensorType) or not str(ty.dtype).startswith("float") or ty.shape is None:
        return None
    try:
        return tuple(int(d) for d in ty.shape)
    except (TypeError, ValueError):
        return None


def _tensor_args(call: relax.Call) -> Optional[list[relax.Var]]:
    """The tensor operands of an element-wise call, or None if it has another kind of operand."""
    op = op_name(call)
    if op not in ELEMENTWISE and op not in _MAX_MIN:
        return None
    tensors = []
    for a in call.args:
        value = constant_value(a)
        if isinstance(a, relax.Var):
            tensors.append(a)
        elif value is None or np.size(value) != 1:
            return None  # a constant tensor: one table per value (constant_tables), not a chain
    return None if op == "relax.clip" and clip_bounds(call) is None else tensors


def _sources(index: GraphIndex, exclude: Collection[relax.Var], leaves: set) -> dict[relax.Var, relax.Var]:
    """Each element-wise var whose tensor operands all come from one source: var -> that source.

    A var in ``leaves`` is a source of its users, never traced through."""
    source: dict[relax.Var, relax.Var] = {}
    for var in index.order:
        call = index.producer[var]
        if var in exclude or not isinstance(call, relax.Call):
            continue
        tensors = _tensor_args(call)
        if not tensors or _shape(var) is None:
            continue
        found = {a if a in leaves else source.get(a, a) for a in tensors}
        if len(found) == 1:
            src = found.pop()
            if _shape(src) == _shape(var):
                source[var] = src
    return source


def _escaping(index: GraphIndex, source: dict[relax.Var, relax.Var]) -> set:
    """Vars with a user outside their chain (another source, another op, the function's result)."""
    return {v for v, src in source.items()
            if any(u is None or source.get(u) is None or not source[u].same_as(src) for u in index.users.get(v, []))}


def find_chains(index: GraphIndex, exclude: Collection[relax.Var] = ()) -> list[Chain]:
    """Every chain of one input in the function ``index`` indexes (disjoint), none holding an ``exclude`` var."""
    leaves: set = set()
    while True:  # a tensor used outside the chain is materialized: the chain starts there
        source = _sources(index, exclude, leaves)
        more = _escaping(index, source) - leaves
        if not more:
            break
        leaves |= more
    position = {v: i for i, v in enumerate(index.order)}
    claimed: set = set()
    chains = []
    for var in reversed(index.order):
        if var in claimed or var not in source:
            continue
        src, members, todo = source[var], {var}, [var]
        while todo:
            for a in _tensor_args(index.producer[todo.pop()]) or []:  # type: ignore[arg-type]
                if not a.same_as(src) and a not in members:
                    members.add(a)
                    todo.append(a)
        inside = all(u in members for m in members if m is not var for u in index.users.get(m, []))
        if len(members) < 2 or not inside or members & claimed:
            continue
        ordered = tuple(sorted(members, key=position.__getitem__))
        chains.append(Chain(src, ordered, tuple(index.producer[m] for m in ordered)))  # type: ignore[misc]
        claimed |= members
    return chains[::-1]


def computes_hard_swish(chain: Chain) -> bool:
    """The chain is ``x * relu6(x + 3) / 6`` however it is written (checked on its values)."""
    probe = np.linspace(-8.0, 8.0, 257)
    with np.errstate(all="ignore"):
        return bool(np.allclose(chain.function(probe), probe * np.clip(probe + 3, 0, 6) / 6, rtol=1e-6, atol=1e-6))


def _table_values(chain: Chain, r: Request) -> tuple[np.ndarray, str]:
    """The table and its label: LiteRT's fixed-point HARD_SWISH where the route asks for it, else ``f``
    on every code."""
    x_q, y_q = r.inputs[0], r.output
    if r.numerics.tflite_hard_swish and str(x_q.dtype) == str(y_q.dtype) == "int8" and computes_hard_swish(chain):
        try:
            codes = sm.tflite_hard_swish(np.arange(x_q.qmin, x_q.qmax + 1), x_q, y_q)
            return np.clip(codes, *r.codes()).astype("int8"), "hard_swish, LiteRT's fixed point"
        except ValueError:  # scales LiteRT refuses: the exact function's table
            pass
    short = "+".join(op.rsplit(".", 1)[-1] for op in chain.ops())
    return table(chain.function, x_q, y_q, r.table_rounding, r.codes()), f"chain: {short}"


def lower_chain(chain: Chain, r: Request) -> Union[Lowered, str]:
    """The chain as one table on the codes of its input (``r.inputs[0]``), or why it stays float."""
    x_q = r.inputs[0]
    values, label = _table_values(chain, r)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        return emit_table(bb, xs[0], x_q, values)

    return Lowered(f"lookup table ({label})", emit, tally="lut(chain)")
