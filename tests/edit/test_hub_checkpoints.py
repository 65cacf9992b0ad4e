"""The path users take: hub checkpoints in their own layouts, in an offline Hugging Face cache, through the CLI.

Tiny random models are saved under ``CompVis/stable-diffusion-v1-4`` (PNDM scheduler, safety checker),
``stabilityai/stable-diffusion-2-1`` (v-prediction DDIM, linear projections, upcast attention) and
``Salesforce/blip-image-captioning-base`` in a temporary cache; ``zerocon edit`` runs in a subprocess with
``HF_HOME`` pointing there and ``HF_HUB_OFFLINE=1``, as on a user's machine without a network.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hub_layouts import BLIP, SD14, SD21, ddim_copy, offline_env, save_blip_repo, save_sd_repo
from PIL import Image

from zerocon.edit.pipeline import EditConfig, ZeroConPipeline


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub")
    cache = root / "hf" / "hub"
    folders = {repo: save_sd_repo(cache, repo, root / "work") for repo in (SD14, SD21)}
    folders[BLIP] = save_blip_repo(cache, root / "work")
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype("uint8")).save(root / "cat.png")
    return {"root": root, "hf_home": root / "hf", "photo": root / "cat.png", **folders}


def _edit(hub: dict[str, Path], out: str, *extra: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "zerocon.cli", "edit", str(hub["photo"]), "--target", "cat->dog"]
    argv += ["--steps", "3", "--out", str(hub["root"] / out), "--no-cache", "--quiet", *extra]
    return subprocess.run(
        argv, capture_output=True, text=True, env=offline_env(hub["hf_home"]), timeout=600, cwd=hub["root"]
    )


def _record(hub: dict[str, Path], out: str) -> dict:
    return json.loads((hub["root"] / out / "cat" / "record.json").read_text())


def test_sd14_from_the_cache_edits_with_ddim_and_captions_with_blip(hub):
    done = _edit(hub, "sd14", "--model", SD14)
    assert done.returncode == 0, done.stderr[-3000:]
    record = _record(hub, "sd14")
    scheduler = record["scheduler"]
    assert (scheduler["class"], scheduler["checkpoint_scheduler"]) == ("DDIMScheduler", "PNDMScheduler")
    assert scheduler["steps_offset"] == 1 and scheduler["beta_schedule"] == "scaled_linear"
    assert scheduler["clip_sample"] is False and scheduler["set_alpha_to_one"] is False
    assert record["captioner"] == BLIP and record["caption_source"] == "captioner"
    assert (record["device"], record["dtype"]) == ("cpu", "float32")
    # the caption is the cached BLIP's, with diffusers' prompt prefix
    blip = ZeroConPipeline.from_pretrained(hub[SD14], captioner=str(hub[BLIP]))
    resized, _ = blip.prepare_image(hub["photo"])
    assert record["caption"] == blip.caption_image(resized, EditConfig())
    assert record["caption"].startswith("a photography of")
    # the tiny BLIP never says "cat": the direction says it is made of templates, and the user was told
    assert record["direction"]["kind"] == "templates" and "'cat' is not in the caption" in done.stderr


def test_pndm_checkpoint_gives_the_edit_of_its_ddim_copy(hub, tmp_path):
    done = _edit(hub, "sd14-caption", "--model", SD14, "--caption", "a photo of a cat", "--method", "zerocon")
    assert done.returncode == 0, done.stderr[-3000:]
    cli_edit = np.asarray(Image.open(hub["root"] / "sd14-caption" / "cat" / "edit.png"))
    copy = ZeroConPipeline.from_pretrained(ddim_copy(hub[SD14], tmp_path / "ddim"))
    copy.set_progress_bar_config(disable=True)
    assert type(copy.scheduler).__name__ == "DDIMScheduler"
    config = EditConfig(num_inference_steps=3)
    expected = copy.edit(hub["photo"], target="cat->dog", caption="a photo of a cat", config=config)
    # one rounding level at most: the CLI process runs on one thread, this one may not
    assert np.abs(cli_edit.astype(int) - np.asarray(expected.edit, dtype=int)).max() <= 1
    # the drop-in __call__ keeps the scheduler it is given (PNDM here), says so once, and edits differently
    pndm = ZeroConPipeline.from_pretrained(hub[SD14])
    pndm.set_progress_bar_config(disable=True)
    assert type(pndm.scheduler).__name__ == "PNDMScheduler"
    same = pndm.edit(hub["photo"], target="cat->dog", caption="a photo of a cat", config=config)
    assert np.array_equal(np.asarray(same.edit), np.asarray(expected.edit))
    inversion = pndm.invert_image(hub["photo"], caption="a photo of a cat", config=config)
    kwargs = dict(
        source_embeds=pndm.get_embeds(["a photo of a cat"]),
        target_embeds=pndm.get_embeds(["a photo of a dog"]),
        num_inference_steps=3,
        latents=inversion.latents,
        output_type="latent",
    )
    with pytest.warns(UserWarning, match="PNDMScheduler is not DDIM"):
        with_pndm = pndm("a photo of a cat", **kwargs).images
    with_ddim = pndm("a photo of a cat", scheduler=pndm.recipe_schedulers()[0], **kwargs).images
    assert (with_pndm - with_ddim).abs().max().item() > 1e-3


def test_sd21_v_prediction_from_the_cache(hub):
    unet = ZeroConPipeline.from_pretrained(hub[SD21]).unet.config
    assert unet.use_linear_projection and unet.upcast_attention
    done = _edit(hub, "sd21", "--model", SD21, "--xa-guidance", "0.01")
    assert done.returncode == 0, done.stderr[-3000:]
    record = _record(hub, "sd21")
    assert record["scheduler"]["prediction_type"] == "v_prediction"
    assert record["scheduler"]["checkpoint_scheduler"] == "DDIMScheduler" and record["captioner"] == BLIP
    edit = np.asarray(Image.open(hub["root"] / "sd21" / "cat" / "edit.png"), dtype=float)
    assert edit.std() > 1.0  # a picture, not a flat (NaN-cast) image


def test_a_captioner_that_cannot_be_found_is_one_line_naming_the_way_out(hub):
    done = _edit(hub, "missing", "--model", SD14, "--captioner", "nobody/no-blip")
    assert done.returncode == 2
    errors = [line for line in done.stderr.splitlines() if line.startswith("zerocon: error")]
    assert len(errors) == 1 and "--captioner" in errors[0] and "--captioner none" in errors[0]
    assert not (hub["root"] / "missing" / "cat").exists()
    # the way out: no captioner, the template caption asked for explicitly (and announced)
    done = _edit(hub, "template", "--model", SD14, "--captioner", "none", "--source", "cat")
    assert done.returncode == 0, done.stderr[-3000:]
    record = _record(hub, "template")
    assert record["caption"] == "a photo of a cat" and record["caption_source"] == "template"
    assert record["captioner"] is None and "captioned 'a photo of a cat'" in done.stderr
    assert record["direction"]["kind"] == "word_swap+templates"
