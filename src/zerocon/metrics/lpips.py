"""LPIPS (Zhang et al., CVPR 2018, version 0.1) and background LPIPS of edits (pix2pix-zero Table 1).

Why this module holds its own small LPIPS network instead of calling ``lpips.LPIPS`` or torchmetrics'
``LearnedPerceptualImagePatchSimilarity``: both build their AlexNet / VGG-16 backbones with torchvision, and
this project does not depend on torchvision (its wheels are tied to one torch build). Everything else is the
published LPIPS v0.1:

* inputs in [-1, 1] are shifted and scaled by the constants of the reference code;
* the five ReLU stages of the backbone (AlexNet: relu1..relu5; VGG-16: relu1_2, 2_2, 3_3, 4_3, 5_3) are
  unit-normalised along channels, their squared difference is weighted by a learned 1×1 convolution
  ("linear head"), averaged over space and summed over stages.

Weights come from two places, both named by the user, never downloaded and never random:

* **linear heads** — the v0.1 heads that ship inside the torchmetrics wheel
  (``torchmetrics/functional/image/lpips_models/{alex,vgg}.pth``; the same tensors as the ``lpips``
  package), or a file given with ``--lpips-heads``;
* **backbone** — the ImageNet AlexNet / VGG-16 checkpoint that torchvision downloads
  (``alexnet-owt-7be5be79.pth``, ``vgg16-397923af.pth``, a state dict with ``features.N.*`` keys) or the same
  tensors as ``.safetensors``, given with ``--lpips-backbone``. The layer layout here matches torchvision's
  so those files load unchanged.

**Background LPIPS** follows the field's convention (PnP-Inversion's ``calculate_lpips``): both images are
multiplied by the background mask in [0, 1] space (object pixels become black) and LPIPS is computed on the
masked pair; the object mask is the union of the object in the input and in the edit.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from zerocon.errors import ZeroconError
from zerocon.pretrained import load_state_dict_strict, read_state_dict

# LPIPS v0.1 input scaling layer constants (shift, scale) for [-1, 1] inputs
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)

_BACKBONES: dict[str, dict] = {
    # torchvision layer indices that end each LPIPS stage (exclusive) and the channels of each stage
    "alex": {"stages": (2, 5, 8, 10, 12), "channels": (64, 192, 384, 256, 256)},
    "vgg": {"stages": (4, 9, 16, 23, 30), "channels": (64, 128, 256, 512, 512)},
}


def _alexnet_features() -> nn.Sequential:
    """torchvision's AlexNet ``features`` layout (so its checkpoint keys ``features.N.*`` match)."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=11, stride=4, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(64, 192, kernel_size=5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
        nn.Conv2d(192, 384, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(384, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.Conv2d(256, 256, kernel_size=3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(kernel_size=3, stride=2),
    )


def _vgg16_features() -> nn.Sequential:
    """torchvision's VGG-16 ``features`` layout (configuration "D", no batch norm)."""
    layers: list[nn.Module] = []
    channels = 3
    for width in (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"):
        if width == "M":
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        else:
            layers += [nn.Conv2d(channels, int(width), kernel_size=3, padding=1), nn.ReLU()]
            channels = int(width)
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    """LPIPS v0.1 distance between image batches in [-1, 1]; ``forward(a, b)`` returns (N,) distances.

    Build it with :func:`load_lpips` (pretrained) or directly (random weights; tests only).
    """

    def __init__(self, net: str = "alex") -> None:
        super().__init__()
        if net not in _BACKBONES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(_BACKBONES)}, got {net!r}")
        self.net = net
        self.features = _alexnet_features() if net == "alex" else _vgg16_features()
        self.stage_ends = _BACKBONES[net]["stages"]
        self.lins = nn.ModuleList(
            nn.Conv2d(c, 1, kernel_size=1, bias=False) for c in _BACKBONES[net]["channels"]
        )
        self.register_buffer("shift", torch.tensor(_SHIFT).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", torch.tensor(_SCALE).view(1, 3, 1, 1), persistent=False)
        self.requires_grad_(False)
        self.eval()

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The five backbone activations LPIPS compares, for inputs in [-1, 1]."""
        x = (x - self.shift) / self.scale
        outputs, start = [], 0
        for end in self.stage_ends:
            for layer in self.features[start:end]:
                x = layer(x)
            outputs.append(x)
            start = end
        return outputs

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        if a.shape != b.shape:
            raise ValueError(
                f"LPIPS needs two batches of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
            )
        total = torch.zeros(a.shape[0], dtype=a.dtype, device=a.device)
        for fa, fb, lin in zip(self.stages(a), self.stages(b), self.lins):
            diff = (_unit(fa) - _unit(fb)) ** 2  # (N, C, h, w)
            total = total + lin(diff).mean(dim=(1, 2, 3))
        return total


def _unit(features: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Normalise each spatial feature vector to unit length along channels (LPIPS' ``normalize_tensor``)."""
    return features / (features.pow(2).sum(dim=1, keepdim=True).sqrt() + eps)


def shipped_heads_path(net: str) -> Path | None:
    """The LPIPS v0.1 linear heads inside the installed torchmetrics wheel, or None if it is not installed."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("torchmetrics")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = (
        Path(next(iter(spec.submodule_search_locations)))
        / "functional"
        / "image"
        / "lpips_models"
        / f"{net}.pth"
    )
    return path if path.is_file() else None


def load_lpips(
    backbone: str | os.PathLike | None,
    net: str = "alex",
    heads: str | os.PathLike | None = None,
    option: str = "--lpips-backbone",
) -> LPIPS:
    """LPIPS with the ImageNet ``backbone`` checkpoint and the v0.1 linear ``heads`` (default: torchmetrics').

    Raises ``ZeroconError`` naming ``option`` when the backbone is not given or does not fit, and
    ``--lpips-heads`` when no heads are available.
    """
    model = LPIPS(net)
    if backbone is None or str(backbone).strip() == "":
        raise ZeroconError(
            f"LPIPS needs the ImageNet {'AlexNet' if net == 'alex' else 'VGG-16'} backbone weights: pass "
            f"{option} FILE (torchvision's {'alexnet-owt-7be5be79.pth' if net == 'alex' else 'vgg16-397923af.pth'} "
            f"or the same tensors as .safetensors)"
        )
    backbone = Path(backbone).expanduser()
    if not backbone.is_file():
        raise ZeroconError(f"{option} {backbone}: no such file")
    try:
        state = read_state_dict(backbone)
    except Exception as exc:  # any unreadable file is the user's to fix
        raise ZeroconError(f"{option} {backbone}: not a readable weights file ({exc})") from exc
    # the classifier (torchvision's classifier.*) is not part of LPIPS; every features.* weight must fit
    load_state_dict_strict(
        _holder(features=model.features),
        {k: v for k, v in state.items() if k.startswith("features.")},
        f"{option} {backbone}",
        model_name=f"torchvision's {'AlexNet' if net == 'alex' else 'VGG-16'} 'features.*' weights",
    )
    heads_path = Path(heads).expanduser() if heads else shipped_heads_path(net)
    if heads_path is None or not heads_path.is_file():
        raise ZeroconError(
            "LPIPS needs its v0.1 linear heads: install torchmetrics (they ship inside it) or pass "
            f"--lpips-heads FILE{f' ({heads_path} not found)' if heads_path else ''}"
        )
    try:
        head_state = read_state_dict(heads_path)
    except Exception as exc:  # any unreadable file is the user's to fix
        raise ZeroconError(f"--lpips-heads {heads_path}: not a readable weights file ({exc})") from exc
    # the reference code keeps head i as 'lin{i}.model' = (dropout, 1x1 conv): the files' key layout
    reference = _holder(
        **{f"lin{i}": _holder(model=nn.Sequential(nn.Dropout(), lin)) for i, lin in enumerate(model.lins)}
    )
    load_state_dict_strict(
        reference, head_state, f"--lpips-heads {heads_path}", model_name=f"the LPIPS v0.1 '{net}' heads"
    )
    return model


def _holder(**children: nn.Module) -> nn.Module:
    """A module whose state-dict keys put ``children`` under the given names (sharing, not copying, them)."""
    holder = nn.Module()
    for name, child in children.items():
        holder.add_module(name, child)
    return holder


@torch.no_grad()
def lpips_distance(model: LPIPS, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N,) LPIPS between two (N, 3, H, W) batches in [-1, 1]."""
    return model(a, b)


def apply_background(images: torch.Tensor, background: torch.Tensor) -> torch.Tensor:
    """Keep the background of [-1, 1] images: ``(x01 · bg) * 2 - 1`` so object pixels become black.

    ``background`` is (N, 1, H, W) or (N, H, W) in [0, 1] (1 = background).
    """
    if background.dim() == 3:
        background = background[:, None]
    if background.shape[-2:] != images.shape[-2:]:
        raise ValueError(
            f"mask size {tuple(background.shape[-2:])} differs from image size {tuple(images.shape[-2:])}"
        )
    return ((images + 1.0) / 2.0 * background.to(images.dtype)) * 2.0 - 1.0


@torch.no_grad()
def background_lpips(
    model: LPIPS, inputs: torch.Tensor, outputs: torch.Tensor, object_masks: torch.Tensor
) -> torch.Tensor:
    """(N,) LPIPS between input and edit outside the object (``object_masks`` (N, [1,] H, W), 1 = object).

    Changes inside the object do not count; changes in the background do. An all-object mask leaves two black
    images and a distance of zero.
    """
    background = 1.0 - object_masks.float().clamp(0, 1)
    return model(apply_background(inputs, background), apply_background(outputs, background))
