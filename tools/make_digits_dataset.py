"""Write ``tests/fixtures/digits_split.npz``: scikit-learn's digits, split as the bundled models were trained.

``tools/make_tflite_fixtures.py`` trained the bundled digits models on the first 1500 of
scikit-learn's 1797 digits; the other 297 are held out. This file keeps the split: ``calib``
(the first 256 training images: calibration data), ``test`` and ``test_labels`` (all 297
held-out images). Images are stored as their original integer intensities 0..16 (uint8, NHWC
8x8x1); divide by 16 for the models' float input in [0, 1].

scikit-learn is not a project dependency; run this from a separate venv::

    python3 -m venv /tmp/skvenv && /tmp/skvenv/bin/pip install scikit-learn==1.8.0 numpy==2.4.6
    /tmp/skvenv/bin/python tools/make_digits_dataset.py
"""

from __future__ import annotations

import pathlib

import numpy as np

ROOT = pathlib.Path(__file__).resolve().parents[1]
TRAIN = 1500
CALIB = 256


def main() -> None:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = digits.images.astype(np.uint8)[..., None]  # 0..16, NHWC
    labels = digits.target.astype(np.uint8)
    out = ROOT / "tests" / "fixtures" / "digits_split.npz"
    np.savez_compressed(out, calib=images[:CALIB], test=images[TRAIN:], test_labels=labels[TRAIN:])
    print(f"wrote {out} ({out.stat().st_size} bytes): {CALIB} calibration, {len(images) - TRAIN} test images")


if __name__ == "__main__":
    main()
