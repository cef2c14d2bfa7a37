"""The converter route op by op: every quantized activation of an onnxruntime QDQ model, in codes, isolated.

The model's meaning is onnxruntime with ``ORT_DISABLE_ALL`` (dequantize -> float op -> quantize).
Every ``QuantizeLinear`` output of the QDQ model is a quantized activation. :func:`per_op_check`
compares each with the converted program's value of the same tensor, in codes:

* the oracle: the QDQ model with every ``QuantizeLinear`` output added as a graph output, run by
  onnxruntime ``ORT_DISABLE_ALL``;
* ours: ``load_model`` -> ``convert`` -> :func:`tvm_sima.compare.quantized_taps` (every
  ``quantize_info`` an extra output) -> ``build(offload=False)``, **isolated**: every tapped
  tensor's consumers read the oracle's codes of that tensor instead of ours, so each tensor's
  difference is what the one op computing it adds (the same feeding as
  ``compare_tensors(mode="isolated")``). The oracle's codes go in dequantized with the tensor's
  own parameters and the program quantizes them back: the round trip is exact
  (``|q - zp| < 2^16``, float32 / float64 arithmetic).

Each ``quantize_info`` of a converted program names, as its ``source``, the model's node that
writes the tensor (:mod:`tvm_sima.source_names`): here the ``QuantizeLinear``, whose output is
the oracle tensor. Every quantized activation has one: the converted chains' outputs, and the
quantizes ``convert`` leaves (the float input's, those after an op left float: that op is checked
as it runs, dequantize -> float op -> quantize). A ``QuantizeLinear`` output with none (the
first quantize of ``Q -> DQ -> Relu -> Q``, which ``convert`` folds into one) is listed as unchecked.

For each tensor: the op types between its inputs' ``DequantizeLinear`` and its ``QuantizeLinear``
(``Conv``, ``Conv+Relu``), the largest input scale over its output scale (one input LSB moves the
output by up to that many LSB: the amplification of an output grid finer than its input's), the
largest code difference and the share of exact codes.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

import numpy as np


@dataclass
class TensorLsb:
    """One quantized activation: converted vs oracle codes over every element of every input."""

    name: str  # the QDQ model's tensor (a QuantizeLinear output)
    op: str  # the ONNX op(s) computing it, e.g. "Conv+Relu"
    converted: str  # the converted program's op (the ConversionReport's "op"), "" when unknown
    max: int
    exact: float
    count: int
    scale_ratio: Optional[float] = None  # largest input scale / output scale (None: no quantized input)

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class PerOpCheck:
    """Every quantized activation of one model: checked (:class:`TensorLsb`, program order) or why not."""

    tensors: list[TensorLsb] = field(default_factory=list)
    unchecked: list[tuple[str, str]] = field(default_factory=list)  # (tensor, why)
    seconds: float = 0.0

    @property
    def max(self) -> int:
        return max((t.max for t in self.tensors), default=0)

    def within(self, lsb: int) -> int:
        """How many checked tensors are within ``lsb`` codes everywhere."""
        return sum(1 for t in self.tensors if t.max <= lsb)

    def worst(self, n: int = 5) -> list[TensorLsb]:
        return sorted(self.tensors, key=lambda t: (-t.max, t.exact))[:n]

    def summary(self) -> str:
        """``"max 1 LSB: 310 tensors, 301 exact, 310 <= 1 LSB"`` (the table's cell)."""
        return (f"max {self.max} LSB: {len(self.tensors)} tensors, {self.within(0)} exact, "
                f"{self.within(1)} <= 1 LSB")

    def to_dict(self) -> dict:
        return {"max_lsb": self.max, "checked": len(self.tensors), "exact": self.within(0),
                "within_1_lsb": self.within(1), "unchecked": [list(u) for u in self.unchecked],
                "worst": [t.to_dict() for t in self.worst(10)], "seconds": self.seconds,
                "tensors": [t.to_dict() for t in self.tensors]}


# -- the QDQ model's side --------------------------------------------------------------------------------------------

@dataclass
class QuantizedTensor:
    """A quantize of the pre-quantized model: the name its converted quantize_info carries as ``source``."""

    node: str  # the QuantizeLinear node's name (a torch model: the quantize's source name)
    tensor: str  # its output
    elem_type: int  # the output's ONNX element type (the zero point's; uint8 without one)
    op: str
    scale_ratio: Optional[float]


def _constants(graph: Any) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    values = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    values.update({n.output[0]: numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"})
    return values


def quantized_tensors(model: Any) -> list[QuantizedTensor]:
    """Every ``QuantizeLinear`` of ``model`` (an ``onnx.ModelProto``), in graph order, and what computes its input."""
    from onnx import TensorProto

    graph = model.graph
    constants = _constants(graph)
    producer = {o: n for n in graph.node for o in n.output}
    found = []
    for node in graph.node:
        if node.op_type != "QuantizeLinear":
            continue
        zero = constants.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        elem = TensorProto.UINT8 if zero is None else _elem_type(zero.dtype)
        ops, in_scales = _computed_by(node.input[0], producer, constants)
        out_scale = float(np.max(constants[node.input[1]])) if node.input[1] in constants else None
        ratio = max(in_scales) / out_scale if in_scales and out_scale else None
        found.append(QuantizedTensor(node.name or node.output[0], node.output[0], elem, "+".join(ops) or "input",
                                     ratio))
    return found


def _elem_type(dtype: np.dtype) -> int:
    from onnx import helper

    return int(helper.np_dtype_to_tensor_dtype(np.dtype(dtype)))


def _computed_by(tensor: str, producer: dict, constants: dict) -> tuple[list[str], list[float]]:
    """The op types from the activations' ``DequantizeLinear`` to ``tensor`` (in order), and their scales."""
    ops: list[str] = []
    scales: list[float] = []
    seen: set = set()
    frontier = [tensor]
    while frontier:
        node = producer.get(frontier.pop())
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        if node.op_type == "DequantizeLinear":
            if node.input[0] not in constants and node.input[1] in constants:  # an activation, not a weight
                scales.append(float(np.max(constants[node.input[1]])))
            continue
        if node.op_type in ("QuantizeLinear", "Shape", "Size"):  # not the values' path (a reshape's new shape)
            continue
        ops.insert(0, node.op_type)
        frontier += [i for i in node.input if i and i not in constants]
    return ops, scales


def ort_codes(path: str, tensors: Sequence[QuantizedTensor]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``codes(x)``: ``{tensor: codes}`` of every ``QuantizeLinear`` output for one input, from onnxruntime
    ``ORT_DISABLE_ALL`` (one input at a time: 64 inputs of PP-OCR det's 293 tensors do not fit in memory)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(path)
    present = {o.name for o in model.graph.output}
    for t in tensors:
        if t.tensor not in present:
            model.graph.output.append(onnx.helper.make_tensor_value_info(t.tensor, t.elem_type, None))
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    wanted = [t.tensor for t in tensors]
    return lambda x: dict(zip(wanted, session.run(wanted, {name: x}), strict=True))


# -- the converted program's side ------------------------------------------------------------------------------------

def _match_taps(converted: Any, tensors: Sequence[QuantizedTensor]) -> tuple[dict[str, QuantizedTensor],
                                                                          list[tuple[str, str]]]:
    """``{tap name: the QDQ tensor it is}`` (by each quantize_info's ``source``) and the QDQ tensors with no tap."""
    from tvm_sima.quantize_info import read_quantize_info

    by_node = {t.node: t for t in tensors}
    taps = {}
    for name, info in read_quantize_info(converted).items():
        if info.source in by_node:
            taps[name] = by_node[info.source]
    tapped = {t.tensor for t in taps.values()}
    unchecked = [(t.tensor, "no quantize_info in the converted program (convert folds a quantize into a later one "
                  "with the same parameters: Q -> DQ -> Relu -> Q)") for t in tensors if t.tensor not in tapped]
    return taps, unchecked


def _feed(codes: np.ndarray, info: dict, shape: Sequence[int]) -> np.ndarray:
    """The oracle's codes dequantized with the tap's own parameters (the program quantizes them back exactly)."""
    scale, zero = np.float64(info["scale"][0]), np.float64(info["zero_point"][0])
    return (scale * (codes.astype(np.float64) - zero)).astype(np.float32).reshape(shape)


def _codes(value: np.ndarray, info: dict) -> np.ndarray:
    """A tap's dequantized output back to codes."""
    return np.round(value.astype(np.float64) / info["scale"][0]).astype(np.int64) + int(info["zero_point"][0])


def per_op_check(path: str, converted: Any, report: Any, inputs: Sequence[np.ndarray]) -> PerOpCheck:
    """Every quantized activation of the QDQ model at ``path``: ``converted`` (its ``tvm_sima.convert``
    result, ``report`` the :class:`~tvm_sima.converter.ConversionReport`) against onnxruntime, isolated
    (module docstring)."""
    import onnx

    start = time.perf_counter()
    tensors = quantized_tensors(onnx.load(path, load_external_data=False))
    return check_taps(converted, report, tensors, inputs, ort_codes(path, tensors), start)


def check_taps(converted: Any, report: Any, tensors: Sequence[QuantizedTensor], inputs: Sequence[np.ndarray],
               oracle: Callable[[np.ndarray], dict[str, np.ndarray]], start: float) -> PerOpCheck:
    """Every quantized tensor of ``tensors`` (any frontend's) against ``oracle(x)`` (``{tensor: codes}``),
    isolated; ``start``: the ``time.perf_counter()`` the check's time counts from."""
    taps, unchecked = _match_taps(converted, tensors)
    stats = _isolated_diffs(converted, taps, inputs, oracle)
    ops = {c["tensor"]: c["op"] for c in report.converted}
    check = PerOpCheck(unchecked=unchecked)
    for name, (largest, exact, count) in stats.items():
        t = taps[name]
        if largest < 0:
            check.unchecked.append((t.tensor, "the converted tensor's size differs from onnxruntime's"))
            continue
        converted_op = ops.get(name) or ("sima.quantize" if t.op == "input" else "left float, sima.quantize")
        check.tensors.append(TensorLsb(t.tensor, t.op, converted_op, largest, exact / max(count, 1), count,
                                       t.scale_ratio))
    check.seconds = time.perf_counter() - start
    return check


def _isolated_diffs(converted: Any, taps: dict[str, QuantizedTensor], inputs: Sequence[np.ndarray],
                    oracle: Callable[[np.ndarray], dict[str, np.ndarray]]) -> dict[str, tuple[int, int, int]]:
    """Per tap (program order): the largest |ours - oracle| in codes, the exact codes and all codes over every
    input, each tap fed the oracle's codes (largest -1 when the sizes differ). Streams: one input at a time."""
    import tvm
    from tvm import relax

    import tvm_sima
    from tvm_sima.compare import quantized_taps

    fed = list(taps)
    program, infos = quantized_taps(converted, fed)
    order = list(infos)
    params = program["main"].params[len(program["main"].params) - len(fed):]
    vm = relax.VirtualMachine(tvm_sima.build(program, offload=False), tvm.cpu())
    stats = {name: (0, 0, 0) for name in sorted(fed, key=order.index)}
    for x in inputs:
        want = oracle(x)
        feeds = [_feed(want[taps[n].tensor], infos[n], [int(d) for d in p.ty.shape])
                 for n, p in zip(fed, params, strict=True)]
        out = vm["main"](tvm.runtime.tensor(x), *(tvm.runtime.tensor(f) for f in feeds))
        for name, (largest, exact, count) in stats.items():
            got, ref = _codes(out[1 + order.index(name)].numpy(), infos[name]), want[taps[name].tensor]
            if largest < 0 or got.size != ref.size:
                stats[name] = (-1, 0, 0)
                continue
            d = np.abs(got.ravel() - ref.astype(np.int64).ravel())
            stats[name] = (max(largest, int(d.max(initial=0))), exact + int(np.sum(d == 0)), count + int(d.size))
    return stats
