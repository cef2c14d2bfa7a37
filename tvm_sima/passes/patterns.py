"""Conv / matmul epilogues, shared by annotate and realize (graph facts: :mod:`tvm_sima.graph`).

An *epilogue* is what realize folds into a fused ``sima.conv2d`` / ``sima.dense`` (a transposed
convolution is a ``sima.conv2d`` too): a chain of
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

from ..graph import GraphIndex, channel_axis, clip_bounds, constant_value, op_name

__all__ = ["ROOT_OPS", "Epilogue", "epilogue_chain"]

#: Ops whose epilogues realize folds.
ROOT_OPS = ("relax.nn.conv2d", "relax.nn.conv2d_transpose", "relax.matmul")


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
