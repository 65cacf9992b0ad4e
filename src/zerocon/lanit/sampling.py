"""What a LANIT model's labels and samples look like: the multi-hot domain vector and the latent sample grid."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import labelled_grid, tensor_to_pil
from zerocon.lanit.networks import Generator, MappingNetwork


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
