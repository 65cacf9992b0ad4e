"""SDEdit (Meng et al., ICLR 2022), the baseline editor without inversion: noise the input's latent part of the
way along a DDIM trajectory and denoise it with the target prompt."""

from __future__ import annotations

import copy
from typing import Any

import torch
from PIL import Image


@torch.no_grad()
def sdedit(
    pipe: Any, image: Image.Image, prompt: str, strength: float, steps: int, guidance: float, seed: int
) -> Image.Image:
    """SDEdit: noise the image's latent to ``strength`` of a DDIM trajectory and denoise with ``prompt``."""
    sched = copy.deepcopy(pipe.recipe_schedulers()[0])  # DDIM with the checkpoint's schedule
    device = pipe._execution_device
    sched.set_timesteps(steps, device=device)
    start = min(steps - 1, int(round(steps * (1 - strength))))
    timesteps = sched.timesteps[start:]
    gen = torch.Generator().manual_seed(seed)
    x = pipe.image_processor.preprocess(image).to(device=device, dtype=pipe.vae.dtype)
    z0 = pipe.vae.encode(x).latent_dist.mode().float() * pipe.vae.config.scaling_factor
    z = sched.add_noise(z0, torch.randn(z0.shape, generator=gen).to(device), timesteps[:1])
    cond, uncond = pipe.encode_prompt(prompt, device, 1, True, "")
    for t in timesteps:
        eps = pipe.unet(torch.cat([z, z]).to(pipe.unet.dtype), t, torch.cat([uncond, cond])).sample.float()
        e_u, e_c = eps.chunk(2)
        z = sched.step(e_u + guidance * (e_c - e_u), t, z).prev_sample
    out = pipe.vae.decode((z / pipe.vae.config.scaling_factor).to(pipe.vae.dtype)).sample
    return pipe.image_processor.postprocess(out.float(), output_type="pil")[0]
