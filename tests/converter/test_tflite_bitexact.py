"""TFLITE mode bit-exact against LiteRT's reference kernels, computed with tvm_sima.math alone.

Models are produced by the real TFLite converter (tools/make_tflite_fixtures.py, trained on
scikit-learn digits). Every op's output is compared, fed the very input LiteRT gave that op.
"""

from __future__ import annotations

import numpy as np
import pytest

from tvm_sima.frontends.tflite_flatbuffer import read_tflite
from tvm_sima.frontends.tflite_numpy import SUPPORTED_OPS, run_int8_tflite, run_op
from tvm_sima.testing import digits_inputs

litert = pytest.importorskip("ai_edge_litert.interpreter")

MODELS = {
    "digits_int8.tflite": ["CONV_2D", "DEPTHWISE_CONV_2D", "CONV_2D", "RESHAPE", "FULLY_CONNECTED"],
    "digits_mlp_int8.tflite": ["FULLY_CONNECTED", "FULLY_CONNECTED"],
}


def reference_interpreter(path):
    it = litert.Interpreter(
        model_path=str(path),
        experimental_op_resolver_type=litert.OpResolverType.BUILTIN_REF,
        experimental_preserve_all_tensors=True,
    )
    it.allocate_tensors()
    return it


def inputs_for(graph, fixtures_dir, count_random=400):
    return digits_inputs(graph, fixtures_dir / "digits_int8_inputs.npz", count_random)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_every_op_bit_exact_with_litert_reference(name, fixtures_dir):
    path = fixtures_dir / name
    graph = read_tflite(path)
    assert [op.name for op in graph.ops] == MODELS[name]
    it = reference_interpreter(path)
    compared = 0
    for x in inputs_for(graph, fixtures_dir):
        it.set_tensor(graph.inputs[0], x)
        it.invoke()
        for op in graph.ops:
            fed = {i: it.get_tensor(i) for i in op.inputs if i >= 0 and graph.tensors[i].data is None}
            ours = run_int8_tflite_op(graph, op, fed)
            theirs = it.get_tensor(op.outputs[0])
            np.testing.assert_array_equal(ours, theirs, err_msg=f"{name} op {op.index} {op.name}")
            compared += theirs.size
        end_to_end = run_int8_tflite(graph, x)[graph.outputs[0]]
        np.testing.assert_array_equal(end_to_end, it.get_tensor(graph.outputs[0]))
    assert compared > 1000


def run_int8_tflite_op(graph, op, fed, mode="tflite"):
    """Run one op of the graph with the NumPy oracle, on LiteRT's own inputs to that op."""
    return run_op(graph, op, fed, mode)


def test_fixture_weights_are_per_channel_where_expected(fixtures_dir):
    """The fixtures cover per-channel CONV_2D / FULLY_CONNECTED and per-tensor FULLY_CONNECTED."""
    cnn = read_tflite(fixtures_dir / "digits_int8.tflite")
    mlp = read_tflite(fixtures_dir / "digits_mlp_int8.tflite")
    scales = lambda g, kind: [g.tensors[op.inputs[1]].scale.size for op in g.ops if op.name == kind]  # noqa: E731
    assert min(scales(cnn, "CONV_2D")) > 1 and scales(cnn, "FULLY_CONNECTED")[0] > 1
    assert scales(mlp, "FULLY_CONNECTED") == [1, 1]


def test_digits_accuracy_of_the_integer_oracle(fixtures_dir):
    graph = read_tflite(fixtures_dir / "digits_int8.tflite")
    data = np.load(fixtures_dir / "digits_int8_inputs.npz")
    preds = [np.argmax(run_int8_tflite(graph, x[None])[graph.outputs[0]]) for x in data["images"]]
    assert np.mean(np.array(preds) == data["labels"]) >= 0.8


def test_unsupported_ops_are_listed(tmp_path, fixtures_dir):
    graph = read_tflite(fixtures_dir / "digits_int8.tflite")
    graph.ops[1].name = "SPACE_TO_BATCH_ND"
    graph.ops[3].name = "SHAPE"
    with pytest.raises(ValueError, match=r"unsupported TFLite ops: SPACE_TO_BATCH_ND \(op 1, .*SHAPE \(op 3"):
        run_int8_tflite(graph, np.zeros((1, 8, 8, 1), np.int8))
    assert "CONV_2D" in SUPPORTED_OPS


def test_bad_files_and_inputs(tmp_path, fixtures_dir):
    bogus = tmp_path / "model.tflite"
    bogus.write_bytes(b"not a flatbuffer at all")
    with pytest.raises(ValueError, match="is not a TFLite flatbuffer"):
        read_tflite(bogus)
    with pytest.raises(FileNotFoundError):
        read_tflite(tmp_path / "missing.tflite")
    with pytest.raises(ValueError, match=r"input must be int8 of shape \(1, 8, 8, 1\)"):
        run_int8_tflite(fixtures_dir / "digits_int8.tflite", np.zeros((1, 8, 8), np.int8))


@pytest.mark.parametrize("op_name, wrong", [("FULLY_CONNECTED", "tflite"), ("CONV_2D", "half_up")])
def test_documented_rounding_is_the_one_that_matters(op_name, wrong, monkeypatch, fixtures_dir):
    """Swapping an op's rounding (single <-> double) breaks bit-exactness: the table is needed."""
    from tvm_sima.frontends import tflite_numpy

    monkeypatch.setitem(tflite_numpy.ROUNDING, op_name, wrong)
    path = fixtures_dir / "digits_int8.tflite"
    graph = read_tflite(path)
    it = reference_interpreter(path)
    mismatches = 0
    for x in inputs_for(graph, fixtures_dir):
        it.set_tensor(graph.inputs[0], x)
        it.invoke()
        for op in (op for op in graph.ops if op.name == op_name):
            fed = {i: it.get_tensor(i) for i in op.inputs if i >= 0 and graph.tensors[i].data is None}
            mismatches += int(np.sum(run_int8_tflite_op(graph, op, fed) != it.get_tensor(op.outputs[0])))
    assert mismatches > 0
