"""Translate images with a trained CUT generator: any size, batched, no target-domain folder needed.

The generator is fully convolutional but needs sides that are multiples of 4 (CUT's ResNet generator, two
down-samplings) or of ``2 ** stylegan2_downsampling`` (SinCUT's StyleGAN2 generator: 2), so each image is
reflect-padded up to the next multiple and the output is cropped back to the input's size. Images of the
same padded size are translated together in batches.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image

from zerocon.cut.config import CUTConfig
from zerocon.cut.model import build_generator
from zerocon.cut.networks import ResnetGenerator
from zerocon.cut.stylegan2 import StyleGAN2Generator
from zerocon.errors import ZeroconError
from zerocon.images import find_images, load_image, pil_to_tensor, tensor_to_pil
from zerocon.io import load_checkpoint, network_state, save_image_atomic
from zerocon.training import checkpoint_folder

MULTIPLE = ResnetGenerator.size_multiple
"""Default side multiple for :func:`pad_to_multiple`; every generator states its own (``size_multiple``)."""


def pad_to_multiple(x: torch.Tensor, multiple: int = MULTIPLE) -> tuple[torch.Tensor, tuple[int, int]]:
    """Reflect-pad a (B, C, H, W) batch on the bottom and right to sides divisible by ``multiple``."""
    height, width = x.shape[-2:]
    pad_h, pad_w = -height % multiple, -width % multiple
    if pad_h or pad_w:
        mode = "reflect" if pad_h < height and pad_w < width else "replicate"
        x = F.pad(x, (0, pad_w, 0, pad_h), mode=mode)
    return x, (height, width)


class CUTTranslator:
    """A trained CUT / FastCUT / SinCUT generator, ready to translate images."""

    def __init__(
        self,
        generator: ResnetGenerator | StyleGAN2Generator,
        config: CUTConfig,
        device: str | torch.device = "cpu",
    ) -> None:
        self.generator = generator.to(device).eval()
        self.config = config
        self.device = torch.device(device)
        self.multiple = generator.size_multiple

    @classmethod
    def from_checkpoint(
        cls, path: str | os.PathLike, preset: str | None = None, device: str | torch.device = "cpu"
    ) -> CUTTranslator:
        """Load the generator of a run folder (or its ``checkpoint`` folder).

        Raises ``ZeroconError`` for a missing or corrupt checkpoint, a checkpoint of another method, or one of
        another preset than ``preset`` (when given).
        """
        folder = checkpoint_folder(path)
        tensors, saved = load_checkpoint(folder)
        method = saved.get("method", {}) if isinstance(saved, dict) else {}
        if not isinstance(method, dict) or method.get("method") != "cut":
            name = method.get("method") if isinstance(method, dict) else None
            raise ZeroconError(f"{folder} is not a CUT checkpoint (it was made by '{name}')")
        if preset is not None and method.get("preset") != preset:
            raise ZeroconError(f"{folder} is a '{method.get('preset')}' checkpoint, not '{preset}'")
        try:
            config = CUTConfig.from_dict(method)
        except (TypeError, ValueError, ZeroconError) as exc:
            raise ZeroconError(f"{folder}: unreadable CUT settings in config.json ({exc})") from exc
        generator = build_generator(config)
        state = network_state(tensors.get("networks", {}), "G")
        try:
            generator.load_state_dict(state)
        except RuntimeError as exc:
            raise ZeroconError(
                f"{folder}: generator weights do not fit the saved settings ({str(exc).splitlines()[0]})"
            ) from exc
        return cls(generator, config, device)

    @torch.no_grad()
    def translate(
        self,
        images: Sequence[Image.Image | str | os.PathLike],
        batch_size: int = 4,
        max_side: int | None = None,
    ) -> list[Image.Image]:
        """Translate ``images`` (PIL images or paths); returns PIL images of the same sizes, in order.

        ``max_side`` first shrinks images whose longer side is larger (to bound time and memory).
        """
        loaded = [self._load(im, max_side) for im in images]
        outputs: list[Image.Image | None] = [None] * len(loaded)
        groups: dict[tuple[int, int], list[int]] = {}
        for index, image in enumerate(loaded):
            key = (-(-image.height // self.multiple), -(-image.width // self.multiple))
            groups.setdefault(key, []).append(index)
        for indices in groups.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                sizes = [(loaded[i].height, loaded[i].width) for i in chunk]
                batch = torch.stack([self._padded(pil_to_tensor(loaded[i])) for i in chunk])
                result = self.generator(batch.to(self.device)).float().cpu()
                for i, out, (h, w) in zip(chunk, result, sizes):
                    outputs[i] = tensor_to_pil(out[:, :h, :w])
        return [o for o in outputs if o is not None]

    def _padded(self, x: torch.Tensor) -> torch.Tensor:
        return pad_to_multiple(x[None], self.multiple)[0][0]

    @staticmethod
    def _load(image: Image.Image | str | os.PathLike, max_side: int | None) -> Image.Image:
        image = load_image(image)
        if max_side is not None and max(image.size) > max_side:
            scale = max_side / max(image.size)
            image = image.resize(
                (max(1, round(image.width * scale)), max(1, round(image.height * scale))), Image.LANCZOS
            )
        return image


@dataclass
class TranslationReport:
    """What :func:`translate_paths` did: files written and inputs that could not be translated."""

    written: list[Path] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


def translate_paths(
    translator: CUTTranslator,
    inputs: Sequence[str | os.PathLike],
    out_dir: str | os.PathLike,
    batch_size: int = 4,
    max_side: int | None = None,
) -> TranslationReport:
    """Translate image files and folders into ``out_dir`` as PNGs named after the inputs.

    Bad files are listed in the report's ``failed`` (one message each) and the good ones are still translated.
    """
    out_dir = Path(out_dir)
    report = TranslationReport()
    paths = find_images(inputs)
    if not paths:
        raise ZeroconError("no image files among the inputs")
    good: list[tuple[Path, Image.Image]] = []
    for path in paths:
        try:
            good.append((path, CUTTranslator._load(path, max_side)))
        except ZeroconError as exc:
            report.failed.append(str(exc))
    used: set[str] = set()
    for start in range(0, len(good), 64):
        chunk = good[start : start + 64]
        results = translator.translate([im for _, im in chunk], batch_size=batch_size)
        for (path, _), result in zip(chunk, results, strict=True):
            name = path.stem
            suffix = 1
            while name in used:
                suffix += 1
                name = f"{path.stem}_{suffix}"
            used.add(name)
            target = out_dir / f"{name}.png"
            save_image_atomic(result, target)
            report.written.append(target)
    return report
