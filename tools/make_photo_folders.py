"""Write scikit-image's bundled photos as two image folders, for `tvm-sima report` on an ImageNet model.

``OUT/calib``: astronaut, coffee, chelsea, rocket, cat, retina, immunohistochemistry;
``OUT/eval``: hubble_deep_field, logo, colorwheel, page (other photos: calibration and evaluation
never share an image). Grayscale photos are repeated to 3 channels, RGBA drops alpha. Needs the
``bench`` extra (scikit-image): ``.venv/bin/pip install -c constraints.txt -e '.[test,bench]'``.

Run:  .venv/bin/python tools/make_photo_folders.py --out build/photos
"""

from __future__ import annotations

import argparse
import pathlib

import numpy as np
from PIL import Image

CALIB = ("astronaut", "coffee", "chelsea", "rocket", "cat", "retina", "immunohistochemistry")
EVAL = ("hubble_deep_field", "logo", "colorwheel", "page")


def main() -> None:
    import skimage.data

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=pathlib.Path("build/photos"))
    args = parser.parse_args()
    for folder, names in (("calib", CALIB), ("eval", EVAL)):
        (args.out / folder).mkdir(parents=True, exist_ok=True)
        for name in names:
            image = np.asarray(getattr(skimage.data, name)())
            if image.ndim == 2:
                image = np.stack([image] * 3, axis=-1)
            image = image[..., :3]
            if image.dtype != np.uint8:
                image = (255 * (image - image.min()) / (np.ptp(image) or 1)).astype(np.uint8)
            Image.fromarray(image).save(args.out / folder / f"{name}.png")
        print(f"wrote {len(names)} photos to {args.out / folder}")


if __name__ == "__main__":
    main()
