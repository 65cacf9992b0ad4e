"""The Inception-v3 of the FID paper (TensorFlow graph ``2015-12-05``) as a plain torch module.

FID is defined on the pool features of one particular network: the TensorFlow Inception-v3 of 2015-12-05,
whose classifier has 1008 classes. pytorch-fid publishes its weights, converted to PyTorch, as a state dict
(``pt_inception-2015-12-05-6726825d.pth``) in torchvision's ``Inception3`` key layout; :class:`FIDInceptionV3`
has that layout, so the file loads with ``torch.load(..., weights_only=True)`` (or from the same tensors
saved as ``.safetensors``) and no code from the file runs. The project does not depend on torchvision (see
:mod:`zerocon.metrics.lpips`), hence its own definition.

The TensorFlow graph differs from torchvision's ImageNet Inception-v3 in its pooling, which this module
follows: the average pools of the mixed blocks leave the padding out of the average, and the last block
pools its 1x1 branch with a max pool. Inputs are RGB in [-1, 1] at 299x299; the output is the (N, 2048)
average of the last feature map (``pool_3``). The classifier (``fc.*``) is not needed for features; the
loader checks its size only to tell the FID network from torchvision's ImageNet one (1000 classes), whose
features give FIDs that are not comparable with published ones.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 2048
"""Width of the pool features FID is computed on."""
FID_CLASSES = 1008
"""Classifier size of the 2015-12-05 TensorFlow graph (torchvision's ImageNet model has 1000)."""


class ConvBN(nn.Module):
    """Bias-free convolution, batch norm (eps 1e-3, as the TensorFlow graph) and ReLU; keys ``conv`` / ``bn``."""

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel: int | tuple[int, int],
        stride: int = 1,
        padding: int | tuple[int, int] = 0,
    ) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=1e-3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


def _mean_pool(x: torch.Tensor) -> torch.Tensor:
    # 3x3, stride 1, same size; padded positions do not count (TensorFlow's SAME average pooling)
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _row(cin: int, cout: int, width: int) -> ConvBN:
    """A 1 x ``width`` convolution keeping the size."""
    return ConvBN(cin, cout, (1, width), padding=(0, width // 2))


def _column(cin: int, cout: int, height: int) -> ConvBN:
    """A ``height`` x 1 convolution keeping the size."""
    return ConvBN(cin, cout, (height, 1), padding=(height // 2, 0))


class MixedA(nn.Module):
    """35x35 block (``Mixed_5b``..``5d``): 1x1, 5x5, double 3x3 and pooled branches."""

    def __init__(self, cin: int, pool_channels: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 64, 1)
        self.branch5x5_1 = ConvBN(cin, 48, 1)
        self.branch5x5_2 = ConvBN(48, 64, 5, padding=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, padding=1)
        self.branch_pool = ConvBN(cin, pool_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        wide = self.branch5x5_2(self.branch5x5_1(x))
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch1x1(x), wide, deep, self.branch_pool(_mean_pool(x))], dim=1)


class ReductionA(nn.Module):
    """35x35 -> 17x17 (``Mixed_6a``): strided 3x3, strided double 3x3 and a max pool."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3 = ConvBN(cin, 384, 3, stride=2)
        self.branch3x3dbl_1 = ConvBN(cin, 64, 1)
        self.branch3x3dbl_2 = ConvBN(64, 96, 3, padding=1)
        self.branch3x3dbl_3 = ConvBN(96, 96, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        deep = self.branch3x3dbl_3(self.branch3x3dbl_2(self.branch3x3dbl_1(x)))
        return torch.cat([self.branch3x3(x), deep, F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedB(nn.Module):
    """17x17 block (``Mixed_6b``..``6e``) with factorised 7x7 convolutions of ``mid`` channels."""

    def __init__(self, cin: int, mid: int) -> None:
        super().__init__()
        self.branch1x1 = ConvBN(cin, 192, 1)
        self.branch7x7_1 = ConvBN(cin, mid, 1)
        self.branch7x7_2 = _row(mid, mid, 7)
        self.branch7x7_3 = _column(mid, 192, 7)
        self.branch7x7dbl_1 = ConvBN(cin, mid, 1)
        self.branch7x7dbl_2 = _column(mid, mid, 7)
        self.branch7x7dbl_3 = _row(mid, mid, 7)
        self.branch7x7dbl_4 = _column(mid, mid, 7)
        self.branch7x7dbl_5 = _row(mid, 192, 7)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        single = self.branch7x7_3(self.branch7x7_2(self.branch7x7_1(x)))
        double = x
        for layer in (
            self.branch7x7dbl_1,
            self.branch7x7dbl_2,
            self.branch7x7dbl_3,
            self.branch7x7dbl_4,
            self.branch7x7dbl_5,
        ):
            double = layer(double)
        return torch.cat([self.branch1x1(x), single, double, self.branch_pool(_mean_pool(x))], dim=1)


class ReductionB(nn.Module):
    """17x17 -> 8x8 (``Mixed_7a``)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.branch3x3_1 = ConvBN(cin, 192, 1)
        self.branch3x3_2 = ConvBN(192, 320, 3, stride=2)
        self.branch7x7x3_1 = ConvBN(cin, 192, 1)
        self.branch7x7x3_2 = _row(192, 192, 7)
        self.branch7x7x3_3 = _column(192, 192, 7)
        self.branch7x7x3_4 = ConvBN(192, 192, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        short = self.branch3x3_2(self.branch3x3_1(x))
        long = self.branch7x7x3_4(self.branch7x7x3_3(self.branch7x7x3_2(self.branch7x7x3_1(x))))
        return torch.cat([short, long, F.max_pool2d(x, 3, stride=2)], dim=1)


class MixedC(nn.Module):
    """8x8 block (``Mixed_7b``, ``7c``) whose 3x3 branches split into 1x3 and 3x1 halves.

    ``max_pool`` selects the pooling of the pooled branch: the TensorFlow graph's last block uses a max pool.
    """

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.max_pool = max_pool
        self.branch1x1 = ConvBN(cin, 320, 1)
        self.branch3x3_1 = ConvBN(cin, 384, 1)
        self.branch3x3_2a = _row(384, 384, 3)
        self.branch3x3_2b = _column(384, 384, 3)
        self.branch3x3dbl_1 = ConvBN(cin, 448, 1)
        self.branch3x3dbl_2 = ConvBN(448, 384, 3, padding=1)
        self.branch3x3dbl_3a = _row(384, 384, 3)
        self.branch3x3dbl_3b = _column(384, 384, 3)
        self.branch_pool = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.branch3x3_1(x)
        split = torch.cat([self.branch3x3_2a(a), self.branch3x3_2b(a)], dim=1)
        d = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        split_dbl = torch.cat([self.branch3x3dbl_3a(d), self.branch3x3dbl_3b(d)], dim=1)
        pooled = F.max_pool2d(x, 3, stride=1, padding=1) if self.max_pool else _mean_pool(x)
        return torch.cat([self.branch1x1(x), split, split_dbl, self.branch_pool(pooled)], dim=1)


class FIDInceptionV3(nn.Module):
    """The FID Inception-v3 up to its 2048-d pool features; ``forward`` takes (N, 3, 299, 299) in [-1, 1].

    Parameter names follow torchvision's ``Inception3`` (without ``AuxLogits`` and ``fc``), the layout of
    pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``. Build it with
    :meth:`zerocon.metrics.fid.InceptionFeatures.from_file` (pretrained); directly it is random (tests only).
    """

    def __init__(self) -> None:
        super().__init__()
        self.Conv2d_1a_3x3 = ConvBN(3, 32, 3, stride=2)
        self.Conv2d_2a_3x3 = ConvBN(32, 32, 3)
        self.Conv2d_2b_3x3 = ConvBN(32, 64, 3, padding=1)
        self.Conv2d_3b_1x1 = ConvBN(64, 80, 1)
        self.Conv2d_4a_3x3 = ConvBN(80, 192, 3)
        self.Mixed_5b = MixedA(192, 32)
        self.Mixed_5c = MixedA(256, 64)
        self.Mixed_5d = MixedA(288, 64)
        self.Mixed_6a = ReductionA(288)
        self.Mixed_6b = MixedB(768, 128)
        self.Mixed_6c = MixedB(768, 160)
        self.Mixed_6d = MixedB(768, 160)
        self.Mixed_6e = MixedB(768, 192)
        self.Mixed_7a = ReductionB(768)
        self.Mixed_7b = MixedC(1280, max_pool=False)
        self.Mixed_7c = MixedC(2048, max_pool=True)
        self.requires_grad_(False)
        self.eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        x = F.max_pool2d(x, 3, stride=2)
        x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(x))
        x = F.max_pool2d(x, 3, stride=2)
        for block in (
            self.Mixed_5b,
            self.Mixed_5c,
            self.Mixed_5d,
            self.Mixed_6a,
            self.Mixed_6b,
            self.Mixed_6c,
            self.Mixed_6d,
            self.Mixed_6e,
            self.Mixed_7a,
            self.Mixed_7b,
            self.Mixed_7c,
        ):
            x = block(x)
        return x.mean(dim=(2, 3))
