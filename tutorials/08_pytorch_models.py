"""Tutorial 8: PyTorch models in: quantize an ``nn.Module`` in five lines; convert a PT2E-quantized one.

1. A small CNN written as a ``torch.nn.Module`` (seeded weights; its graph is drawn below) goes
   straight in: ``tvm_sima.load_model(model, example_inputs=(x,))`` exports it with
   ``torch.export.export`` (eval mode) and imports it with TVM's ``from_exported_program``; the
   module's own names (``features.0.conv``) name the layers in the report and in ``layers.json``.
   Five lines quantize it, build it and run it; the tutorial compares it with PyTorch's float output.
2. The PyTorch user's own PTQ, torchao's PT2E (``prepare_pt2e`` / ``convert_pt2e`` with the
   XNNPACK quantizer: symmetric int8 activations, per-channel int8 weights), calibrated on the
   same data, is a graph of ``quantize -> dequantize -> float op``; ``load_model`` imports its
   quantize / dequantize nodes as sima ops and ``tvm_sima.convert`` folds every chain into integer
   sima ops. The converted program's output is compared with PyTorch running the PT2E model, in
   the output's codes (the same quantization, computed once in PyTorch's float and once in integers).

The model::

    x (1x3x16x16) -> stem conv 3x3 -> relu -> [conv 3x3 -> bn -> relu6 -> + skip] x 2 -> mean -> fc (4)

Run:  .venv/bin/python tutorials/08_pytorch_models.py
"""

from __future__ import annotations

import logging

import numpy as np
import torch
import tvm
from torch import nn
from tvm import relax

import tvm_sima


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.functional.relu6(self.bn(self.conv(x)))


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3)
        self.features = nn.Sequential(Block(8), Block(8))
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(torch.relu(self.stem(x))).mean((2, 3)))


def sqnr_db(ref: np.ndarray, out: np.ndarray) -> float:
    return float(10 * np.log10((ref.astype(np.float64) ** 2).sum() / ((ref - out).astype(np.float64) ** 2).sum()))


def run(executable: object, inputs: list[np.ndarray]) -> np.ndarray:
    vm = relax.VirtualMachine(executable, tvm.cpu())
    return np.concatenate([vm["main"](tvm.runtime.tensor(x)).numpy() for x in inputs])


def pt2e(model: nn.Module, example: torch.Tensor, calib: list[np.ndarray]) -> torch.fx.GraphModule:
    """torchao's PT2E post-training quantization with its XNNPACK quantizer."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    quantizer = XNNPACKQuantizer().set_global(get_symmetric_quantization_config(is_per_channel=True))
    prepared = prepare_pt2e(torch.export.export(model, (example,)).module(), quantizer)
    with torch.no_grad():
        for x in calib:  # calibration: the observers see the data
            prepared(torch.from_numpy(x))
    return convert_pt2e(prepared)


def main() -> None:
    logging.basicConfig(level=logging.WARNING)
    torch.manual_seed(0)
    model = Net().eval()
    rng = np.random.default_rng(0)
    calib = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(16)]
    evals = [rng.standard_normal((1, 3, 16, 16)).astype(np.float32) for _ in range(32)]
    example = torch.zeros(1, 3, 16, 16)
    with torch.no_grad():
        float_out = np.concatenate([model(torch.from_numpy(x)).numpy() for x in evals])

    # 1. an nn.Module in five lines: load, quantize, build, run
    mod, params = tvm_sima.load_model(model, example_inputs=(example,))
    qmod = tvm_sima.quantize(mod, params, calib)
    vm = relax.VirtualMachine(tvm_sima.build(qmod), tvm.cpu())
    out = np.concatenate([vm["main"](tvm.runtime.tensor(x)).numpy() for x in evals])
    print(f"tvm-sima int8 vs PyTorch float: SQNR {sqnr_db(float_out, out):.1f} dB, "
          f"top-1 agreement {np.mean(out.argmax(1) == float_out.argmax(1)):.3f} on {len(evals)} inputs")
    report = tvm_sima.quantize_report(qmod)
    print("layers (the module's names):", ", ".join(f"{r['name']}={r['source']}" for r in report["layers"]))

    # 2. a PT2E-quantized model: import, convert, build, run; compare with PyTorch running it
    quantized = pt2e(model, example, calib)
    converted, conversion = tvm_sima.convert(tvm_sima.load_model(quantized, example_inputs=(example,))[0])
    print(conversion.summary())
    ours = run(tvm_sima.build(converted), evals)
    with torch.no_grad():
        theirs = np.concatenate([quantized(torch.from_numpy(x)).numpy() for x in evals])
    scale = float([n for n in quantized.graph.nodes if "quantize_per_tensor" in str(n.target)][-1].args[1])
    lsb = np.abs(np.round((ours - theirs) / scale)).astype(int)
    print(f"converted PT2E vs PyTorch's PT2E: outputs {np.mean(lsb == 0):.3f} exact, max {lsb.max()} output LSB; "
          f"PT2E vs float: SQNR {sqnr_db(float_out, theirs):.1f} dB")


if __name__ == "__main__":
    main()
