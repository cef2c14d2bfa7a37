"""Small float TFLite models written with LiteRT's flatbuffer schema, and their int8 versions from ai-edge-quantizer.

``logistic``: one LOGISTIC (hand landmark's heads); ``prelu``: one PRELU (FaceMesh, iris, palm).

``pad_relu_concat``: ``x [1, 8, 8, 2] -> PAD (2 channels) -> RELU; CONCATENATION(RELU, PAD)`` — the
forms ai-edge-quantizer 0.10.0 writes on MediaPipe's BlazeFace (channel padding, a standalone
RELU with its own parameters, an int8 -> int8 QUANTIZE where a concatenation needs one scale).
"""

from __future__ import annotations

import pathlib

import numpy as np


def _tensor(schema, name: str, shape: list[int], buffer: int = 0):
    t = schema.TensorT()
    t.name, t.shape, t.type, t.buffer = name, shape, schema.TensorType.FLOAT32, buffer
    return t


def _op(schema, code: int, inputs: list[int], outputs: list[int], options=None, options_type: int = 0):
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = code, inputs, outputs
    if options is not None:
        op.builtinOptionsType, op.builtinOptions = options_type, options
    return op


def pad_relu_concat(path: pathlib.Path) -> pathlib.Path:
    """The float model of the module docstring, with a ``serving_default`` SignatureDef."""
    from ai_edge_litert import schema_py_generated as schema

    paddings = schema.BufferT()
    paddings.data = np.frombuffer(np.asarray([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32).tobytes(), np.uint8)
    ops = [schema.BuiltinOperator.PAD, schema.BuiltinOperator.RELU, schema.BuiltinOperator.CONCATENATION]
    model = _model(schema, ops, [schema.BufferT(), paddings])
    sg = model.subgraphs[0]
    pad_t = _tensor(schema, "paddings", [4, 2], buffer=1)
    pad_t.type = schema.TensorType.INT32
    sg.tensors = [_tensor(schema, "x", [1, 8, 8, 2]), pad_t, _tensor(schema, "padded", [1, 8, 8, 4]),
                  _tensor(schema, "relu", [1, 8, 8, 4]), _tensor(schema, "y", [1, 8, 8, 8])]
    concat = schema.ConcatenationOptionsT()
    concat.axis = 3
    sg.operators = [_op(schema, 0, [0, 1], [2], schema.PadOptionsT(), schema.BuiltinOptions.PadOptions),
                    _op(schema, 1, [2], [3]),
                    _op(schema, 2, [3, 2], [4], concat, schema.BuiltinOptions.ConcatenationOptions)]
    return _save(schema, model, path, 0, 4)


def logistic(path: pathlib.Path) -> pathlib.Path:
    """``x [1, 16, 16, 1] -> LOGISTIC -> y``, with a ``serving_default`` SignatureDef."""
    from ai_edge_litert import schema_py_generated as schema

    model = _model(schema, [schema.BuiltinOperator.LOGISTIC], [schema.BufferT()])
    sg = model.subgraphs[0]
    sg.tensors = [_tensor(schema, "x", [1, 16, 16, 1]), _tensor(schema, "y", [1, 16, 16, 1])]
    sg.operators = [_op(schema, 0, [0], [1])]
    return _save(schema, model, path, 0, 1)


def prelu(path: pathlib.Path) -> pathlib.Path:
    """``x [1, 8, 8, 4] -> PRELU (slope [1, 1, 4], one per channel) -> y``, with a ``serving_default`` SignatureDef."""
    from ai_edge_litert import schema_py_generated as schema

    slope = schema.BufferT()
    slope.data = np.frombuffer(np.asarray([[[0.25, -0.5, 1.5, 0.0]]], np.float32).tobytes(), np.uint8)
    model = _model(schema, [schema.BuiltinOperator.PRELU], [schema.BufferT(), slope])
    sg = model.subgraphs[0]
    sg.tensors = [_tensor(schema, "x", [1, 8, 8, 4]), _tensor(schema, "alpha", [1, 1, 4], buffer=1),
                  _tensor(schema, "y", [1, 8, 8, 4])]
    sg.operators = [_op(schema, 0, [0, 1], [2])]
    return _save(schema, model, path, 0, 2)


def _model(schema, codes: list[int], buffers: list):
    model = schema.ModelT()
    model.version, model.buffers, model.operatorCodes = 3, buffers, []
    for code in codes:
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, code, 1
        model.operatorCodes.append(c)
    model.subgraphs = [schema.SubGraphT()]
    return model


def _save(schema, model, path: pathlib.Path, x: int, y: int) -> pathlib.Path:
    """Write ``model`` with input tensor ``x``, output ``y`` and a ``serving_default`` SignatureDef."""
    from ai_edge_litert.tools import flatbuffer_utils

    sg = model.subgraphs[0]
    sg.inputs, sg.outputs = [x], [y]
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = [schema.TensorMapT()], [schema.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "x", x
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "y", y
    model.signatureDefs = [signature]
    flatbuffer_utils.write_model(model, str(path))
    return path


def quantize_with_ai_edge_quantizer(float_path: pathlib.Path, out_path: pathlib.Path,
                                    samples: list[np.ndarray]) -> pathlib.Path:
    """ai-edge-quantizer's ``static_wi8_ai8`` recipe (int8 weights and activations), calibrated on ``samples``."""
    from ai_edge_quantizer import quantizer, recipe

    qt = quantizer.Quantizer(str(float_path), recipe.static_wi8_ai8())
    calibration = qt.calibrate({"serving_default": [{"x": s} for s in samples]})
    qt.quantize(calibration).export_model(str(out_path), overwrite=True)
    return out_path


def with_requantized_output(int8_path: pathlib.Path, out_path: pathlib.Path, scale: float,
                            zero_point: int) -> pathlib.Path:
    """The int8 model with an int8 -> int8 QUANTIZE (to ``scale`` / ``zero_point``) after its output."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    model = flatbuffer_utils.read_model(str(int8_path))
    sg = model.subgraphs[0]
    code = schema.OperatorCodeT()
    code.builtinCode, code.deprecatedBuiltinCode, code.version = (schema.BuiltinOperator.QUANTIZE,) * 2 + (1,)
    model.operatorCodes.append(code)
    old = sg.tensors[sg.outputs[0]]
    new = schema.TensorT()
    new.name, new.shape, new.type, new.buffer = "requantized", list(old.shape), old.type, 0
    new.quantization = schema.QuantizationParametersT()
    new.quantization.scale, new.quantization.zeroPoint = [scale], [zero_point]
    sg.tensors.append(new)
    sg.operators.append(_op(schema, len(model.operatorCodes) - 1, [sg.outputs[0]], [len(sg.tensors) - 1]))
    sg.outputs = [len(sg.tensors) - 1]
    model.signatureDefs = []
    flatbuffer_utils.write_model(model, str(out_path))
    return out_path
