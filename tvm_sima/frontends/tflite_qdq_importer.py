"""The int8 TFLite importer's core: the handler registry, the :class:`Importer` state a handler reads
(tensors, values, shape arithmetic evaluated at import time, the dilated-convolution form) and the
helpers every op family shares (:func:`qparams`, :func:`finish`, :func:`same`).

The handlers live in one module per op family (``tflite_qdq_conv``, ``tflite_qdq_moves``,
``tflite_qdq_elementwise``), registered with :func:`register`; :mod:`tvm_sima.frontends.tflite_qdq`
imports them all and is the public entry point.
"""

from __future__ import annotations

import re
from typing import Callable, Optional, Union

import numpy as np
from tvm import relax

from .. import math as sm
from .. import ops as so
from .tflite_flatbuffer import TFLiteGraph, TFLiteOp, TFLiteTensor

_ACTIVATIONS = {"NONE": None, "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
_SHAPE_OPS = ("SHAPE", "PACK", "STRIDED_SLICE")  # evaluated at import time when their inputs are int32

#: ``handler(importer, op) -> the op's output``: a function per TFLite op name, registered with :func:`register`.
Handler = Callable[["Importer", TFLiteOp], relax.Expr]
HANDLERS: dict[str, Handler] = {}


def register(*names: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        for name in names:
            HANDLERS[name] = fn
        return fn

    return wrap


def qparams(t: TFLiteTensor, axis: int = -1) -> sm.QParams:
    scale = np.asarray(t.scale, dtype=np.float64)
    zp = np.asarray(t.zero_point, dtype=np.int64)
    if scale.size == 1:
        return sm.QParams(float(scale[0]), int(zp[0]), str(np.dtype(t.dtype)))
    return sm.QParams(scale, zp, str(np.dtype(t.dtype)), axis=axis)


def finish(bb: relax.BlockBuilder, op: TFLiteOp, out: TFLiteTensor, y: relax.Expr) -> relax.Expr:
    activation = op.options.get("FusedActivationFunction", "NONE")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"op {op.index} ({op.name}): fused activation {activation} is not supported")
    bounds = _ACTIVATIONS[activation]
    if bounds is not None:
        lo, hi = bounds
        y = bb.emit(relax.op.nn.relu(y) if hi is None else relax.op.clip(y, lo, hi))
    return bb.emit(so.quantize(y, qparams(out), sm.RoundingMode.HALF_AWAY_FROM_ZERO), name_hint=var_name(out.name))


def var_name(tensor_name: str) -> str:
    """A readable Relax name for a TFLite tensor: its last two path parts (first of ';' aliases)."""
    parts = [p for p in tensor_name.split(";")[0].split("/") if p]
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts[-2:])) or "t"


def same(a: TFLiteTensor, b: TFLiteTensor) -> bool:
    return bool(np.array_equal(a.scale, b.scale) and np.array_equal(a.zero_point, b.zero_point)
                and a.dtype == b.dtype)


def _consumers(graph: TFLiteGraph) -> dict[int, list[TFLiteOp]]:
    users: dict[int, list[TFLiteOp]] = {}
    for op in graph.ops:
        for i in op.inputs:
            users.setdefault(i, []).append(op)
    return users


def _atrous(graph: TFLiteGraph, users: dict[int, list[TFLiteOp]], s2b: TFLiteOp) -> Union[dict, str]:
    """The dilated convolution a SPACE_TO_BATCH_ND starts, or why it is not one."""
    conv = users.get(s2b.outputs[0], [])
    if len(conv) != 1 or conv[0].name not in ("CONV_2D", "DEPTHWISE_CONV_2D"):
        return "its output does not feed exactly one CONV_2D / DEPTHWISE_CONV_2D"
    c = conv[0]
    o = c.options
    if o["Padding"] != "VALID" or (o["StrideH"], o["StrideW"], o["DilationHFactor"], o["DilationWFactor"]) != (1,) * 4:
        return f"op {c.index} after it is not a VALID, stride-1, undilated convolution"
    b2s = users.get(c.outputs[0], [])
    if len(b2s) != 1 or b2s[0].name != "BATCH_TO_SPACE_ND":
        return f"op {c.index} after it does not feed exactly one BATCH_TO_SPACE_ND"
    b = b2s[0]
    consts = [graph.tensors[s2b.inputs[k]].data for k in (1, 2)] + [graph.tensors[b.inputs[k]].data for k in (1, 2)]
    if any(v is None for v in consts):
        return "block shape, paddings or crops are not constants"
    block, pads, block_out, crops = (np.asarray(v) for v in consts)
    if not np.array_equal(block, block_out) or block.shape != (2,):
        return f"BATCH_TO_SPACE_ND (op {b.index}) uses another block shape"
    before = pads[:, 0] - crops[:, 0]
    after = pads[:, 1] - crops[:, 1]
    if (before < 0).any() or (after < 0).any():
        return "crops larger than the paddings"
    if not same(graph.tensors[s2b.inputs[0]], graph.tensors[s2b.outputs[0]]) or \
            not same(graph.tensors[c.outputs[0]], graph.tensors[b.outputs[0]]):
        return "the space/batch ops change the quantization parameters"
    return {"conv": c.index, "b2s": b.index, "input": s2b.inputs[0], "output": b.outputs[0],
            "dilation": (int(block[0]), int(block[1])),
            "padding": [int(before[0]), int(before[1]), int(after[0]), int(after[1])]}


def strided_slices(begin: np.ndarray, end: np.ndarray, strides: np.ndarray,
                   options: dict) -> tuple[list[slice], list[int]]:
    """Python slices of a TFLite STRIDED_SLICE and the axes it drops (shrink_axis_mask)."""
    if options.get("EllipsisMask", 0) or options.get("NewAxisMask", 0):
        raise ValueError("STRIDED_SLICE with ellipsis_mask / new_axis_mask is not supported")
    slices, dropped = [], []
    for axis, (b, e, st) in enumerate(zip(begin.tolist(), end.tolist(), strides.tolist(), strict=True)):
        bit = 1 << axis
        if options.get("ShrinkAxisMask", 0) & bit:
            slices.append(slice(b, b + 1 if b != -1 else None, 1))
            dropped.append(axis)
            continue
        stop = b + e if options.get("Offset", False) else e
        slices.append(slice(None if options.get("BeginMask", 0) & bit else b,
                            None if options.get("EndMask", 0) & bit else stop, st))
    return slices, dropped


class Importer:
    """The graph being built: ``values`` (Relax value per tensor index), ``static`` (int32 shape
    arithmetic evaluated here), ``atrous`` (the dilated convolutions, by conv op index); a handler reads
    tensors through :meth:`value` / :meth:`dequantize` / :meth:`static_value` and emits on ``bb``."""

    def __init__(self, graph: TFLiteGraph, bb: relax.BlockBuilder, params: list[relax.Var]) -> None:
        self.graph, self.bb = graph, bb
        self.values: dict[int, relax.Expr] = dict(zip(graph.inputs, params, strict=True))
        self.static: dict[int, np.ndarray] = {}  # int32 shape arithmetic, evaluated here
        users = _consumers(graph)
        self.atrous: dict[int, dict] = {}
        self.skip: set[int] = set()
        for op in graph.ops:
            if op.name == "SPACE_TO_BATCH_ND":
                found = _atrous(graph, users, op)
                if isinstance(found, str):
                    raise ValueError(f"op {op.index} (SPACE_TO_BATCH_ND): {found}; only the dilated-convolution "
                                     "form SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND is supported")
                self.atrous[found["conv"]] = found
                self.skip.update((op.index, found["b2s"]))
        stray = [op.index for op in graph.ops if op.name == "BATCH_TO_SPACE_ND" and op.index not in self.skip]
        if stray:
            raise ValueError(f"op {stray[0]} (BATCH_TO_SPACE_ND) does not close a dilated convolution; only "
                             "SPACE_TO_BATCH_ND -> CONV_2D -> BATCH_TO_SPACE_ND is supported")

    def out_name(self, op: TFLiteOp) -> str:
        return var_name(self.tensor(op.outputs[0]).name)

    def tensor(self, index: int) -> TFLiteTensor:
        return self.graph.tensors[index]

    def value(self, index: int) -> relax.Expr:
        if index in self.values:
            return self.values[index]
        t = self.tensor(index)
        if t.data is None:
            raise ValueError(f"tensor {index} '{t.name}' is used before it is computed")
        return relax.const(np.ascontiguousarray(t.data), str(t.dtype))

    def static_value(self, index: int) -> Optional[np.ndarray]:
        if index in self.static:
            return self.static[index]
        return self.tensor(index).data

    def shape(self, index: int) -> list[int]:
        ty = self.bb.normalize(self.value(index)).ty
        return [int(d) for d in ty.shape]  # type: ignore[attr-defined]

    def dequantize(self, index: int) -> relax.Expr:
        t = self.tensor(index)
        if t.dtype != np.int8 or not t.quantized:
            raise ValueError(f"tensor '{t.name}' is {np.dtype(t.dtype).name}"
                             f"{'' if t.quantized else ' without quantization parameters'}; only int8 "
                             "quantized activations are supported")
        return self.bb.emit(so.dequantize(self.value(index), qparams(t)))

    def run(self, op: TFLiteOp) -> None:
        if op.index in self.skip:
            return
        if op.name == "SHAPE" or (op.name in _SHAPE_OPS and self.tensor(op.outputs[0]).dtype == np.int32
                                  and all(self.static_value(i) is not None for i in op.inputs if i >= 0)):
            self.static[op.outputs[0]] = self._static(op)
            return
        handler = HANDLERS.get(op.name)
        if handler is None:  # a shape op (PACK) on values computed at run time
            raise ValueError(f"op {op.index} ({op.name}): only evaluated at import time, on constant int32 inputs")
        self.values[op.outputs[0]] = handler(self, op)

    # ---- shape arithmetic, evaluated now ------------------------------------------------------------
    def _static(self, op: TFLiteOp) -> np.ndarray:
        if op.name == "SHAPE":
            return np.asarray(self.shape(op.inputs[0]), dtype=np.int32)
        args = [self.static_value(i) for i in op.inputs]
        if any(a is None for a in args):
            raise ValueError(f"op {op.index} ({op.name}): int32 inputs computed at run time are not supported")
        if op.name == "PACK":
            return np.stack([np.asarray(a) for a in args], axis=int(op.options.get("Axis", 0))).astype(np.int32)
        slices, dropped = strided_slices(np.asarray(args[1]), np.asarray(args[2]), np.asarray(args[3]), op.options)
        out = np.asarray(args[0])[tuple(slices)]
        return out.reshape([d for k, d in enumerate(out.shape) if k not in dropped]).astype(np.int32)


    def pool_geometry(self, op: TFLiteOp) -> tuple[list[int], list[int], list[int]]:
        """A pool's window, strides and padding (SAME made explicit; shared by MAX_ and AVERAGE_POOL_2D)."""
        o = op.options
        pool, strides = [o["FilterHeight"], o["FilterWidth"]], [o["StrideH"], o["StrideW"]]
        padding = [0, 0, 0, 0]
        if o["Padding"] == "SAME":
            shape = self.shape(op.inputs[0])
            (top, bottom), (left, right) = (sm.same_padding(shape[1 + i], pool[i], strides[i]) for i in range(2))
            padding = [top, left, bottom, right]
        return pool, strides, padding
