"""Translating with a trained LANIT model: latent-guided (words + random styles) or reference-guided.

The EMA networks of a run are loaded from ``RUN/checkpoint`` without CLIP; CLIP (and the learned prompts) are
loaded only when a reference image's domains must be found from its pseudo-label.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from PIL import Image, ImageDraw

from zerocon.errors import ZeroconError
from zerocon.images import tensor_to_pil
from zerocon.io import load_checkpoint
from zerocon.lanit.networks import Generator, MappingNetwork, StyleEncoder

if TYPE_CHECKING:
    from zerocon.lanit.model import LanitConfig

CHECKPOINT_DIR = "checkpoint"


def label_vector(words: Sequence[str], domains: Sequence[str], width: int) -> torch.Tensor:
    """The multi-hot (width,) vector with ``words`` on; unknown words are a :class:`ZeroconError`."""
    unknown = [w for w in words if w not in domains]
    if unknown:
        raise ZeroconError(f"unknown domain word(s) {unknown}; this model knows: {', '.join(domains)}")
    if not words:
        raise ZeroconError("no target domain given")
    y = torch.zeros(width)
    for word in words:
        y[list(domains).index(word)] = 1.0
    return y


def labelled_grid(rows: Sequence[Sequence[Image.Image]], header: Sequence[str] | None = None) -> Image.Image:
    """Paste equally sized images into a grid with an optional text header row."""
    cell_w, cell_h = rows[0][0].size
    header_h = 12 if header else 0
    cols = max(len(r) for r in rows)
    canvas = Image.new("RGB", (cols * cell_w, header_h + len(rows) * cell_h), "white")
    draw = ImageDraw.Draw(canvas)
    for c, text in enumerate(header or []):
        draw.text((c * cell_w + 2, 0), text[: max(1, cell_w // 6)], fill="black")
    for r, row in enumerate(rows):
        for c, image in enumerate(row):
            canvas.paste(image, (c * cell_w, header_h + r * cell_h))
    return canvas


@torch.no_grad()
def latent_grid(
    generator_net: Generator,
    mapping: MappingNetwork,
    x: torch.Tensor,
    domains: Sequence[str],
    width: int,
    latent_dim: int,
    generator: torch.Generator,
) -> Image.Image:
    """Rows = inputs; columns = the input, then a translation to each single domain word (one z per row)."""
    device = x.device
    rows = []
    z = torch.randn(len(x), latent_dim, generator=generator).to(device)
    outs = []
    for word in domains:
        y = label_vector([word], domains, width).to(device).expand(len(x), -1)
        outs.append(generator_net(x, mapping(z, y)))
    for i in range(len(x)):
        rows.append([tensor_to_pil(x[i])] + [tensor_to_pil(o[i]) for o in outs])
    return labelled_grid(rows, ["input", *domains])


class Translator:
    """The EMA generator, mapping network and style encoder of a LANIT run."""

    def __init__(
        self,
        cfg: LanitConfig,
        generator_net: Generator,
        mapping: MappingNetwork,
        style_encoder: StyleEncoder,
        run: str | os.PathLike,
    ) -> None:
        self.cfg = cfg
        self.generator_net, self.mapping, self.style_encoder = generator_net, mapping, style_encoder
        self.run = Path(run)
        self._prompt_state: dict[str, torch.Tensor] = {}
        self._clip = None

    @classmethod
    def from_run(cls, run: str | os.PathLike) -> Translator:
        from zerocon.lanit.model import LanitConfig

        run = Path(run)
        folder = run / CHECKPOINT_DIR if (run / CHECKPOINT_DIR).is_dir() else run
        tensors, config = load_checkpoint(folder)
        method = config.get("method", {})
        if method.get("method") != "lanit":
            raise ZeroconError(f"{folder} is not a LANIT checkpoint (method {method.get('method')!r})")
        cfg = LanitConfig.from_dict(method)
        net_cfg = cfg.network_config()
        nets = tensors["networks"]
        built = []
        for name, cls_ in (
            ("generator_ema", Generator),
            ("mapping_ema", MappingNetwork),
            ("style_encoder_ema", StyleEncoder),
        ):
            module = cls_(net_cfg)
            prefix = f"{name}."
            module.load_state_dict({k[len(prefix) :]: v for k, v in nets.items() if k.startswith(prefix)})
            built.append(module.eval().requires_grad_(False))
        translator = cls(cfg, *built, run)
        translator._prompt_state = {
            k[len("prompts_ema.") :]: v for k, v in nets.items() if k.startswith("prompts_ema.")
        }
        return translator

    def _to_batch(self, images: Sequence[Image.Image | str | os.PathLike]) -> torch.Tensor:
        from zerocon.lanit.data import load_square_tensor

        return torch.stack([load_square_tensor(im, self.cfg.img_size) for im in images])

    @torch.no_grad()
    def latent(
        self,
        images: Sequence[Image.Image | str | os.PathLike] | torch.Tensor,
        words: Sequence[str],
        samples: int = 4,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Translations (B, samples, 3, S, S) of the images to the domains ``words``, one random style per sample."""
        x = images if torch.is_tensor(images) else self._to_batch(images)
        generator = generator or torch.Generator().manual_seed(0)
        y = label_vector(words, self.cfg.domains, self.cfg.num_label_domains).expand(len(x), -1)
        outs = []
        for _ in range(samples):
            z = torch.randn(len(x), self.cfg.latent_dim, generator=generator)
            outs.append(self.generator_net(x, self.mapping(z, y)))
        return torch.stack(outs, dim=1)

    def reference_labels(self, ref: torch.Tensor) -> torch.Tensor:
        """Pseudo-labels of reference images with the run's CLIP and EMA prompts."""
        from zerocon.lanit.labels import pseudo_labels
        from zerocon.lanit.prompts import PromptLearner, encode_images, load_clip, resolve_templates

        if self._clip is None:
            clip = load_clip(self.cfg.clip)
            prompts = PromptLearner(clip, resolve_templates(self.cfg.templates), self.cfg.domains)
            if self._prompt_state:
                prompts.load_state_dict(self._prompt_state)
            self._clip = (clip, prompts)
        clip, prompts = self._clip
        with torch.no_grad():
            domain, base = prompts.features(clip, trainable=False)
            labels, valid = pseudo_labels(encode_images(clip, ref), domain, base, self.cfg.label_config)
        if not bool(valid.all()):
            raise ZeroconError(
                "the reference image matches none of the domain words; give its domains with --ref-domains"
            )
        return labels

    @torch.no_grad()
    def reference(
        self,
        images: Sequence[Image.Image | str | os.PathLike] | torch.Tensor,
        reference: Image.Image | str | os.PathLike | torch.Tensor,
        words: Sequence[str] | None = None,
    ) -> torch.Tensor:
        """Translations (B, 3, S, S) with the style of ``reference`` (its domains from ``words`` or CLIP)."""
        x = images if torch.is_tensor(images) else self._to_batch(images)
        ref = reference if torch.is_tensor(reference) else self._to_batch([reference])
        if words:
            y = label_vector(words, self.cfg.domains, self.cfg.num_label_domains)[None]
        else:
            y = self.reference_labels(ref)
        s = self.style_encoder(ref, y)
        return self.generator_net(x, s.expand(len(x), -1))

    def words_of(self, labels: torch.Tensor) -> list[str]:
        names = list(self.cfg.domains) + (["<slack>"] if self.cfg.empty == "slack" else [])
        return [names[i] for i in torch.nonzero(labels > 0.5).flatten().tolist()]
