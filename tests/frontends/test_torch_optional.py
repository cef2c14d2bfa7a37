"""torch is an optional extra: the ONNX / TFLite routes never import it (nor does TVM: tvm_sima/_defer_torch.py),
torch imported after TVM works (export, import, build, run), and the extra is pinned."""

from __future__ import annotations

import pathlib
import re
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[2]

_ONNX_ROUTE = """
import sys
import numpy as np
import tvm_sima
mod, params = tvm_sima.load_model("tests/fixtures/digits_cnn_float.onnx")
calib = np.load("tests/fixtures/digits_calib_nchw.npy")[:4]
qmod = tvm_sima.quantize(mod, params, [x[None] for x in calib])
tvm_sima.build(qmod)
tvm_sima.load_model("tests/fixtures/digits_int8.tflite")
assert "torch" not in sys.modules, "the ONNX / TFLite routes imported torch"
print("no torch")
sys.path.insert(0, "tests")
import torch  # after TVM: the torch route in the same process
from helpers.torch_models import images, small_net
from helpers.relax import run
model = small_net()
mod, params = tvm_sima.load_model(model, example_inputs=(torch.zeros(1, 3, 16, 16),))
x = images(1, seed=1)[0]
np.testing.assert_allclose(run(tvm_sima.bind_params(mod, params), x), model(torch.from_numpy(x)).detach().numpy(),
                           rtol=1e-5, atol=1e-5)
print("torch after tvm")
"""


def test_the_onnx_and_tflite_routes_never_import_torch_and_torch_after_tvm_works():
    result = subprocess.run([sys.executable, "-c", _ONNX_ROUTE], capture_output=True, text=True, cwd=ROOT,
                            timeout=600)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["no", "torch", "torch", "after", "tvm"], result.stdout


def test_the_torch_extra_is_pinned_to_the_cpu_build_on_disk():
    setup = (ROOT / "setup.py").read_text()
    extra = re.search(r'"torch": \[(.*?)\]', setup, re.S)
    assert extra, "setup.py has no 'torch' extra"
    assert re.findall(r'"(torch(?:ao)?)==([^"]+)"', extra.group(1)) == [("torch", "2.13.0"), ("torchao", "0.18.0")]
    constraints = (ROOT / "constraints.txt").read_text().splitlines()
    for package in ("sympy==1.14.0", "mpmath==1.3.0", "networkx==3.6.1", "Jinja2==3.1.6", "fsspec==2026.9.0",
                    "filelock==4.3.1", "MarkupSafe==3.0.4"):
        assert package in constraints, f"constraints.txt lacks {package} (torch resolves to it)"
    installed = re.search(r"-e '\.\[([^\]]*)\]'", (ROOT / "Makefile").read_text())  # make setup's extras
    assert installed and {"test", "torch"} <= set(installed.group(1).split(","))
