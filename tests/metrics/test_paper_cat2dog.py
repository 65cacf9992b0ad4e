"""benchmarks/paper_cat2dog.py: stops clearly without weights; its whole logic runs on tiny models."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from module_files import ROOT, load_module_file
from PIL import Image

EDIT_TESTS = ROOT / "tests" / "edit"


bench = load_module_file(ROOT / "benchmarks" / "paper_cat2dog.py", "paper_cat2dog_under_test")


def test_without_weights_it_stops_with_a_clear_message(tmp_path, capsys):
    code = bench.main(["--model", "no-such-org/stable-diffusion-v1-4", "--out", str(tmp_path / "o"),
                       "--images", str(tmp_path)])  # fmt: skip
    assert code == 2
    err = capsys.readouterr().err
    # an empty --images folder is reported first; with photos, the weights are
    assert "no image files" in err
    Image.new("RGB", (64, 64)).save(tmp_path / "cat.png")
    assert bench.main(["--model", "no-such-org/stable-diffusion-v1-4", "--out", str(tmp_path / "o"),
                       "--images", str(tmp_path)]) == 2  # fmt: skip
    err = capsys.readouterr().err
    assert "no-such-org/stable-diffusion-v1-4" in err and "--model DIR" in err
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_protocol_on_tiny_models(tmp_path, tiny_nets, shared_data):
    tiny = load_module_file(EDIT_TESTS / "tiny.py", "edit_tiny_for_benchmark")
    model = tiny.save_tiny_pipeline(tmp_path / "sd")
    photos = tmp_path / "cats"
    photos.mkdir()
    masks = tmp_path / "masks"
    masks.mkdir()
    for src in sorted((shared_data / "pix2pix-zero-test-images" / "cats").glob("*.png"))[:1]:
        Image.open(src).convert("RGB").resize((64, 64)).save(photos / src.name)
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, (16, 16, 48, 48))
        mask.save(masks / src.name)
    out = tmp_path / "out"
    code = bench.main([
        "--model", str(model), "--images", str(photos), "--steps", "1", "--no-templates", "--captioner", "none", "--out", str(out),
        "--clip", str(tiny_nets["clip"]), "--dino", str(tiny_nets["dino"]),
        "--lpips-backbone", str(tiny_nets["lpips"]), "--masks", str(masks),
    ])  # fmt: skip
    assert code == 0
    runs = json.loads((out / "metrics.json").read_text())["runs"]
    assert [r["method"] for r in runs] == ["word_swap", "pix2pix_zero", "zerocon"]
    from zerocon.metrics.clip import ClipEmbedder

    clip = ClipEmbedder.from_pretrained(str(tiny_nets["clip"]))
    texts = clip.embed_texts(["a photo of a cat", "a photo of a dog"])
    (photo,) = sorted(photos.glob("*.png"))
    for run in runs:
        assert run["count"] == 1
        assert set(run["metrics"]) == {"clip_accuracy", "bg_lpips", "structure_distance"}
        (edit,) = sorted((out / run["method"]).glob("*.png"))
        edited = Image.open(edit).convert("RGB")
        assert edit.name == photo.name and edited.width == edited.height  # the square input's shape
        # CLIP accuracy recomputed by hand from the written edit: 100 when it is closer to "dog" than to "cat"
        image = torch.nn.functional.normalize(clip.embed_images([edited]), dim=-1)
        to_cat, to_dog = (image @ torch.nn.functional.normalize(texts, dim=-1).T)[0].tolist()
        assert run["metrics"]["clip_accuracy"] == (100.0 if to_dog > to_cat else 0.0)
        # the edit is not the input, so structure and background distances are positive
        source = Image.open(photo).convert("RGB").resize(edited.size)
        changed = np.abs(np.asarray(edited, float) - np.asarray(source, float)).mean()
        assert changed > 1.0
        assert run["metrics"]["bg_lpips"] > 0 and run["metrics"]["structure_distance"] > 0
    table = (out / "metrics.md").read_text()
    assert "| zerocon | 1 |" in table and "Structure dist. ↓" in table
    assert (out / "metrics.png").is_file() and json.loads((out / "captions.json").read_text())


def test_missing_metric_network_stops_before_editing(tmp_path, tiny_nets, capsys):
    model = tmp_path / "sd"  # any folder passes the weights check; metric networks are loaded before it
    model.mkdir()
    photos = tmp_path / "cats"
    photos.mkdir()
    Image.new("RGB", (64, 64), "gray").save(photos / "a.png")
    code = bench.main(["--model", str(model), "--images", str(photos), "--steps", "1", "--out", str(tmp_path / "o"),
                       "--clip", str(tiny_nets["clip"]), "--dino", str(tiny_nets["dino"])])  # fmt: skip
    assert code == 2
    assert "--lpips-backbone" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()
