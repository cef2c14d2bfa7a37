"""Ops that move, select or replicate values, and clips: they run on the codes.

The output keeps the input's parameters; where a route asks for other output parameters (a
pre-quantized model's quantize after the op), the moved codes are requantized to them.
"""

from __future__ import annotations

from typing import Any, Optional, Sequence, Union

from tvm import relax

from .. import math as sm
from .base import Codes, Lowered, clip_to, per_tensor, rescale, same_qparams
from .numerics import Numerics

__all__ = ["MOVES", "lower_clip", "lower_concat", "lower_move", "move_refusal"]

#: Ops that only move, select or replicate values (one tensor operand, the first); nearest resize: :mod:`.resize`.
MOVES = ("relax.reshape", "relax.permute_dims", "relax.squeeze", "relax.expand_dims", "relax.flatten",
         "relax.nn.max_pool2d", "relax.strided_slice", "relax.nn.pad")


def move_refusal(call: relax.Call, x_q: sm.QParams) -> Optional[str]:
    """Why this value-moving op cannot run on the codes of ``x_q``, else None."""
    attrs = call.attrs
    name = str(call.op.name)  # type: ignore[attr-defined]
    if name == "relax.image.resize2d" and str(attrs["method"]) != "nearest_neighbor":
        return f"{attrs['method']} resize interpolates (only nearest_neighbor runs on integers)"
    if name == "relax.nn.pad":
        if str(attrs["pad_mode"]) != "constant":
            return f"pad_mode {attrs['pad_mode']}"
        if not x_q.qmin <= _pad_code(attrs, x_q) <= x_q.qmax:
            return f"pad value {float(attrs['pad_value'])} is outside the quantized range"
    return None


def _pad_code(attrs: Any, x_q: sm.QParams) -> int:
    scale, zp = per_tensor(x_q)
    return zp + int(sm.round_real(float(attrs["pad_value"]) / scale, sm.RoundingMode.HALF_UP))


def _to_output(bb: relax.BlockBuilder, y: relax.Expr, x_q: sm.QParams, y_q: Optional[sm.QParams], codes: Codes,
               numerics: Numerics) -> relax.Expr:
    """The codes ``y`` (parameters ``x_q``) as codes of ``y_q`` within ``codes``."""
    if y_q is None or same_qparams(x_q, y_q):
        target = y_q or x_q
        return clip_to(bb, y, codes, target) if codes is not None else y
    s_x, zp_x = per_tensor(x_q)
    y32 = bb.emit(relax.op.astype(y, "int32"))
    return rescale(bb, y32, zp_x, numerics.multiplier(s_x / per_tensor(y_q)[0]), per_tensor(y_q)[1], codes,
                   str(y_q.dtype.container.name))


def lower_move(call: relax.Call, x_q: sm.QParams, y_q: Optional[sm.QParams], codes: Codes,
               numerics: Numerics) -> Union[Lowered, str]:
    """A :data:`MOVES` op on the codes; ``y_q`` None (or equal to ``x_q``): the output keeps ``x_q``.

    ``emit``'s inputs are the call's arguments with the integer input first.
    """
    refusal = move_refusal(call, x_q)
    if refusal:
        return refusal
    name = str(call.op.name)  # type: ignore[attr-defined]

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        if name == "relax.nn.pad":
            a = call.attrs
            moved: relax.Expr = relax.op.nn.pad(xs[0], [int(p) for p in a["pad_width"]], "constant",
                                                float(_pad_code(a, x_q)))
        else:
            moved = relax.Call(call.op, [xs[0], *call.args[1:]], call.attrs, call.ty_args)
        return _to_output(bb, moved, x_q, y_q, codes, numerics)

    return Lowered(f"integer {name.split('.')[-1]}", emit)


def lower_clip(x_q: sm.QParams, y_q: Optional[sm.QParams], codes: tuple[int, int], numerics: Numerics) -> Lowered:
    """relu / relu6 / clip / maximum or minimum with a constant: a clip of the codes (``codes`` from the bounds)."""

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        return _to_output(bb, xs[0], x_q, y_q, codes, numerics)

    return Lowered("integer clip", emit)


def lower_concat(parts_q: Sequence[sm.QParams], y_q: sm.QParams, axis: int, part_codes: Codes, codes: Codes,
                 numerics: Numerics) -> Lowered:
    """``concat`` of the codes; parts with other parameters than ``y_q`` are requantized first (to ``part_codes``)."""
    out_dtype = str(y_q.dtype.container.name)
    s_y, zp_y = per_tensor(y_q)

    def emit(bb: relax.BlockBuilder, xs: Sequence[relax.Expr]) -> relax.Expr:
        parts = [x if same_qparams(q, y_q) else
                 bb.emit(rescale(bb, x, per_tensor(q)[1], numerics.multiplier(per_tensor(q)[0] / s_y), zp_y,
                                 part_codes, out_dtype))
                 for x, q in zip(xs, parts_q, strict=True)]
        joined = relax.op.concat(parts, axis=axis)
        return clip_to(bb, joined, codes, y_q) if codes is not None else joined

    return Lowered("integer concat", emit, requantizes=sum(not same_qparams(q, y_q) for q in parts_q))
