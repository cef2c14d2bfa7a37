"""Legalizations, Before / Expected in TVMScript (structural equality)."""

from __future__ import annotations

import tvm
from helpers.relax import one_input_module
from tvm import relax
from tvm.script import ir as I
from tvm.script import relax as R
from tvm.script import tirx as T

import tvm_sima.ops as so
from tvm_sima import math as sm


def legalize(mod: tvm.IRModule) -> tvm.IRModule:
    return relax.transform.LegalizeOps()(mod)


def test_requantize_half_up_is_multiply_add_shift():
    # main(x: int32[2, 3]) = sima.requantize(x, multiplier=5, shift=3, zp_out=1)
    before = one_input_module((2, 3), "int32", lambda bb, v: so.requantize(v, multiplier=5, shift=3, zp_out=1))

    @I.ir_module
    class Expected:
        @T.prim_func(private=True, s_tir=True)
        def sima_requantize(x: T.Buffer((T.int64(2), T.int64(3)), "int32"),
                            out: T.Buffer((T.int64(2), T.int64(3)), "int8")):
            T.func_attr({"tirx.noalias": True})
            for i0, i1 in T.grid(T.int64(2), T.int64(3)):
                with T.sblock("sima_requantize"):
                    v0, v1 = T.axis.remap("SS", [i0, i1])
                    T.reads(x[v0, v1])
                    T.writes(out[v0, v1])
                    T.sblock_attr({"sima.axis": -1, "sima.multiplier": [5], "sima.op": "sima.requantize",
                                   "sima.out_dtype": "int8", "sima.qmax": 127, "sima.qmin": -128,
                                   "sima.rounding": "half_up", "sima.shift": [3], "sima.zp_in": 0, "sima.zp_out": 1})
                    # clip(((x * M + 2**(N-1)) >> N) + zp_out): integers only
                    out[v0, v1] = T.Cast("int8", T.min(T.max(
                        (T.Cast("int64", x[v0, v1]) * T.int64(5) + T.int64(4) >> T.int64(3)) + T.int64(1),
                        T.int64(-128)), T.int64(127)))

        @R.function
        def main(x: R.Tensor((2, 3), dtype="int32")) -> R.Tensor((2, 3), dtype="int8"):
            cls = Expected
            with R.dataflow():
                gv = R.call_tir(cls.sima_requantize, (x,), out_ty=R.Tensor((2, 3), dtype="int8"))
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(legalize(before), Expected)


def test_quantize_info_is_an_annotated_identity_with_a_tag():
    # main(x: int8[2, 3]) = sima.quantize_info(x, scale 0.5, zero point 1, name "t")
    before = one_input_module((2, 3), "int8", lambda bb, v: so.quantize_info(v, sm.QParams(0.5, 1, "int8"), name="t"))

    @I.ir_module
    class Expected:
        @T.prim_func(private=True, s_tir=True)
        def sima_quantize_info(data: T.Buffer((T.int64(2), T.int64(3)), "int8"), sima_info_tag: T.int64,
                               out: T.Buffer((T.int64(2), T.int64(3)), "int8")):
            T.func_attr({"tirx.noalias": True})
            for i0, i1 in T.grid(T.int64(2), T.int64(3)):
                with T.sblock("sima_quantize_info"):
                    v0, v1 = T.axis.remap("SS", [i0, i1])
                    T.reads(data[v0, v1])
                    T.writes(out[v0, v1])
                    T.sblock_attr({"sima.axis": -1, "sima.clip_max": 63.0, "sima.clip_min": -64.5,
                                   "sima.dtype": "int8", "sima.kind": "activation", "sima.name": "t",
                                   "sima.op": "sima.quantize_info", "sima.qmax": 127, "sima.qmin": -128,
                                   "sima.scale": [0.5], "sima.zero_point": [1]})
                    out[v0, v1] = data[v0, v1]

        @R.function
        def main(x: R.Tensor((2, 3), dtype="int8")) -> R.Tensor((2, 3), dtype="int8"):
            cls = Expected
            with R.dataflow():
                # the scalar tag keeps FoldConstant from folding the info away
                gv = R.call_tir(cls.sima_quantize_info, (x, R.prim_value(T.int64(0))),
                                out_ty=R.Tensor((2, 3), dtype="int8"))
                R.output(gv)
            return gv

    tvm.ir.assert_structural_equal(legalize(before), Expected)
