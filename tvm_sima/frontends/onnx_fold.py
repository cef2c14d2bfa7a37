"""Fold an ONNX float model's shape computations to constants before TVM's importer sees them.

Exporters (paddle2onnx, torch) write reshape targets as ``Shape -> Cast -> Slice / Gather ->
Concat -> Reshape`` chains; TVM's importer needs a constant shape there and fails. With the input
shapes fixed (as ``load_model`` fixes them), every ``Shape`` of a statically shaped tensor is a
constant, and so is each small node computed only from constants: this pass replaces them by
initializers, evaluated with ONNX's own reference implementation (``onnx.reference``), and leaves
every other node as it is.
"""

from __future__ import annotations

import logging
from typing import Any, Optional

import numpy as np

__all__ = ["fold_shape_computations"]

LOG = logging.getLogger(__name__)

#: Nodes folded when all their inputs are constants: at most this many output elements (shape arithmetic).
MAX_FOLDED_ELEMENTS = 64
#: Folding rounds at most (each round's folds can make more shapes static for the next).
MAX_ROUNDS = 8
_NEVER = {"RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike", "Multinomial", "Bernoulli"}


def _static_shapes(model: Any) -> dict[str, list[int]]:
    out = {}
    for info in [*model.graph.value_info, *model.graph.input, *model.graph.output]:
        dims = info.type.tensor_type.shape.dim if info.type.tensor_type.HasField("shape") else None
        if dims is not None and all(d.HasField("dim_value") for d in dims):
            out[info.name] = [d.dim_value for d in dims]
    return out


def _shape_value(node: Any, shape: list[int]) -> np.ndarray:
    attrs = {a.name: a.i for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return np.asarray(shape[slice(start, end)], dtype=np.int64)


def _evaluate(node: Any, values: dict[str, np.ndarray], opset: Any) -> Optional[list[np.ndarray]]:
    from onnx import helper, numpy_helper
    from onnx.reference import ReferenceEvaluator

    inputs = [i for i in node.input if i]
    graph = helper.make_graph([node], "fold", [], [helper.make_tensor_value_info(o, 0, None) for o in node.output],
                              [numpy_helper.from_array(values[i], i) for i in inputs])
    try:
        return list(ReferenceEvaluator(helper.make_model(graph, opset_imports=opset)).run(None, {}))
    except Exception:  # noqa: BLE001 - a node the reference cannot evaluate is simply not folded
        return None


def fold_shape_computations(model: Any, shapes: dict[str, tuple[int, ...]]) -> Any:
    """``model`` (not changed) with its inputs fixed to ``shapes`` and its shape computations folded.

    Folding runs to a fixed point: a folded chain can make a reshape's output static, and with it
    the shape of a tensor a later ``Shape`` reads (ONNX shape inference leaves it dynamic until then;
    PP-OCRv4 rec needs three rounds). Returns ``model`` itself when it has no ``Shape`` node.
    """
    import onnx

    if not any(n.op_type == "Shape" for n in model.graph.node):
        return model
    fixed = onnx.ModelProto()
    fixed.CopyFrom(model)
    for inp in fixed.graph.input:
        if inp.name in shapes:
            dims = inp.type.tensor_type.shape.dim
            for dim, size in zip(dims, shapes[inp.name], strict=True):
                dim.Clear()
                dim.dim_value = int(size)
    total = 0
    for _ in range(MAX_ROUNDS):
        folded = _fold_once(fixed)
        total += folded
        if not folded:
            break
    LOG.info("folded %d shape-computation node(s) to constants for the fixed input shapes", total)
    return fixed


def _fold_once(fixed: Any) -> int:
    """One round: infer shapes, then fold every ``Shape`` of a static tensor and what only constants feed."""
    import onnx
    from onnx import numpy_helper

    static = _static_shapes(onnx.shape_inference.infer_shapes(fixed, data_prop=True))
    values = {i.name: numpy_helper.to_array(i) for i in fixed.graph.initializer}
    kept, folded = [], 0
    for node in fixed.graph.node:
        out = None
        if node.op_type == "Shape" and node.input[0] in static:
            out = [_shape_value(node, static[node.input[0]])]
        elif node.op_type == "Constant" or (node.op_type not in _NEVER and node.input
                                              and all(i in values for i in node.input if i)):
            out = _evaluate(node, values, fixed.opset_import)
            if out is not None and node.op_type != "Constant" and sum(np.size(v) for v in out) > MAX_FOLDED_ELEMENTS:
                out = None
        if out is None:
            kept.append(node)
            continue
        values.update(zip(node.output, out, strict=True))
        fixed.graph.initializer.extend(numpy_helper.from_array(np.asarray(v), name)
                                       for name, v in zip(node.output, out, strict=True))
        folded += node.op_type != "Constant"
    del fixed.graph.node[:]
    fixed.graph.node.extend(kept)
    return folded
