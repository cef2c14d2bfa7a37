"""Small float TFLite models written with LiteRT's flatbuffer schema, and their int8 versions from ai-edge-quantizer.

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
    from ai_edge_litert.tools import flatbuffer_utils

    model = schema.ModelT()
    model.version = 3
    ops = [schema.BuiltinOperator.PAD, schema.BuiltinOperator.RELU, schema.BuiltinOperator.CONCATENATION]
    model.operatorCodes = []
    for code in ops:
        c = schema.OperatorCodeT()
        c.builtinCode, c.deprecatedBuiltinCode, c.version = code, code, 1
        model.operatorCodes.append(c)
    paddings = schema.BufferT()
    paddings.data = np.frombuffer(np.asarray([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32).tobytes(), np.uint8)
    model.buffers = [schema.BufferT(), paddings]
    sg = schema.SubGraphT()
    pad_t = _tensor(schema, "paddings", [4, 2], buffer=1)
    pad_t.type = schema.TensorType.INT32
    sg.tensors = [_tensor(schema, "x", [1, 8, 8, 2]), pad_t, _tensor(schema, "padded", [1, 8, 8, 4]),
                  _tensor(schema, "relu", [1, 8, 8, 4]), _tensor(schema, "y", [1, 8, 8, 8])]
    concat = schema.ConcatenationOptionsT()
    concat.axis = 3
    sg.operators = [_op(schema, 0, [0, 1], [2], schema.PadOptionsT(), schema.BuiltinOptions.PadOptions),
                    _op(schema, 1, [2], [3]),
                    _op(schema, 2, [3, 2], [4], concat, schema.BuiltinOptions.ConcatenationOptions)]
    sg.inputs, sg.outputs = [0], [4]
    model.subgraphs = [sg]
    signature = schema.SignatureDefT()
    signature.signatureKey, signature.subgraphIndex = "serving_default", 0
    signature.inputs, signature.outputs = [schema.TensorMapT()], [schema.TensorMapT()]
    signature.inputs[0].name, signature.inputs[0].tensorIndex = "x", 0
    signature.outputs[0].name, signature.outputs[0].tensorIndex = "y", 4
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
