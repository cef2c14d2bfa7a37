"""Small float TFLite models written with LiteRT's flatbuffer schema, and their int8 versions from ai-edge-quantizer.

``logistic``: one LOGISTIC (hand landmark's heads); ``prelu``: one PRELU (FaceMesh, iris, palm).

``pad_relu_concat``: ``x [1, 8, 8, 2] -> PAD (2 channels) -> RELU; CONCATENATION(RELU, PAD)`` — the
forms ai-edge-quantizer 0.10.0 writes on MediaPipe's BlazeFace (channel padding, a standalone
RELU with its own parameters, an int8 -> int8 QUANTIZE where a concatenation needs one scale).
"""

from __future__ import annotations

import pathlib

import numpy as np

from helpers.tflite_writer import Op, Tensor, write_tflite


def pad_relu_concat(path: pathlib.Path) -> pathlib.Path:
    """The float model of the module docstring, with a ``serving_default`` SignatureDef."""
    paddings = np.asarray([[0, 0], [0, 0], [0, 0], [0, 2]], np.int32)
    tensors = [Tensor("x", [1, 8, 8, 2]), Tensor("paddings", [4, 2], "int32", paddings),
               Tensor("padded", [1, 8, 8, 4]), Tensor("relu", [1, 8, 8, 4]), Tensor("y", [1, 8, 8, 8])]
    ops = [Op("PAD", [0, 1], [2]), Op("RELU", [2], [3]),
           Op("CONCATENATION", [3, 2], [4], ("ConcatenationOptions", {"Axis": 3}))]
    return write_tflite(path, tensors, ops, [0], [4], signature="serving_default")


def logistic(path: pathlib.Path) -> pathlib.Path:
    """``x [1, 16, 16, 1] -> LOGISTIC -> y``, with a ``serving_default`` SignatureDef."""
    return write_tflite(path, [Tensor("x", [1, 16, 16, 1]), Tensor("y", [1, 16, 16, 1])], [Op("LOGISTIC", [0], [1])],
                        [0], [1], signature="serving_default")


def prelu(path: pathlib.Path) -> pathlib.Path:
    """``x [1, 8, 8, 4] -> PRELU (slope [1, 1, 4], one per channel) -> y``, with a ``serving_default`` SignatureDef."""
    slope = np.asarray([[[0.25, -0.5, 1.5, 0.0]]], np.float32)
    tensors = [Tensor("x", [1, 8, 8, 4]), Tensor("alpha", [1, 1, 4], data=slope), Tensor("y", [1, 8, 8, 4])]
    return write_tflite(path, tensors, [Op("PRELU", [0, 1], [2])], [0], [2], signature="serving_default")


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
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = len(model.operatorCodes) - 1, [sg.outputs[0]], [len(sg.tensors) - 1]
    sg.operators.append(op)
    sg.outputs = [len(sg.tensors) - 1]
    model.signatureDefs = []
    flatbuffer_utils.write_model(model, str(out_path))
    return out_path
