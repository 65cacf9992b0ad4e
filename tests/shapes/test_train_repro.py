import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from zerocon.errors import ZeroconError
from zerocon.shapes.data import HELD_OUT_CAPTIONS, TRAIN_CAPTIONS
from zerocon.shapes.tokenizers import build_bert_tokenizer, build_clip_tokenizer
from zerocon.shapes.train import psnr, run_stage
from zerocon.shapes.world import VOCABULARY, all_captions

TINY = {"steps": 3, "n_train": 32, "n_val": 8, "eval_every": 3, "save_every": 3, "batch_size": 8}


def test_held_out_captions_cover_every_attribute_in_training():
    assert len(HELD_OUT_CAPTIONS) == 8 and not set(HELD_OUT_CAPTIONS) & set(TRAIN_CAPTIONS)
    assert len(TRAIN_CAPTIONS) + len(HELD_OUT_CAPTIONS) == len(all_captions())
    for word in VOCABULARY:
        assert any(word in c.split() for c in TRAIN_CAPTIONS), word


def test_tokenizers_make_one_token_per_word(tmp_path):
    clip_tok = build_clip_tokenizer(tmp_path / "clip")
    for caption in all_captions()[:10]:
        ids = clip_tok(caption).input_ids
        assert len(ids) == 9 and ids[0] == clip_tok.bos_token_id and ids[-1] == clip_tok.eos_token_id
        assert clip_tok.decode(ids, skip_special_tokens=True).strip() == caption
    bert = build_bert_tokenizer(tmp_path / "bert")
    ids = bert("a red circle on a gray background").input_ids
    assert len(ids) == 9 and bert.unk_token_id not in ids


@pytest.mark.parametrize("stage", ["clip", "vae", "blip"])
def test_same_command_and_seed_give_same_metrics(tmp_path, stage):
    a = run_stage(stage, tmp_path / "a", {**TINY, "seed": 3})
    b = run_stage(stage, tmp_path / "b", {**TINY, "seed": 3})
    assert a["metrics"] == b["metrics"] and a["steps_done"] == 3
    weights = "model.safetensors" if stage != "vae" else "diffusion_pytorch_model.safetensors"
    wa = load_file(tmp_path / "a" / stage / "model" / weights)
    wb = load_file(tmp_path / "b" / stage / "model" / weights)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    curve = [json.loads(line) for line in (tmp_path / "a" / stage / "curve.jsonl").read_text().splitlines()]
    assert curve and curve[0]["step"] == 3


def test_blip_continues_from_a_saved_captioner(tmp_path):
    """``init_from`` starts from the saved model and its tokenizer (zero steps: the weights come back unchanged)."""
    run_stage("blip", tmp_path / "a", {**TINY, "seed": 3})
    saved = tmp_path / "a" / "blip" / "model"
    run_stage("blip", tmp_path / "b", {**TINY, "seed": 4, "steps": 0, "init_from": str(saved)})
    wa = load_file(saved / "model.safetensors")
    wb = load_file(tmp_path / "b" / "blip" / "model" / "model.safetensors")
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
    assert (tmp_path / "b" / "blip" / "model" / "tokenizer.json").is_file()


def test_different_seed_gives_different_weights(tmp_path):
    run_stage("clip", tmp_path / "a", {**TINY, "seed": 1})
    run_stage("clip", tmp_path / "b", {**TINY, "seed": 2})
    wa = load_file(tmp_path / "a" / "clip" / "model" / "model.safetensors")
    wb = load_file(tmp_path / "b" / "clip" / "model" / "model.safetensors")
    assert not all(torch.equal(wa[k], wb[k]) for k in wa)


def test_unknown_stage_or_setting_fails(tmp_path):
    with pytest.raises(ZeroconError):
        run_stage("gan", tmp_path, {})
    with pytest.raises(ZeroconError):
        run_stage("clip", tmp_path, {"nonsense": 1})


def test_psnr_matches_definition():
    a = torch.zeros(1, 3, 4, 4)
    b = torch.full((1, 3, 4, 4), 0.2)  # 0.1 on the [0, 1] scale -> MSE 0.01 -> 20 dB
    assert abs(psnr(a, b).item() - 20.0) < 1e-4
    assert np.isclose(psnr(a, a).item(), 100.0)


def test_blip_vision_tower_started_from_clip_computes_the_same_features(tmp_path):
    """Weights map one to one; the only difference is CLIP's pre-layernorm (dropped), so with that set to the
    identity CLIP's tokens after its post-layernorm equal BLIP's."""
    from zerocon.shapes.train import (
        BlipConfig,
        ClipConfig,
        blip_vision_state_from_clip,
        build_blip,
        build_clip,
    )

    torch.manual_seed(0)
    clip = build_clip(
        ClipConfig(hidden=32, layers=1, heads=2, vision_layers=2), build_clip_tokenizer(tmp_path / "c")
    )
    cfg = BlipConfig(hidden=32, layers=1, heads=2, vision_layers=2, init_vision_from="clip")
    blip = build_blip(cfg, build_bert_tokenizer(tmp_path / "b"))
    blip.vision_model.load_state_dict(blip_vision_state_from_clip(clip.vision_model.state_dict()))
    vision = clip.vision_model.eval()
    vision.pre_layrnorm = torch.nn.Identity()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        want = vision.post_layernorm(vision(pixel_values=x).last_hidden_state)
        got = blip.vision_model.eval()(pixel_values=x).last_hidden_state
    assert torch.allclose(want, got, atol=1e-5)


def _tiny_unet_run(run, **settings):
    """A 3-step UNet stage of (16, 32) channels on the bundle's text encoder and VAE; its EMA weights."""
    from zerocon.models import BUNDLED

    bundle = BUNDLED["shapes"]
    if not bundle.is_dir():
        pytest.skip("the bundled ShapesWorld model is not present")
    cfg = {**TINY, "seed": 3, "channels": (16, 32), "clip_dir": str(bundle), "vae_dir": str(bundle / "vae")}
    cfg.update(eval_samples=2, eval_steps=2, final_eval_samples=2, final_eval_steps=2, **settings)
    result = run_stage("unet", run, cfg)
    return result, load_file(run / "unet" / "model" / "diffusion_pytorch_model.safetensors")


def test_unet_stage_is_reproducible_and_bf16_autocast_changes_its_arithmetic(tmp_path):
    first, wa = _tiny_unet_run(tmp_path / "a")
    again, wb = _tiny_unet_run(tmp_path / "b", device="cpu")  # the default device, named
    assert first["steps_done"] == 3 and first["metrics"] == again["metrics"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    bf16, wc = _tiny_unet_run(tmp_path / "c", bf16=True)
    assert bf16["config"]["bf16"] is True and all(torch.isfinite(w).all() for w in wc.values())
    assert not all(torch.equal(wa[k], wc[k]) for k in wa), "bf16 autocast must change the training arithmetic"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_unet_stage_trains_on_a_gpu(tmp_path):
    result, weights = _tiny_unet_run(tmp_path / "gpu", device="cuda", bf16=True)
    assert result["steps_done"] == 3 and all(torch.isfinite(w).all() for w in weights.values())


def test_stages_without_device_support_refuse_another_device(tmp_path):
    with pytest.raises(ZeroconError, match="CPU only"):
        run_stage("clip", tmp_path, {**TINY, "device": "cuda"})
    assert not (tmp_path / "clip").exists()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_vae_stages_train_on_a_gpu(tmp_path):
    for stage in ("vae", "vae_decoder"):
        result = run_stage(stage, tmp_path, {**TINY, "device": "cuda", "bf16": True})
        assert result["steps_done"] == 3 and result["metrics"]["psnr_val_seen"] > 0
