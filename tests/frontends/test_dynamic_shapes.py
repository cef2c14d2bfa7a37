"""Real ONNX / TFLite input shapes: dynamic batch dimensions in every spelling, other dynamic dimensions.

The ONNX model of most tests, with the batch dimension B written as a symbol ('N'), as an unset
('?') dimension or as paddle2onnx's literal -1::

    x[B, 1, 8, 8] -> Conv 3x3 (4 ch) -> Relu -> GlobalAveragePool -> Flatten -> Gemm (10) -> y[B, 10]

GlobalAveragePool makes the graph valid for any height and width, so the same graph with
``x[N, 1, H, W]`` is the model whose dynamic dimensions are not only the batch.
"""

from __future__ import annotations

import logging
import pathlib

import flatbuffers
import numpy as np
import onnx
import onnxruntime as ort
import pytest
import tvm
from onnx import TensorProto, helper, numpy_helper
from tvm import relax

import tvm_sima
from tvm_sima.cli import main
from tvm_sima.cli_model import data_shapes, load_model
from tvm_sima.frontends.loader import (
    DynamicShapeError,
    InputShapeError,
    _input_shapes,  # the resolver, for a declaration no checker lets through
    bind_params,
    declared_inputs,
    shapes_from_data,
)

LOGGER = "tvm_sima.frontends.loader"
BATCH_SPELLINGS = {"symbol": "N", "unset": None, "minus_one": -1}


def cnn(path: pathlib.Path, dims: list, extra_input: list | None = None) -> pathlib.Path:
    """The CNN above with input ``x[dims]``; ``extra_input`` adds ``b[extra_input]`` to the output."""
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype("float32"), "w")
    fc = numpy_helper.from_array(rng.standard_normal((4, 10)).astype("float32"), "fc")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("GlobalAveragePool", ["r"], ["g"], name="gap"),
             helper.make_node("Flatten", ["g"], ["f"], name="flatten"),
             helper.make_node("Gemm", ["f", "fc"], ["y0" if extra_input else "y"], name="fc")]
    inputs = [helper.make_tensor_value_info("x", TensorProto.FLOAT, dims)]
    if extra_input:
        nodes.append(helper.make_node("Add", ["y0", "b"], ["y"], name="add"))
        inputs.append(helper.make_tensor_value_info("b", TensorProto.FLOAT, extra_input))
    output = helper.make_tensor_value_info("y", TensorProto.FLOAT, [dims[0] if dims else None, 10])
    graph = helper.make_graph(nodes, "g", inputs, [output], [w, fc])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


@pytest.fixture(params=sorted(BATCH_SPELLINGS))
def batch_model(request, tmp_path):
    """(path, how the file spells the batch dimension) for each spelling."""
    batch = BATCH_SPELLINGS[request.param]
    return cnn(tmp_path / f"{request.param}.onnx", [batch, 1, 8, 8]), batch


def static_shape(var) -> list[int]:
    return [int(d) for d in var.ty.shape]


def batch_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == LOGGER and "dynamic batch" in r.getMessage()]


def test_each_batch_spelling_is_read_as_dynamic(batch_model):
    path, batch = batch_model
    assert onnx.load(str(path)).graph.input[0].type.tensor_type.shape.dim[0].HasField("dim_value") == (batch == -1)
    assert declared_inputs(path) == {"x": ["N" if batch == "N" else None, 1, 8, 8]}


def test_dynamic_batch_becomes_one_logs_once_and_matches_onnxruntime(batch_model, caplog):
    path, batch = batch_model
    caplog.set_level(logging.INFO, logger=LOGGER)
    mod, params = tvm_sima.load_model(path)
    assert static_shape(mod["main"].params[0]) == [1, 1, 8, 8]
    spelled = "'N'" if batch == "N" else "'?'"
    assert batch_lines(caplog) == [f"{path}: input 'x': dynamic batch dimension {spelled} set to 1"]
    assert all(r.levelno == logging.INFO for r in caplog.records if r.name == LOGGER)
    x = np.random.default_rng(1).standard_normal((1, 1, 8, 8)).astype("float32")
    got = relax.VirtualMachine(tvm_sima.build(bind_params(mod, params)), tvm.cpu())["main"](tvm.runtime.tensor(x))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    assert got.numpy().shape == (1, 10)
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)


def test_a_given_shape_fits_a_dynamic_batch_and_logs_nothing(batch_model, caplog):
    path, _ = batch_model
    caplog.set_level(logging.INFO, logger=LOGGER)
    mod, _ = tvm_sima.load_model(path, input_shapes={"x": (3, 1, 8, 8)})
    assert static_shape(mod["main"].params[0]) == [3, 1, 8, 8]
    assert batch_lines(caplog) == []


@pytest.mark.parametrize("shape, problem", [
    ((1, 1, 8), "has rank 3; input 'x' has rank 4, declared [?, 1, 8, 8]"),
    ((1, 3, 8, 8), "does not fit input 'x', declared [?, 1, 8, 8] (dimension 1 is 1 in the file)"),
    ((-1, 1, 8, 8), "has a size < 1; give every dimension as a positive size, the dynamic ones too"),
    ((0, 1, 8, 8), "has a size < 1; give every dimension as a positive size, the dynamic ones too"),
    ((2**26, 1, 8, 8), "has 4294967296 elements, more than the 2147483647 a tensor may hold"),
])
def test_a_given_shape_that_does_not_fit_is_an_input_shape_error(tmp_path, shape, problem):
    path = cnn(tmp_path / "m.onnx", [-1, 1, 8, 8])
    with pytest.raises(InputShapeError) as info:
        tvm_sima.load_model(path, input_shapes={"x": shape})
    err = info.value
    assert (err.name, err.declared, err.given) == ("x", [None, 1, 8, 8], shape)
    assert str(err) == f"{path}: input_shapes={{'x': ({', '.join(map(str, shape))})}} {problem}"
    assert problem in err.message(lambda name, dims: f"--input-shape {name}={','.join(dims)}")


def test_a_given_shape_for_no_input_is_an_error(tmp_path):
    path = cnn(tmp_path / "m.onnx", ["N", 1, 8, 8])
    with pytest.raises(InputShapeError, match=r"input_shapes=\{'image': \(1, 1, 8, 8\)\} names no input of the "
                                              r"model; its inputs: \['x'\]"):
        tvm_sima.load_model(path, input_shapes={"image": (1, 1, 8, 8)})


@pytest.mark.parametrize("dims, suggestion, dynamic", [
    (["N", 1, "H", "W"], "(1, 1, H, W)", "H, W in its declared shape [N, 1, H, W]"),
    ([-1, 1, None, -1], "(1, 1, D3, D4)", "D3, D4 in its declared shape [?, 1, ?, ?]"),
])
def test_other_dynamic_dimensions_need_a_shape(tmp_path, caplog, dims, suggestion, dynamic):
    path = cnn(tmp_path / "m.onnx", dims)
    caplog.set_level(logging.INFO, logger=LOGGER)
    with pytest.raises(DynamicShapeError) as info:
        tvm_sima.load_model(path)
    assert str(info.value) == (f"{path}: input 'x' has dynamic dimension(s) {dynamic} that the model file does not "
                               f"fix; give its shape with input_shapes={{'x': {suggestion}}}")
    assert info.value.declared == [d if d != -1 else None for d in dims]
    assert batch_lines(caplog) == []  # no "set to 1" for a load that fails
    mod, _ = tvm_sima.load_model(path, input_shapes={"x": (2, 1, 12, 10)})
    assert static_shape(mod["main"].params[0]) == [2, 1, 12, 10]


def test_a_symbol_takes_its_size_from_another_inputs_shape(tmp_path, caplog):
    path = cnn(tmp_path / "m.onnx", ["N", 1, "H", "W"], extra_input=["N", 10])
    caplog.set_level(logging.INFO, logger=LOGGER)
    mod, _ = tvm_sima.load_model(path, input_shapes={"x": (2, 1, 8, 8)})
    assert [static_shape(p) for p in mod["main"].params[:2]] == [[2, 1, 8, 8], [2, 10]]
    assert batch_lines(caplog) == []  # N came from x's shape, not from the batch rule
    batch_only = cnn(tmp_path / "b.onnx", ["N", 1, 8, 8], extra_input=["N", 10])
    mod, _ = tvm_sima.load_model(batch_only)
    assert [static_shape(p) for p in mod["main"].params[:2]] == [[1, 1, 8, 8], [1, 10]]
    assert len(batch_lines(caplog)) == 1  # x's batch sets N; b's N follows without a second line


def test_an_input_without_a_declared_shape_needs_one():
    # The ONNX checker refuses a graph input without a shape ("Field 'shape' of 'type' is required"),
    # so this is the resolver alone, on what such a file would declare.
    with pytest.raises(DynamicShapeError, match=r"m.onnx: input 'x' has no declared shape \(unknown rank\) that the "
                                                r"model file does not fix; give its shape with "
                                                r"input_shapes=\{'x': \(D1, D2, \.\.\.\)\}"):
        _input_shapes(pathlib.Path("m.onnx"), {"x": None}, None)
    assert _input_shapes(pathlib.Path("m.onnx"), {"x": None}, {"x": (1, 1, 8, 8)}) == {"x": (1, 1, 8, 8)}


def test_shapes_from_data_fill_dynamic_dimensions(tmp_path, caplog):
    path = cnn(tmp_path / "m.onnx", ["N", 1, "H", "W"])
    caplog.set_level(logging.INFO, logger=LOGGER)
    shapes = shapes_from_data(path, {"x": (1, 1, 12, 10)})
    assert shapes == {"x": (1, 1, 12, 10)}
    assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
        f"{path}: input 'x': dynamic dimensions of [N, 1, H, W] taken from the data: (1, 1, 12, 10)"]
    mod, params = tvm_sima.load_model(path, shapes)
    x = np.random.default_rng(2).standard_normal((1, 1, 12, 10)).astype("float32")
    got = relax.VirtualMachine(tvm_sima.build(bind_params(mod, params)), tvm.cpu())["main"](tvm.runtime.tensor(x))
    want = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-5)
    assert shapes_from_data(path, {"x": (1, 3, 12, 10)}) == {"x": (1, 1, 12, 10)}  # fixed sizes stay the file's
    assert shapes_from_data(path, {"x": (12, 10)}) == {}  # another rank: nothing to take
    assert shapes_from_data(path, {"x": (1, 1, 12, 10)}, {"x": (2, 1, 4, 4)}) == {"x": (2, 1, 4, 4)}  # given wins
    static = cnn(tmp_path / "s.onnx", [1, 1, 8, 8])
    assert shapes_from_data(static, {"x": (1, 1, 12, 10)}) == {}


# ---------------------------------------------------------------------------- TFLite shape_signature

def _ints(b: flatbuffers.Builder, items: list[int]) -> int:
    b.StartVector(4, len(items), 4)
    for v in reversed(items):
        b.PrependInt32(v)
    return b.EndVector()


def _tables(b: flatbuffers.Builder, offsets: list[int]) -> int:
    b.StartVector(4, len(offsets), 4)
    for o in reversed(offsets):
        b.PrependUOffsetTRelative(o)
    return b.EndVector()


def relu_tflite(path: pathlib.Path, shape: list[int], signature: list[int]) -> pathlib.Path:
    """A float TFLite file ``x[shape] -> RELU -> y`` whose tensors have ``shape_signature``.

    Written field by field from schema.fbs (Tensor: shape 0, type 1, buffer 2, name 3,
    shape_signature 7; SubGraph: tensors, inputs, outputs, operators; Model: version 0,
    operator_codes 1, subgraphs 2, buffers 4), since no TFLite writer is installed.
    """
    b = flatbuffers.Builder(0)
    tensors = []
    for name in ("x", "y"):
        text, dims, sig = b.CreateString(name), _ints(b, shape), _ints(b, signature)
        b.StartObject(8)
        b.PrependUOffsetTRelativeSlot(0, dims, 0)
        b.PrependUOffsetTRelativeSlot(3, text, 0)
        b.PrependUOffsetTRelativeSlot(7, sig, 0)
        tensors.append(b.EndObject())  # type 0 = FLOAT32, buffer 0 = the empty buffer
    op_in, op_out = _ints(b, [0]), _ints(b, [1])
    b.StartObject(3)
    b.PrependUOffsetTRelativeSlot(1, op_in, 0)
    b.PrependUOffsetTRelativeSlot(2, op_out, 0)
    op = b.EndObject()
    parts = [_tables(b, tensors), _ints(b, [0]), _ints(b, [1]), _tables(b, [op])]
    b.StartObject(4)
    for slot, part in enumerate(parts):
        b.PrependUOffsetTRelativeSlot(slot, part, 0)
    subgraph = b.EndObject()
    b.StartObject(4)
    b.PrependInt8Slot(0, 19, 0)  # RELU = 19, in deprecated_builtin_code and builtin_code
    b.PrependInt32Slot(2, 1, 0)
    b.PrependInt32Slot(3, 19, 0)
    code = b.EndObject()
    b.StartObject(1)
    empty = b.EndObject()
    codes, subgraphs, buffers = _tables(b, [code]), _tables(b, [subgraph]), _tables(b, [empty])
    b.StartObject(5)
    b.PrependUint32Slot(0, 3, 0)
    b.PrependUOffsetTRelativeSlot(1, codes, 0)
    b.PrependUOffsetTRelativeSlot(2, subgraphs, 0)
    b.PrependUOffsetTRelativeSlot(4, buffers, 0)
    b.Finish(b.EndObject(), file_identifier=b"TFL3")
    path.write_bytes(b.Output())
    return path


def test_tflite_dynamic_batch_signature_becomes_one_and_runs(tmp_path, caplog):
    from ai_edge_litert.interpreter import Interpreter, OpResolverType

    path = relu_tflite(tmp_path / "relu.tflite", [1, 4], [-1, 4])
    it = Interpreter(model_path=str(path), experimental_op_resolver_type=OpResolverType.BUILTIN_REF)
    assert list(it.get_input_details()[0]["shape_signature"]) == [-1, 4]  # LiteRT reads the file as we wrote it
    assert declared_inputs(path) == {"x": [None, 4]}
    caplog.set_level(logging.INFO, logger=LOGGER)
    mod, params = tvm_sima.load_model(path)
    assert static_shape(mod["main"].params[0]) == [1, 4]
    assert batch_lines(caplog) == [f"{path}: input 'x': dynamic batch dimension '?' set to 1"]
    x = np.array([[-1.5, 2.0, -3.0, 4.25]], np.float32)
    got = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    np.testing.assert_array_equal(got, it.get_tensor(it.get_output_details()[0]["index"]))


def test_tflite_other_dynamic_signature_dims_need_a_shape(tmp_path):
    path = relu_tflite(tmp_path / "relu.tflite", [1, 1], [1, -1])
    with pytest.raises(DynamicShapeError, match=r"dynamic dimension\(s\) D2 in its declared shape \[1, \?\]"):
        tvm_sima.load_model(path)
    mod, _ = tvm_sima.load_model(path, input_shapes={"x": (1, 6)})
    assert static_shape(mod["main"].params[0]) == [1, 6]


# ---------------------------------------------------------------------------- the command line

def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("tvm-sima: error:") and "\n" not in err and "Traceback" not in err, err
    return err


def test_cli_inspect_takes_each_batch_spelling(batch_model, capsys, caplog):
    path, _ = batch_model
    caplog.set_level(logging.INFO, logger=LOGGER)
    assert main(["inspect", str(path)]) == 0
    assert "input  x: float32[1, 1, 8, 8]" in capsys.readouterr().out
    assert len(batch_lines(caplog)) == 1


def test_cli_input_shape_fits_a_declared_minus_one(tmp_path, capsys):
    path = cnn(tmp_path / "m.onnx", [-1, 1, -1, -1])
    assert main(["inspect", str(path), "--input-shape", "x=2,1,12,10"]) == 0
    assert "input  x: float32[2, 1, 12, 10]" in capsys.readouterr().out


def test_cli_names_the_flag_for_a_dynamic_non_batch_dimension(tmp_path, capsys):
    path = cnn(tmp_path / "m.onnx", ["N", 1, "H", "W"])
    assert main(["inspect", str(path)]) == 1
    err = one_error_line(capsys)
    assert "dynamic dimension(s) H, W" in err and err.endswith("give its shape with --input-shape x=1,1,H,W")
    assert "input_shapes" not in err


@pytest.mark.parametrize("value, message", [
    ("x=-1,1,8,8", "--input-shape x=-1,1,8,8 has a size < 1"),
    ("x=0,1,8,8", "--input-shape x=0,1,8,8 has a size < 1"),
    ("x=1,1,8", "--input-shape x=1,1,8 has rank 3; input 'x' has rank 4"),
    ("x=1,3,8,8", "--input-shape x=1,3,8,8 does not fit input 'x', declared [?, 1, 8, 8] (dimension 1 is 1"),
    ("image=1,1,8,8", "--input-shape image=1,1,8,8 names no input of the model; its inputs: ['x']"),
])
def test_cli_a_shape_that_does_not_fit_is_one_line(tmp_path, capsys, value, message):
    path = cnn(tmp_path / "m.onnx", [-1, 1, 8, 8])
    assert main(["inspect", str(path), "--input-shape", value]) == 1
    err = one_error_line(capsys)
    assert message in err and "input_shapes" not in err


def test_cli_the_same_input_twice_is_an_error(tmp_path, capsys):
    path = cnn(tmp_path / "m.onnx", [-1, 1, 8, 8])
    assert main(["inspect", str(path), "--input-shape", "x=1,1,8,8", "--input-shape", "x=2,1,8,8"]) == 1
    assert "--input-shape x: given twice (--input-shape x=1,1,8,8, x=2,1,8,8)" in one_error_line(capsys)


def test_cli_load_takes_dynamic_dimensions_from_data_only_when_needed(tmp_path):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.zeros((5, 1, 12, 10), np.float32))
    path = cnn(tmp_path / "m.onnx", ["N", 1, "H", "W"])
    assert data_shapes(str(path), str(calib), {}) == {"x": (1, 1, 12, 10)}  # one batch: the batch is 1
    mod, _ = load_model(str(path), None, lambda: data_shapes(str(path), str(calib), {}))
    assert static_shape(mod["main"].params[0]) == [1, 1, 12, 10]

    def unused() -> dict:
        raise AssertionError("the data is read only when a dynamic dimension other than the batch is left")

    mod, _ = load_model(str(cnn(tmp_path / "b.onnx", ["N", 1, 8, 8])), None, unused)
    assert static_shape(mod["main"].params[0]) == [1, 1, 8, 8]
    mod, _ = load_model(str(path), ["x=1,1,6,6"], unused)
    assert static_shape(mod["main"].params[0]) == [1, 1, 6, 6]


def test_int8_tflite_logs_its_dynamic_batch_and_keeps_its_stored_shapes(fixtures_dir, capsys, caplog):
    path = fixtures_dir / "digits_ops_int8.tflite"  # shape [1, 8, 8, 1], shape_signature [-1, 8, 8, 1]
    assert declared_inputs(path) == {"serving_default_image:0": [None, 8, 8, 1]}
    caplog.set_level(logging.INFO, logger=LOGGER)
    mod, _ = tvm_sima.load_model(path)
    assert static_shape(mod["main"].params[0]) == [1, 8, 8, 1]
    assert batch_lines(caplog) == [f"{path}: input 'serving_default_image:0': dynamic batch dimension '?' set to 1"]
    with pytest.raises(InputShapeError, match=r"input_shapes=\{'serving_default_image:0': \(4, 8, 8, 1\)\} does not "
                                              r"fit: an int8 TFLite model is imported with the shapes it stores"):
        tvm_sima.load_model(path, input_shapes={"serving_default_image:0": (4, 8, 8, 1)})
    assert main(["inspect", str(path), "--input-shape", "serving_default_image:0=4,8,8,1"]) == 1
    assert "--input-shape serving_default_image:0=4,8,8,1 does not fit: an int8 TFLite model is imported with the " \
           "shapes it stores, [1, 8, 8, 1]" in one_error_line(capsys)
    assert main(["inspect", str(path), "--input-shape", "serving_default_image:0=1,8,8,1"]) == 0


def test_cli_quantize_takes_dynamic_dimensions_from_the_calibration_data_and_says_so(tmp_path, capsys):
    calib = tmp_path / "calib.npy"
    np.save(calib, np.random.default_rng(2).random((6, 1, 12, 10), np.float32))
    path = cnn(tmp_path / "m.onnx", ["N", 1, "H", "W"])
    assert main(["quantize", str(path), "--calib", str(calib), "--output", str(tmp_path / "q")]) == 0
    err = capsys.readouterr().err
    assert (tmp_path / "q" / "model.so").is_file()
    notes = [line for line in err.splitlines() if "dynamic" in line]
    assert len(notes) == 1 and notes[0].startswith("tvm-sima: ") and "taken from the data" in notes[0], err
    assert "1, 1, 12, 10" in notes[0] or "(1, 1, 12, 10)" in notes[0], notes
    # the same model without data to read: one error line naming the flag
    assert main(["inspect", str(path)]) == 1
    assert "--input-shape x=1,1,H,W" in capsys.readouterr().err


def test_cli_prints_the_dynamic_batch_note_on_stderr(tmp_path, capsys):
    path = cnn(tmp_path / "m.onnx", [-1, 1, 8, 8])
    assert main(["inspect", str(path)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err == [f"tvm-sima: {path}: input 'x': dynamic batch dimension '?' set to 1"], err


def test_a_shape_computed_reshape_is_folded_for_the_fixed_input_shapes(tmp_path, caplog):
    # paddle2onnx writes reshape targets as Shape -> Cast -> Slice -> Concat -> Reshape (PP-OCR cls);
    # TVM's importer needs a constant shape there ("Reshape requires the input new shape to be Shape").
    nodes = [helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Cast", ["s"], ["s32"], to=TensorProto.INT32),
             helper.make_node("Slice", ["s32", "start", "end"], ["batch"]),
             helper.make_node("Cast", ["batch"], ["batch64"], to=TensorProto.INT64),
             helper.make_node("Concat", ["batch64", "rest"], ["target"], axis=0),
             helper.make_node("Reshape", ["x", "target"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["y"])]
    rng = np.random.default_rng(15)
    w = rng.standard_normal((48, 5)).astype("float32")
    inits = [numpy_helper.from_array(np.array([0], np.int32), "start"),
             numpy_helper.from_array(np.array([1], np.int32), "end"),
             numpy_helper.from_array(np.array([-1], np.int64), "rest"), numpy_helper.from_array(w, "w")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], inits)
    path = tmp_path / "reshape_chain.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    with caplog.at_level(logging.INFO, logger="tvm_sima.frontends.onnx_fold"):
        mod, params = tvm_sima.load_model(path, input_shapes={"x": (2, 3, 4, 4)})
    assert any("folded 5 shape-computation node(s)" in r.getMessage() for r in caplog.records)
    x = rng.uniform(0, 1, (2, 3, 4, 4)).astype("float32")
    out = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(out, x.reshape(2, -1) @ w, rtol=1e-5, atol=1e-5)


def test_a_shape_of_a_tensor_shape_inference_leaves_dynamic_is_folded_in_a_later_round(tmp_path, caplog):
    """PP-OCRv4 rec: a Shape reads a tensor whose shape ONNX shape inference only knows once an earlier
    reshape chain is folded (reshape_a's target comes through int32 Casts, which its data propagation
    does not follow)::

        x[N,6,4,4] -> reshape_a (target: Shape(x) -> Cast -> Slice -> Cast -> Concat [.., 16]) -> add
                   -> reshape_b (target: Shape(add) -> Cast -> Slice -> Cast -> Concat [.., -1]) -> y
    """
    def c(name, value):
        return numpy_helper.from_array(np.asarray(value), name)

    rng = np.random.default_rng(7)
    bias = rng.standard_normal(16).astype(np.float32)
    inits = [c("s0", np.array([0], np.int64)), c("e2", np.array([2], np.int64)), c("e1", np.array([1], np.int64)),
             c("m1", np.array([16], np.int64)), c("m2", np.array([-1], np.int64)), c("b", bias)]
    chain = [("Shape", ["x"], "sx", {}), ("Cast", ["sx"], "sx32", {"to": TensorProto.INT32}),
             ("Slice", ["sx32", "s0", "e2"], "lead", {}), ("Cast", ["lead"], "lead64", {"to": TensorProto.INT64}),
             ("Concat", ["lead64", "m1"], "t1", {"axis": 0}), ("Reshape", ["x", "t1"], "r1", {}),
             ("Add", ["r1", "b"], "a1", {}), ("Shape", ["a1"], "sa", {}),
             ("Cast", ["sa"], "sa32", {"to": TensorProto.INT32}), ("Slice", ["sa32", "s0", "e1"], "batch", {}),
             ("Cast", ["batch"], "batch64", {"to": TensorProto.INT64}),
             ("Concat", ["batch64", "m2"], "t2", {"axis": 0}), ("Reshape", ["a1", "t2"], "y", {})]
    nodes = [helper.make_node(op, ins, [out], name=f"n{k}", **attrs) for k, (op, ins, out, attrs) in enumerate(chain)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [-1, 6, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)], inits)
    path = tmp_path / "chained_reshapes.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    fixed = onnx.load(path)
    fixed.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 2
    inferred = onnx.shape_inference.infer_shapes(fixed, data_prop=True)
    assert not [v for v in inferred.graph.value_info if v.name == "a1"][0].type.tensor_type.shape.dim  # dynamic
    with caplog.at_level(logging.INFO, logger="tvm_sima.frontends.onnx_fold"):
        mod, params = tvm_sima.load_model(path, input_shapes={"x": (2, 6, 4, 4)})
    assert any("folded 10 shape-computation node(s)" in r.getMessage() for r in caplog.records)
    x = rng.uniform(-1, 1, (2, 6, 4, 4)).astype("float32")
    out = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    np.testing.assert_allclose(out, (x.reshape(2, 6, 16) + bias).reshape(2, -1), rtol=1e-6, atol=1e-6)
