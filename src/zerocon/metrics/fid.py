"""FID, KID and mFID on Inception features (CUT, LANIT, StarGAN v2 / TUNIT protocol).

**Features.** The standard network is the TensorFlow Inception-v3 of the FID paper. The libraries that ship a
PyTorch port of it (torch-fidelity, pytorch-fid, clean-fid, and torchmetrics through torch-fidelity) all
import torchvision, which this project does not depend on, so the network is defined here
(:class:`~zerocon.metrics.inception.FIDInceptionV3`) and :meth:`InceptionFeatures.from_file` fills it from a
weights-only file (``--inception FILE``): pytorch-fid's state dict ``pt_inception-2015-12-05-6726825d.pth``,
read with ``torch.load(..., weights_only=True)``, or the same tensors as ``.safetensors``. No code from the
file runs, and a file that does not fill the network exactly is an error. The 2048-d pool features are taken
after resizing images to 299×299 with PIL's bicubic filter (clean-fid's "clean" resizing).

The same network is also published as a TorchScript file, ``inception-2015-12-05.pt`` (the StyleGAN2-ADA
metrics file that clean-fid uses). TorchScript is code: loading it runs what the file contains, so the default
path refuses it and only :meth:`InceptionFeatures.from_torchscript` (``--inception-torchscript FILE``) loads
it, for a file you trust.

**Statistics.** The Fréchet distance and the kernel inception distance are computed by torchmetrics'
``FrechetInceptionDistance`` / ``KernelInceptionDistance`` — given the features we already extracted,
through an identity "feature" module, so one pass of the network serves FID, KID and Density & Coverage.

**mFID** (LANIT, StarGAN v2, TUNIT): FID of each target domain's translations against that domain's real
images, averaged over domains.
"""

from __future__ import annotations

import os
import warnings
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from PIL import Image
from torch import nn

from zerocon.errors import ZeroconError
from zerocon.metrics.common import batches, to_batch

WEIGHTS_OPTION = "--inception"
"""The command-line option for the weights-only FID Inception file (the default path)."""
TORCHSCRIPT_OPTION = "--inception-torchscript"
"""The explicit option for a TorchScript Inception file, whose loading executes code from the file."""
WEIGHTS_FILE = "pt_inception-2015-12-05-6726825d.pth"
"""pytorch-fid's state dict of the FID Inception (what ``--inception`` expects)."""

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
    def from_file(cls, path: str | os.PathLike | None, option: str = WEIGHTS_OPTION) -> InceptionFeatures:
        """Load the FID Inception-v3 from a weights-only file: pytorch-fid's ``pt_inception-2015-12-05-*.pth``
        state dict (``torch.load(..., weights_only=True)``) or the same tensors as ``.safetensors``.

        A TorchScript file is refused (loading it would run its code; see :meth:`from_torchscript`), and so is
        a state dict that does not fill :class:`~zerocon.metrics.inception.FIDInceptionV3` exactly.
        """
        from zerocon.metrics.inception import FID_CLASSES, FIDInceptionV3
        from zerocon.pretrained import load_state_dict_strict, read_state_dict

        file = _existing_file(path, option)
        if _is_torchscript(file):
            raise ZeroconError(
                f"{option} {file}: a TorchScript file, and loading TorchScript runs code from the file; "
                f"{option} takes weights only ({WEIGHTS_FILE} or .safetensors). If you trust this file, pass "
                f"it with {TORCHSCRIPT_OPTION} FILE instead"
            )
        try:
            state = read_state_dict(file)
        except Exception as exc:  # weights_only refusals, truncated or foreign files: the user's to fix
            raise ZeroconError(
                f"{option} {file}: not a weights-only Inception state dict ({_first_line(exc)})"
            ) from exc
        classifier = state.pop("fc.weight", None)
        state.pop("fc.bias", None)
        if classifier is not None and classifier.shape[0] != FID_CLASSES:
            raise ZeroconError(
                f"{option} {file}: an Inception-v3 with {classifier.shape[0]} classes (torchvision's ImageNet "
                f"model?), not the {FID_CLASSES}-class FID network of 2015-12-05, whose FIDs are the "
                f"published ones; use {WEIGHTS_FILE}"
            )
        network = FIDInceptionV3()
        load_state_dict_strict(network, state, f"{option} {file} (FID Inception-v3)")
        return cls(net=network.float().eval())

    @classmethod
    def from_torchscript(
        cls, path: str | os.PathLike | None, option: str = TORCHSCRIPT_OPTION
    ) -> InceptionFeatures:
        """Load the TorchScript Inception (``inception-2015-12-05.pt``) from a local file.

        This executes code from the file: use it only for a file you trust (the CLI's explicit
        ``--inception-torchscript``); :meth:`from_file` takes weights only.
        """
        file = _existing_file(path, option)
        try:
            with (
                warnings.catch_warnings()
            ):  # torch 2.9+ marks TorchScript deprecated; the file is TorchScript
                warnings.simplefilter("ignore", DeprecationWarning)
                module = torch.jit.load(str(file), map_location="cpu").eval()
        except (RuntimeError, ValueError, OSError) as exc:
            raise ZeroconError(
                f"{option} {file}: not a TorchScript Inception file ({_first_line(exc)})"
            ) from exc

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


def load_inception(
    weights: str | os.PathLike | None = None, torchscript: str | os.PathLike | None = None
) -> InceptionFeatures:
    """Inception features from a weights-only file (``weights``, the default) or, only when asked for by
    name, from a TorchScript file (``torchscript``; runs code from it). Neither or both is a ``ZeroconError``."""
    if _given(weights) and _given(torchscript):
        raise ZeroconError(f"pass {WEIGHTS_OPTION} FILE or {TORCHSCRIPT_OPTION} FILE, not both")
    if _given(torchscript):
        return InceptionFeatures.from_torchscript(torchscript)
    return InceptionFeatures.from_file(weights)


def _given(path: str | os.PathLike | None) -> bool:
    return path is not None and str(path).strip() != ""


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _existing_file(path: str | os.PathLike | None, option: str) -> Path:
    if not _given(path):
        raise ZeroconError(
            f"FID, KID and Density & Coverage need the Inception network: pass {WEIGHTS_OPTION} FILE, the "
            f"FID Inception weights {WEIGHTS_FILE} (pytorch-fid's state dict, or its tensors as .safetensors)"
            f", or {TORCHSCRIPT_OPTION} FILE for a TorchScript inception-2015-12-05.pt you trust (runs its code)"
        )
    file = Path(path).expanduser()
    if not file.is_file():
        raise ZeroconError(f"{option} {file}: no such file")
    return file


def _is_torchscript(file: Path) -> bool:
    """Whether ``file`` is a TorchScript archive (a zip holding ``constants.pkl``, as torch itself tests)."""
    try:
        if not zipfile.is_zipfile(file):
            return False
        with zipfile.ZipFile(file) as archive:
            return any(name.rsplit("/", 1)[-1] == "constants.pkl" for name in archive.namelist())
    except (OSError, zipfile.BadZipFile):
        return False


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
