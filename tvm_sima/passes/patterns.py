"""Graph facts shared by annotate and realize: producers, users, and conv / matmul epilogues.

An *epilogue* is what realize folds into a fused ``sima.conv2d`` / ``sima.dense``: a chain of
per-channel affine ops with constants (``add`` / ``subtract`` bias, ``multiply`` / ``divide``
scale: batch norm after decomposition) followed by clips (``relu``, ``relu6``, ``clip``, ``maximum`` / ``minimum``
with a scalar constant). Annotate must not quantize the tensors inside such a chain (the fused op
never materializes them); realize folds them. Both ask :func:`epilogue_chain`, so they agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np
import tvm
from tvm import relax

__all__ = [
    "ROOT_OPS",
    "Epilogue",
    "GraphIndex",
    "constant_value",
    "op_name",
    "epilogue_chain",
    "channel_axis",
    "clip_bounds",
]

#: Ops whose epilogues realize folds.
ROOT_OPS = ("relax.nn.conv2d", "relax.matmul")


def op_name(expr: Any) -> Optional[str]:
    """The operator name of a call to a registered op, else None."""
    if isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op):
        return str(expr.op.name)
    return None


def constant_value(expr: Any) -> Optional[np.ndarray]:
    """The array of a Relax constant, or of a scalar PrimValue / IntImm / FloatImm; else None."""
    if isinstance(expr, tvm.ir.GenericConst):
        return expr.value.numpy()
    if isinstance(expr, (tvm.tirx.IntImm, tvm.tirx.FloatImm)):
        return np.asarray(expr.value, dtype=np.float64)
    return None


def channel_axis(call: relax.Call) -> int:
    """Output-channel axis of a conv2d (from its out_layout) or matmul (the last)."""
    if op_name(call) == "relax.nn.conv2d":
        return str(call.attrs["out_layout"]).index("C")
    return call.ty.ndim - 1


class GraphIndex:
    """Bindings of a function's blocks: producer of each var, its users, and how often it is used."""

    def __init__(self, func: relax.Function) -> None:
        self.producer: dict[relax.Var, relax.Expr] = {}
        self.users: dict[relax.Var, list[relax.Var]] = {}
        self.order: list[relax.Var] = []
        for block in func.body.blocks:
            for binding in block.bindings:
                if not isinstance(binding, relax.VarBinding):
                    raise NotImplementedError(f"{type(binding).__name__} bindings are not supported "
                                              f"({binding.var.name}); quantize a module without match_cast")
                self.producer[binding.var] = binding.value
                self.order.append(binding.var)
                for used in _vars_in(binding.value):
                    self.users.setdefault(used, []).append(binding.var)
        for used in _vars_in(func.body.body):
            self.users.setdefault(used, []).append(None)  # type: ignore[arg-type]  # the function output

    def single_user(self, var: relax.Var) -> Optional[relax.Var]:
        users = self.users.get(var, [])
        return users[0] if len(users) == 1 and users[0] is not None else None


def _vars_in(expr: relax.Expr) -> list[relax.Var]:
    if isinstance(expr, relax.Var):
        return [expr]
    if isinstance(expr, relax.Tuple):
        return [v for f in expr.fields for v in _vars_in(f)]
    if isinstance(expr, relax.Call):
        return [v for a in expr.args for v in _vars_in(a)]
    if isinstance(expr, relax.TupleGetItem):
        return _vars_in(expr.tuple_value)
    return []


@dataclass
class Epilogue:
    """A root op and the ops folded after it: ``y = clip(a * root + b, lo, hi)`` per channel."""

    root: relax.Var
    channels: int
    axis: int
    vars: list[relax.Var] = field(default_factory=list)  # after the root, in order; the last is the output
    scale: np.ndarray = field(default_factory=lambda: np.ones(0))
    shift: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lo: float = -math.inf
    hi: float = math.inf

    @property
    def output(self) -> relax.Var:
        return self.vars[-1] if self.vars else self.root

    @property
    def internal(self) -> list[relax.Var]:
        """Vars the fused op never materializes (the root and all but the last)."""
        return [self.root, *self.vars[:-1]] if self.vars else []


def _per_channel(value: np.ndarray, ndim: int, axis: int, channels: int) -> Optional[np.ndarray]:
    """``value`` as one number per channel if it broadcasts only along ``axis``; else None."""
    if value.ndim > ndim:
        return None
    shape = (1,) * (ndim - value.ndim) + value.shape
    if any(size != 1 for i, size in enumerate(shape) if i != axis) or shape[axis] not in (1, channels):
        return None
    return np.broadcast_to(value.reshape(-1) if value.size > 1 else value.reshape(1), (channels,)).astype(np.float64)


def _step(call: relax.Expr, x: relax.Var, axis: int, channels: int, ndim: int) -> Optional[tuple[str, Any, Any]]:
    name = op_name(call)
    if name is None:
        return None
    args = list(call.args)
    if name in ("relax.add", "relax.subtract", "relax.multiply", "relax.divide") and len(args) == 2:
        if name in ("relax.subtract", "relax.divide") and not args[0].same_as(x):
            return None
        other = args[1] if args[0].same_as(x) else args[0] if args[1].same_as(x) else None
        value = constant_value(other) if other is not None else None
        per = _per_channel(np.asarray(value, dtype=np.float64), ndim, axis, channels) if value is not None else None
        if per is None:
            return None
        if name == "relax.multiply":
            return ("affine", per, np.zeros(channels))
        if name == "relax.divide":
            return ("affine", 1.0 / per, np.zeros(channels)) if np.all(per != 0) else None
        return ("affine", np.ones(channels), -per if name == "relax.subtract" else per)
    bounds = clip_bounds(call)
    if bounds is not None and bounds[0].same_as(x):
        return ("clip", bounds[1], bounds[2])
    return None


def scalar_operand(args: Any) -> Optional[tuple[int, float]]:
    """``(index of the tensor operand, the scalar)`` of a binary op with exactly one scalar constant operand."""
    values = [constant_value(a) for a in args]
    if sum(v is not None for v in values) != 1:
        return None
    k = 0 if values[0] is None else 1
    c = values[1 - k]
    assert c is not None
    return None if c.size != 1 else (k, float(c.reshape(())))


def clip_bounds(call: relax.Expr) -> Optional[tuple[relax.Expr, float, float]]:
    """``(tensor operand, lo, hi)`` of relu, relu6, clip with constant bounds, or maximum / minimum
    of a tensor and a scalar constant (either operand order); None for anything else."""
    name = op_name(call)
    if name is None:
        return None
    assert isinstance(call, relax.Call)
    args = list(call.args)
    if name in ("relax.maximum", "relax.minimum") and len(args) == 2:
        found = scalar_operand(args)
        if found is None:
            return None
        k, v = found
        return (args[k], v, math.inf) if name == "relax.maximum" else (args[k], -math.inf, v)
    if name == "relax.clip":
        lo, hi = constant_value(args[1]), constant_value(args[2])
        return None if lo is None or hi is None else (args[0], float(lo), float(hi))
    if name == "relax.nn.relu":
        return (args[0], 0.0, math.inf)
    if name == "relax.nn.relu6":
        return (args[0], 0.0, 6.0)
    return None


def epilogue_chain(index: GraphIndex, root: relax.Var) -> Optional[Epilogue]:
    """The epilogue after ``root`` (a conv2d / matmul binding), or None if ``root`` is not one.

    Follows single-use vars while each user is an affine op with per-channel constants (before
    any clip) or a clip. Float only: an integer graph has no epilogue to fold.
    """
    call = index.producer.get(root)
    if call is None or op_name(call) not in ROOT_OPS or not isinstance(call.ty, relax.TensorType) or call.ty.ndim < 1:
        return None
    assert isinstance(call, relax.Call)
    axis = channel_axis(call)
    dim = call.ty.shape[axis] if call.ty.shape is not None else None
    if not isinstance(dim, tvm.tirx.IntImm):
        return None
    channels, ndim = int(dim), call.ty.ndim
    chain = Epilogue(root, channels, axis, scale=np.ones(channels), shift=np.zeros(channels))
    current, clipped = root, False
    while True:
        user = index.single_user(current)
        if user is None:
            break
        step = _step(index.producer[user], current, axis, channels, ndim)
        if step is None or (step[0] == "affine" and clipped):
            break
        if step[0] == "affine":
            chain.scale, chain.shift = chain.scale * step[1], chain.shift * step[1] + step[2]
        else:
            clipped = True
            chain.lo, chain.hi = max(chain.lo, step[1]), min(chain.hi, step[2])
        chain.vars.append(user)
        current = user
    return chain
