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

The handlers are written one module per op family (``tflite_qdq_conv``, ``tflite_qdq_moves``,
``tflite_qdq_elementwise``) and registered in :mod:`tvm_sima.frontends.tflite_qdq_importer`, which
holds the importer's state; this module imports them all and is the entry point.
"""

from __future__ import annotations

import os
from typing import Union

import numpy as np
import tvm
from tvm import relax

from . import tflite_qdq_conv, tflite_qdq_elementwise, tflite_qdq_moves  # noqa: F401 - they register the handlers
from .errors import CorruptModelError, one_line
from .tflite_flatbuffer import TFLiteGraph, read_tflite
from .tflite_qdq_importer import HANDLERS as _HANDLERS  # noqa: F401 - the registry (tests/test_conventions.py)
from .tflite_qdq_importer import Importer

__all__ = ["QDQ_OPS", "import_int8_tflite", "unsupported_ops"]

QDQ_OPS = ("ADD", "AVERAGE_POOL_2D", "BATCH_TO_SPACE_ND", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D",
           "DEPTH_TO_SPACE", "DEQUANTIZE", "FULLY_CONNECTED", "HARD_SWISH", "LOGISTIC", "MAXIMUM", "MAX_POOL_2D",
           "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "RELU", "RELU6", "RESHAPE", "RESIZE_BILINEAR",
           "RESIZE_NEAREST_NEIGHBOR", "SHAPE", "SPACE_TO_BATCH_ND", "SPACE_TO_DEPTH", "STRIDED_SLICE", "SUB",
           "TRANSPOSE_CONV")


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
            importer = Importer(graph, bb, params)
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
