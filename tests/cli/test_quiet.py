"""A CLI run on a model with lookup-table ops prints nothing alarming.

The integer lookup tables (sigmoid's 256 entries, softmax's exp table) are ``relax.take`` ops.
TVM's default ``fast`` mode makes its compiler print "Warning: Fast mode segfaults when there are
out-of-bounds indices" once per table and build, from C++, straight to the process's stderr; the
table indices are in range by construction, so realize asks for ``mode="clip"``, which does not
warn. ``capfd`` reads the file descriptors, so C++ output is seen too.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from tvm_sima.cli import main


def _sigmoid_softmax_model(path) -> None:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array((rng.standard_normal((4, 1, 3, 3)) * 0.5).astype(np.float32), "w"),
             numpy_helper.from_array(np.zeros(4, np.float32), "b"),
             numpy_helper.from_array((rng.standard_normal((4, 10)) * 0.5).astype(np.float32), "fc")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Sigmoid", ["c"], ["s"]),
             helper.make_node("GlobalAveragePool", ["s"], ["g"]),
             helper.make_node("Flatten", ["g"], ["f"]),
             helper.make_node("MatMul", ["f", "fc"], ["m"]),
             helper.make_node("Softmax", ["m"], ["y"], axis=1)]
    graph = helper.make_graph(nodes, "lut", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 10])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))


def test_quantize_and_report_on_lookup_table_ops_print_no_tvm_warning(tmp_path, capfd):
    model, calib = tmp_path / "lut.onnx", tmp_path / "calib.npy"
    _sigmoid_softmax_model(model)
    np.save(calib, np.random.default_rng(1).random((8, 1, 8, 8), np.float32))
    assert main(["report", str(model), "--calib", str(calib), "--eval", str(calib),
                 "--output", str(tmp_path / "r")]) == 0
    out, err = capfd.readouterr()
    assert (tmp_path / "r" / "per_layer.json").is_file()
    ops = (tmp_path / "r" / "report.json").read_text()
    assert "lut(sigmoid)" in ops and "softmax" in ops, ops  # both table kinds were built
    assert "Fast mode" not in out + err and "Warning" not in err, err
