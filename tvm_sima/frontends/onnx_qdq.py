"""Quantized ONNX models (QDQ and QOperator) as Relax QDQ graphs of sima ops.

* QOperator nodes (what onnxruntime's ``quantize_static(quant_format=QOperator)`` writes) are
  rewritten to QDQ form on the ONNX graph first: ``QLinearConv`` / ``QLinearMatMul`` and the
  ``com.microsoft`` ``QLinearAdd`` / ``QLinearMul`` / ``QLinearAveragePool`` /
  ``QLinearGlobalAveragePool`` / ``QLinearConcat`` / ``QLinearSigmoid`` / ``QLinearLeakyRelu`` /
  ``QLinearSoftmax`` become ``DequantizeLinear`` -> float op ->
  ``QuantizeLinear`` (``QGemm`` likewise; a QLinearConv's or QGemm's int32 bias becomes
  ``DequantizeLinear(B, x_scale * w_scale)``);
* the QDQ graph is imported by TVM's Relax ONNX importer with the weights as constants, and its
  ``relax.quantize`` / ``relax.dequantize`` (scale and zero point as constants) become
  ``sima.quantize`` (ONNX rounds half to even, and divides by the scale in float32: the
  operator's types, onnxruntime's kernel) / ``sima.dequantize`` carrying the parameters as
  attributes, which is what ``tvm_sima.convert`` matches.

The interface stays the model's: an onnxruntime QDQ model takes and returns float tensors (its
first op quantizes, its last dequantizes).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from .errors import one_line

__all__ = ["QOPERATORS", "UNSUPPORTED_QUANTIZED", "rewrite_qoperators", "qdq_to_sima", "is_quantized"]

#: QOperator node types rewritten to QDQ (op type -> (input arity of the quantized tensors, float op)).
QOPERATORS = ("QLinearConv", "QLinearMatMul", "QGemm", "QLinearAdd", "QLinearMul", "QLinearAveragePool",
              "QLinearGlobalAveragePool", "QLinearConcat", "QLinearSigmoid", "QLinearLeakyRelu", "QLinearSoftmax")
#: Quantized node types with no QDQ form here (dynamic quantization, integer-only kernels).
UNSUPPORTED_QUANTIZED = ("ConvInteger", "MatMulInteger", "QLinearReduceMean", "QLinearWhere",
                         "DynamicQuantizeLinear")
_QDQ = ("QuantizeLinear", "DequantizeLinear")


def is_quantized(model: Any) -> bool:
    """True when the ONNX model has QDQ or QOperator nodes."""
    return any(n.op_type in (*_QDQ, *QOPERATORS, *UNSUPPORTED_QUANTIZED) for n in model.graph.node)


class _Rewriter:
    def __init__(self, model: Any) -> None:
        from onnx import numpy_helper

        self.model = model
        self.inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
        self.nodes: list = []
        self.count = 0

    def fresh(self, base: str) -> str:
        self.count += 1
        return f"{base}__qdq{self.count}"

    def constant(self, base: str, value: np.ndarray) -> str:
        from onnx import numpy_helper

        name = self.fresh(base)
        self.model.graph.initializer.append(numpy_helper.from_array(value, name))
        self.inits[name] = value
        return name

    def dq(self, x: str, scale: str, zp: Optional[str], axis: Optional[int] = None) -> str:
        from onnx import helper

        out = self.fresh(f"{x}_dq")
        kwargs: dict[str, Any] = {"axis": axis} if axis is not None else {}
        self.nodes.append(helper.make_node("DequantizeLinear", [x, scale] + ([zp] if zp else []), [out],
                                           name=out, **kwargs))
        return out

    def q(self, x: str, scale: str, zp: Optional[str], out: str) -> None:
        from onnx import helper

        self.nodes.append(helper.make_node("QuantizeLinear", [x, scale] + ([zp] if zp else []), [out],
                                           name=self.fresh(f"{out}_q")))

    def node(self, op_type: str, inputs: list[str], name: str, attrs: dict) -> str:
        from onnx import helper

        out = self.fresh(f"{name}_float")
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=name, **attrs))
        return out


def _attrs(node: Any) -> dict:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


#: Inputs a QOperator node must have (the ONNX / com.microsoft schemas; later ones are optional).
_MIN_INPUTS = {"QLinearConv": 8, "QLinearMatMul": 8, "QGemm": 6, "QLinearAdd": 7, "QLinearMul": 7,
               "QLinearSigmoid": 4, "QLinearLeakyRelu": 4, "QLinearAveragePool": 4, "QLinearGlobalAveragePool": 4,
               "QLinearConcat": 5, "QLinearSoftmax": 4}


def rewrite_qoperators(model: Any) -> Any:
    """A copy of ``model`` with every QOperator node (``QOPERATORS``) rewritten to QDQ form.

    Raises
    ------
    ValueError
        Naming the node, when a QOperator node has too few inputs or parameters that do not fit.
    """
    import onnx

    model = onnx.ModelProto.FromString(model.SerializeToString())
    r = _Rewriter(model)
    for n in model.graph.node:
        name = n.name or n.output[0]
        if n.op_type in _MIN_INPUTS and (len(n.input) < _MIN_INPUTS[n.op_type] or
                                         n.op_type == "QLinearConcat" and (len(n.input) - 2) % 3):
            raise ValueError(f"node '{name}' ({n.op_type}) has {len(n.input)} inputs; the operator takes at least "
                             f"{_MIN_INPUTS[n.op_type]}" + (" (then triples)" if n.op_type == "QLinearConcat" else ""))
        try:
            _rewrite_node(r, n, list(n.input) + [""] * 9, name)
        except (ValueError, TypeError, IndexError, KeyError) as err:
            if str(err).startswith("node "):
                raise
            raise ValueError(f"node '{name}' ({n.op_type}): {type(err).__name__}: {one_line(err)}") from None
    del model.graph.node[:]
    model.graph.node.extend(r.nodes)
    return model


def _rewrite_node(r: _Rewriter, n: Any, i: list[str], name: str) -> None:
    """Append node ``n``'s QDQ form (or ``n`` itself) to ``r.nodes``; ``i``: its inputs padded with ``''``."""
    attrs = _attrs(n)
    if n.op_type == "QLinearConv":
        x = r.dq(i[0], i[1], i[2])
        w = r.dq(i[3], i[4], i[5], axis=0)
        ins = [x, w]
        if i[8]:
            x_scale, w_scale = r.inits.get(i[1]), r.inits.get(i[4])
            if x_scale is None or w_scale is None:
                raise ValueError(f"node '{name}' (QLinearConv): x_scale and w_scale must be initializers")
            product = (x_scale.astype(np.float32) * w_scale.astype(np.float32)).astype(np.float32)
            ins.append(r.dq(i[8], r.constant(f"{name}_bias_scale", product), None, axis=0))
        r.q(r.node("Conv", ins, name, attrs), i[6], i[7], n.output[0])
    elif n.op_type == "QLinearMatMul":
        a = r.dq(i[0], i[1], i[2])
        b_scale = r.inits.get(i[4])
        b = r.dq(i[3], i[4], i[5], axis=1 if b_scale is not None and b_scale.size > 1 else None)
        r.q(r.node("MatMul", [a, b], name, {}), i[6], i[7], n.output[0])
    elif n.op_type == "QGemm":
        _rewrite_qgemm(r, n, i, name, attrs)
    elif n.op_type in ("QLinearAdd", "QLinearMul"):
        a, b = r.dq(i[0], i[1], i[2]), r.dq(i[3], i[4], i[5])
        r.q(r.node(n.op_type[len("QLinear"):], [a, b], name, {}), i[6], i[7], n.output[0])
    elif n.op_type in ("QLinearSigmoid", "QLinearLeakyRelu"):
        x = r.dq(i[0], i[1], i[2])
        r.q(r.node(n.op_type[len("QLinear"):], [x], name, attrs), i[3], i[4], n.output[0])
    elif n.op_type in ("QLinearAveragePool", "QLinearGlobalAveragePool"):
        if attrs.pop("channels_last", 0):
            raise ValueError(f"node '{name}' ({n.op_type}): channels_last=1 is not supported")
        x = r.dq(i[0], i[1], i[2])
        r.q(r.node(n.op_type[len("QLinear"):], [x], name, attrs), i[3], i[4], n.output[0])
    elif n.op_type == "QLinearSoftmax":
        _rewrite_qsoftmax(r, n, i, name, attrs)
    elif n.op_type == "QLinearConcat":
        parts = [r.dq(i[k], i[k + 1], i[k + 2]) for k in range(2, len(n.input), 3)]
        r.q(r.node("Concat", parts, name, attrs), i[0], i[1], n.output[0])
    else:
        r.nodes.append(n)


def _rewrite_qsoftmax(r: _Rewriter, n: Any, i: list[str], name: str, attrs: dict) -> None:
    """``QLinearSoftmax(x, x_scale, x_zp, y_scale, y_zp; axis, opset)``: ``opset`` is the Softmax it means."""
    opset = int(attrs.pop("opset", 13))
    default = next((o.version for o in r.model.opset_import if o.domain in ("", "ai.onnx")), 13)
    if (opset < 13) != (default < 13) and int(attrs.get("axis", -1)) != -1:
        raise ValueError(f"node '{name}' (QLinearSoftmax): the Softmax of opset {opset} with axis={attrs['axis']} "
                         f"differs from the model's opset {default} one; re-export with axis=-1")
    x = r.dq(i[0], i[1], i[2])
    r.q(r.node("Softmax", [x], name, attrs), i[3], i[4] or None, n.output[0])


def _rewrite_qgemm(r: _Rewriter, n: Any, i: list[str], name: str, attrs: dict) -> None:
    a = r.dq(i[0], i[1], i[2])
    trans_b = int(attrs.get("transB", 0))
    b_scale = r.inits.get(i[4])
    per_channel = b_scale is not None and b_scale.size > 1
    b = r.dq(i[3], i[4], i[5], axis=(0 if trans_b else 1) if per_channel else None)
    ins = [a, b]
    if i[6]:
        a_scale = r.inits.get(i[1])
        if a_scale is None or b_scale is None:
            raise ValueError(f"node '{name}' (QGemm): a_scale and b_scale must be initializers")
        product = (a_scale.astype(np.float32) * b_scale.astype(np.float32)).astype(np.float32)
        ins.append(r.dq(i[6], r.constant(f"{name}_bias_scale", product), None, axis=0))
    y = r.node("Gemm", ins, name, attrs)
    if i[7]:
        r.q(y, i[7], i[8] or None, n.output[0])
    else:  # no output scale: float output
        r.nodes[-1].output[0] = n.output[0]


def qdq_to_sima(mod: Any) -> Any:
    """Replace ``relax.quantize`` / ``relax.dequantize`` (constant parameters) by sima.quantize / dequantize."""
    from tvm import relax

    from .. import math as sm
    from .. import ops as so
    from ..graph import constant_value, op_name, rebuild_main, remap

    def emit(_bb: Any, var: Any, value: Any, mapping: dict) -> Any:
        name = op_name(value)
        if name not in ("relax.quantize", "relax.dequantize"):
            return remap(value, mapping)
        assert isinstance(value, relax.Call)
        scale, zp = constant_value(value.args[1]), constant_value(value.args[2])
        if scale is None or zp is None:
            raise ValueError(f"{name} at '{var.name}': scale and zero point must be constants")
        dtype = str(value.attrs["out_dtype"]) if name == "relax.quantize" else \
            str(value.args[0].ty.dtype)  # type: ignore[attr-defined]
        axis = int(value.attrs["axis"])
        scale = scale.astype(np.float64).reshape(-1)
        zp = np.broadcast_to(zp.astype(np.int64).reshape(-1), scale.shape)
        qp = sm.QParams(float(scale[0]), int(zp[0]), dtype) if scale.size == 1 else \
            sm.QParams(scale, np.ascontiguousarray(zp), dtype, axis=axis)
        x = remap(value.args[0], mapping)
        if name == "relax.dequantize":
            return so.dequantize(x, qp)
        # QuantizeLinear: x / scale in float32 (the operator's types; onnxruntime's kernel), half to even
        return so.quantize(x, qp, sm.RoundingMode.HALF_EVEN, precision="float32")

    return rebuild_main(mod, emit)
