"""int8 TFLite files of one op (resize, PAD, DEPTH_TO_SPACE, SPACE_TO_DEPTH) -> load_model -> convert.

Written field by field (``helpers.tflite_writer``); the oracle is LiteRT's reference kernels
(``BUILTIN_REF``), and every result must equal it bit for bit.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from helpers.litert import litert
from helpers.relax import float_bindings
from helpers.tflite_writer import depth_space_tflite, pad_tflite, resize_bilinear_tflite, resize_tflite
from tvm import relax

import tvm_sima

RNG = np.random.default_rng(18)
QPARAMS = (0.05, -3)


def converted(path):
    """``(run(x), convert's report, the converted module)`` of an int8 TFLite file."""
    mod, _ = tvm_sima.load_model(path)
    module, report = tvm_sima.convert(mod)
    vm = relax.VirtualMachine(tvm_sima.build(module), tvm.cpu())
    return (lambda x: vm["main"](tvm.runtime.tensor(x)).numpy()), report, module


FLAGS = {"asymmetric": (False, False), "align_corners": (True, False), "half_pixel": (False, True)}


@pytest.mark.parametrize("mode", sorted(FLAGS))
@pytest.mark.parametrize("shape,size", [((1, 4, 4, 3), (8, 8)), ((1, 5, 3, 2), (7, 10))], ids=["2x", "7x10"])
def test_resize_bilinear_converts_bit_exact_with_litert(tmp_path, mode, shape, size):
    align_corners, half_pixel = FLAGS[mode]
    path = resize_bilinear_tflite(tmp_path / "resize.tflite", shape, size, QPARAMS, align_corners=align_corners,
                                  half_pixel_centers=half_pixel)
    run, report, module = converted(path)
    assert report.unconverted == [] and [c["op"] for c in report.converted] == \
        ["integer bilinear resize (LiteRT's 10-bit taps)"]
    assert float_bindings(module) == []
    x = RNG.integers(-128, 128, size=shape).astype("int8")
    np.testing.assert_array_equal(run(x), litert(path, x))


CASES = {
    "pad-channels": lambda p: pad_tflite(p, (1, 3, 4, 5), [[0, 0], [0, 0], [0, 0], [0, 3]], QPARAMS),
    "pad-spatial": lambda p: pad_tflite(p, (1, 3, 4, 5), [[0, 0], [1, 2], [2, 0], [0, 0]], QPARAMS),
    "depth_to_space": lambda p: depth_space_tflite(p, "DEPTH_TO_SPACE", (1, 3, 2, 8), 2, QPARAMS),
    "space_to_depth": lambda p: depth_space_tflite(p, "SPACE_TO_DEPTH", (1, 4, 6, 3), 2, QPARAMS),
    # 3 -> 5 with align_corners puts o = 1, 3 exactly halfway (0.5, 1.5): LiteRT rounds away from zero
    **{f"nearest-{mode}": (lambda p, f=FLAGS[mode]: resize_tflite(p, (1, 3, 4, 2), (5, 7), QPARAMS, nearest=True,
                                                                   align_corners=f[0], half_pixel_centers=f[1]))
       for mode in FLAGS},
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_value_moves_run_on_the_integers_bit_exact_with_litert(tmp_path, case):
    # MediaPipe pads channels with zeros (the zero point's code) before a residual add.
    path = CASES[case](tmp_path / f"{case}.tflite")
    run, report, module = converted(path)
    assert report.unconverted == [] and float_bindings(module) == []
    mod, _ = tvm_sima.load_model(path)
    x = RNG.integers(-128, 128, size=[int(d) for d in mod["main"].params[0].ty.shape]).astype("int8")
    np.testing.assert_array_equal(run(x), litert(path, x))
