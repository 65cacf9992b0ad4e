"""Edit directions in the text-embedding space of the diffusion model's text encoder.

A direction is ``mean(E(target sentences)) - mean(E(source sentences))`` over the encoder's full token
sequence (pix2pix-zero, ``src/make_edit_direction.py``). Three ways to get the sentences:

* **sentence files** (pix2pix-zero's format: one sentence per line) — :func:`direction_from_files`;
* **automatic**, as pix2pix-zeroCon: from the BLIP caption of the input and the user's target, either a word
  swap ``"cat->dog"`` applied to the caption or a full target sentence — :func:`automatic_direction`;
* optional **template banks**: sentences made from built-in templates (``"a photo of a {}"``, ...) around the
  two words, so that no language model is needed — :func:`template_sentences`.

Directions are saved and loaded as safetensors (:meth:`EditDirection.save`, :meth:`EditDirection.load`).
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from zerocon.errors import ZeroconError
from zerocon.io import atomic_path

TEMPLATES: tuple[str, ...] = (
    "a photo of a {}",
    "a photograph of a {}",
    "a picture of a {}",
    "an image of a {}",
    "a close-up photo of a {}",
    "a cropped photo of a {}",
    "a bright photo of a {}",
    "a dark photo of a {}",
    "a blurry photo of a {}",
    "a good photo of a {}",
    "a photo of the {}",
    "a photo of a small {}",
    "a photo of a large {}",
    "a photo of one {}",
    "a photography of a {}",
    "a {} in the garden",
    "a {} on the street",
    "a {} in a room",
    "a {} sitting on the grass",
    "a {} lying on a bed",
    "a {} looking at the camera",
    "a portrait of a {}",
    "a high resolution photo of a {}",
    "a low resolution photo of a {}",
    "a rendering of a {}",
    "a painting of a {}",
    "a drawing of a {}",
    "a {} in the snow",
    "a {} at the beach",
    "a {} in the forest",
)
"""Built-in sentence templates for template banks (``{}`` is the concept word)."""

_ARROW = re.compile(r"\s*(?:->|→|=>)\s*")


@dataclass
class EditRequest:
    """What the user asked for: a word swap (``source_word -> target_word``) or a full target sentence."""

    target: str
    source: str | None = None
    is_word_swap: bool = False


def parse_target(target: str, source: str | None = None) -> EditRequest:
    """Validate and classify ``--target`` / ``--source``.

    ``"cat->dog"`` (also ``→``, ``=>``) is a word swap; a target without an arrow plus a ``source`` of one
    or two words is a word swap too; any other target is a full target sentence. Raises ``ZeroconError`` for
    an empty target or a target identical to the source.
    """
    target = (target or "").strip()
    source = source.strip() if source else None
    if not target:
        raise ZeroconError(
            "the target is empty; give e.g. --target 'cat->dog' or --target 'a photo of a dog'"
        )
    parts = _ARROW.split(target)
    if len(parts) == 2:
        if source is not None and source.lower() != parts[0].strip().lower():
            raise ZeroconError(f"--source '{source}' contradicts the word swap '{target}'")
        source, target = parts[0].strip(), parts[1].strip()
        if not source or not target:
            raise ZeroconError(f"the word swap '{'->'.join(parts)}' needs a word on both sides of the arrow")
        word_swap = True
    elif len(parts) > 2:
        raise ZeroconError(f"the target '{target}' has more than one arrow; use 'source->target'")
    else:
        word_swap = source is not None and len(source.split()) <= 2 and len(target.split()) <= 2
    if source is not None and source.lower() == target.lower():
        raise ZeroconError(f"the target '{target}' is identical to the source; nothing to edit")
    return EditRequest(target=target, source=source, is_word_swap=word_swap)


def swap_words(sentence: str, source: str, target: str) -> str:
    """Replace whole-word occurrences of ``source`` (case-insensitive) in ``sentence`` by ``target``."""
    pattern = re.compile(rf"(?<![\w-]){re.escape(source)}(?![\w-])", re.IGNORECASE)
    return pattern.sub(target, sentence)


def template_sentences(word: str, templates: Sequence[str] = TEMPLATES) -> list[str]:
    """One sentence per template around ``word`` ("an" is kept as written in the template)."""
    return [t.format(word) for t in templates]


def read_sentences(path: str | os.PathLike) -> list[str]:
    """Sentences of a text file, one per line; blank lines are skipped."""
    path = Path(path)
    if not path.is_file():
        raise ZeroconError(f"{path}: sentence file not found")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise ZeroconError(f"{path}: not a UTF-8 text file ({exc.reason})") from exc
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise ZeroconError(f"{path}: no sentences (expected one sentence per line)")
    return sentences


@torch.no_grad()
def embed_sentences(
    tokenizer: Any, text_encoder: Any, sentences: Sequence[str], batch_size: int = 16
) -> torch.Tensor:
    """Mean last hidden state of the text encoder over ``sentences``: (1, model_max_length, dim)."""
    if not sentences:
        raise ValueError("no sentences to embed")
    parts = []
    for start in range(0, len(sentences), batch_size):
        ids = tokenizer(
            list(sentences[start : start + batch_size]),
            padding="max_length",
            max_length=tokenizer.model_max_length,
            truncation=True,
            return_tensors="pt",
        ).input_ids.to(text_encoder.device)
        parts.append(text_encoder(ids)[0])
    return torch.cat(parts).mean(0)[None]


@dataclass
class EditDirection:
    """Mean source and target embeddings (each (1, tokens, dim)) and the sentences they came from."""

    source_embeds: torch.Tensor
    target_embeds: torch.Tensor
    source_sentences: list[str] = field(default_factory=list)
    target_sentences: list[str] = field(default_factory=list)
    kind: str = "sentences"
    reason: str = ""
    """Where the sentences came from and why (see :class:`SentencePlan`)."""

    @property
    def delta(self) -> torch.Tensor:
        """target - source, (1, tokens, dim)."""
        return self.target_embeds.mean(0, keepdim=True) - self.source_embeds.mean(0, keepdim=True)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "source_sentences": self.source_sentences[:5]
            + (["..."] if len(self.source_sentences) > 5 else []),
            "target_sentences": self.target_sentences[:5]
            + (["..."] if len(self.target_sentences) > 5 else []),
            "num_source_sentences": len(self.source_sentences),
            "num_target_sentences": len(self.target_sentences),
            "delta_norm": float(self.delta.float().norm()),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write a safetensors file (tensors + sentences in its metadata), atomically."""
        meta = {
            "kind": self.kind,
            "reason": self.reason,
            "source_sentences": json.dumps(self.source_sentences),
            "target_sentences": json.dumps(self.target_sentences),
        }
        with atomic_path(path) as tmp:
            save_file(
                {
                    "source_embeds": self.source_embeds.detach().float().cpu().contiguous(),
                    "target_embeds": self.target_embeds.detach().float().cpu().contiguous(),
                },
                str(tmp),
                metadata=meta,
            )

    @classmethod
    def load(cls, path: str | os.PathLike) -> EditDirection:
        path = Path(path)
        if not path.is_file():
            raise ZeroconError(f"{path}: direction file not found")
        try:
            from safetensors import safe_open

            tensors = load_file(str(path))
            with safe_open(str(path), framework="pt") as fh:
                meta = fh.metadata() or {}
        except (SafetensorError, OSError, ValueError) as exc:
            raise ZeroconError(f"{path}: not a safetensors edit direction ({exc})") from exc
        if "source_embeds" not in tensors or "target_embeds" not in tensors:
            raise ZeroconError(f"{path}: missing source_embeds / target_embeds")
        return cls(
            source_embeds=tensors["source_embeds"],
            target_embeds=tensors["target_embeds"],
            source_sentences=json.loads(meta.get("source_sentences", "[]")),
            target_sentences=json.loads(meta.get("target_sentences", "[]")),
            kind=meta.get("kind", "sentences"),
            reason=meta.get("reason", ""),
        )


def direction_from_sentences(
    pipe: Any, source: Sequence[str], target: Sequence[str], kind: str = "sentences", reason: str = ""
) -> EditDirection:
    """Direction from two sentence banks, embedded with ``pipe``'s tokenizer and text encoder."""
    return EditDirection(
        source_embeds=embed_sentences(pipe.tokenizer, pipe.text_encoder, source),
        target_embeds=embed_sentences(pipe.tokenizer, pipe.text_encoder, target),
        source_sentences=list(source),
        target_sentences=list(target),
        kind=kind,
        reason=reason,
    )


def direction_from_files(
    pipe: Any, source_file: str | os.PathLike, target_file: str | os.PathLike
) -> EditDirection:
    """pix2pix-zero's directions: two files of sentences, one per line."""
    return direction_from_sentences(
        pipe,
        read_sentences(source_file),
        read_sentences(target_file),
        "files",
        f"sentence files {Path(source_file).name} and {Path(target_file).name}",
    )


@dataclass
class SentencePlan:
    """The sentences of an automatic direction, what kind they are and why (for records and notices).

    ``kind`` is ``"word_swap"`` (the caption and its swapped copy), ``"word_swap+templates"`` (plus template
    banks of the two words), ``"templates"`` (template banks only: the source word is not in the caption) or
    ``"sentence"`` (the caption or source sentence and the target sentence); ``reason`` says why, in a line.
    """

    source: list[str]
    target: list[str]
    kind: str
    reason: str


def automatic_sentences(caption: str, request: EditRequest, use_templates: bool = True) -> SentencePlan:
    """Source and target sentences for an automatic direction.

    Word swap: the caption and the caption with the word swapped, plus template banks of the two words when
    ``use_templates``. When the source word is not in the caption, only template banks can carry the swap:
    they are used (kind ``"templates"``, with the reason) if ``use_templates``, else the request is refused.
    Full sentence: the caption (or the given source sentence) and the target sentence.
    """
    caption = caption.strip()
    if request.is_word_swap:
        assert request.source is not None
        swapped = swap_words(caption, request.source, request.target)
        if not caption or swapped == caption:
            missing = f"'{request.source}' is not in the caption '{caption}'"
            if not use_templates:
                raise ZeroconError(
                    f"{missing}, so the word swap has no sentence to edit without template banks; drop "
                    "--no-templates, give a --caption that contains it, or a full target sentence"
                )
            return SentencePlan(
                template_sentences(request.source),
                template_sentences(request.target),
                "templates",
                f"{missing}: the direction uses template sentences only",
            )
        if use_templates:
            return SentencePlan(
                [caption, *template_sentences(request.source)],
                [swapped, *template_sentences(request.target)],
                "word_swap+templates",
                "the caption with the word swapped, plus template sentences of both words",
            )
        return SentencePlan([caption], [swapped], "word_swap", "the caption with the word swapped")
    source_sentence = request.source if request.source else caption
    if not source_sentence:
        raise ZeroconError("a full target sentence needs a caption or --source sentence to edit from")
    if source_sentence.strip().lower() == request.target.strip().lower():
        raise ZeroconError(f"the target '{request.target}' is identical to the source; nothing to edit")
    origin = "the given source sentence" if request.source else "the caption"
    return SentencePlan([source_sentence], [request.target], "sentence", f"{origin} and the target sentence")


def automatic_direction(
    pipe: Any, caption: str, target: str, source: str | None = None, use_templates: bool = True
) -> EditDirection:
    """pix2pix-zeroCon's automatic direction from the caption and the user's target (see module doc)."""
    plan = automatic_sentences(caption, parse_target(target, source), use_templates)
    return direction_from_sentences(pipe, plan.source, plan.target, plan.kind, plan.reason)


def edited_caption(caption: str, request: EditRequest) -> str:
    """The caption after the edit (for records): the word swap applied, or the target sentence."""
    if request.is_word_swap and request.source:
        return swap_words(caption, request.source, request.target)
    return request.target
