"""Seeing inside the UNet's attention through diffusers attention processors, and nothing else.

Two things are needed by the editor:

* the **cross-attention probabilities** of every ``attn2`` layer (pix2pix-zero's guidance compares the edit
  pass's maps with the reference pass's maps at the same timestep);
* the **self-attention outputs** of the decoder (``attn1`` in ``up_blocks``), the features of the PatchNCE
  term of pix2pix-zeroCon (as CDS does).

Every layer gets a small processor that accepts one extra ``cross_attention_kwargs`` entry, ``book`` (an
:class:`AttentionBook`), and otherwise delegates to the processor the layer had before — by default diffusers'
fast scaled-dot-product attention. Probabilities are computed explicitly (``Attention.get_attention_scores``)
only for ``attn2`` layers and only in the passes that need them; every other layer, and ``attn2`` in the
passes that need no maps, keeps the fast path. :func:`installed_processors` installs the processors for the
duration of a ``with`` block and restores the previous ones afterwards, so the UNet is left as it was found.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.models.attention_processor import Attention


def is_cross_attention(name: str) -> bool:
    """``attn2`` layers of a diffusers UNet attend to the text tokens."""
    return "attn2" in name.split(".")


def is_decoder_self_attention(name: str) -> bool:
    """``attn1`` layers inside ``up_blocks``: the PatchNCE features (CDS's choice)."""
    return name.startswith("up_blocks.") and "attn1" in name.split(".")


class StopForward(Exception):
    """Raised by the processor of the last cross-attention layer in ``"compare"`` mode when
    ``AttentionBook.stop_early`` is set: the guided pass needs the losses, not the UNet's output, so the rest of
    the forward pass is skipped (the autograd graph built so far is complete for the losses)."""


@dataclass
class AttentionBook:
    """Per-pass state shared with the processors through ``cross_attention_kwargs={"book": book}``.

    ``mode`` says what the current UNet call does:

    * ``"off"``: nothing recorded; every layer runs its fast attention;
    * ``"record"``: the reference pass — store cross-attention probabilities (if ``want_maps``) and decoder
      self-attention outputs (if ``want_features``) of this call, replacing the previous step's;
    * ``"compare"``: the guided pass — add the pix2pix-zero L2 between this call's and the recorded
      probabilities to :attr:`xa_loss` (summed over pixels and tokens, averaged over batch x heads, summed
      over layers), and keep this call's decoder self-attention outputs in :attr:`features`.
    """

    want_maps: bool = True
    want_features: bool = False
    mode: str = "off"
    reference_maps: dict[str, torch.Tensor] = field(default_factory=dict)
    reference_features: dict[str, torch.Tensor] = field(default_factory=dict)
    features: dict[str, torch.Tensor] = field(default_factory=dict)
    xa_loss: torch.Tensor | float = 0.0
    stop_early: bool = False
    record_from: int = 0
    """In ``"record"`` mode, only batch entries from this index on belong to the reference pass (the others
    are a batched no-grad call of the edit pass)."""
    last_cross_layer: str | None = None

    def start(self, mode: str) -> None:
        """Begin a UNet call in ``mode`` (clears what that mode accumulates)."""
        if mode not in ("off", "record", "compare"):
            raise ValueError(f"unknown attention-book mode {mode!r}")
        self.mode = mode
        if mode == "compare":
            self.xa_loss = 0.0
            self.features = {}

    @property
    def needs_probabilities(self) -> bool:
        return self.want_maps and self.mode in ("record", "compare")

    def take_cross_attention(self, name: str, probs: torch.Tensor, heads: int = 1) -> None:
        if self.mode == "record":
            self.reference_maps[name] = probs[self.record_from * heads :].detach()
            self.last_cross_layer = name  # after a full pass: the last cross-attention layer in forward order
        elif self.mode == "compare":
            reference = self.reference_maps[name]
            # in float32 whatever the UNet's dtype (the guidance gradient is small next to half precision's step)
            self.xa_loss = self.xa_loss + ((probs.float() - reference.float()) ** 2).sum((1, 2)).mean(0)
            if self.stop_early and name == self.last_cross_layer:
                raise StopForward

    def take_features(self, name: str, hidden: torch.Tensor) -> None:
        if self.mode == "record":
            self.reference_features[name] = hidden[self.record_from :].detach()
        elif self.mode == "compare":
            self.features[name] = hidden


def _explicit_attention(
    attn: Attention,
    hidden_states: torch.Tensor,
    encoder_hidden_states: torch.Tensor | None,
    attention_mask: torch.Tensor | None,
    temb: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """diffusers' classic attention (softmax of QK^T materialised); returns the output and the probabilities
    of shape (batch * heads, query tokens, key tokens)."""
    residual = hidden_states
    if attn.spatial_norm is not None:
        hidden_states = attn.spatial_norm(hidden_states, temb)
    input_ndim = hidden_states.ndim
    if input_ndim == 4:
        batch, channel, height, width = hidden_states.shape
        hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
    batch_size, sequence_length, _ = (
        hidden_states.shape if encoder_hidden_states is None else encoder_hidden_states.shape
    )
    attention_mask = attn.prepare_attention_mask(attention_mask, sequence_length, batch_size)
    if attn.group_norm is not None:
        hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
    query = attn.to_q(hidden_states)
    if encoder_hidden_states is None:
        encoder_hidden_states = hidden_states
    elif attn.norm_cross:
        encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
    key = attn.head_to_batch_dim(attn.to_k(encoder_hidden_states))
    value = attn.head_to_batch_dim(attn.to_v(encoder_hidden_states))
    query = attn.head_to_batch_dim(query)
    probs = attn.get_attention_scores(query, key, attention_mask)
    out = attn.batch_to_head_dim(torch.bmm(probs, value))
    out = attn.to_out[1](attn.to_out[0](out))
    if input_ndim == 4:
        out = out.transpose(-1, -2).reshape(batch, channel, height, width)
    if attn.residual_connection:
        out = out + residual
    return out / attn.rescale_output_factor, probs


class BookAttnProcessor:
    """Delegates to the layer's previous (fast) processor, except where the book needs this layer.

    ``role`` is ``"cross"`` (probabilities of an ``attn2`` layer), ``"features"`` (output of a decoder
    ``attn1`` layer) or ``"pass"`` (never needed; only accepts and drops the ``book`` argument).
    """

    def __init__(self, name: str, role: str, inner: Any) -> None:
        self.name = name
        self.role = role
        self.inner = inner

    def __call__(
        self,
        attn: Attention,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
        book: AttentionBook | None = None,
        **kwargs: Any,
    ) -> torch.Tensor:
        if book is not None and self.role == "cross" and book.needs_probabilities:
            out, probs = _explicit_attention(attn, hidden_states, encoder_hidden_states, attention_mask, temb)
            book.take_cross_attention(self.name, probs, attn.heads)
            return out
        inner_kwargs = dict(kwargs)
        if temb is not None:
            inner_kwargs["temb"] = temb
        out = self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, **inner_kwargs)
        if book is not None and self.role == "features" and book.want_features and book.mode != "off":
            book.take_features(self.name, out)
        return out


@contextlib.contextmanager
def installed_processors(unet: torch.nn.Module) -> Iterator[None]:
    """Install a :class:`BookAttnProcessor` on every attention layer of ``unet`` for the ``with`` block."""
    previous = dict(unet.attn_processors)
    processors = {}
    for name, inner in previous.items():
        layer = name.removesuffix(".processor")
        if is_cross_attention(layer):
            role = "cross"
        elif is_decoder_self_attention(layer):
            role = "features"
        else:
            role = "pass"
        processors[name] = BookAttnProcessor(layer, role, inner)
    unet.set_attn_processor(processors)
    try:
        yield
    finally:
        unet.set_attn_processor(previous)


def tokens_to_map(hidden: torch.Tensor, latent_hw: tuple[int, int]) -> torch.Tensor:
    """(B, h*w, C) attention output -> (B, C, h, w), finding h, w from the latent's aspect ratio."""
    batch, tokens, channels = hidden.shape
    lat_h, lat_w = latent_hw
    scale = math.sqrt(lat_h * lat_w / tokens)
    height = max(1, round(lat_h / scale))
    width = tokens // height
    if height * width != tokens:
        raise ValueError(f"cannot fold {tokens} tokens into a {lat_h}x{lat_w}-shaped map")
    return hidden.transpose(1, 2).reshape(batch, channels, height, width)
