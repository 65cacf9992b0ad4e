"""The bundled ShapesWorld models load and reach (a quick sample of) the metrics recorded next to them."""

import json

import pytest
import torch

from zerocon.models import SHAPES_DIR
from zerocon.shapes.data import val_split

METRICS = (
    json.loads((SHAPES_DIR / "metrics.json").read_text()) if (SHAPES_DIR / "metrics.json").exists() else {}
)


def _stage(name):
    assert name in METRICS.get("stages", {}), f"metrics.json has no record of the '{name}' stage"
    return METRICS["stages"][name]


def test_bundle_is_complete_and_small():
    for folder in ("pipeline", "clip"):
        assert (SHAPES_DIR / folder).is_dir()
    assert (SHAPES_DIR / "example.png").is_file()
    total = sum(p.stat().st_size for p in SHAPES_DIR.rglob("*") if p.is_file())
    assert total <= 25 * 2**20
    assert not list(SHAPES_DIR.rglob("*.bin")) and not list(SHAPES_DIR.rglob("*.pt"))
    for stage in ("clip", "vae", "unet", "blip"):
        record = _stage(stage)
        assert record["steps_done"] > 0 and record["command"].startswith("zerocon shapes train")


def test_edit_defaults_are_the_ones_chosen_on_tuning_scenes():
    """The bundle's edit guidance is the best scale of the recorded sweep on ShapesBench's tune split."""
    from pathlib import Path

    sweep = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "edit" / "shapes_guidance.json"
    if not sweep.is_file():
        pytest.skip(f"the sweep record {sweep} belongs to the repository, not to an installed package")
    chosen = json.loads((SHAPES_DIR / "pipeline" / "model_index.json").read_text())["edit_defaults"]
    record = json.loads(sweep.read_text())
    assert record["split"] == "tune" and chosen["guidance_scale"] == record["best_scale"]
    assert chosen["use_templates"] is False  # the world's vocabulary has no template words
    nce = json.loads((sweep.parent / "shapes_nce_weight_relative.json").read_text())
    assert (
        nce["points"][nce["chosen"]]["edit_acc"] >= nce["points"]["pix2pix_zero"]["edit_acc"] - nce["margin"]
    )
    assert chosen["patch_nce_weight"] == nce["chosen_weight"] and chosen["patch_nce_scale"] == nce["scale"]


def _same_samples(measured: float, recorded: float, n: int, flips: int = 1) -> bool:
    """A re-measurement on the record's own samples: equal up to ``flips`` samples judged the other way
    (arithmetic in another order can tip a borderline sample)."""
    return abs(measured - recorded) <= flips / n + 1e-9


def test_clip_zero_shot_reproduces_its_record():
    from transformers import CLIPModel, CLIPTokenizer

    from zerocon.shapes.train import clip_accuracy

    model = CLIPModel.from_pretrained(SHAPES_DIR / "clip").eval()
    tokenizer = CLIPTokenizer.from_pretrained(SHAPES_DIR / "clip")
    stage = _stage("clip_vision" if "clip_vision" in METRICS["stages"] else "clip")
    n = stage["config"]["n_val"]
    for split, held_out in (("val_seen_captions", False), ("val_heldout_captions", True)):
        acc = clip_accuracy(model, tokenizer, val_split(n, held_out=held_out))  # the record's scenes
        for key, value in stage["metrics"][split].items():
            assert _same_samples(acc[key], value, n), (split, key, acc[key], value)


def test_vae_reconstructs_held_out_scenes():
    from diffusers import AutoencoderKL

    from zerocon.shapes.train import vae_psnr

    vae = AutoencoderKL.from_pretrained(SHAPES_DIR / "pipeline" / "vae")
    stage = "vae_decoder" if "vae_decoder" in METRICS["stages"] else "vae"
    n_val = _stage(stage)["config"]["n_val"]
    value = vae_psnr(vae, val_split(n_val, held_out=True))  # the same held-out scenes as the record
    assert abs(value - _stage(stage)["metrics"]["psnr_val_heldout"]) < 0.05
    assert value >= 30.0  # the bar, on held-out scenes
    assert vae.config.scaling_factor != 1.0


def test_blip_reproduces_its_record():
    from transformers import BlipForConditionalGeneration, BlipProcessor

    from zerocon.shapes.train import blip_exact_match

    model = BlipForConditionalGeneration.from_pretrained(SHAPES_DIR / "pipeline" / "caption_generator")
    processor = BlipProcessor.from_pretrained(SHAPES_DIR / "pipeline" / "caption_processor")
    stage = _stage("blip")
    n = stage["config"]["n_val"]
    for key, held_out in (("exact_match_val_seen", False), ("exact_match_val_heldout", True)):
        exact = blip_exact_match(model, processor.tokenizer, val_split(n, held_out=held_out))
        assert _same_samples(exact, stage["metrics"][key], n), (key, exact, stage["metrics"][key])


def test_pipeline_loads_by_name_and_generates():
    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.shapes.data import HELD_OUT_CAPTIONS
    from zerocon.shapes.train import generate, oracle_agreement

    pipe = ZeroConPipeline.from_pretrained("shapes")
    for name in (
        "vae",
        "text_encoder",
        "tokenizer",
        "unet",
        "scheduler",
        "caption_generator",
        "caption_processor",
    ):
        assert getattr(pipe, name) is not None, name
    captions = list(HELD_OUT_CAPTIONS)  # 8 captions never seen in training, every shape and colour
    images = generate(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, captions, steps=10)
    assert images.shape == (8, 3, 64, 64) and torch.isfinite(images).all()
    read = oracle_agreement(images, captions)
    # recorded at 50 steps on 256 such generations: colour and background 100 %, shape 94 % (all 8 here)
    assert read["background"] == 1.0 and read["color"] == 1.0 and read["shape"] >= 6 / 8, read


@pytest.mark.slow
def test_unet_reproduces_its_recorded_oracle_agreement():
    """The full evaluation of the training command, re-run on the shipped weights, gives the recorded numbers."""
    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.shapes.train import UnetConfig, final_unet_metrics

    record = _stage("unet")
    cfg = UnetConfig(**{k: v for k, v in record["config"].items() if k in UnetConfig.__dataclass_fields__})
    pipe = ZeroConPipeline.from_pretrained("shapes")
    metrics = final_unet_metrics(pipe.unet, pipe.vae, pipe.text_encoder, pipe.tokenizer, cfg)
    for split in ("heldout_captions", "seen_captions"):
        for key in ("shape", "color", "shape_and_color", "background"):
            # the same 256 generations as the record; the shipped weights are float16-rounded
            n = record["metrics"][split]["n"]
            assert _same_samples(metrics[split][key], record["metrics"][split][key], n, flips=2), (split, key)


@pytest.mark.slow
def test_the_bundled_example_is_recoloured_in_place():
    """The main job's edit at 20 steps: a blue square on the input's background, where the red one was."""
    from PIL import Image

    from zerocon.edit.pipeline import EditConfig, ZeroConPipeline
    from zerocon.shapes.oracle import mask_iou, read_scene

    pipe = ZeroConPipeline.from_pretrained("shapes")
    pipe.set_progress_bar_config(disable=True)
    image = Image.open(SHAPES_DIR / "example.png").convert("RGB")
    source = read_scene(image)
    assert (source.shape, source.color, source.background) == ("square", "red", "white")
    config = EditConfig(method="zerocon", num_inference_steps=20, seed=0).for_model(pipe.config)
    result = pipe.edit(image, target="red->blue", config=config)
    assert result.caption == "a red square on a white background"
    edited = read_scene(result.edit.convert("RGB").resize((64, 64)))
    assert (edited.shape, edited.color, edited.background) == ("square", "blue", "white")
    assert mask_iou(edited.mask, source.mask) >= 0.5


def test_assemble_from_the_shipped_bundle_alone_rebuilds_it(tmp_path):
    """A run that trained nothing, assembled on the shipped bundle: every model and record comes from there."""
    from safetensors.torch import load_file

    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.shapes.assemble import assemble

    (tmp_path / "run").mkdir()
    out = assemble(tmp_path / "run", tmp_path / "bundle", base=SHAPES_DIR)
    for part in ("unet/diffusion_pytorch_model.safetensors", "vae/diffusion_pytorch_model.safetensors"):
        rebuilt, shipped = load_file(out / "pipeline" / part), load_file(SHAPES_DIR / "pipeline" / part)
        assert rebuilt.keys() == shipped.keys() and all(torch.equal(rebuilt[k], shipped[k]) for k in shipped)
    record = json.loads((out / "metrics.json").read_text())
    assert set(record["stages"]) >= {"clip", "vae", "unet", "blip"}
    assert record["stages"]["unet"]["from_base_bundle"] and record["sources"]["pipeline/unet"].startswith(
        "base"
    )
    pipe = ZeroConPipeline.from_pretrained(out / "pipeline")
    assert pipe.has_captioner and pipe.config.caption_prefix == ""
