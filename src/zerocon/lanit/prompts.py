"""CLIP for LANIT: loading any transformers ``CLIPModel``, image features, and learnable prompt contexts.

A domain's text feature is the mean, over a set of templates such as "a photo of a {}.", of the CLIP text
features of the template filled with the domain word; the *base* feature is the same mean over the templates
with the word removed ("a photo of a."), which sets each image's adaptive threshold (``labels.py``).

Prompt learning (CoOp-style, as in LANIT): each template's context words -- the tokens before "{}" -- become
learnable vectors initialised from their own word embeddings, while the domain words, the suffix and the
special tokens stay fixed. The learned vectors are substituted for the context token embeddings by a forward
hook on the CLIP text embedding layer, so CLIP's own text transformer, pooling and projection are used
unchanged and any ``CLIPModel`` works.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from zerocon.errors import ZeroconError

OPENAI_CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

TEMPLATES: dict[str, tuple[str, ...]] = {
    "photo": ("a photo of a {}.", "a picture of a {}.", "an image of a {}.", "a close-up photo of a {}."),
    "face": (
        "a photo of a face with {}.",
        "a portrait of a person with {}.",
        "a close-up photo of a face with {}.",
        "a picture of someone with {}.",
    ),
    "animal": (
        "a photo of the face of a {}.",
        "a close-up photo of a {}.",
        "a picture of the head of a {}.",
        "an animal photo of a {}.",
    ),
    "food": (
        "a photo of {}, a kind of food.",
        "a close-up photo of {}.",
        "a picture of a plate of {}.",
        "a food photo of {}.",
    ),
    "scene": ("a photo of a scene with {}.", "a landscape photo of {}.", "a picture of {}."),
    # ShapesWorld: only words of the world's caption vocabulary ("a red circle on a gray background").
    "shapes": ("a {}", "a {} on a background"),
}
"""Template sets per kind of data; each template holds "{}" once, where the domain word goes."""


def split_template(template: str) -> tuple[str, str]:
    """(context before "{}", text after it); raises if "{}" is not there exactly once."""
    if template.count("{}") != 1:
        raise ZeroconError(f"template {template!r} must contain '{{}}' exactly once (where the word goes)")
    prefix, suffix = template.split("{}")
    return prefix.strip(), suffix.strip()


def base_prompt(template: str) -> str:
    """The template without its word: "a photo of a {}." -> "a photo of a."."""
    prefix, suffix = split_template(template)
    if not prefix or not suffix:
        return prefix or suffix
    return prefix + (" " if suffix[0].isalnum() else "") + suffix


def resolve_templates(spec: str | Sequence[str]) -> tuple[str, ...]:
    """A preset name from :data:`TEMPLATES`, one template with "{}", or several separated by "|"."""
    if isinstance(spec, str):
        if spec in TEMPLATES:
            return TEMPLATES[spec]
        parts = [p.strip() for p in spec.split("|") if p.strip()]
    else:
        parts = [p.strip() for p in spec]
    if not parts:
        raise ZeroconError("no prompt template given")
    for part in parts:
        if "{}" not in part:
            raise ZeroconError(
                f"unknown template preset or template without '{{}}': {part!r} "
                f"(presets: {', '.join(TEMPLATES)})"
            )
        split_template(part)
    return tuple(parts)


@dataclass
class ClipBundle:
    """A frozen CLIP model with its tokenizer and image pre-processing constants."""

    model: Any
    tokenizer: Any
    image_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    name: str = ""

    @property
    def logit_scale(self) -> float:
        scale = getattr(self.model, "logit_scale", None)
        return float(scale.exp()) if scale is not None else 100.0

    def to(self, device: torch.device | str) -> ClipBundle:
        self.model.to(device)
        return self


def load_clip(name_or_path: str) -> ClipBundle:
    """Load a transformers ``CLIPModel`` and tokenizer from a hub id, a local folder or a bundled name.

    Missing or partial weights raise :class:`ZeroconError`; random weights are never used silently.
    """
    from transformers import AutoTokenizer, CLIPModel

    from zerocon.models import missing_weights_error, resolve_model

    path = resolve_model(name_or_path)
    try:
        model, info = CLIPModel.from_pretrained(path, output_loading_info=True)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as exc:
        message = str(missing_weights_error(str(name_or_path), exc))
        raise ZeroconError(
            message.replace("--model shapes", "--clip shapes-clip").replace("--model", "--clip")
        ) from exc
    missing = [k for k in info.get("missing_keys", []) if "position_ids" not in k]
    if missing:
        raise ZeroconError(
            f"CLIP model '{name_or_path}' lacks {len(missing)} weights (e.g. {missing[0]}); refusing to "
            "train with randomly initialised parts"
        )
    mean, std = OPENAI_CLIP_MEAN, OPENAI_CLIP_STD
    settings = image_processor_settings(Path(path))
    mean = tuple(settings.get("image_mean", mean))
    std = tuple(settings.get("image_std", std))
    return from_model(model, tokenizer, mean, std, name=str(name_or_path))


def image_processor_settings(folder: Path) -> dict[str, Any]:
    """The saved image-processor settings of a model folder (older ``preprocessor_config.json`` or the
    ``image_processor`` entry of transformers 5's ``processor_config.json``); empty if there are none."""
    if (folder / "preprocessor_config.json").is_file():
        return json.loads((folder / "preprocessor_config.json").read_text())
    if (folder / "processor_config.json").is_file():
        return json.loads((folder / "processor_config.json").read_text()).get("image_processor", {})
    return {}


def from_model(
    model: Any,
    tokenizer: Any,
    mean: Sequence[float] = OPENAI_CLIP_MEAN,
    std: Sequence[float] = OPENAI_CLIP_STD,
    name: str = "",
) -> ClipBundle:
    """Wrap an already built ``CLIPModel`` (frozen, eval mode) and its tokenizer."""
    model.eval().requires_grad_(False)
    return ClipBundle(
        model, tokenizer, int(model.config.vision_config.image_size), tuple(mean), tuple(std), name
    )


def _pooled(output: Any) -> torch.Tensor:
    return output if torch.is_tensor(output) else output.pooler_output


def encode_images(clip: ClipBundle, images: torch.Tensor) -> torch.Tensor:
    """L2-normalised CLIP image features (B, D) of images in [-1, 1]; differentiable w.r.t. the images."""
    x = (images.float() + 1.0) / 2.0
    if x.shape[-1] != clip.image_size or x.shape[-2] != clip.image_size:
        x = F.interpolate(x, size=(clip.image_size, clip.image_size), mode="bicubic", align_corners=False)
    mean = torch.tensor(clip.mean, device=x.device)[None, :, None, None]
    std = torch.tensor(clip.std, device=x.device)[None, :, None, None]
    features = _pooled(clip.model.get_image_features(pixel_values=(x - mean) / std))
    return F.normalize(features.float(), dim=-1)


class PromptLearner(nn.Module):
    """Text features of the domain words and of the base prompt, with learnable template contexts.

    Only the context vectors (one ``(L_t, width)`` parameter per template) are parameters, so the state
    dict is small and the frozen CLIP model is not saved with it. ``forward(clip)`` returns the normalised
    domain features (N, D) and base feature (D,), each the renormalised mean over templates.
    """

    def __init__(self, clip: ClipBundle, templates: Sequence[str], domains: Sequence[str]) -> None:
        super().__init__()
        if not domains:
            raise ZeroconError("at least one domain word is needed")
        self.templates, self.domains = tuple(templates), tuple(domains)
        tok = clip.tokenizer
        texts, row_template, lengths = [], [], []
        init = []
        embedding = clip.model.text_model.embeddings.token_embedding
        for t, template in enumerate(self.templates):
            prefix, _ = split_template(template)
            prefix_ids = tok(prefix, add_special_tokens=False).input_ids if prefix else []
            lengths.append(len(prefix_ids))
            for text in [template.format(d) for d in self.domains] + [base_prompt(template)]:
                ids = tok(text).input_ids
                if ids[1 : 1 + len(prefix_ids)] != prefix_ids:
                    raise ZeroconError(
                        f"template {template!r}: its context does not tokenize the same inside {text!r}"
                    )
                texts.append(text)
                row_template.append(t)
            with torch.no_grad():
                init.append(embedding(torch.tensor(prefix_ids, dtype=torch.long)).float().clone())
        unknown = [
            d
            for d in self.domains
            if tok.unk_token_id is not None and tok.unk_token_id in tok(d, add_special_tokens=False).input_ids
        ]
        if unknown:
            raise ZeroconError(f"the CLIP tokenizer does not know the word(s) {unknown}")
        encoded = tok(texts, padding=True, return_tensors="pt")
        max_len = clip.model.config.text_config.max_position_embeddings
        if encoded.input_ids.shape[1] > max_len:
            raise ZeroconError(f"a prompt is longer than CLIP's {max_len} tokens")
        self.register_buffer("input_ids", encoded.input_ids, persistent=False)
        self.register_buffer("attention_mask", encoded.attention_mask, persistent=False)
        self.row_template = row_template
        self.context_lengths = lengths
        self.context = nn.ParameterList(nn.Parameter(v) for v in init)
        self._cache: tuple[list[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None = None

    def _substitute(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        rows = []
        for r in range(output.shape[0]):
            t = self.row_template[r]
            length = self.context_lengths[t]
            if length == 0:
                rows.append(output[r])
                continue
            ctx = self.context[t].to(output.dtype)
            rows.append(torch.cat([output[r, :1], ctx, output[r, 1 + length :]], dim=0))
        return torch.stack(rows)

    def forward(self, clip: ClipBundle) -> tuple[torch.Tensor, torch.Tensor]:
        layer = clip.model.text_model.embeddings.token_embedding
        handle = layer.register_forward_hook(self._substitute)
        try:
            out = clip.model.get_text_features(input_ids=self.input_ids, attention_mask=self.attention_mask)
        finally:
            handle.remove()
        feats = F.normalize(_pooled(out).float(), dim=-1)  # (T * (N + 1), D)
        feats = feats.view(len(self.templates), len(self.domains) + 1, -1).mean(dim=0)
        feats = F.normalize(feats, dim=-1)
        return feats[:-1], feats[-1]

    def features(self, clip: ClipBundle, trainable: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """``forward`` with gradients when ``trainable``; otherwise detached, cached while the context is unchanged."""
        if trainable:
            return self(clip)
        snapshot = [p.detach() for p in self.context]
        if self._cache is not None and all(
            a.shape == b.shape and torch.equal(a, b) for a, b in zip(self._cache[0], snapshot)
        ):
            return self._cache[1]
        with torch.no_grad():
            domain, base = self(clip)
        self._cache = ([p.clone() for p in snapshot], (domain.detach(), base.detach()))
        return self._cache[1]
