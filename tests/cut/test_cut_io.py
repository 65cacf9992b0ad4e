"""CUT data, translation and CLI: bad inputs, any image size, checkpoints of other presets, corrupt files."""

import json
import warnings

import numpy as np
import pytest
import torch
from cut_helpers import toy_domains
from PIL import Image

from zerocon.cli import main
from zerocon.cut.data import SingleImageDataset, UnpairedDataset, resolve_domains
from zerocon.cut.translate import CUTTranslator, pad_to_multiple
from zerocon.errors import ZeroconError
from zerocon.io import load_checkpoint

TINY_ARGS = ["--size", "32", "--load-size", "36", "--ngf", "8", "--ndf", "8", "--n-blocks", "2"]
TINY_ARGS += ["--num-patches", "16", "--no-progress", "--sample-every", "2", "--checkpoint-every", "2"]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("cutrun")
    toy_domains(root / "data")
    run = root / "run"
    assert main(["cut", "train", str(root / "data"), "--out", str(run), "--steps", "2", *TINY_ARGS]) == 0
    return run


def test_bad_files_are_skipped_in_one_warning_and_modes_converted(tmp_path):
    a, b = toy_domains(tmp_path)
    (a / "broken.png").write_bytes(b"not an image")
    (a / "cut_off.jpg").write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 20)
    Image.new("L", (40, 40), 90).save(a / "gray.png")
    Image.new("RGBA", (40, 40), (10, 200, 30, 128)).save(b / "rgba.png")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = UnpairedDataset(a, b, size=32, load_size=36)
    messages = [str(w.message) for w in caught if "skipped" in str(w.message)]
    assert len(messages) == 1 and "skipped 2 of 7" in messages[0]
    assert len(data.images_a) == 5 and len(data.images_b) == 5 and len(data) == 5
    x, y = data.item(0, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (3, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_resize_crop_stops_in_the_decay_phase(tmp_path):
    """As in the reference code: crops of load_size images while the LR is constant, then plain resizes."""
    from zerocon.cut.config import preset

    a, b = toy_domains(tmp_path)
    cfg = preset("cut", size=32, load_size=36)
    start = cfg.plain_from_step(10)
    assert start == 6  # 10 steps, half decaying: the LR multiplier first drops below 1 at step 6
    assert preset("cut", size=32, crop_during_decay=True).plain_from_step(10) is None
    data = UnpairedDataset(a, b, size=32, load_size=36, flip=False, plain_from_step=start)
    plain = np.asarray(Image.open(sorted(a.iterdir())[0]).convert("RGB").resize((32, 32), Image.BICUBIC))
    expected = torch.from_numpy(plain).permute(2, 0, 1).float() / 127.5 - 1
    crops = set()
    for step in range(10):
        data.set_step(step)
        x, _ = data.item(0, torch.Generator().manual_seed(step))
        assert x.shape == (3, 32, 32)
        if step < start:
            crops.add(round(float((x * torch.arange(32.0)).sum()), 3))
            assert not torch.allclose(x, expected, atol=1e-6)
        else:
            assert torch.allclose(x, expected, atol=1e-6)
    assert len(crops) > 1  # random crop positions before the decay phase


def test_empty_or_missing_folders_are_clear_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    a, _ = toy_domains(tmp_path / "ok")
    with pytest.raises(ZeroconError, match="no image files"):
        UnpairedDataset(a, tmp_path / "empty", size=32)
    with pytest.raises(ZeroconError, match="folder not found"):
        UnpairedDataset(tmp_path / "missing", a, size=32)
    with pytest.raises(ZeroconError, match="trainA"):
        resolve_domains(None, None, tmp_path / "empty")
    assert resolve_domains(None, None, tmp_path / "ok") == (
        tmp_path / "ok" / "trainA",
        tmp_path / "ok" / "trainB",
    )


def test_single_image_dataset_needs_one_image_per_domain(tmp_path):
    a, b = toy_domains(tmp_path, count=1, side=96)
    data = SingleImageDataset(a, b, size=32, load_size=96, zoom_range=(0.5, 1.0))
    x, y = data.item(0, torch.Generator().manual_seed(1))
    assert x.shape == y.shape == (3, 32, 32)
    toy_domains(tmp_path / "two", count=2)
    with pytest.raises(ZeroconError, match="exactly one image"):
        SingleImageDataset(tmp_path / "two" / "trainA", tmp_path / "two" / "trainB")


def test_translate_any_size_batched_equals_one_by_one(trained_run):
    translator = CUTTranslator.from_checkpoint(trained_run)
    rng = np.random.default_rng(0)
    images = [
        Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8))
        for h, w in ((37, 50), (37, 50), (64, 33))
    ]
    batched = translator.translate(images, batch_size=4)
    single = [translator.translate([im], batch_size=1)[0] for im in images]
    assert [im.size for im in batched] == [(50, 37), (50, 37), (33, 64)]
    for x, y in zip(batched, single):
        assert np.abs(np.asarray(x, np.int16) - np.asarray(y, np.int16)).max() <= 1
    padded, size = pad_to_multiple(torch.zeros(1, 3, 37, 50))
    assert padded.shape[-2:] == (40, 52) and size == (37, 50)


def test_translate_cli_lists_bad_files_and_exits_non_zero(trained_run, tmp_path, capsys):
    folder = tmp_path / "mixed"
    folder.mkdir()
    Image.new("RGB", (45, 40), (200, 10, 10)).save(folder / "good1.png")
    Image.new("L", (36, 36), 100).save(folder / "good2.png")
    (folder / "bad.jpg").write_bytes(b"\x00" * 50)
    out = tmp_path / "out"
    code = main(["cut", "translate", "--checkpoint", str(trained_run), str(folder), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "bad.jpg" in err
    assert sorted(p.name for p in out.iterdir()) == ["good1.png", "good2.png"]
    assert Image.open(out / "good1.png").size == (45, 40)
    assert (
        main(
            [
                "cut",
                "translate",
                "--checkpoint",
                str(trained_run),
                str(folder / "good1.png"),
                "--out",
                str(out),
            ]
        )
        == 0
    )


def test_checkpoint_of_another_preset_or_corrupt_is_a_clear_error(trained_run, tmp_path, capsys):
    with pytest.raises(ZeroconError, match="'cut' checkpoint, not 'fastcut'"):
        CUTTranslator.from_checkpoint(trained_run, preset="fastcut")
    code = main(
        [
            "cut",
            "train",
            "--domain-a",
            "x",
            "--domain-b",
            "y",
            "--out",
            str(trained_run),
            "--resume",
            "--preset",
            "fastcut",
        ]
    )
    assert code == 2 and "not 'fastcut'" in capsys.readouterr().err
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(trained_run / "checkpoint", broken)
    weights = broken / "networks.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with pytest.raises(ZeroconError, match="corrupt checkpoint"):
        CUTTranslator.from_checkpoint(broken)
    with pytest.raises(ZeroconError, match="not found"):
        CUTTranslator.from_checkpoint(tmp_path / "nowhere")


def test_cli_run_writes_samples_plot_checkpoint_and_resumes(trained_run):
    assert (trained_run / "samples" / "step_000002.png").is_file() and (trained_run / "losses.png").is_file()
    config = json.loads((trained_run / "checkpoint" / "config.json").read_text())
    assert config["method"]["method"] == "cut" and config["method"]["preset"] == "cut" and config["step"] == 2
    before, _ = load_checkpoint(trained_run / "checkpoint")
    data = trained_run.parent / "data"
    assert (
        main(
            [
                "cut",
                "train",
                str(data),
                "--out",
                str(trained_run),
                "--steps",
                "3",
                "--resume",
                "--no-progress",
            ]
        )
        == 0
    )
    resumed = json.loads((trained_run / "checkpoint" / "config.json").read_text())
    assert resumed["step"] == 3 and resumed["method"]["preset"] == "cut"
    # the resumed run carries the first run's history on, and its one extra step really trained
    assert [h["step"] for h in resumed["history"]] == [2, 3]
    assert resumed["history"][0] == config["history"][0]
    assert (trained_run / "samples" / "step_000003.png").is_file()
    after, _ = load_checkpoint(trained_run / "checkpoint")
    weights = [k for k in before["networks"] if k.startswith("G.") and k.endswith(".weight")]
    assert weights and any(not torch.equal(before["networks"][k], after["networks"][k]) for k in weights)
