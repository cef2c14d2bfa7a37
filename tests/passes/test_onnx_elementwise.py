"""ONNX HardSwish, HardSigmoid, Max and Min of two tensors in the float route: integer ops, no float left.

TVM's ONNX importer writes HardSwish as ``x * (clip(x + 3, 0, 6) / 6)`` and HardSigmoid as
``clip(alpha * x + beta, 0, 1)``: each is one table (``lowering.chains``); Max / Min of two
activations (imported as ``max(stack([broadcast_to(a), broadcast_to(b)]), axis=0)``, which
``canonicalize`` rewrites to ``maximum(a, b)``) rescale both to the output's grid and take the
integer max / min.
"""

from __future__ import annotations

import numpy as np
import tvm
from helpers.onnx_models import calibration_images, elementwise_model, held_out_images
from tvm import relax

import tvm_sima
from tvm_sima.compare import sqnr_db


def test_onnx_hard_swish_hard_sigmoid_max_min_quantize_to_integers(tmp_path):
    mod, params = tvm_sima.load_model(elementwise_model(tmp_path / "ew.onnx"))
    qmod = tvm_sima.quantize(mod, params, list(calibration_images(32)[:, None]), work_dir=tmp_path / "q")
    report = tvm_sima.quantize_report(qmod)
    assert report["float_ops"] == [], report["float_ops"]
    ops = report["integer_ops"]
    # HardSwish is one table; HardSigmoid right after conv2 (0.3 * c2 + 0.4, clipped) is that conv's epilogue
    assert ops["lut(chain)"] == 1 and ops["lut(sigmoid)"] == 1 and ops["sima.conv2d"] == 2
    assert ops["relax.maximum"] == ops["relax.minimum"] == 1  # the importer's max(stack(...)): canonicalize
    xs = held_out_images(8)[:, None]
    runs = [relax.VirtualMachine(tvm_sima.build(m, params=p), tvm.cpu()) for m, p in ((mod, params), (qmod, None))]
    ref, out = ([vm["main"](tvm.runtime.tensor(x)).numpy() for x in xs] for vm in runs)
    assert sqnr_db(np.concatenate(ref).ravel(), np.concatenate(out).ravel()) > 25
