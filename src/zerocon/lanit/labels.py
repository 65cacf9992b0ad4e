"""Pseudo multi-hot domain labels from CLIP similarities with LANIT's adaptive threshold.

For image x, domain prompt features t_n and the base (template-only) prompt feature t_base, domain n is on
when ``cos(x, t_n) > cos(x, t_base)``: the threshold is set per image by how well the domain-agnostic prompt
already describes it, and several domains may be on at once. Optionally only the ``top_k`` most similar of the
domains above the threshold are kept (LANIT's earlier rule).

An image with no domain on is out of the candidate set. ``empty="skip"`` marks it invalid so the training
step leaves it out (the released code skips such batches); ``empty="slack"`` adds an extra (N+1)-th "slack"
domain that is on exactly for those images, so they still train, with their own style head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

EMPTY_MODES = ("skip", "slack")


@dataclass
class LabelConfig:
    """How similarities become labels."""

    top_k: int | None = None
    """Keep at most this many of the domains above the threshold (``None``: all of them)."""
    empty: str = "skip"
    """What to do with an image with no domain on: ``skip`` it, or give it the ``slack`` domain."""

    def __post_init__(self) -> None:
        if self.empty not in EMPTY_MODES:
            raise ValueError(f"empty must be one of {EMPTY_MODES}, got {self.empty!r}")
        if self.top_k is not None and self.top_k < 1:
            raise ValueError("top_k must be at least 1")

    def num_label_domains(self, num_words: int) -> int:
        """Number of style/discriminator heads: the words, plus the slack domain if used."""
        return num_words + (1 if self.empty == "slack" else 0)


def similarities(
    image_features: torch.Tensor, domain_features: torch.Tensor, base_feature: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarities (B, N) of images to the domain prompts and (B,) to the base prompt.

    All features are expected L2-normalised, so the dot product is the cosine.
    """
    return image_features @ domain_features.T, image_features @ base_feature


def adaptive_threshold(sim: torch.Tensor, base_sim: torch.Tensor, top_k: int | None = None) -> torch.Tensor:
    """Multi-hot float labels (B, N): domain n is on when ``sim[:, n] > base_sim`` (and among the top k)."""
    on = sim > base_sim[:, None]
    if top_k is not None and top_k < sim.shape[1]:
        masked = sim.masked_fill(~on, float("-inf"))
        top = masked.topk(top_k, dim=1).indices
        keep = torch.zeros_like(on).scatter_(1, top, True)
        on = on & keep
    return on.float()


def handle_empty(labels: torch.Tensor, empty: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Apply the empty-image rule: returns labels ((B, N) or (B, N+1) with slack) and a (B,) validity mask."""
    none_on = labels.sum(dim=1) == 0
    if empty == "skip":
        return labels, ~none_on
    if empty == "slack":
        return torch.cat([labels, none_on.float()[:, None]], dim=1), torch.ones_like(none_on)
    raise ValueError(f"empty must be one of {EMPTY_MODES}, got {empty!r}")


def pseudo_labels(
    image_features: torch.Tensor,
    domain_features: torch.Tensor,
    base_feature: torch.Tensor,
    cfg: LabelConfig | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Labels and validity mask for images given their normalised CLIP features (see module docstring)."""
    cfg = cfg or LabelConfig()
    sim, base_sim = similarities(image_features, domain_features, base_feature)
    return handle_empty(adaptive_threshold(sim, base_sim, cfg.top_k), cfg.empty)


def parse_domain_words(text: str) -> list[str]:
    """ "w1, w2,w3" -> ["w1", "w2", "w3"]; rejects empty lists and duplicates."""
    words = [w.strip() for w in text.split(",") if w.strip()]
    if not words:
        from zerocon.errors import ZeroconError

        raise ZeroconError("no domain words given (expected a comma-separated list)")
    if len(set(words)) != len(words):
        from zerocon.errors import ZeroconError

        raise ZeroconError(f"duplicate domain words in {text!r}")
    return words
