"""Small PyTorch models for the torch frontend tests, and torchao's PT2E quantization of them.

``SmallNet`` (NCHW, 1x3x16x16 -> 1x4)::

    x -> stem (conv 3x3) -> relu -> features.0 (Block) -> features.1 (Block) -> mean(H, W) -> fc

    Block:  y -> conv (3x3, pad 1) -> bn -> relu6 -> + y

Every module has its own name (``features.0.conv``); the block's relu6 and add run in the
block's own ``forward`` (``features.0/hardtanh``, ``features.0/add``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.bn = nn.BatchNorm2d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + nn.functional.relu6(self.bn(self.conv(x)))


class SmallNet(nn.Module):
    def __init__(self, channels: int = 8, classes: int = 4) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, channels, 3)
        self.features = nn.Sequential(Block(channels), Block(channels))
        self.fc = nn.Linear(channels, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.features(torch.relu(self.stem(x)))
        return self.fc(y.mean((2, 3)))


class PaddedNet(nn.Module):
    """TensorFlow-style padding as EfficientNet-Lite writes it: ``conv -> relu6 -> ZeroPad2d -> depthwise conv``."""

    def __init__(self, channels: int = 8) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, channels, 1)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.depthwise = nn.Conv2d(channels, channels, 3, stride=2, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.depthwise(self.pad(nn.functional.relu6(self.conv(x))))


def small_net(seed: int = 0) -> SmallNet:
    """A :class:`SmallNet` with seeded weights and batch-norm statistics that are not the identity."""
    torch.manual_seed(seed)
    model = SmallNet()
    for block in model.features:
        block.bn.running_mean.uniform_(-0.2, 0.2)
        block.bn.running_var.uniform_(0.5, 2.0)
    return model.eval()


def images(count: int, seed: int, shape: Sequence[int] = (1, 3, 16, 16)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.standard_normal(shape).astype(np.float32) for _ in range(count)]


def pt2e_quantized(model: nn.Module, example: torch.Tensor, calib: Sequence[np.ndarray]) -> torch.fx.GraphModule:
    """torchao's PT2E PTQ of ``model``: XNNPACK's symmetric int8 config (per-channel weights), calibrated on
    ``calib``."""
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.testing.pt2e._xnnpack_quantizer import XNNPACKQuantizer, get_symmetric_quantization_config

    exported = torch.export.export(model, (example,)).module()
    prepared = prepare_pt2e(exported, XNNPACKQuantizer().set_global(get_symmetric_quantization_config(
        is_per_channel=True)))
    with torch.no_grad():
        for x in calib:
            prepared(torch.from_numpy(x))
    return convert_pt2e(prepared)
