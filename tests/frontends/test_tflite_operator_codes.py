"""Operator codes as LiteRT reads them: ``max(deprecated_builtin_code, builtin_code)``.

ai-edge-quantizer 0.10.0 writes the QUANTIZE it inserts with only ``builtin_code`` (114, the
deprecated field 0); the ``tflite`` package's ``BuiltinCode()`` returns the deprecated field
below 127, so tvm-sima read that QUANTIZE as an ADD with one input (int8 BlazeFace from
ai-edge-quantizer: 'IndexError: list index out of range').
"""

from __future__ import annotations

import pathlib

import numpy as np
import tvm
from ai_edge_litert.tools import flatbuffer_utils
from helpers.litert import litert
from tvm import relax

import tvm_sima
from tvm_sima.frontends.tflite_flatbuffer import read_tflite

FIXTURES = pathlib.Path(__file__).parents[1] / "fixtures"


def test_an_operator_code_written_only_in_builtin_code_reads_as_litert_reads_it(tmp_path):
    original = FIXTURES / "digits_int8.tflite"
    model = flatbuffer_utils.read_model(str(original))
    for code in model.operatorCodes:  # as ai-edge-quantizer writes them: the deprecated field left 0
        code.builtinCode = flatbuffer_utils.get_builtin_code_from_operator_code(code)
        code.deprecatedBuiltinCode = 0
    edited = tmp_path / "builtin_code_only.tflite"
    flatbuffer_utils.write_model(model, str(edited))
    names = [op.name for op in read_tflite(original).ops]
    assert "CONV_2D" in names and [op.name for op in read_tflite(edited).ops] == names
    x = np.load(FIXTURES / "digits_int8_inputs.npz")["images"][:1]
    reference = litert(original, x)
    assert np.array_equal(litert(edited, x), reference)  # LiteRT reads the same ops
    converted, report = tvm_sima.convert(tvm_sima.load_model(edited)[0])
    assert report.unconverted == []
    vm = relax.VirtualMachine(tvm_sima.build(converted), tvm.cpu())
    assert np.array_equal(vm["main"](tvm.runtime.tensor(x)).numpy(), reference)
