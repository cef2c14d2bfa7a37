r"""The model's own node names reach inspect, quantize_report and layers.json (not Relax's ``lv<k>``).

The ONNX fixture (node names as exporters write them, with '/' and '.')::

    x -> stem/Conv -> stem/Relu -> head.conv ----------------------------> out/Div(head.conv, .) -> y
                         \-> gate/Sigmoid -> gate/Add(+1) --------------^

``out/Div`` divides by a tensor, which stays float ("division by a tensor"; were both operands
computed from one tensor, the chain would be one table).
"""

from __future__ import annotations

import json
import re

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import tvm_sima
from tvm_sima.cli import main
from tvm_sima.source_names import SourceNames

NODES = ["stem/Conv", "stem/Relu", "head.conv", "gate/Sigmoid", "gate/Add", "out/Div"]


def _named_model(path, unnamed: str = ""):
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype("float32") * 0.3, "w1"),
             numpy_helper.from_array(rng.standard_normal(4).astype("float32") * 0.1, "b1"),
             numpy_helper.from_array(rng.standard_normal((4, 4, 1, 1)).astype("float32") * 0.3, "w2"),
             numpy_helper.from_array(np.asarray(1.0, np.float32), "one")]
    spec = [("Conv", ["x", "w1", "b1"], "c1"), ("Relu", ["c1"], "r1"), ("Conv", ["r1", "w2"], "c2"),
            ("Sigmoid", ["r1"], "s"), ("Add", ["s", "one"], "d"), ("Div", ["c2", "d"], "y")]
    nodes = [helper.make_node(op, ins, [out], name="" if name == unnamed else name)
             for name, (op, ins, out) in zip(NODES, spec, strict=True)]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 6, 6])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    return path


def test_every_binding_of_an_imported_onnx_model_has_its_node_name(tmp_path):
    mod, _ = tvm_sima.load_model(_named_model(tmp_path / "m.onnx"))
    main_ = mod["main"]
    names = SourceNames(main_)
    bindings = [b.var for block in main_.body.blocks for b in block.bindings]
    assert {names.of(v) for v in bindings} <= set(NODES) and all(names.of(v) for v in bindings)
    assert {names.of(v) for v in bindings} >= {"stem/Conv", "head.conv", "out/Div"}
    assert names.of(main_.params[0]) == "x"


def test_inspect_names_the_onnx_nodes_and_what_stays_float(tmp_path, capsys):
    assert main(["inspect", str(_named_model(tmp_path / "m.onnx"))]) == 0
    out = capsys.readouterr().out
    layers = out[out.index("quantize would quantize"):]
    assert re.search(r"0  conv2d_0\s+relax.nn.conv2d\s+stem/Conv\n", layers), layers
    assert re.search(r"1  conv2d_1\s+relax.nn.conv2d\s+head.conv\n", layers), layers
    float_part = out[out.index("would stay float"):]
    assert "relax.divide -> out/Div (" in float_part and "division by a tensor" in float_part, float_part
    assert not re.search(r"\blv\d*\b", out), out


def test_the_output_after_a_rewritten_pad_keeps_its_own_name(tmp_path):
    # TVM writes ONNX Pad as a TE call that the loader rewrites (a rebuild of main, which binds the
    # output to a new var, gv1 = gv); canonicalize then binds Relu to gv1, which took Pad's name
    #   x -> conv/Conv -> pad/Pad -> act/Relu -> y
    rng = np.random.default_rng(3)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype("float32"), "w"),
             numpy_helper.from_array(np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64), "pads")]
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv/Conv"),
             helper.make_node("Pad", ["c", "pads"], ["p"], name="pad/Pad"),
             helper.make_node("Relu", ["p"], ["y"], name="act/Relu")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8),
              str(tmp_path / "pad.onnx"))
    mod, params = tvm_sima.load_model(tmp_path / "pad.onnx")
    _, report = tvm_sima.quantize_plan(mod, params)
    assert report.sources["relu@0.output"] == "act/Relu", report.sources
    assert report.sources["pad@0.output"] == "pad/Pad", report.sources


def test_an_unnamed_node_is_named_after_its_output(tmp_path, capsys):
    assert main(["inspect", str(_named_model(tmp_path / "m.onnx", unnamed="out/Div"))]) == 0
    assert "relax.divide -> y (" in capsys.readouterr().out


def test_quantize_report_and_layers_json_carry_the_source_names(tmp_path):
    mod, params = tvm_sima.load_model(_named_model(tmp_path / "m.onnx"))
    data = [np.random.default_rng(k).standard_normal((1, 3, 8, 8)).astype("float32") for k in range(4)]
    qmod = tvm_sima.quantize(mod, params, data, work_dir=tmp_path / "run")
    report = tvm_sima.quantize_report(qmod)
    [div] = report["float_ops"]
    assert div["op"] == "relax.divide" and div["source"] == "out/Div", div
    assert report["sources"]["conv2d_0"] == "stem/Conv" and report["sources"]["conv2d_1"] == "head.conv"
    assert report["sources"]["conv2d_1.input"] == "stem/Conv"  # produced by the first layer (its relu fused)
    assert report["sources"]["conv2d_0.input"] == "x"  # the model input
    rows = json.loads((tmp_path / "run" / "layers.json").read_text())["layers"]
    assert [(r["name"], r["source"]) for r in rows] == [("conv2d_0", "stem/Conv"), ("conv2d_1", "head.conv")]


def test_a_layer_override_can_select_by_source_name(tmp_path):
    mod, params = tvm_sima.load_model(_named_model(tmp_path / "m.onnx"))
    data = [np.random.default_rng(k).standard_normal((1, 3, 8, 8)).astype("float32") for k in range(2)]
    with tvm_sima.qconfig(layer_overrides=[{"match": "source:stem/*", "skip": True}]):
        qmod = tvm_sima.quantize(mod, params, data, work_dir=tmp_path / "run")
    assert tvm_sima.quantize_report(qmod)["fused"] == ["conv2d_1"]


@pytest.fixture(scope="module")
def tflite_names(fixtures_dir):
    from tvm_sima.frontends.tflite_flatbuffer import read_tflite

    graph = read_tflite(fixtures_dir / "digits_cnn_float.tflite")
    return [(op.name, graph.tensors[op.outputs[0]].name) for op in graph.ops]


def test_inspect_names_the_tflite_output_tensors(fixtures_dir, tflite_names, capsys):
    assert main(["inspect", str(fixtures_dir / "digits_cnn_float.tflite")]) == 0
    out = capsys.readouterr().out
    rows = re.findall(r"^\s+\d+  (\S+)\s+(relax\.\S+)\s+(\S+)$", out, re.M)
    assert len(rows) == 4 and rows[3][:2] == ("matmul_3", "relax.matmul"), rows
    layers = [name for op, name in tflite_names if op != "RESHAPE"]  # the conv / FC ops, in order
    assert [row[2] for row in rows] == layers, rows


def test_quantize_info_records_carry_the_source_names_into_the_executable(tmp_path):
    mod, params = tvm_sima.load_model(_named_model(tmp_path / "m.onnx"))
    data = [np.random.default_rng(k).standard_normal((1, 3, 8, 8)).astype("float32") for k in range(2)]
    qmod = tvm_sima.quantize(mod, params, data, work_dir=tmp_path / "run")
    in_module = tvm_sima.read_quantize_info(qmod)
    assert in_module["conv2d_1.input"].source == "stem/Conv" and in_module["conv2d_1.output"].source == "head.conv"
    assert in_module["add@1.output"].source == "gate/Add"
    built = tvm_sima.read_quantize_info(tvm_sima.build(qmod))
    assert {k: v.source for k, v in built.items()} == {k: v.source for k, v in in_module.items()}


def test_convert_names_the_node_writing_each_tensor_it_quantizes(tmp_path):
    """Every quantized activation of ``convert``'s result has a ``quantize_info`` (the input's quantize
    too, as after realize) whose source is the file's QuantizeLinear writing those codes."""
    from helpers.onnx_models import digits_cnn, quantize_with_onnxruntime

    path = quantize_with_onnxruntime(digits_cnn(tmp_path / "cnn.onnx"), tmp_path / "cnn_qdq.onnx", per_channel=True)
    quantize_nodes = [n.name for n in onnx.load(str(path)).graph.node if n.op_type == "QuantizeLinear"]
    converted, report = tvm_sima.convert(tvm_sima.load_model(path)[0])
    infos = tvm_sima.read_quantize_info(converted)
    assert sorted(i.source for i in infos.values()) == sorted(quantize_nodes)
    # The converted chains' outputs, and the float input's quantize, which stays a sima.quantize.
    (left,) = set(infos) - {c["tensor"] for c in report.converted}
    assert infos[left].source == quantize_nodes[0] == "image_QuantizeLinear"
    assert infos[left].qparams.scale == pytest.approx(float(numpy_helper.to_array(next(
        i for i in onnx.load(str(path)).graph.initializer if i.name == "image_scale"))))
