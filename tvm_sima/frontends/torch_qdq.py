"""PT2E-quantized PyTorch models: ``quantized_decomposed`` quantize / dequantize nodes as sima ops.

torchao's ``prepare_pt2e`` / ``convert_pt2e`` (XNNPACK, x86 or any quantizer writing the
``quantized_decomposed`` ops) leave a graph of ``dequantize -> float op -> quantize``, the weights
as int8 constants dequantized per channel. TVM's importer has no quantization ops; this module's
``custom_convert_map`` for it turns

* ``quantize_per_tensor`` (``.default``: scale and zero point as numbers; ``.tensor``: as constant
  tensors) into ``sima.quantize`` with PyTorch's arithmetic: ``round_half_even(x * float32(1 / scale))
  + zero_point`` in float32 (``precision="float32_reciprocal"``; ``torch.round`` rounds half to
  even), clipped to the node's ``quant_min`` / ``quant_max``;
* ``dequantize_per_tensor`` / ``dequantize_per_channel`` into ``sima.dequantize``;
* ``quantize_per_channel`` (a weight not yet folded) into ``sima.quantize`` per channel,

the parameters read from the program's constants, so ``tvm_sima.convert`` matches the chains as
it matches ONNX ``QuantizeLinear`` / ``DequantizeLinear`` (:mod:`tvm_sima.frontends.onnx_qdq`).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

__all__ = ["QDQ_OPS", "is_quantized", "qdq_convert_map", "qparams_of"]

#: The ``quantized_decomposed`` ops imported (``node.target.__name__``, the importer's keys).
QDQ_OPS = ("quantize_per_tensor.default", "quantize_per_tensor.tensor", "dequantize_per_tensor.default",
           "dequantize_per_tensor.tensor", "quantize_per_channel.default", "dequantize_per_channel.default")
_NAMESPACE = "quantized_decomposed"


def _namespace(node: Any) -> str:
    return str(getattr(node.target, "namespace", ""))


def is_quantized(ep: Any) -> bool:
    """True when the program has ``quantized_decomposed`` quantize / dequantize nodes (PT2E)."""
    return any(n.op == "call_function" and _namespace(n) == _NAMESPACE for n in ep.graph.nodes)


def _constants(ep: Any) -> dict[str, np.ndarray]:
    """``{placeholder name: value}`` of the program's parameters, buffers and constants."""
    values = {**dict(ep.named_parameters()), **dict(ep.named_buffers()), **ep.constants}
    return {spec.arg.name: values[spec.target].detach().numpy() for spec in ep.graph_signature.input_specs
            if spec.target in values}


def qparams_of(node: Any, constants: dict[str, np.ndarray]) -> Any:
    """The :class:`~tvm_sima.math.QParams` of a quantize / dequantize node (its arguments after the tensor).

    Raises
    ------
    ValueError
        Naming the node: parameters that are not constants, a range that is neither the type's
        full range nor its narrow (symmetric) one, an unsupported type.
    """
    from .. import math as sm

    per_channel = "per_channel" in str(node.target)
    schema = node.target._schema.arguments
    args = [node.args[k] if k < len(node.args) else node.kwargs.get(a.name, a.default_value)
            for k, a in enumerate(schema)]
    scale, zero = (_value(node, a, constants) for a in args[1:3])
    axis = int(args[3]) if per_channel else None
    qmin, qmax, dtype = args[4:7] if per_channel else args[3:6]
    name = str(dtype).removeprefix("torch.")
    try:
        qtype = sm.parse_qtype(name)
    except ValueError:
        raise ValueError(f"node '{node.name}' ({node.target}): codes of type {name}; tvm-sima takes int8, uint8, "
                         "int16 and uint16 codes") from None
    narrow = (int(qmin), int(qmax)) == (qtype.qmin + 1, qtype.qmax) and qtype.signed
    if (int(qmin), int(qmax)) != (qtype.qmin, qtype.qmax) and not narrow:
        raise ValueError(f"node '{node.name}' ({node.target}): quant_min={qmin}, quant_max={qmax} for {name}; tvm-sima "
                         f"takes the type's full range [{qtype.qmin}, {qtype.qmax}] or its narrow one "
                         f"[{qtype.qmin + 1}, {qtype.qmax}]: quantize with one of them")
    scale = np.asarray(scale, np.float64).reshape(-1)
    zero = np.broadcast_to(np.asarray(zero, np.int64).reshape(-1), scale.shape)
    if per_channel:
        return sm.QParams(scale, np.ascontiguousarray(zero), name, axis=axis, narrow_range=narrow)
    return sm.QParams(float(scale[0]), int(zero[0]), name, narrow_range=narrow)


def _value(node: Any, arg: Any, constants: dict[str, np.ndarray]) -> Any:
    """A scale / zero point argument: a number, or a constant tensor of the program."""
    if isinstance(arg, (int, float)):
        return arg
    name = getattr(arg, "name", None)
    if name in constants:
        return constants[name]
    raise ValueError(f"node '{node.name}' ({node.target}): its scale and zero point must be numbers or constants "
                     f"of the program, not the computed tensor '{name}'")


def qdq_convert_map(ep: Any) -> dict[str, Callable]:
    """``custom_convert_map`` for TVM's ``from_exported_program``: :data:`QDQ_OPS` as sima ops of ``ep``'s constants."""
    from .. import math as sm
    from .. import ops as so

    constants = _constants(ep)

    def quantize(node: Any, importer: Any) -> Any:
        x = importer.env[node.args[0]]
        qp = qparams_of(node, constants)
        return importer.block_builder.emit(so.quantize(x, qp, sm.RoundingMode.HALF_EVEN,
                                                       precision="float32_reciprocal"))

    def dequantize(node: Any, importer: Any) -> Any:
        x = importer.env[node.args[0]]
        return importer.block_builder.emit(so.dequantize(x, qparams_of(node, constants)))

    return {op: quantize if op.startswith("quantize") else dequantize for op in QDQ_OPS}
