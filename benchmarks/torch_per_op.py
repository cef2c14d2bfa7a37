"""The converter route op by op for PT2E-quantized PyTorch models, against PyTorch's own execution.

The model's meaning is PyTorch running the PT2E program (torchao's ``convert_pt2e``): dequantize ->
float op -> ``quantized_decomposed.quantize_per_tensor``. Every ``quantize_per_tensor`` output is a
quantized activation; :func:`per_op_check` compares each with the converted program's value of the
same tensor, in codes, **isolated** (every tapped tensor's consumers read PyTorch's codes), with
``zoo_per_op.check_taps``, the ONNX check's own machinery:

* the oracle: the program as ``tvm_sima.load_model`` imports it (exported, decomposed to core ATen),
  run by PyTorch (``ExportedProgram.module()``) with every quantize's output recorded;
* ours: ``load_model`` -> ``convert`` -> taps -> ``build(offload=False)``; a quantize's
  ``quantize_info`` names it by its source name (:func:`tvm_sima.frontends.torch_export.node_names`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Optional, Sequence

import numpy as np
from zoo_per_op import PerOpCheck, QuantizedTensor, check_taps

_QUANTIZE = ("quantize_per_tensor.default", "quantize_per_tensor.tensor")


def _is(node: Any, names: Sequence[str]) -> bool:
    return node.op == "call_function" and getattr(node.target, "__name__", "") in names


def _scale(node: Any) -> Optional[float]:
    value = node.args[1] if len(node.args) > 1 else None
    return float(value) if isinstance(value, (int, float)) else None


def _computed_by(node: Any) -> tuple[list[str], list[float]]:
    """The ops from the activations' dequantizes to ``node``'s input (in order), and those dequantizes' scales."""
    ops: list[str] = []
    scales: list[float] = []
    seen: set = set()
    frontier = [node.args[0]]
    while frontier:
        current = frontier.pop()
        if current in seen or getattr(current, "op", None) != "call_function":
            continue
        seen.add(current)
        name = current.target.__name__
        if name.startswith("dequantize_per_tensor"):
            scale = _scale(current)
            if scale is not None:
                scales.append(scale)
            continue
        if name.startswith(("dequantize_per_channel", "quantize_per")):
            continue
        ops.insert(0, name.split(".")[0])
        frontier += list(current.all_input_nodes)
    return ops, scales


def quantized_tensors(ep: Any) -> list[QuantizedTensor]:
    """Every ``quantize_per_tensor`` of ``ep`` (graph order), named by its source name."""
    from tvm_sima.frontends.torch_export import node_names

    names = node_names(ep)
    found = []
    for node in ep.graph.nodes:
        if _is(node, _QUANTIZE):
            ops, scales = _computed_by(node)
            out = _scale(node)
            ratio = max(scales) / out if scales and out else None
            found.append(QuantizedTensor(names.get(node, node.name), node.name, 0, "+".join(ops) or "input", ratio))
    return found


def torch_codes(ep: Any, tensors: Sequence[QuantizedTensor]) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
    """``codes(x)``: ``{fx node name: codes}`` of every quantize in ``tensors``, PyTorch running ``ep``."""
    import torch

    module = ep.module()
    wanted = {t.tensor for t in tensors}

    class Taps(torch.fx.Interpreter):
        def run_node(self, n: Any) -> Any:
            result = super().run_node(n)
            if n.name in wanted:
                self.codes[n.name] = result.detach().numpy()
            return result

    def codes(x: np.ndarray) -> dict[str, np.ndarray]:
        interpreter = Taps(module)
        interpreter.codes = {}
        with torch.no_grad():
            interpreter.run(torch.from_numpy(x))
        missing = wanted - set(interpreter.codes)
        if missing:
            raise RuntimeError(f"the unlifted program has no node(s) {sorted(missing)[:4]}")
        return interpreter.codes

    return codes


def per_op_check(model: Any, example_inputs: Sequence[Any], converted: Any, report: Any,
                 inputs: Sequence[np.ndarray]) -> PerOpCheck:
    """Every quantized activation of the PT2E ``model``: ``converted`` (``tvm_sima.convert`` of its
    ``load_model``) against PyTorch, isolated (module docstring)."""
    from tvm_sima.frontends.torch_export import exported_program

    start = time.perf_counter()
    ep = exported_program(model, example_inputs).run_decompositions()
    tensors = quantized_tensors(ep)
    return check_taps(converted, report, tensors, inputs, torch_codes(ep, tensors), start)
