"""Parity with diffusers' deprecated StableDiffusionPix2PixZeroPipeline (a peer nobody here wrote).

Same components (both loaded from the same save_pretrained folder), same inputs, same generator seeds:
``invert`` and ``__call__`` with ``method="pix2pix_zero"`` must give the same latents (max abs diff <= 1e-3
in float32). The deliberate deviations of the inversion: auto-correlation roll offsets never 0 (switched to the
peer's behaviour with ``allow_zero_roll=True``), and the regularisation's safeguard, which halves a step that
would raise its loss (asserted never to trigger on these fixtures, so they compare the peer's arithmetic).
"""

from __future__ import annotations

import warnings

import pytest
import torch

from zerocon.edit import inversion
from zerocon.edit.pipeline import ZeroConPipeline

TOL = 1e-3


def _peer(folder):
    from diffusers import DDIMInverseScheduler, StableDiffusionPix2PixZeroPipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        peer = StableDiffusionPix2PixZeroPipeline.from_pretrained(
            folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False
        )
    peer.inverse_scheduler = DDIMInverseScheduler.from_config(peer.scheduler.config)
    peer.set_progress_bar_config(disable=True)
    return peer


def _ours(folder):
    pipe = ZeroConPipeline.from_pretrained(folder)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _inputs(pipe):
    torch.manual_seed(3)
    image = torch.rand(1, 3, 32, 32)
    source = pipe.get_embeds(["a photo of a cat", "a cat on the grass"])
    target = pipe.get_embeds(["a photo of a dog", "a dog on the grass"])
    return image, source, target


@pytest.mark.parametrize("fixture", ["tiny_dir", "tiny_v_dir"])
def test_invert_and_call_match_diffusers(fixture, request, monkeypatch):
    folder = request.getfixturevalue(fixture)
    steps_seen, rising = [], []  # regularisation steps; those whose plain (diffusers) update raises the loss
    safeguarded = inversion.descend

    def watched(output, to_epsilon, loss, grad, step):
        steps_seen.append(step)
        epsilon = to_epsilon(output)
        if loss(to_epsilon(output - step * grad(epsilon))) > loss(epsilon):
            rising.append(step)
        return safeguarded(output, to_epsilon, loss, grad, step)

    monkeypatch.setattr(inversion, "descend", watched)
    ours, peer = _ours(folder), _peer(folder)
    image, source, target = _inputs(ours)
    steps = 4
    amount = 2.0  # large enough that the guidance moves the tiny random model far beyond float noise

    inv_ours = ours.invert(
        "a photo of a cat",
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        allow_zero_roll=True,
    ).latents
    inv_peer = peer.invert(
        "a photo of a cat",
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
    ).latents
    assert (inv_ours - inv_peer).abs().max().item() <= TOL
    assert inv_ours.abs().max() > 0.1  # not a degenerate all-zero result
    assert steps_seen and not rising, "the safeguard changed steps: the fixture no longer compares diffusers'"

    kwargs = dict(
        source_embeds=source,
        target_embeds=target,
        num_inference_steps=steps,
        guidance_scale=5.0,
        negative_prompt="a photo of a cat",
        cross_attention_guidance_amount=amount,
        latents=inv_peer,
        output_type="latent",
    )
    out_ours = ours(
        "a photo of a cat", generator=torch.Generator().manual_seed(1), method="pix2pix_zero", **kwargs
    ).images
    out_peer = peer("a photo of a cat", generator=torch.Generator().manual_seed(1), **kwargs).images
    diff = (out_ours - out_peer).abs().max().item()
    assert diff <= TOL, diff
    # the guidance is really on: without it the result differs from the peer's guided result
    plain = ours(
        "a photo of a cat", generator=torch.Generator().manual_seed(1), method="word_swap", **kwargs
    ).images
    assert (plain - out_peer).abs().max().item() > 10 * max(diff, 1e-6)


def test_zero_roll_option_changes_the_inversion(tiny_dir):
    ours = _ours(tiny_dir)
    image, _, _ = _inputs(ours)
    common = dict(image=image, num_inference_steps=3, output_type="latent")
    a = ours.invert("a cat", generator=torch.Generator().manual_seed(0), allow_zero_roll=True, **common)
    b = ours.invert("a cat", generator=torch.Generator().manual_seed(0), **common)
    assert (a.latents - b.latents).abs().max() > 1e-5
