"""tvm_sima.graph: rebuild_main / rebuild_function, Before / Expected in TVMScript."""

from __future__ import annotations

import pytest
import tvm
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R

from tvm_sima.graph import op_name, rebuild_function, rebuild_main, remap


@I.ir_module
class Before:
    #   x -> exp -> relu -> add(., x) -> out
    @R.function
    def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
        R.func_attr({"num_input": 1})
        with R.dataflow():
            a = R.exp(x)
            b = R.nn.relu(a)
            c = R.add(b, x)
            R.output(c)
        return c


def test_the_default_rebuild_copies_every_binding_with_its_name():
    # BlockBuilder's emit_output binds the block's result to a new global var, gv
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                a = R.exp(x)
                b = R.nn.relu(a)
                c = R.add(b, x)
                gv = c
                R.output(gv)
            return gv

    after = rebuild_main(Before)
    tvm.ir.assert_structural_equal(after, Expected)
    assert after.script() == Expected.script()  # names and order too


def test_a_callback_replaces_drops_and_maps_bindings():
    # relu becomes sigmoid (emitted under relu's name); exp is dropped and its users read x
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32")) -> R.Tensor((2, 3), "float32"):
            R.func_attr({"num_input": 1})
            with R.dataflow():
                b = R.sigmoid(x)
                c = R.add(b, x)
                gv = c
                R.output(gv)
            return gv

    def emit(bb, var, value, mapping):
        if op_name(value) == "relax.exp":
            mapping[var] = remap(value.args[0], mapping)
            return None
        if op_name(value) == "relax.nn.relu":
            return relax.op.sigmoid(remap(value.args[0], mapping))
        return remap(value, mapping)

    after = rebuild_main(Before, emit)
    tvm.ir.assert_structural_equal(after, Expected)
    assert after.script() == Expected.script()


def test_new_params_attrs_output_and_a_plain_block():
    # one more parameter, no attributes, the result a tuple emitted by the output callback, no dataflow
    @I.ir_module
    class Expected:
        @R.function
        def main(x: R.Tensor((2, 3), "float32"), y: R.Tensor((2, 3), "float32")):
            a = R.exp(x)
            b = R.nn.relu(a)
            c = R.add(b, x)
            d = R.multiply(c, y)
            return (c, d)

    y = relax.Var("y", relax.TensorType((2, 3), "float32"))
    func = Before["main"]

    def output(bb, body, mapping):
        return relax.Tuple([remap(body, mapping), bb.emit(relax.op.multiply(remap(body, mapping), y), "d")])

    after = rebuild_function(func, params=[*func.params, y], attrs={}, emit_output=output, dataflow=False)
    tvm.ir.assert_structural_equal(tvm.IRModule({"main": after}), Expected)


def test_a_seeded_mapping_renames_the_inputs_of_a_function():
    func = Before["main"]
    z = relax.Var("z", relax.TensorType((2, 3), "float32"))
    after = rebuild_function(func, name="region", params=[z], mapping={func.params[0]: z})
    assert [p.name for p in after.params] == ["z"]
    assert "R.exp(z)" in after.script() and "R.add(b, z)" in after.script()


def test_match_cast_bindings_are_refused_as_graph_index_refuses_them():
    @I.ir_module
    class WithMatchCast:
        @R.function
        def main(x: R.Tensor(("n",), "float32")):
            with R.dataflow():
                y = R.match_cast(x, R.Tensor((4,), "float32"))
                z = R.exp(y)
                R.output(z)
            return z

    with pytest.raises(NotImplementedError, match="MatchCast bindings are not supported"):
        rebuild_main(WithMatchCast)
