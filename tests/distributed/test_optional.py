"""Ray is an optional extra: the package and the ONNX route never import it."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = """
import sys
import numpy as np
import tvm_sima
from tests.helpers.onnx_models import calibration_images, digits_cnn
import pathlib, tempfile
path = digits_cnn(pathlib.Path(tempfile.mkdtemp()) / "digits.onnx")
mod, params = tvm_sima.load_model(str(path))
qmod = tvm_sima.quantize(mod, params, [x[None] for x in calibration_images(4)], progress=False)
tvm_sima.build(qmod)
import tvm_sima.distributed.shards  # the shard readers need no Ray either
print(sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")))
"""


def test_import_and_the_onnx_route_do_not_import_ray():
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
