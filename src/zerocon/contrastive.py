"""PatchNCE: the patch-wise contrastive loss of CUT (Park et al., ECCV 2020), in one place for every method.

A query is a feature of the *output* at one location; its positive is the feature of the *input* (the key)
at the same location; its negatives are the key features at the other sampled locations of the same image.
With L2-normalised features and temperature tau the loss of one query is

    -log( exp(q.k+ / tau) / (exp(q.k+ / tau) + sum_n exp(q.k-_n / tau)) ).

Keys are detached. CUT's generator training uses :class:`PatchSampleMLP` (a two-layer MLP head per feature
layer); the diffusion editor uses :func:`patch_nce_feature_loss` directly on UNet features, without a head.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from zerocon.edit.config import NCE_TEMPERATURE, NUM_PATCHES  # the one (torch-free) definition

_DIAGONAL_LOGIT = -10.0  # CUT's value for a query's logit against its own positive in the negative matrix


def patch_nce_loss(
    query: torch.Tensor,
    key: torch.Tensor,
    temperature: float = NCE_TEMPERATURE,
    negatives_from_minibatch: bool = False,
) -> torch.Tensor:
    """PatchNCE loss of every query patch; returns a tensor of shape (B * n,).

    Args:
        query: (B, n, C) L2-normalised features of the output at n sampled locations.
        key: (B, n, C) L2-normalised features of the input at the same locations (detached here).
        temperature: softmax temperature tau.
        negatives_from_minibatch: draw negatives from every image of the batch (SinCUT) instead of only the
            query's own image.
    """
    batch, num, channels = query.shape
    key = key.detach()
    positive = (query * key).sum(dim=-1).reshape(-1, 1)  # (B*n, 1)
    groups = 1 if negatives_from_minibatch else batch
    q = query.reshape(groups, -1, channels)
    k = key.reshape(groups, -1, channels)
    negative = torch.bmm(q, k.transpose(1, 2))  # (groups, m, m)
    eye = torch.eye(negative.shape[1], dtype=torch.bool, device=query.device)
    negative = negative.masked_fill(eye, _DIAGONAL_LOGIT).reshape(-1, negative.shape[1])
    logits = torch.cat([positive, negative], dim=1) / temperature
    target = torch.zeros(logits.shape[0], dtype=torch.long, device=query.device)
    return F.cross_entropy(logits, target, reduction="none")


def sample_locations(
    num_locations: int,
    num_patches: int,
    generator: torch.Generator | None = None,
    device: torch.device | None = None,
) -> torch.Tensor:
    """Indices of ``min(num_patches, num_locations)`` distinct locations, drawn with ``generator``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    ids = torch.randperm(num_locations, generator=generator, device=gen_device)[
        : min(num_patches, num_locations)
    ]
    return ids.to(device) if device is not None else ids


def gather_locations(feature: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) or (B, H*W, C) features -> (B, len(ids), C) at the flat locations ``ids``.

    A 4-D map is indexed channels-first, so the gradient flowing back into it is a contiguous NCHW tensor.
    (Indexing after a transpose sends back a channels-last-strided gradient, and on torch 2.13 CPU
    ``instance_norm``'s backward is wrong for such a gradient when the batch has one image; CUT's generator is
    full of instance norms.)
    """
    if feature.dim() == 4:
        return feature.flatten(2)[:, :, ids.to(feature.device)].transpose(1, 2)
    return feature[:, ids.to(feature.device), :]


def patch_nce_feature_loss(
    query_map: torch.Tensor,
    key_map: torch.Tensor,
    num_patches: int = NUM_PATCHES,
    patch_sizes: Sequence[int] = (1, 2),
    temperature: float = NCE_TEMPERATURE,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Mean PatchNCE loss between two feature maps (B, C, H, W), averaged over ``patch_sizes``.

    A patch size p > 1 average-pools both maps by p before sampling (as CDS does on UNet self-attention
    outputs). Query and key share the sampled locations.
    """
    total = query_map.new_zeros(())
    used = 0
    for size in patch_sizes:
        q, k = query_map, key_map
        if size > 1:
            if min(q.shape[-2:]) < size:
                continue
            q, k = F.avg_pool2d(q, size), F.avg_pool2d(k, size)
        ids = sample_locations(q.shape[-2] * q.shape[-1], num_patches, generator, device=q.device)
        q = F.normalize(gather_locations(q, ids), dim=-1)
        k = F.normalize(gather_locations(k, ids), dim=-1)
        total = total + patch_nce_loss(q, k, temperature).mean()
        used += 1
    if used == 0:
        raise ValueError(
            f"feature map {tuple(query_map.shape)} is smaller than every patch size {tuple(patch_sizes)}"
        )
    return total / used


class PatchSampleMLP(nn.Module):
    """CUT's projection heads (``netF = mlp_sample``): one Linear-ReLU-Linear per feature layer.

    Unlike the reference implementation, the heads are built in ``__init__`` from the known channel counts,
    so they exist before the optimizer is created and before any distributed wrapping.
    """

    def __init__(self, in_channels: Sequence[int], out_channels: int = 256, init_gain: float = 0.02) -> None:
        super().__init__()
        self.heads = nn.ModuleList(
            nn.Sequential(nn.Linear(c, out_channels), nn.ReLU(), nn.Linear(out_channels, out_channels))
            for c in in_channels
        )
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight, gain=init_gain)
                nn.init.zeros_(module.bias)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        num_patches: int = NUM_PATCHES,
        location_ids: Sequence[torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Project ``num_patches`` sampled locations of each (B, C, H, W) feature map.

        Returns the (B, n, out_channels) L2-normalised projections and the location ids used, so the same ids
        can be reused for the key features.
        """
        projected, used_ids = [], []
        for i, (head, feature) in enumerate(zip(self.heads, features, strict=True)):
            if location_ids is None:
                ids = sample_locations(
                    feature.shape[-2] * feature.shape[-1], num_patches, generator, feature.device
                )
            else:
                ids = location_ids[i]
            projected.append(F.normalize(head(gather_locations(feature, ids)), dim=-1))
            used_ids.append(ids)
        return projected, used_ids
