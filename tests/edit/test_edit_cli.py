"""``zerocon edit`` / ``zerocon invert`` end to end on a tiny pipeline folder (with a tiny BLIP)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from zerocon.cli import main


@pytest.fixture
def photos(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((40, 64, 3)) * 255).astype("uint8")).save(folder / "wide.png")
    Image.fromarray((rng.random((48, 48)) * 255).astype("uint8"), mode="L").save(folder / "gray.jpg")
    return folder


def _common(model, tmp_path):
    return [
        "--model",
        str(model),
        "--steps",
        "2",
        "--out",
        str(tmp_path / "out"),
        "--cache-dir",
        str(tmp_path / "cache"),
        "--quiet",
    ]


def test_edit_writes_everything_and_reuses_the_inversion(tiny_blip_dir, photos, tmp_path, capsys):
    argv = [
        "edit",
        str(photos),
        "--target",
        "cat->dog",
        "--method",
        "pix2pix_zero",
        *_common(tiny_blip_dir, tmp_path),
    ]
    assert main(argv) == 0
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["gray", "wide"]
    for name in ("gray", "wide"):
        files = sorted(p.name for p in (out / name).iterdir())
        assert files == ["comparison.png", "edit.png", "reconstruction.png", "record.json"]
    record = json.loads((out / "wide" / "record.json").read_text())
    assert record["method"] == "pix2pix_zero" and record["seed"] == 0
    assert record["caption"].startswith("a photography of")
    assert record["inversion_cache_hit"] is False
    assert record["settings"]["num_inference_steps"] == 2
    assert (
        record["settings"]["guidance_scale"] == 5.0 and record["settings"]["use_templates"] is True
    )  # resolved
    assert {"caption", "inversion", "edit", "total"} <= set(record["timings_seconds"])
    assert Image.open(out / "wide" / "edit.png").size == (32, 20)
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2
    first = np.asarray(Image.open(out / "wide" / "edit.png"))
    assert record["scheduler"]["class"] == "DDIMScheduler" and record["device"] == "cpu"
    assert record["dtype"] == "float32" and record["captioner"].endswith("caption_generator")
    # the same command again: the finished outputs are kept as they are
    stamp = (out / "wide" / "record.json").stat().st_mtime_ns
    assert main(argv) == 0
    assert (out / "wide" / "record.json").stat().st_mtime_ns == stamp
    assert "2 input(s) already done" in capsys.readouterr().err
    # into another folder: inversions come from the cache and the result is identical
    argv[argv.index("--out") + 1] = str(tmp_path / "again")
    assert main(argv) == 0
    record = json.loads((tmp_path / "again" / "wide" / "record.json").read_text())
    assert record["inversion_cache_hit"] is True
    assert np.array_equal(first, np.asarray(Image.open(tmp_path / "again" / "wide" / "edit.png")))
    assert not [p for p in out.iterdir() if p.name.startswith(".")]
    # another setting is another request: the folder is made again
    assert main([*argv[:-9], *_common(tiny_blip_dir, tmp_path), "--seed", "1"]) == 0
    assert (out / "wide" / "record.json").stat().st_mtime_ns != stamp


def test_bad_inputs_are_listed_good_ones_processed(tiny_blip_dir, photos, tmp_path, capsys):
    (photos / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nthis is not a png")
    argv = [
        "edit",
        str(photos / "wide.png"),
        str(photos / "broken.png"),
        str(tmp_path / "missing.png"),
        "--target",
        "cat->dog",
        "--method",
        "word_swap",
        *_common(tiny_blip_dir, tmp_path),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "edited 1 of 3 inputs" in err and "broken.png" in err and "missing.png" in err
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["wide"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--target", ""], "target is empty"),
        (["--target", "cat->dog", "--method", "magic"], "unknown method 'magic'"),
        (["--target", "dog", "--source", "dog"], "identical to the source"),
        ([], "give --target"),
    ],
)
def test_bad_settings_fail_fast_with_one_line(tiny_blip_dir, photos, tmp_path, capsys, extra, message):
    assert main(["edit", str(photos / "wide.png"), *extra, *_common(tiny_blip_dir, tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_missing_model_is_one_line_and_writes_nothing(photos, tmp_path, capsys, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    argv = [
        "edit",
        str(photos / "wide.png"),
        "--target",
        "cat->dog",
        "--model",
        "nobody-here/no-such-model",
        "--out",
        str(tmp_path / "out"),
        "--quiet",
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--model DIR" in err[0]
    assert not (tmp_path / "out").exists()


def test_invert_command_and_direction_files(tiny_blip_dir, photos, tmp_path):
    argv = ["invert", str(photos / "wide.png"), "--reconstruct", *_common(tiny_blip_dir, tmp_path)]
    assert main(argv) == 0
    folder = tmp_path / "out" / "wide"
    assert sorted(p.name for p in folder.iterdir()) == [
        "inversion.safetensors",
        "reconstruction.png",
        "record.json",
    ]
    record = json.loads((folder / "record.json").read_text())
    assert record["latent_shape"] == [1, 4, 16, 16]
    # the edit reuses that inversion (same image, model and settings)
    (tmp_path / "s.txt").write_text("a photo of a cat\na cat on the grass\n")
    (tmp_path / "t.txt").write_text("a photo of a dog\na dog on the grass\n")
    argv = [
        "edit",
        str(photos / "wide.png"),
        "--source-sentences",
        str(tmp_path / "s.txt"),
        "--target-sentences",
        str(tmp_path / "t.txt"),
        "--save-direction",
        str(tmp_path / "d.safetensors"),
        *_common(tiny_blip_dir, tmp_path),
    ]
    assert main(argv) == 0
    record = json.loads((folder / "record.json").read_text())
    assert record["inversion_cache_hit"] is True and record["direction"]["kind"] == "files"
    assert (tmp_path / "d.safetensors").is_file()


def test_help_shows_every_default(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "--steps STEPS DDIM steps (inversion and edit) (default: 50)",
        "(default: auto)",  # device, dtype, captioner
        "--method METHOD zerocon, pix2pix_zero or word_swap (default: zerocon)",
        "(default: shapes;",
        "Salesforce/blip-image-captioning-base",
    ):
        assert shown in text, shown
    assert "(default: None)" not in text


def test_the_toy_model_is_never_used_silently(tmp_path, capsys):
    from zerocon.shapes.assemble import example_scene

    example_scene().pil().save(tmp_path / "scene.png")
    argv = ["edit", str(tmp_path / "scene.png"), "--target", "red->blue", "--steps", "2", "--out"]
    assert main([*argv, str(tmp_path / "out"), "--no-cache", "--quiet"]) == 0
    err = capsys.readouterr().err
    notices = [line for line in err.splitlines() if line.startswith("zerocon: notice: no --model")]
    assert len(notices) == 1 and "ShapesWorld toy model" in notices[0] and "stable-diffusion" in notices[0]
    record = json.loads((tmp_path / "out" / "scene" / "record.json").read_text())
    assert record["model"] == "shapes" and record["captioner"].endswith("caption_generator")


def test_memory_options_run_and_leave_the_edit_unchanged(tiny_dir, photos, tmp_path):
    base = ["edit", str(photos / "wide.png"), "--target", "cat->dog", "--caption", "a photo of a cat"]
    base += ["--model", str(tiny_dir), "--steps", "2", "--no-cache", "--quiet", "--device", "cpu"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    lean = ["--cpu-offload", "--vae-slicing", "--vae-tiling"]
    assert main([*base, "--out", str(tmp_path / "lean"), *lean]) == 0
    record = json.loads((tmp_path / "lean" / "wide" / "record.json").read_text())
    assert record["cpu_offload"] and record["vae_slicing"] and record["vae_tiling"]
    plain, lean_edit = (np.asarray(Image.open(tmp_path / d / "wide" / "edit.png")) for d in ("plain", "lean"))
    assert np.array_equal(plain, lean_edit)


def test_guidance_flags_are_named_after_their_settings_and_old_names_still_work():
    import argparse

    from zerocon.edit.cli import _config, register

    parser = argparse.ArgumentParser()
    register(parser.add_subparsers(), "edit")

    def config(*flags):
        return _config(parser.parse_args(["edit", "x.png", "--target", "a->b", *flags]))

    new = config("--cross-attention-guidance-amount", "0.3", "--patch-nce-weight", "2", "--patch-nce-scale",
                 "absolute", "--patch-nce-patches", "64", "--patch-nce-t-range", "100", "900")  # fmt: skip
    old = config("--xa-guidance", "0.3", "--nce-weight", "2", "--nce-scale", "absolute", "--nce-patches", "64",
                 "--nce-t-range", "100", "900")  # fmt: skip
    assert new == old
    assert new.cross_attention_guidance_amount == 0.3
    assert (new.patch_nce.weight, new.patch_nce.scale, new.patch_nce.num_patches) == (2.0, "absolute", 64)
    assert (new.patch_nce.t_min, new.patch_nce.t_max) == (100, 900)
    default = config()
    assert default.patch_nce.weight is None and default.patch_nce.scale is None  # the model's choice
    assert default.cross_attention_guidance_amount == 0.1
    help_text = parser._subparsers._group_actions[0].choices["edit"].format_help()
    assert "--patch-nce-weight" in help_text and "--nce-weight" not in help_text
