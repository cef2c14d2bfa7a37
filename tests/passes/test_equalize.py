"""Cross-layer equalization (``qconfig(cross_layer_equalization=True)``, :mod:`tvm_sima.passes.equalize`).

The case built to need it::

    x -> conv 3x3 (16 channels, channel i's weights and bias scaled by 10**u_i, u_i in [-1.5, 1.5])
      -> relu -> conv 1x1 (its weights reading channel i scaled by 10**-u_i) -> y

The float function is that of well-scaled layers, but a per-tensor weight grid of either conv spends
its codes on the largest channels and rounds the small ones away; equalizing gives every channel of
both convs the same range.
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers.quantize import graph, run, total_sqnr
from tvm import relax

import tvm_sima
from tvm_sima.passes.canonicalize import canonicalize
from tvm_sima.passes.equalize import equalize, find_pairs

SHAPE = (1, 8, 8, 8)


def _model(seed: int, activation: str = "relu"):
    rng = np.random.default_rng(seed)
    spread = 10.0 ** rng.uniform(-1.5, 1.5, size=16)
    w1 = (rng.standard_normal((16, 8, 3, 3)) * 0.2 * spread[:, None, None, None]).astype("float32")
    b1 = (rng.standard_normal(16) * 0.1 * spread).astype("float32").reshape(1, 16, 1, 1)
    w2 = (rng.standard_normal((8, 16, 1, 1)) * 0.3 / spread[None, :, None, None]).astype("float32")

    def body(bb, x):
        z = bb.emit(relax.op.add(relax.op.nn.conv2d(x, relax.const(w1), padding=[1, 1]), relax.const(b1)))
        a = bb.emit(relax.op.nn.relu(z) if activation == "relu" else relax.op.clip(z, 0.0, 6.0))
        return relax.op.nn.conv2d(a, relax.const(w2))

    return graph(SHAPE, body)


def _data(seed: int, n: int):
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(SHAPE).astype("float32") for _ in range(n)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_equalization_keeps_the_float_model_and_raises_per_tensor_weight_sqnr(seed, tmp_path):
    mod, calib, evals = _model(seed), _data(10 + seed, 16), _data(20 + seed, 8)
    equalized, pairs = equalize(canonicalize(mod))
    assert pairs == 1
    ref = run(mod, evals)
    np.testing.assert_allclose(np.stack(run(equalized, evals)), np.stack(ref), rtol=1e-4,
                               atol=1e-4 * np.abs(np.stack(ref)).max())
    pair = find_pairs(canonicalize(mod)["main"])[0]
    assert pair.scales.max() / pair.scales.min() > 10  # the channels were far apart
    sqnr = {}
    for cle in (False, True):
        with tvm_sima.qconfig(cross_layer_equalization=cle,
                              quantize_method_for_weight="per_tensor_symmetric_restricted"):
            qmod = tvm_sima.quantize(mod, None, calib, work_dir=tmp_path / str(cle))
        sqnr[cle] = total_sqnr(ref, run(qmod, evals))
    assert sqnr[True] > sqnr[False] + 10, sqnr


def test_relu6_pairs_are_left_alone_so_the_float_model_is_kept():
    # min(z / s, 6) is not min(z, 6) / s: no per-tensor clip can follow a per-channel scale.
    mod = canonicalize(_model(0, activation="relu6"))
    assert find_pairs(mod["main"]) == []
    same, pairs = equalize(mod)
    assert pairs == 0
    evals = _data(20, 2)
    np.testing.assert_array_equal(np.stack(run(same, evals)), np.stack(run(mod, evals)))
