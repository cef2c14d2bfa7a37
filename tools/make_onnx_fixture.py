"""Write the bundled float ONNX model and its data, used by the README walk-through and tutorial 06.

* ``tests/fixtures/digits_cnn_float.onnx``: the trained digits CNN of ``digits_cnn_float.tflite``
  as an NCHW ONNX graph (same weights, same predictions; built by ``tests/helpers/onnx_models.py``);
* ``tests/fixtures/digits_calib_nchw.npy``: 64 training digits, NCHW float32 in [0, 1];
* ``tests/fixtures/digits_eval_nchw.npz``: ``image`` (64 held-out digits, same format) and
  ``labels``.

Deterministic: a re-run writes byte-identical files (``tests/docs/test_tutorials.py`` checks all three).

Run:  .venv/bin/python tools/make_onnx_fixture.py
"""

from __future__ import annotations

import argparse
import pathlib
import sys

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the ONNX builders live with the tests that also use them

from helpers import onnx_models  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "tests" / "fixtures")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    model = onnx_models.digits_cnn(args.out / "digits_cnn_float.onnx")
    np.save(args.out / "digits_calib_nchw.npy", onnx_models.calibration_images(64))
    split = np.load(onnx_models.FIXTURES / "digits_split.npz")
    np.savez_compressed(args.out / "digits_eval_nchw.npz", image=onnx_models.held_out_images(64),
                        labels=split["test_labels"][:64].astype(np.int64))
    for name in (model.name, "digits_calib_nchw.npy", "digits_eval_nchw.npz"):
        print(f"wrote {args.out / name} ({(args.out / name).stat().st_size} bytes)")


if __name__ == "__main__":
    main()
