"""canonicalize folds the exact constant ops (moves, NaN tests, selections) in NumPy before ``FoldConstant``:
the same module as ``FoldConstant`` alone makes, without an LLVM compile per folded op."""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax

import tvm_sima
from tvm_sima.graph import op_name
from tvm_sima.params import bind_params
from tvm_sima.passes.canonicalize import NUMPY_FOLDS, fold_exact_constants


def _constant_calls(func: relax.Function) -> list[str]:
    """Ops of ``NUMPY_FOLDS`` whose operands are constants or such ops' results (what FoldConstant compiles)."""
    constant, found = set(), []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, tvm.ir.GenericConst):
                constant.add(binding.var)
            elif isinstance(value, relax.Call) and op_name(value) in NUMPY_FOLDS and all(
                    isinstance(a, (tvm.ir.GenericConst, relax.ShapeExpr)) or a in constant for a in value.args):
                constant.add(binding.var)
                found.append(op_name(value))
    return found


def _clip_model(path):
    """ONNX Conv -> Clip(0, 6) with a bias: the importer writes the bias reshape and where(isnan(bound), ...)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 1, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal(4).astype(np.float32), "b"),
             numpy_helper.from_array(np.float32(0.0), "lo"), numpy_helper.from_array(np.float32(6.0), "hi")]
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w", "b"], ["c"], pads=[1, 1, 1, 1]),
                               helper.make_node("Clip", ["c", "lo", "hi"], ["y"])], "clip",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])], inits)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], ir_version=8), path)
    return path


def _bound(tmp_path):
    mod, params = tvm_sima.load_model(_clip_model(tmp_path / "clip.onnx"))
    return relax.transform.DecomposeOpsForInference()(bind_params(mod, params))


def _chain_module():
    """x + reshape(b), maximum(x, where(isnan(c), -inf, c)), transpose of a constant: each folds in a chain."""
    bb = relax.BlockBuilder()
    x = relax.Var("x", relax.TensorType((1, 4, 2, 2), "float32"))
    with bb.function("main", [x]):
        with bb.dataflow():
            bias = bb.emit(relax.op.reshape(relax.const(np.arange(4, dtype="float32")), (1, 4, 1, 1)))
            nan = bb.emit(relax.op.isnan(relax.const(np.float32(0.5))))
            low = bb.emit(relax.op.where(nan, relax.const(np.float32(-np.inf)), relax.const(np.float32(0.5))))
            w = bb.emit(relax.op.permute_dims(relax.const(np.arange(8, dtype="float32").reshape(2, 4)), [1, 0]))
            y = bb.emit(relax.op.maximum(relax.op.add(x, bias), low))
            out = bb.emit_output(relax.op.add(y, relax.op.reshape(relax.op.sum(w, axis=[1]), (1, 4, 1, 1))))
        bb.emit_func_output(out)
    return bb.get()


def test_exact_constant_ops_fold_in_numpy_to_what_fold_constant_makes(tmp_path):
    for mod in (_bound(tmp_path), _chain_module()):  # the ONNX importer's Clip bounds; a chain of each op
        assert _constant_calls(mod["main"])  # there is something to fold
        folded = fold_exact_constants(mod)
        assert _constant_calls(folded["main"]) == []
        # canonicalize's CanonicalizeBindings drops the output alias the rebuild adds
        fold = tvm.transform.Sequential([relax.transform.FoldConstant(), relax.transform.CanonicalizeBindings()])
        tvm.ir.assert_structural_equal(fold(folded)["main"], fold(mod)["main"])


def test_folded_values_are_numpys():
    folded = fold_exact_constants(_chain_module())["main"]
    consts = {}

    def visit(expr):
        if isinstance(expr, tvm.ir.GenericConst):
            consts[tuple(expr.value.shape)] = expr.value.numpy()

    relax.analysis.post_order_visit(folded, visit)
    np.testing.assert_array_equal(consts[(1, 4, 1, 1)], np.arange(4, dtype="float32").reshape(1, 4, 1, 1))
    np.testing.assert_array_equal(consts[(4, 2)], np.arange(8, dtype="float32").reshape(2, 4).T)
    assert consts[()].dtype == np.float32 and float(consts[()]) in (0.5, -np.inf)
