"""Read an ONNX file and check it before TVM's importer sees it.

A protobuf that decodes can still be nonsense: an initializer whose data does not fill its dims, a
node reading a tensor nothing produces, a graph output nothing computes. TVM's importer meets these
as ``KeyError`` / ``InternalError`` deep inside; here they are :class:`CorruptModelError` naming
the initializer or node. The checks, in order:

* the file decodes as a ``ModelProto`` that has a graph;
* every initializer (and ``Constant`` node value) has a known data type, dims >= 0 and exactly
  ``prod(dims)`` values (``raw_data`` of ``prod(dims) * itemsize`` bytes);
* the shapes declared for graph inputs, outputs and value_info have no dimension below -1 and at
  most ``MAX_ELEMENTS`` elements;
* every node has an output, reads only graph inputs, initializers, outputs of earlier nodes or
  ``''`` (an omitted optional input), and no tensor is produced twice; every graph output is produced;
* ``onnx.checker.check_model`` (without shape inference) accepts the model; two of its complaints
  end its check without an error (``_TOLERATED``): a node of an op the checker does not know
  (``load_model`` then lists every unsupported op), and a graph input / output declared without
  a shape (unknown rank: onnxruntime and TVM's importer take such models, and exporters write them).
"""

from __future__ import annotations

import math
import os
import pathlib
from typing import Any, Union

from .errors import MAX_ELEMENTS, CorruptModelError, one_line

__all__ = ["read_onnx", "check_onnx"]

#: Checker messages that stop its check without rejecting the model (module docstring).
_TOLERATED = ("No Op registered for", "Field 'shape' of 'type' is required but missing")

_PACKED = {"INT4": 4, "UINT4": 4, "FLOAT4E2M1": 4, "INT2": 2, "UINT2": 2}  # sub-byte types: bits per value
_UNCHECKED = ("FLOAT6E2M3", "FLOAT6E3M2")  # packing not checked here
#: Where a TensorProto keeps values of a data type when not in raw_data, and values per element.
_FIELDS = {"FLOAT": ("float_data", 1), "COMPLEX64": ("float_data", 2), "DOUBLE": ("double_data", 1),
           "COMPLEX128": ("double_data", 2), "INT64": ("int64_data", 1), "UINT32": ("uint64_data", 1),
           "UINT64": ("uint64_data", 1), "STRING": ("string_data", 1)}


def read_onnx(path: Union[str, os.PathLike], load_external_data: bool = True) -> Any:
    """``onnx.load`` then :func:`check_onnx`; every failure is a :class:`CorruptModelError`.

    Raises
    ------
    CorruptModelError
        A ``ValueError`` saying "not a readable ONNX model" when the protobuf does not decode, and
        what is inconsistent (which initializer, node or output) when it decodes.
    """
    import onnx

    try:
        model = onnx.load(os.fspath(path), load_external_data=load_external_data)
    except Exception as err:  # noqa: BLE001 - onnx raises DecodeError and others: one message for all
        raise CorruptModelError(path, f"{type(err).__name__}: {one_line(err)}",
                                lead="not a readable ONNX model, a truncated or corrupt model file") from None
    check_onnx(model, path, data_loaded=load_external_data)
    return model


def _tensor_size(t: Any, data_loaded: bool) -> str:
    """Why tensor ``t``'s data does not fit its dims, or ``""``."""
    import onnx

    names = {v: k for k, v in onnx.TensorProto.DataType.items()}
    kind = names.get(t.data_type)
    if kind is None or kind == "UNDEFINED":
        return f"data type {t.data_type} is not an ONNX data type"
    if any(d < 0 for d in t.dims) or math.prod(t.dims) > MAX_ELEMENTS:
        return f"dims {list(t.dims)} (a negative dimension, or more than {MAX_ELEMENTS} elements)"
    if t.data_location == onnx.TensorProto.EXTERNAL and not data_loaded or kind in _UNCHECKED:
        return ""
    count = math.prod(t.dims)
    if t.HasField("raw_data"):
        bits = _PACKED.get(kind) or 8 * onnx.helper.tensor_dtype_to_np_dtype(t.data_type).itemsize
        have, want = len(t.raw_data), (count * bits + 7) // 8
        return "" if kind == "STRING" or have == want else f"{have} bytes of raw_data for dims {list(t.dims)} of " \
                                                          f"{kind} ({want} bytes)"
    if kind in _PACKED:
        return ""
    field, per = _FIELDS.get(kind, ("int32_data", 1))
    have = len(getattr(t, field))
    return "" if have == count * per else f"{have} values in {field} for dims {list(t.dims)} ({count * per})"


def _check_tensors(model: Any, path: Union[str, os.PathLike], data_loaded: bool) -> None:
    for init in model.graph.initializer:
        problem = _tensor_size(init, data_loaded)
        if problem:
            raise CorruptModelError(path, f"initializer '{init.name}': {problem}")
    for node in model.graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                problem = _tensor_size(attr.t, data_loaded)
                if problem:
                    raise CorruptModelError(path, f"node '{node.name}' ({node.op_type}), attribute {attr.name}: "
                                                  f"{problem}")


def _check_shapes(graph: Any, path: Union[str, os.PathLike]) -> None:
    """Declared shapes of the graph's inputs, outputs and value_info: dims >= -1, at most MAX_ELEMENTS."""
    for kind, infos in (("input", graph.input), ("output", graph.output), ("value_info", graph.value_info)):
        for info in infos:
            dims = [d.dim_value for d in info.type.tensor_type.shape.dim if d.HasField("dim_value")]
            if any(d < -1 for d in dims) or math.prod(d for d in dims if d > 0) > MAX_ELEMENTS:
                raise CorruptModelError(path, f"graph {kind} '{info.name}': declared dims {dims} (a dimension below "
                                              f"-1, or more than {MAX_ELEMENTS} elements)")


def _check_graph(graph: Any, path: Union[str, os.PathLike]) -> None:
    known = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    for k, node in enumerate(graph.node):
        where = f"node {k} '{node.name}' ({node.op_type})"
        if not node.output:
            raise CorruptModelError(path, f"{where} has no outputs")
        missing = [i for i in node.input if i not in known]
        if missing:
            raise CorruptModelError(path, f"{where}: input '{missing[0]}' is not a graph input, an initializer "
                                          "or the output of an earlier node")
        twice = [o for o in node.output if o and o in known]
        if twice:
            raise CorruptModelError(path, f"{where}: output '{twice[0]}' is already produced before it")
        known.update(node.output)
    absent = [o.name for o in graph.output if o.name not in known or not o.name]
    if absent:
        raise CorruptModelError(path, f"graph output {absent[0]!r} is produced by no node")


def check_onnx(model: Any, path: Union[str, os.PathLike], data_loaded: bool = True) -> None:
    """The checks of the module docstring on a loaded ``ModelProto``; ``path`` names it in errors.

    Raises
    ------
    CorruptModelError
        Naming the initializer, node or graph output that is inconsistent, or quoting the ONNX checker.
    """
    import onnx

    if not model.HasField("graph") or not model.graph.node:
        raise CorruptModelError(path, "no graph, or a graph without nodes")
    _check_tensors(model, path, data_loaded)
    _check_shapes(model.graph, path)
    _check_graph(model.graph, path)
    large = model.ByteSize() >= 2**31 - 1  # the checker takes a path for protobufs over 2 GB
    try:
        onnx.checker.check_model(os.fspath(path) if large and pathlib.Path(path).is_file() else model)
    except Exception as err:  # noqa: BLE001 - ValidationError, and others from the C++ checker
        if one_line(err).startswith(_TOLERATED):
            return
        raise CorruptModelError(path, f"the ONNX checker rejects it: {one_line(err)}") from None
