"""``tvm_sima.load_model(path, input_shapes=None) -> (mod, params)`` for float ONNX and TFLite files.

Before importing, every op of the file is checked against TVM's Relax importer; all the unsupported
ones are reported at once, each with its node (ONNX) or op index and output tensor (TFLite; a custom
op by its custom code). Float TFLite files import with TVM's importer plus the custom ops of
:mod:`tvm_sima.frontends.tflite_custom` (MediaPipe's ``Convolution2DTransposeBias``). Shapes come
from the file. A dynamic dimension (an ONNX ``dim_param`` symbol, an unset ``?`` dimension, a
literal ``-1`` as paddle2onnx writes; a TFLite ``shape_signature`` ``-1``) is taken from
``input_shapes``, or from another input given the same symbol; a dynamic *batch* (first) dimension
otherwise becomes 1, logged once at INFO; any other is an :class:`InputShapeError` that says which
shape to give. :func:`shapes_from_data` fills them from an array's shape (calibration data).
An int8 TFLite model is imported by :mod:`tvm_sima.frontends.tflite_qdq` as a QDQ graph that
keeps its integer interface; a quantized ONNX model (QDQ, or QOperator rewritten to QDQ) by
:mod:`tvm_sima.frontends.onnx_qdq`, with its weights as constants. Both are what
``tvm_sima.convert`` takes.
"""

from __future__ import annotations

import logging
import os
import pathlib
from typing import Any, Mapping, Optional, Sequence, Union

from ..params import bind_params
from .input_shapes import (
    Declared,
    Dim,
    DynamicShapeError,
    InputShapeError,
    Shapes,
    UnsupportedOpsError,
    python_argument,
)
from .input_shapes import checked_shape as _checked
from .input_shapes import input_shapes as _input_shapes
from .input_shapes import log_batch as _log_batch
from .input_shapes import spelled as _spelled

__all__ = ["load_model", "bind_params", "declared_inputs", "shapes_from_data", "python_argument",
           "UnsupportedOpsError", "InputShapeError", "DynamicShapeError"]

logger = logging.getLogger(__name__)

def load_model(path: Union[str, os.PathLike, Any], input_shapes: Shapes = None,
               example_inputs: Optional[Sequence[Any]] = None) -> tuple[Any, dict]:
    """Load a float ``.onnx`` / ``.tflite`` / PyTorch or a quantized model as a Relax module and its parameters.

    An int8 TFLite model becomes a QDQ graph (``sima.dequantize`` -> float op -> ``sima.quantize``)
    with int8 inputs and outputs, like LiteRT's interface (:mod:`tvm_sima.frontends.tflite_qdq`);
    a PT2E-quantized PyTorch model a QDQ graph with float inputs and outputs, as its own.

    Parameters
    ----------
    path : str, PathLike, torch.nn.Module or torch.export.ExportedProgram
        The model file (``.onnx``, ``.tflite``, or ``.pt2`` as ``torch.export.save`` writes it), or a
        PyTorch model (:mod:`tvm_sima.frontends.torch_export`; needs ``pip install tvm-sima[torch]``).
    input_shapes : dict, optional
        ``{input name: shape}``; a shape fits the declared one when it has its rank and its fixed
        sizes (dynamic dimensions take any size >= 1). Needed for inputs with a dynamic dimension
        other than the batch (a dynamic batch becomes 1).
    example_inputs : tuple, optional
        A ``torch.nn.Module``'s inputs (tensors or NumPy arrays) for ``torch.export.export``: the
        model is built for their shapes.

    Returns
    -------
    (mod, params)
        ``params`` maps weight names to NumPy arrays: the parameters of ``main`` after its
        ``num_input`` data inputs (ONNX); TFLite weights are constants already, so ``{}``.
        :func:`bind_params` binds them back.

    Raises
    ------
    FileNotFoundError, ValueError, InputShapeError, DynamicShapeError, UnsupportedOpsError
        Missing file; unknown extension, unreadable file; a given shape that does not fit;
        a dynamic dimension nothing fixes; unsupported ops (all of them, with where they are).
    """
    if not isinstance(path, (str, os.PathLike)):
        from .torch_export import is_torch_model, load_torch

        if is_torch_model(path):
            return load_torch(path, example_inputs, input_shapes)
        raise TypeError(f"load_model: a model file path, a torch.nn.Module or a torch.export.ExportedProgram, "
                        f"not a {type(path).__name__}")
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} not found")
    suffix = file.suffix.lower()
    if suffix == ".onnx":
        return _load_onnx(file, input_shapes)
    if suffix == ".tflite":
        return _load_tflite(file, input_shapes)
    if suffix == ".pt2":
        from .torch_export import load_torch

        return load_torch(file, None, input_shapes)
    raise ValueError(f"{file}: unknown model type {suffix!r}; tvm-sima loads .onnx, .tflite and .pt2 files")


def _read_onnx(path: pathlib.Path, load_external_data: bool = True) -> Any:
    from .onnx_check import read_onnx  # decodes and checks; a CorruptModelError otherwise

    return read_onnx(path, load_external_data=load_external_data)


def _onnx_dim(dim: Any) -> Dim:
    """A size (``dim_value`` >= 1), a symbol (``dim_param``), or None (unset, or paddle2onnx's ``-1``)."""
    if dim.HasField("dim_value") and dim.dim_value >= 1:
        return int(dim.dim_value)
    return dim.dim_param if dim.HasField("dim_param") and dim.dim_param else None


def _onnx_declared(model: Any) -> Declared:
    """The data inputs of the graph (not its initializers) with their declared dimensions."""
    initializers = {i.name for i in model.graph.initializer}
    return {i.name: [_onnx_dim(d) for d in i.type.tensor_type.shape.dim] if i.type.tensor_type.HasField("shape")
            else None for i in model.graph.input if i.name not in initializers}


def _load_onnx(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    from tvm.relax.frontend import detach_params
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    model = _read_onnx(path)
    from .errors import importer_errors
    from .onnx_qdq import UNSUPPORTED_QUANTIZED, is_quantized, qdq_to_sima, rewrite_qoperators

    quantized = is_quantized(model)
    if quantized:
        bad = [(n.op_type, f"node '{n.name or n.output[0]}'") for n in model.graph.node
               if n.op_type in UNSUPPORTED_QUANTIZED]
        model = rewrite_qoperators(model)
    else:
        bad = []
    supported = _get_convert_map()
    missing = bad + [(n.op_type, f"node '{n.name or n.output[0]}'") for n in model.graph.node
                     if n.op_type not in supported and n.op_type not in UNSUPPORTED_QUANTIZED]
    if missing:
        raise UnsupportedOpsError(str(path), missing)
    shapes = _input_shapes(path, _onnx_declared(model), input_shapes)
    from .onnx_fold import fold_shape_computations

    model = fold_shape_computations(model, shapes)  # Shape -> ... -> Reshape chains: constants for the fixed shapes
    from .source_importers import import_onnx  # TVM's importer, keeping the node names

    if quantized:  # weights stay constants: the converter reads them
        with importer_errors(path, "TVM's ONNX importer"):  # on a checked file: what still fails says so
            return qdq_to_sima(_onnx_rewrites(import_onnx(model, shapes, keep_params_in_input=False))), {}
    with importer_errors(path, "TVM's ONNX importer"):
        mod, detached = detach_params(_onnx_rewrites(import_onnx(model, shapes, keep_params_in_input=True)))
    main = mod["main"]
    names = [p.name for p in main.params[int(main.attrs["num_input"]):]]
    return mod, {name: value.numpy() for name, value in zip(names, detached.get("main", []), strict=True)}



def _onnx_rewrites(mod: Any) -> Any:
    """What TVM's ONNX importer writes in a form the passes cannot read, rewritten: its TE ``pad`` as
    ``relax.nn.pad``, its stacked Max / Min as pairwise ``maximum`` / ``minimum``."""
    from ..source_names import name_aliases
    from .onnx_extrema import pairwise_extrema
    from .onnx_pad import pad_from_te

    return name_aliases(pairwise_extrema(pad_from_te(mod)))


def _load_tflite(path: pathlib.Path, input_shapes: Shapes) -> tuple[Any, dict]:
    import numpy as np
    import tflite
    from tvm.relax.frontend import detach_params

    from .errors import importer_errors
    from .tflite_custom import CustomOpConverter
    from .tflite_flatbuffer import read_tflite

    graph = read_tflite(path)
    inputs = [graph.tensors[i] for i in graph.inputs]
    if any(t.dtype == np.int8 and t.quantized and t.data is None for t in graph.tensors):  # int8 activations
        from .tflite_qdq import import_int8_tflite, unsupported_ops

        static = {t.name: list(t.shape) for t in inputs}
        declared = _tflite_declared(inputs)
        for name, shape in (input_shapes or {}).items():
            if list(_checked(str(path), name, declared, shape)) != static[name]:
                raise InputShapeError(str(path), name, declared[name], shape, "does not fit: an int8 TFLite model "
                                      f"is imported with the shapes it stores, {static[name]} for {name!r}")
        for name, dims in declared.items():  # the importer takes the stored shapes: a dynamic batch is 1
            if dims and dims[0] is None and name not in (input_shapes or {}):
                _log_batch(str(path), name, None)
        missing = unsupported_ops(graph)
        if missing:
            raise UnsupportedOpsError(str(path), missing)
        return import_int8_tflite(path), {}
    supported = set(CustomOpConverter(None, None, None, None).convert_map)
    missing = [(f"{op.name} {op.custom_code}".strip(), f"op {op.index}, output '{graph.tensors[op.outputs[0]].name}'")
               for op in graph.ops if (op.custom_code if op.name == "CUSTOM" else op.name) not in supported]
    if missing:
        raise UnsupportedOpsError(str(path), missing)
    buf = path.read_bytes()
    shapes = _input_shapes(path, _tflite_declared(inputs), input_shapes)
    from .source_importers import import_tflite  # TVM's importer, keeping the tensor names

    with importer_errors(path, "TVM's TFLite importer"):  # on a validated file: what still fails says so
        mod = import_tflite(tflite.Model.GetRootAsModel(buf, 0), shapes, {t.name: str(t.dtype) for t in inputs},
                            CustomOpConverter)
    if any(t.dtype == np.float16 and t.data is not None for t in graph.tensors):  # float16 weights
        from .float16 import float32_constants

        mod = float32_constants(mod)
    return detach_params(mod)[0], {}  # its weights are constants in main


def _tflite_declared(inputs: Sequence[Any]) -> Declared:
    """Input dimensions from the tensors' ``signature`` (``shape_signature``: -1, None here, where dynamic)."""
    return {t.name: [d if d > 0 else None for d in t.signature] for t in inputs}


def declared_inputs(path: Union[str, os.PathLike]) -> Declared:
    """The data inputs of a ``.onnx`` / ``.tflite`` / ``.pt2`` file and the dimensions it declares, not importing it.

    Returns
    -------
    dict
        ``{input name: [dim, ...]}``, each dim a size, a symbol (ONNX ``dim_param``) or None
        (``?``, ``-1``); None instead of the list when the file declares no shape.
    """
    file = pathlib.Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"model file {file} not found")
    if file.suffix.lower() == ".onnx":
        return _onnx_declared(_read_onnx(file, load_external_data=False))
    if file.suffix.lower() == ".tflite":
        from .tflite_flatbuffer import read_tflite

        graph = read_tflite(file)
        return _tflite_declared([graph.tensors[i] for i in graph.inputs])
    if file.suffix.lower() == ".pt2":
        from .torch_export import declared_inputs as torch_declared

        return torch_declared(file)
    raise ValueError(f"{file}: unknown model type {file.suffix!r}; tvm-sima loads .onnx, .tflite and .pt2 files")


def shapes_from_data(path: Union[str, os.PathLike], data_shapes: Mapping[str, Sequence[int]],
                     input_shapes: Shapes = None) -> dict[str, tuple[int, ...]]:
    """``input_shapes`` for :func:`load_model`, with the dynamic dimensions taken from data.

    Parameters
    ----------
    path : str or PathLike
        The model file.
    data_shapes : dict
        ``{input name: shape of one batch of data}``, e.g. a calibration batch's; its first
        dimension is the batch the model will be built for.
    input_shapes : dict, optional
        Shapes given explicitly; they win over the data.

    Returns
    -------
    dict
        ``input_shapes`` plus, for each other input that has a dynamic dimension and data of its
        rank, the declared shape with the data's sizes where it is dynamic (logged at INFO).
        Fixed sizes stay the file's: :func:`load_model` and the dataset check the rest.
    """
    shapes = {name: tuple(int(d) for d in shape) for name, shape in (input_shapes or {}).items()}
    for name, dims in declared_inputs(path).items():
        data = data_shapes.get(name)
        if name in shapes or data is None or (dims is not None and len(dims) != len(data)):
            continue
        if dims is None or not all(isinstance(d, int) for d in dims):
            shapes[name] = tuple(int(g) if dims is None or not isinstance(d, int) else d
                                 for d, g in zip(dims or data, data, strict=True))
            logger.info("%s: input %r: dynamic dimensions of %s taken from the data: %s", path, name,
                        _spelled(dims), shapes[name])
    return shapes
