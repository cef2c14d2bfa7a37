"""Float TFLite models with MediaPipe's custom op ``Convolution2DTransposeBias`` import, run and quantize.

The custom op (selfie segmentation's last layer) is written in a tiny model here::

    x[1, H, W, 3] -> Convolution2DTransposeBias(W[4, kh, kw, 3], b[4]; padding, strides) -> y

and compared with a NumPy loop written from MediaPipe's documented kernel, and with LiteRT's
default resolver (its XNNPACK delegate implements the op; the reference resolver has no kernel
for it).
"""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tvm
from helpers.quantize import total_sqnr
from helpers.relax import op_counts
from helpers.tflite_writer import Op, Tensor, write_tflite
from tvm import relax

import tvm_sima
from tvm_sima.frontends.loader import UnsupportedOpsError

RNG = np.random.default_rng(21)


def mediapipe_reference(x, w, b, same, stride_h, stride_w):
    """The documented kernel: pad totals ``max(0, k - (in - 1) % s - 1)``, outputs start at the bias."""
    n, h, wd, _ = x.shape
    cout, kh, kw, _ = w.shape
    ph = max(0, kh - (h - 1) % stride_h - 1) if same else 0
    pw = max(0, kw - (wd - 1) % stride_w - 1) if same else 0
    out = np.tile(b.astype(np.float64), (n, stride_h * (h - 1) + kh - ph, stride_w * (wd - 1) + kw - pw, 1))
    for iy in range(h):
        for ix in range(wd):
            for fy in range(kh):
                for fx in range(kw):
                    oy, ox = iy * stride_h - ph // 2 + fy, ix * stride_w - pw // 2 + fx
                    if 0 <= oy < out.shape[1] and 0 <= ox < out.shape[2]:
                        out[:, oy, ox] += x[:, iy, ix].astype(np.float64) @ w[:, fy, fx].T.astype(np.float64)
    return out.astype(np.float32)


def custom_model(path, shape, kernel, same, stride_h, stride_w, code="Convolution2DTransposeBias"):
    w = (RNG.standard_normal((4, *kernel, shape[3])) * 0.4).astype(np.float32)
    b = (RNG.standard_normal(4) * 0.3).astype(np.float32)
    x = np.zeros(shape, np.float32)
    out_shape = mediapipe_reference(x, w, b, same, stride_h, stride_w).shape
    options = struct.pack("<iii", 1 if same else 2, stride_w, stride_h)  # TfLiteTransposeConvParams
    write_tflite(path, [Tensor("x", shape), Tensor("w", w.shape, data=w), Tensor("b", b.shape, data=b),
                        Tensor("y", out_shape)],
                 [Op(f"CUSTOM:{code}", [0, 1, 2], [3], custom_options=options)], inputs=[0], outputs=[3])
    return path, w, b


def litert_default(path, x):
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_path=str(path))
    it.allocate_tensors()
    it.set_tensor(it.get_input_details()[0]["index"], x)
    it.invoke()
    return it.get_tensor(it.get_output_details()[0]["index"])


CASES = {"same_k2s2": ((1, 5, 6, 3), (2, 2), True, 2, 2), "same_k3_s2x1": ((1, 5, 6, 3), (3, 3), True, 2, 1),
         "valid_k3_s1x3": ((1, 4, 5, 3), (3, 2), False, 1, 3), "same_k4s2": ((1, 4, 4, 3), (4, 4), True, 2, 2)}


@pytest.mark.parametrize("case", sorted(CASES))
def test_transpose_conv_bias_imports_and_equals_the_documented_kernel(case, tmp_path):
    shape, kernel, same, sh, sw = CASES[case]
    path, w, b = custom_model(tmp_path / "m.tflite", shape, kernel, same, sh, sw)
    mod, params = tvm_sima.load_model(path)
    x = RNG.standard_normal(shape).astype(np.float32)
    got = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())["main"](tvm.runtime.tensor(x)).numpy()
    want = mediapipe_reference(x, w, b, same, sh, sw)
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(got, litert_default(path, x), rtol=1e-5, atol=1e-5)


def test_transpose_conv_bias_quantizes_to_one_sima_conv2d(tmp_path):
    path, _, _ = custom_model(tmp_path / "m.tflite", (1, 6, 6, 3), (2, 2), True, 2, 2)
    mod, params = tvm_sima.load_model(path)
    calib = [RNG.standard_normal((1, 6, 6, 3)).astype(np.float32) for _ in range(16)]
    qmod = tvm_sima.quantize(mod, params, calib, work_dir=tmp_path / "q")
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == [] and op_counts(qmod)["sima.conv2d"] == 1
    xs = [RNG.standard_normal((1, 6, 6, 3)).astype(np.float32) for _ in range(4)]
    fvm = relax.VirtualMachine(tvm_sima.build(mod), tvm.cpu())
    qvm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    ref = [fvm["main"](tvm.runtime.tensor(x)).numpy() for x in xs]
    out = [qvm["main"](tvm.runtime.tensor(x)).numpy() for x in xs]
    # 28.1 dB measured: each output sums one pixel's 3 products (kernel = stride), 8-bit in and out
    assert total_sqnr(ref, out) > 25, total_sqnr(ref, out)


def test_other_custom_ops_are_listed_by_name(tmp_path):
    path, _, _ = custom_model(tmp_path / "m.tflite", (1, 4, 4, 3), (2, 2), True, 2, 2, code="MaxUnpooling2D")
    with pytest.raises(UnsupportedOpsError, match=r"CUSTOM MaxUnpooling2D \(op 0, output 'y'\)"):
        tvm_sima.load_model(path)
