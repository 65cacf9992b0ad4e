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
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.io import load_checkpoint, network_state
from zerocon.lanit.networks import Generator, MappingNetwork, StyleEncoder
from zerocon.lanit.sampling import label_vector
from zerocon.training import checkpoint_folder

if TYPE_CHECKING:
    from zerocon.lanit.model import LanitConfig


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
    def from_checkpoint(cls, path: str | os.PathLike) -> Translator:
        """Load the EMA networks of a run folder (or its ``checkpoint`` folder); ``ZeroconError`` for a missing
        or corrupt checkpoint or one of another method."""
        from zerocon.lanit.model import LanitConfig

        run = Path(path)
        folder = checkpoint_folder(run)
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
            module.load_state_dict(network_state(nets, name))
            built.append(module.eval().requires_grad_(False))
        translator = cls(cfg, *built, run)
        translator._prompt_state = network_state(nets, "prompts_ema")
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
