"""FID, KID and mFID on Inception features (CUT, LANIT, StarGAN v2 / TUNIT protocol).

**Features.** The standard network is the TensorFlow Inception-v3 of the FID paper. The libraries that ship a
PyTorch port of it (torch-fidelity, pytorch-fid, clean-fid, and torchmetrics through torch-fidelity) all
import torchvision, which this project does not depend on; the same network is also published as a
TorchScript file, ``inception-2015-12-05.pt`` (the StyleGAN2-ADA metrics file that clean-fid uses), which
needs nothing but torch. :meth:`InceptionFeatures.from_file` loads that file (``--inception FILE``) and
takes its 2048-d pool features; images are resized to 299×299 with PIL's bicubic filter first (clean-fid's
"clean" resizing). Load only files you trust: TorchScript is code.

**Statistics.** The Fréchet distance and the kernel inception distance are computed by torchmetrics'
``FrechetInceptionDistance`` / ``KernelInceptionDistance`` — given the features we already extracted,
through an identity "feature" module, so one pass of the network serves FID, KID and Density & Coverage.

**mFID** (LANIT, StarGAN v2, TUNIT): FID of each target domain's translations against that domain's real
images, averaged over domains.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from zerocon.errors import ZeroconError
from zerocon.metrics.common import batches, to_batch

INCEPTION_SIZE = 299
KID_SUBSETS = 100
KID_SUBSET_SIZE = 1000
"""torchmetrics' defaults; the subset size is lowered to the smaller set when a set has fewer images."""


@dataclass
class InceptionFeatures:
    """Turns PIL images into (N, D) float64 features with ``net`` (a callable on (N, 3, S, S) in [-1, 1])."""

    net: Callable[[torch.Tensor], torch.Tensor]
    size: int = INCEPTION_SIZE
    batch_size: int = 32

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, option: str = "--inception") -> InceptionFeatures:
        """Load the TorchScript Inception (``inception-2015-12-05.pt``) from a local file."""
        if path is None or str(path).strip() == "":
            raise ZeroconError(
                f"FID, KID and Density & Coverage need the Inception network: pass {option} FILE, the "
                "TorchScript 'inception-2015-12-05.pt' used by StyleGAN2-ADA and clean-fid"
            )
        file = Path(path).expanduser()
        if not file.is_file():
            raise ZeroconError(f"{option} {file}: no such file")
        try:
            with (
                warnings.catch_warnings()
            ):  # torch 2.9+ marks TorchScript deprecated; the file is TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(file), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ZeroconError(f"{option} {file}: not a TorchScript Inception file ({first})") from exc

        def net(images: torch.Tensor) -> torch.Tensor:
            # the TorchScript model takes pixel values in [0, 255] and returns 2048-d pool features
            return module((images + 1.0) * 127.5, return_features=True)

        return cls(net=net)

    @torch.no_grad()
    def __call__(self, images: Sequence[Image.Image]) -> torch.Tensor:
        if not images:
            raise ValueError("no images to compute features of")
        out = []
        for chunk in batches(list(images), self.batch_size):
            feats = self.net(to_batch(chunk, size=(self.size, self.size)))
            out.append(feats.reshape(feats.shape[0], -1).double().cpu())
        return torch.cat(out)


class _Precomputed(nn.Module):
    """Identity "feature extractor" so torchmetrics' FID/KID run on features we already have."""

    def __init__(self, dims: int) -> None:
        super().__init__()
        self.num_features = dims

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def _check(real: torch.Tensor, fake: torch.Tensor, minimum: int) -> None:
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"features must be (n, d) with equal d, got {tuple(real.shape)} and {tuple(fake.shape)}"
        )
    if real.shape[0] < minimum or fake.shape[0] < minimum:
        raise ZeroconError(
            f"need at least {minimum} real and {minimum} fake images, got {real.shape[0]} and {fake.shape[0]}"
        )


def _torchmetrics_image():
    try:
        from torchmetrics.image.fid import FrechetInceptionDistance
        from torchmetrics.image.kid import KernelInceptionDistance
    except ImportError as exc:
        raise ZeroconError("FID and KID need torchmetrics: pip install 'zerocon[metrics]'") from exc
    return FrechetInceptionDistance, KernelInceptionDistance


def frechet_distance(real_features: torch.Tensor, fake_features: torch.Tensor) -> float:
    """FID between two feature sets (n, d): ‖μr − μf‖² + Tr(Σr + Σf − 2(ΣrΣf)^½), in float64."""
    _check(real_features, fake_features, 2)
    fid_cls, _ = _torchmetrics_image()
    metric = fid_cls(feature=_Precomputed(real_features.shape[1]))
    metric.set_dtype(torch.float64)
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    return float(metric.compute())


def kernel_inception_distance(
    real_features: torch.Tensor,
    fake_features: torch.Tensor,
    subsets: int = KID_SUBSETS,
    subset_size: int = KID_SUBSET_SIZE,
    seed: int = 0,
) -> tuple[float, float]:
    """KID (mean, std over ``subsets`` random subsets): unbiased MMD² with the cubic polynomial kernel.

    The subsets are drawn from a private RNG seeded with ``seed``, so the number is reproducible and the
    caller's random state is untouched.
    """
    _check(real_features, fake_features, 2)
    _, kid_cls = _torchmetrics_image()
    size = min(subset_size, real_features.shape[0], fake_features.shape[0])
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        metric = kid_cls(feature=_Precomputed(real_features.shape[1]), subsets=subsets, subset_size=size)
    metric.update(real_features.double(), real=True)
    metric.update(fake_features.double(), real=False)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mean, std = metric.compute()
    return float(mean), float(std)


def mean_fid(per_domain: Mapping[str, float]) -> float:
    """mFID: the arithmetic mean of per-target-domain FIDs (LANIT ``total_FID_score``)."""
    if not per_domain:
        raise ValueError("mFID of zero domains is undefined")
    return sum(per_domain.values()) / len(per_domain)
