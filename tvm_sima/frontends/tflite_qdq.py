"""Import an int8 TFLite model as a Relax QDQ graph (``sima.dequantize`` -> float op -> ``sima.quantize``).

Relax's own TFLite importer rejects many int8 graphs; this one reads the flatbuffer with
:mod:`tvm_sima.frontends.tflite_flatbuffer` and writes, per op, the graph a QDQ converter expects:

* CONV_2D / DEPTHWISE_CONV_2D (NHWC, weights HWIO, SAME padding made explicit), TRANSPOSE_CONV
  (``conv2d_transpose``, weights IOHW, padding from the output shape) and FULLY_CONNECTED:
  ``quantize(act(op(dequantize(x), dequantize(W)) + dequantize(b)))`` with the int8 weight and the
  int32 bias kept as constants behind their dequantize (per-channel along the output channel), the
  fused activation as ``relu`` / ``clip``;
* ADD / SUB / MUL, AVERAGE_POOL_2D (padding left out of the count, as TFLite), MEAN:
  ``quantize(act(op(dequantize(a), dequantize(b))))``;
* ops that only move values and keep the scale (RESHAPE, STRIDED_SLICE, MAX_POOL_2D, PAD (with the
  zero point's code), DEPTH_TO_SPACE / SPACE_TO_DEPTH (reshape -> transpose -> reshape),
  RESIZE_NEAREST_NEIGHBOR (``take`` of LiteRT's indices per axis), and
  CONCATENATION of inputs sharing one scale) run on the integers; RELU / RELU6 /
  LOGISTIC are ``quantize(f(dequantize(x)))`` (their output may have its own parameters); a float
  PRELU with a constant slope (ai-edge-quantizer leaves PRELU float) is ``relax.nn.prelu``;
* RESIZE_BILINEAR: ``quantize(resize2d(dequantize(x)))``, NHWC, its align_corners /
  half_pixel_centers as the coordinate mode (``tvm_sima.convert`` gives it LiteRT's 10-bit taps);
* shape arithmetic on int32 tensors (SHAPE, STRIDED_SLICE, PACK: the TFLite converter's flatten with
  a dynamic batch) is evaluated at import time, so the RESHAPE gets a constant shape;
* SPACE_TO_BATCH_ND -> CONV_2D / DEPTHWISE_CONV_2D (VALID) -> BATCH_TO_SPACE_ND (how TensorFlow
  writes a dilated convolution) becomes one dilated convolution.

The model keeps its interface, as in LiteRT: int8 in and out, or float with QUANTIZE at the input
and DEQUANTIZE at the output (the TFLite converter's default). Executed as is (float
arithmetic between the dequantize and quantize), it matches LiteRT's integer kernels to within
rounding; ``tvm_sima.convert`` folds each chain into integer sima ops.
"""

from __future__ import annotations

import os
import re
from typing import Callable, Optional, Union

import numpy as np
import tvm
from tvm import relax

from .. import math as sm
from .. import ops as so
from .errors import CorruptModelError, one_line
from .tflite_flatbuffer import TFLiteGraph, TFLiteOp, TFLiteTensor, read_tflite

__all__ = ["QDQ_OPS", "import_int8_tflite", "unsupported_ops"]

QDQ_OPS = ("ADD", "AVERAGE_POOL_2D", "BATCH_TO_SPACE_ND", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
           "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D",
           "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
           "RESIZE_NEAREST_NEIGHBOR", "SHAPE", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "STRIDED_SLICE", "SUB",
           "TRANSPOSE_CONV")
_ACTIVATIONS = {"NONE": None, "RELU": (0.0, None), "RELU6": (0.0, 6.0), "RELU_N1_TO_1": (-1.0, 1.0)}
_SHAPE_OPS = ("SHAPE", "PACK", "STRIDED_SLICE")  # evaluated at import time when their inputs are int32

#: ``handler(importer, op) -> the op's output``: a method of :class:`_Importer` per TFLite op name.
Handler = Callable[["_Importer", TFLiteOp], relax.Expr]
_HANDLERS: dict[str, Handler] = {}


def _register(*names: str) -> Callable[[Handler], Handler]:
    def wrap(fn: Handler) -> Handler:
        for name in names:
            _HANDLERS[name] = fn
        return fn

    return wrap


def _qparams(t: TFLiteTensor, axis: int = -1) -> sm.QParams:
    scale = np.asarray(t.scale, dtype=np.float64)
    zp = np.asarray(t.zero_point, dtype=np.int64)
    if scale.size == 1:
        return sm.QParams(float(scale[0]), int(zp[0]), str(np.dtype(t.dtype)))
    return sm.QParams(scale, zp, str(np.dtype(t.dtype)), axis=axis)


def _constant(graph: TFLiteGraph, op: TFLiteOp, position: int) -> np.ndarray:
    t = graph.tensors[op.inputs[position]]
    if t.data is None:
        raise ValueError(f"op {op.index} ({op.name}): input {position} '{t.name}' is not a constant; "
                         "weights and biases computed at run time are not supported")
    return t.data


def _bias(graph: TFLiteGraph, op: TFLiteOp, x: TFLiteTensor, w: TFLiteTensor, channel_axis: int,
          rank: int, position: int = 2) -> relax.Expr:
    """``dequantize(int32 bias)`` (input ``position``) at the product scale, shaped to broadcast along the
    output channel."""
    b = _constant(graph, op, position).astype(np.int32)
    scales = np.float64(np.float32(x.scale[0])) * np.asarray(w.scale, dtype=np.float32).astype(np.float64)
    qp = sm.QParams(float(scales[0]), 0, "int32") if scales.size == 1 else \
        sm.QParams(scales, np.zeros(scales.size, np.int64), "int32", axis=0)
    deq = so.dequantize(relax.const(b, "int32"), qp)
    return deq if channel_axis == rank - 1 else relax.op.reshape(deq, [-1] + [1] * (rank - channel_axis - 1))


def _finish(bb: relax.BlockBuilder, op: TFLiteOp, out: TFLiteTensor, y: relax.Expr) -> relax.Expr:
    activation = op.options.get("FusedActivationFunction", "NONE")
    if activation not in _ACTIVATIONS:
        raise ValueError(f"op {op.index} ({op.name}): fused activation {activation} is not supported")
    bounds = _ACTIVATIONS[activation]
    if bounds is not None:
        lo, hi = bounds
        y = bb.emit(relax.op.nn.relu(y) if hi is None else relax.op.clip(y, lo, hi))
    return bb.emit(so.quantize(y, _qparams(out), sm.RoundingMode.HALF_AWAY_FROM_ZERO), name_hint=var_name(out.name))


def var_name(tensor_name: str) -> str:
    """A readable Relax name for a TFLite tensor: its last two path parts (first of ';' aliases)."""
    parts = [p for p in tensor_name.split(";")[0].split("/") if p]
    return re.sub(r"[^A-Za-z0-9_]", "_", "_".join(parts[-2:])) or "t"


def _same(a: TFLiteTensor, b: TFLiteTensor) -> bool:
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
    if not _same(graph.tensors[s2b.inputs[0]], graph.tensors[s2b.outputs[0]]) or \
            not _same(graph.tensors[c.outputs[0]], graph.tensors[b.outputs[0]]):
        return "the space/batch ops change the quantization parameters"
    return {"conv": c.index, "b2s": b.index, "input": s2b.inputs[0], "output": b.outputs[0],
            "dilation": (int(block[0]), int(block[1])),
            "padding": [int(before[0]), int(before[1]), int(after[0]), int(after[1])]}


def _slices(begin: np.ndarray, end: np.ndarray, strides: np.ndarray, options: dict) -> tuple[list[slice], list[int]]:
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


class _Importer:
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
        return self.bb.emit(so.dequantize(self.value(index), _qparams(t)))

    def run(self, op: TFLiteOp) -> None:
        if op.index in self.skip:
            return
        if op.name == "SHAPE" or (op.name in _SHAPE_OPS and self.tensor(op.outputs[0]).dtype == np.int32
                                  and all(self.static_value(i) is not None for i in op.inputs if i >= 0)):
            self.static[op.outputs[0]] = self._static(op)
            return
        handler = _HANDLERS.get(op.name)
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
        slices, dropped = _slices(np.asarray(args[1]), np.asarray(args[2]), np.asarray(args[3]), op.options)
        out = np.asarray(args[0])[tuple(slices)]
        return out.reshape([d for k, d in enumerate(out.shape) if k not in dropped]).astype(np.int32)

    # ---- ops on the integers ------------------------------------------------------------------------
    @_register("RESHAPE")
    def _op_reshape(self, op: TFLiteOp) -> relax.Expr:
        shape = self.static_value(op.inputs[1]) if len(op.inputs) > 1 and op.inputs[1] >= 0 else None
        target = [int(d) for d in shape] if shape is not None else list(self.tensor(op.outputs[0]).shape)
        return self.bb.emit(relax.op.reshape(self.value(op.inputs[0]), target), name_hint=self.out_name(op))

    @_register("STRIDED_SLICE")
    def _op_strided_slice(self, op: TFLiteOp) -> relax.Expr:
        args = [self.static_value(i) for i in op.inputs[1:4]]
        if any(a is None for a in args):
            raise ValueError(f"op {op.index} (STRIDED_SLICE): begin / end / strides must be constants")
        slices, dropped = _slices(np.asarray(args[0]), np.asarray(args[1]), np.asarray(args[2]), op.options)
        shape = self.shape(op.inputs[0])
        axes, begin, end, strides = [], [], [], []
        for axis, sl in enumerate(slices):
            start, stop, step = sl.indices(shape[axis])
            if step <= 0:
                raise ValueError(f"op {op.index} (STRIDED_SLICE): negative strides are not supported")
            if (start, stop, step) != (0, shape[axis], 1):
                axes.append(axis)
                begin.append(start)
                end.append(max(stop, start))
                strides.append(step)
        y = self.value(op.inputs[0])
        if axes:
            y = self.bb.emit(relax.op.strided_slice(y, axes, begin, end, strides), name_hint=self.out_name(op))
        return self.bb.emit(relax.op.squeeze(y, dropped), name_hint=self.out_name(op)) if dropped else y

    def _move_operand(self, op: TFLiteOp) -> np.ndarray:
        """The constant second input of a move on the codes (RESIZE_NEAREST_NEIGHBOR's size)."""
        value = self.static_value(op.inputs[1])
        if value is None or not _same(self.tensor(op.inputs[0]), self.tensor(op.outputs[0])):
            raise ValueError(f"op {op.index} ({op.name}): needs a constant second input and the input's "
                             "quantization parameters on the output")
        return np.asarray(value)

    @_register("DEPTH_TO_SPACE", "SPACE_TO_DEPTH")
    def _op_depth_space(self, op: TFLiteOp) -> relax.Expr:
        (n, h, w, c), k = self.shape(op.inputs[0]), int(op.options["BlockSize"])
        if op.name == "DEPTH_TO_SPACE":  # NHWC, TensorFlow's order: (k, k, C / k^2) in the channels
            steps = [(n, h, w, k, k, c // (k * k)), (n, h * k, w * k, c // (k * k))]
        else:
            steps = [(n, h // k, k, w // k, k, c), (n, h // k, w // k, c * k * k)]
        y = self.bb.emit(relax.op.reshape(self.value(op.inputs[0]), steps[0]))
        y = self.bb.emit(relax.op.permute_dims(y, [0, 1, 3, 2, 4, 5]))
        return self.bb.emit(relax.op.reshape(y, steps[1]), name_hint=self.out_name(op))

    @_register("RESIZE_NEAREST_NEIGHBOR")
    def _op_resize_nearest(self, op: TFLiteOp) -> relax.Expr:
        size, o, y = self._move_operand(op), op.options, self.value(op.inputs[0])
        for axis, n_in in ((1, self.shape(op.inputs[0])[1]), (2, self.shape(op.inputs[0])[2])):
            index = sm.tflite_nearest_indices(n_in, int(size[axis - 1]), align_corners=bool(o["AlignCorners"]),
                                              half_pixel_centers=bool(o["HalfPixelCenters"]))
            y = self.bb.emit(relax.op.take(y, relax.const(index.astype(np.int32), "int32"), axis=axis, mode="clip"))
        return y

    @_register("RESIZE_BILINEAR")
    def _op_resize_bilinear(self, op: TFLiteOp) -> relax.Expr:
        size, o = self.static_value(op.inputs[1]), op.options
        if size is None:
            raise ValueError(f"op {op.index} (RESIZE_BILINEAR): the size must be a constant")
        mode = "half_pixel" if o["HalfPixelCenters"] else "align_corners" if o["AlignCorners"] else "asymmetric"
        y = self.bb.emit(relax.op.image.resize2d(self.dequantize(op.inputs[0]), [int(d) for d in size], None, "NHWC",
                                                 "linear", mode, ""))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    @_register("MAX_POOL_2D")
    def _op_max_pool_2d(self, op: TFLiteOp) -> relax.Expr:
        x, out = self.tensor(op.inputs[0]), self.tensor(op.outputs[0])
        pool, strides, padding = self._pool_geometry(op)
        if _same(x, out) and op.options.get("FusedActivationFunction", "NONE") == "NONE":
            return self.bb.emit(relax.op.nn.max_pool2d(self.value(op.inputs[0]), pool, strides, padding,
                                                       layout="NHWC"), name_hint=self.out_name(op))
        y = self.bb.emit(relax.op.nn.max_pool2d(self.dequantize(op.inputs[0]), pool, strides, padding, layout="NHWC"))
        return _finish(self.bb, op, out, y)

    @_register("PAD")
    def _op_pad(self, op: TFLiteOp) -> relax.Expr:
        paddings = self.static_value(op.inputs[1])
        x, out = self.tensor(op.inputs[0]), self.tensor(op.outputs[0])
        if paddings is None:
            raise ValueError(f"op {op.index} (PAD): the paddings must be a constant")
        width = [int(p) for p in np.asarray(paddings).reshape(-1)]
        if _same(x, out):  # TFLite's int8 PAD: same parameters, pads with the zero point
            zp = int(np.atleast_1d(_qparams(x).zero_point)[0])
            return self.bb.emit(relax.op.nn.pad(self.value(op.inputs[0]), width, "constant", float(zp)),
                                name_hint=self.out_name(op))
        return _finish(self.bb, op, out, self.bb.emit(relax.op.nn.pad(self.dequantize(op.inputs[0]), width)))

    @_register("LOGISTIC")
    def _op_logistic(self, op: TFLiteOp) -> relax.Expr:
        y = self.bb.emit(relax.op.sigmoid(self.dequantize(op.inputs[0])))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    @_register("PRELU")
    def _op_prelu(self, op: TFLiteOp) -> relax.Expr:
        # ai-edge-quantizer 0.10.0 leaves PRELU float: DEQUANTIZE -> PRELU (float slope) -> QUANTIZE
        x, alpha = self.tensor(op.inputs[0]), self.tensor(op.inputs[1])
        shape = self.shape(op.inputs[0])
        if x.dtype != np.float32 or alpha.dtype != np.float32 or alpha.data is None:
            raise ValueError(f"op {op.index} (PRELU): only a float PRELU with a constant float slope (between "
                             "DEQUANTIZE and QUANTIZE) is supported, not the int8 kernel")
        slopes = np.asarray(alpha.data, np.float32)
        if slopes.size not in (1, shape[-1]) or slopes.size > 1 and slopes.shape[-1] != shape[-1]:
            raise ValueError(f"op {op.index} (PRELU): slope of shape {list(slopes.shape)} for input {shape}; "
                             "one slope per channel (the last axis) or one in all is supported")
        return self.bb.emit(relax.op.nn.prelu(self.value(op.inputs[0]), relax.const(slopes.reshape(-1)),
                                              axis=len(shape) - 1), name_hint=self.out_name(op))

    @_register("RELU", "RELU6")
    def _op_relu(self, op: TFLiteOp) -> relax.Expr:
        xf = self.dequantize(op.inputs[0])
        y = relax.op.nn.relu(xf) if op.name == "RELU" else relax.op.clip(xf, 0.0, 6.0)
        return _finish(self.bb, op, self.tensor(op.outputs[0]), self.bb.emit(y))

    @_register("CONCATENATION")
    def _op_concatenation(self, op: TFLiteOp) -> relax.Expr:
        out = self.tensor(op.outputs[0])
        axis = int(op.options.get("Axis", 0))
        if all(_same(self.tensor(i), out) for i in op.inputs) and \
                op.options.get("FusedActivationFunction", "NONE") == "NONE":
            return self.bb.emit(relax.op.concat([self.value(i) for i in op.inputs], axis=axis),
                                name_hint=self.out_name(op))
        y = self.bb.emit(relax.op.concat([self.dequantize(i) for i in op.inputs], axis=axis))
        return _finish(self.bb, op, out, y)

    # ---- QDQ ops --------------------------------------------------------------------------------------
    @_register("QUANTIZE")
    def _op_quantize(self, op: TFLiteOp) -> relax.Expr:
        x, out = self.tensor(op.inputs[0]), self.tensor(op.outputs[0])
        if x.dtype not in (np.float32, np.int8) or out.dtype != np.int8:
            raise ValueError(f"op {op.index} (QUANTIZE): {np.dtype(x.dtype).name} -> {np.dtype(out.dtype).name}; "
                             "only float32 -> int8 (a float model input) and int8 -> int8 are supported")
        # int8 -> int8 (a requantization, as ai-edge-quantizer writes): quantize(dequantize(x))
        xf = self.value(op.inputs[0]) if x.dtype == np.float32 else self.dequantize(op.inputs[0])
        return self.bb.emit(so.quantize(xf, _qparams(out), sm.RoundingMode.HALF_AWAY_FROM_ZERO),
                            name_hint=self.out_name(op))

    @_register("DEQUANTIZE")
    def _op_dequantize(self, op: TFLiteOp) -> relax.Expr:
        if self.tensor(op.inputs[0]).data is not None:
            raise ValueError(f"op {op.index} (DEQUANTIZE): dequantized constants (float16 / int8 weights of a "
                             "float model) are not supported in an int8 model")
        return self.bb.emit(so.dequantize(self.value(op.inputs[0]), _qparams(self.tensor(op.inputs[0]))),
                            name_hint=self.out_name(op))

    def _pool_geometry(self, op: TFLiteOp) -> tuple[list[int], list[int], list[int]]:
        o = op.options
        pool, strides = [o["FilterHeight"], o["FilterWidth"]], [o["StrideH"], o["StrideW"]]
        padding = [0, 0, 0, 0]
        if o["Padding"] == "SAME":
            shape = self.shape(op.inputs[0])
            (top, bottom), (left, right) = (sm.same_padding(shape[1 + i], pool[i], strides[i]) for i in range(2))
            padding = [top, left, bottom, right]
        return pool, strides, padding

    @_register("AVERAGE_POOL_2D")
    def _op_average_pool_2d(self, op: TFLiteOp) -> relax.Expr:
        pool, strides, padding = self._pool_geometry(op)
        y = self.bb.emit(relax.op.nn.avg_pool2d(self.dequantize(op.inputs[0]), pool, strides, padding, layout="NHWC",
                                                count_include_pad=False))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    def _binary(self, op: TFLiteOp, fn: Callable[[relax.Expr, relax.Expr], relax.Expr]) -> relax.Expr:
        y = self.bb.emit(fn(self.dequantize(op.inputs[0]), self.dequantize(op.inputs[1])))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    @_register("ADD")
    def _op_add(self, op: TFLiteOp) -> relax.Expr:
        return self._binary(op, relax.op.add)

    @_register("SUB")
    def _op_sub(self, op: TFLiteOp) -> relax.Expr:
        return self._binary(op, relax.op.subtract)

    @_register("MUL")
    def _op_mul(self, op: TFLiteOp) -> relax.Expr:
        return self._binary(op, relax.op.multiply)

    @_register("HARD_SWISH")
    def _op_hard_swish(self, op: TFLiteOp) -> relax.Expr:
        """``x * relu6(x + 3) / 6`` between the dequantize and the quantize: the converter's one table
        (``lowering.chains``; in ``mode="tflite"`` LiteRT's own fixed-point hard-swish)."""
        x = self.dequantize(op.inputs[0])
        three, six = relax.const(3.0, "float32"), relax.const(6.0, "float32")
        relu6 = self.bb.emit(relax.op.clip(self.bb.emit(relax.op.add(x, three)), 0, 6))
        y = self.bb.emit(relax.op.divide(self.bb.emit(relax.op.multiply(x, relu6)), six))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    @_register("MAXIMUM")
    def _op_maximum(self, op: TFLiteOp) -> relax.Expr:
        return self._binary(op, relax.op.maximum)

    @_register("MINIMUM")
    def _op_minimum(self, op: TFLiteOp) -> relax.Expr:
        return self._binary(op, relax.op.minimum)

    @_register("MEAN")
    def _op_mean(self, op: TFLiteOp) -> relax.Expr:
        axes = self.static_value(op.inputs[1])
        if axes is None:
            raise ValueError(f"op {op.index} (MEAN): the axes must be a constant")
        y = self.bb.emit(relax.op.mean(self.dequantize(op.inputs[0]), [int(a) for a in np.atleast_1d(axes)],
                                       keepdims=bool(op.options.get("KeepDims", False))))
        return _finish(self.bb, op, self.tensor(op.outputs[0]), y)

    @_register("CONV_2D", "DEPTHWISE_CONV_2D")
    def _op_conv_2d(self, op: TFLiteOp) -> relax.Expr:
        graph, o = self.graph, op.options
        atrous = self.atrous.get(op.index)
        x_index = atrous["input"] if atrous else op.inputs[0]
        x, w, out = self.tensor(x_index), self.tensor(op.inputs[1]), self.tensor(op.outputs[0])
        weight = _constant(graph, op, 1)
        if op.name == "CONV_2D":
            hwio, groups = weight.transpose(1, 2, 3, 0), 1  # OHWI -> HWIO
        else:
            hwio, groups = weight.transpose(1, 2, 0, 3), self.shape(x_index)[3]  # 1,H,W,C*m -> H,W,1,C*m
        strides = (o["StrideH"], o["StrideW"])
        dilation = atrous["dilation"] if atrous else (o["DilationHFactor"], o["DilationWFactor"])
        if atrous:
            padding = atrous["padding"]
        elif o["Padding"] == "SAME":
            shape = self.shape(x_index)
            (top, bottom), (left, right) = (sm.same_padding(shape[1 + i], hwio.shape[i], strides[i], dilation[i])
                                            for i in range(2))
            padding = [top, left, bottom, right]
        else:
            padding = [0, 0, 0, 0]
        bb = self.bb
        xf = self.dequantize(x_index)
        wf = bb.emit(so.dequantize(relax.const(hwio.astype(np.int8), "int8"), _qparams(w, axis=3)))
        y = bb.emit(relax.op.nn.conv2d(xf, wf, strides=strides, padding=padding, dilation=dilation, groups=groups,
                                       data_layout="NHWC", kernel_layout="HWIO"))
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 3, 4)))
        result = _finish(bb, op, out, y)
        if atrous:
            self.values[atrous["output"]] = result
        return result

    @_register("TRANSPOSE_CONV")
    def _op_transpose_conv(self, op: TFLiteOp) -> relax.Expr:
        """Inputs: output shape, weights ``[O, kh, kw, I]``, data, [bias]; rows ``iy * s - top + ky`` (LiteRT)."""
        graph, o, bb = self.graph, op.options, self.bb
        x, w, out = self.tensor(op.inputs[2]), self.tensor(op.inputs[1]), self.tensor(op.outputs[0])
        weight, size = _constant(graph, op, 1), self.static_value(op.inputs[0])
        if size is None:
            raise ValueError(f"op {op.index} (TRANSPOSE_CONV): the output shape must be a constant")
        strides, in_shape = (o["StrideH"], o["StrideW"]), self.shape(op.inputs[2])
        before, after, extra = [], [], []
        for i in range(2):
            k, n = weight.shape[1 + i], int(size[1 + i])
            top = sm.same_padding(n, k, strides[i])[0] if o["Padding"] == "SAME" else 0
            bottom = (in_shape[1 + i] - 1) * strides[i] + k - top - n
            before.append(top)
            after.append(max(bottom, 0))
            extra.append(max(-bottom, 0))
        wf = bb.emit(so.dequantize(relax.const(weight.transpose(3, 0, 1, 2).astype(np.int8), "int8"),
                                   _qparams(w, axis=1)))  # OHWI -> IOHW
        y = bb.emit(relax.op.nn.conv2d_transpose(self.dequantize(op.inputs[2]), wf, strides=strides,
                                                 padding=(*before, *after), output_padding=extra, data_layout="NHWC",
                                                 kernel_layout="IOHW"))
        if len(op.inputs) > 3 and op.inputs[3] >= 0:
            y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 3, 4, position=3)))
        return _finish(bb, op, out, y)

    @_register("FULLY_CONNECTED")
    def _op_fully_connected(self, op: TFLiteOp) -> relax.Expr:
        graph, bb = self.graph, self.bb
        x, w, out = (graph.tensors[i] for i in (op.inputs[0], op.inputs[1], op.outputs[0]))
        weight = _constant(graph, op, 1)  # (O, K)
        x_int = self.value(op.inputs[0])
        if len(self.shape(op.inputs[0])) != 2:
            x_int = bb.emit(relax.op.reshape(x_int, (-1, weight.shape[1])))
        xf = bb.emit(so.dequantize(x_int, _qparams(x)))
        wf = bb.emit(so.dequantize(relax.const(weight.T.astype(np.int8).copy(), "int8"), _qparams(w, axis=1)))
        y = bb.emit(relax.op.matmul(xf, wf))
        if len(op.inputs) > 2 and op.inputs[2] >= 0:
            y = bb.emit(relax.op.add(y, _bias(graph, op, x, w, 1, 2)))
        y = _finish(bb, op, out, y)
        if op.options.get("KeepNumDims", False):
            keep = self.shape(op.inputs[0])[:-1] + [weight.shape[0]]
            y = bb.emit(relax.op.reshape(y, keep))
        return y


def unsupported_ops(graph: TFLiteGraph) -> list[tuple[str, str]]:
    """``(op name, where)`` for every op of ``graph`` this importer cannot take."""
    return [(op.name, f"op {op.index}, output '{graph.tensors[op.outputs[0]].name}'")
            for op in graph.ops if op.name not in QDQ_OPS]


def import_int8_tflite(model: Union[str, os.PathLike, bytes]) -> tvm.IRModule:
    """The QDQ Relax module of an int8 TFLite model (module docstring).

    Raises
    ------
    ValueError
        Listing every unsupported op with its index and output tensor, for non-int8 tensors, and
        for graph forms the importer does not take (named by op index).
    CorruptModelError
        A ``ValueError``: the file is truncated or corrupt (:func:`read_tflite`), or inconsistent in
        a way that makes building the graph fail (an op's shapes or parameters do not fit).
    """
    graph = read_tflite(model)
    where = "the given bytes" if isinstance(model, (bytes, bytearray)) else os.fspath(model)
    missing = unsupported_ops(graph)
    if missing:
        raise ValueError(f"{where}: unsupported int8 TFLite ops: {', '.join(f'{n} ({w})' for n, w in missing)}; "
                         f"supported: {', '.join(QDQ_OPS)}")
    try:
        return _build(graph, where)
    except CorruptModelError:
        raise
    except ValueError as err:
        raise ValueError(f"{where}: {one_line(err)}") from None
    except Exception as err:  # noqa: BLE001 - TVM's type inference fails in many ways on inconsistent files
        raise CorruptModelError(where, f"{type(err).__name__}: {one_line(err)}") from None


def _build(graph: TFLiteGraph, where: str) -> tvm.IRModule:
    params = [relax.Var(graph.tensors[i].name.replace(":", "_") or f"input{k}",
                        relax.TensorType(graph.tensors[i].shape, str(np.dtype(graph.tensors[i].dtype))))
              for k, i in enumerate(graph.inputs)]
    bb = relax.BlockBuilder()
    with bb.function("main", params, attrs={"num_input": len(params)}):
        with bb.dataflow():
            importer = _Importer(graph, bb, params)
            for op in graph.ops:
                try:
                    importer.run(op)
                except Exception as err:  # noqa: BLE001 - named by op below
                    if isinstance(err, ValueError) and str(err).startswith("op "):
                        raise
                    at = f"op {op.index} ({op.name}, output '{graph.tensors[op.outputs[0]].name}')"
                    if isinstance(err, (ValueError, KeyError)):
                        raise ValueError(f"{at}: {one_line(err)}") from None
                    raise CorruptModelError(where, f"{at}: {type(err).__name__}: {one_line(err)}") from None
            outs = [importer.value(i) for i in graph.outputs]  # a constant, or a ValueError naming the tensor
            result = bb.emit_output(outs[0] if len(outs) == 1 else relax.Tuple(outs))
        bb.emit_func_output(result)
    return bb.get()
