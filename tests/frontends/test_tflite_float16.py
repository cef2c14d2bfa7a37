"""Float16 TFLite models (weights stored as float16, DEQUANTIZE to float32 before use).

TVM's TFLite importer writes each such weight as ``astype(float16 constant, float32)``;
``load_model`` makes them float32 constants like any float model's (the float16 values exactly,
``frontends/float16.py``), and ``quantize`` treats them as weights.
"""

from __future__ import annotations

import numpy as np
import tvm
import tvm_ffi
from helpers.litert import litert
from helpers.relax import op_counts
from helpers.tflite_writer import Op, Tensor, write_tflite
from tvm import relax

import tvm_sima


def _float16_mlp(path):
    """x[1, 8] -> FULLY_CONNECTED(DEQUANTIZE(w16[4, 8]), DEQUANTIZE(b16[4])) -> y[1, 4]."""
    rng = np.random.default_rng(16)
    w, b = rng.standard_normal((4, 8)).astype(np.float16), rng.standard_normal(4).astype(np.float16)
    tensors = [Tensor("x", [1, 8], "float32"), Tensor("w16", [4, 8], "float16", data=w), Tensor("w", [4, 8], "float32"),
               Tensor("b16", [4], "float16", data=b), Tensor("b", [4], "float32"), Tensor("y", [1, 4], "float32")]
    ops = [Op("DEQUANTIZE", [1], [2]), Op("DEQUANTIZE", [3], [4]), Op("FULLY_CONNECTED", [0, 2, 4], [5])]
    return write_tflite(path, tensors, ops, [0], [5])


def _constant_dtypes(mod) -> set:
    found: set = set()
    tvm_ffi.structural_walk(mod["main"], [(tvm.ir.GenericConst, lambda c: found.add(str(c.ty.dtype)))])
    return found


def test_float16_weights_load_as_float32_constants_and_quantize(tmp_path):
    path = _float16_mlp(tmp_path / "mlp16.tflite")
    mod, params = tvm_sima.load_model(path)
    assert _constant_dtypes(mod) == {"float32"} and op_counts(mod)["relax.astype"] == 0
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((1, 8)).astype(np.float32) for _ in range(16)]
    vm = relax.VirtualMachine(tvm_sima.build(mod, params=params), tvm.cpu())
    for x in xs[:4]:
        np.testing.assert_allclose(vm["main"](tvm.runtime.tensor(x)).numpy(), litert(path, x), rtol=1e-5, atol=1e-5)
    qmod = tvm_sima.quantize(mod, params, xs, work_dir=tmp_path / "q")
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == [] and report["fused"] == ["matmul_0"]
    qvm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    ref = np.concatenate([litert(path, x) for x in xs])
    out = np.concatenate([qvm["main"](tvm.runtime.tensor(x)).numpy() for x in xs])
    assert np.abs(out - ref).max() < 0.05 * np.abs(ref).max()
