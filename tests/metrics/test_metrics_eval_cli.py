"""Folder evaluation and the 'zerocon eval' command: JSON, Markdown table and plot; compare; clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image
from tiny_metric_nets import blob_image

from zerocon.cli import main
from zerocon.errors import ZeroconError
from zerocon.metrics.evaluate import EditEvalConfig, evaluate_edits

BOX = (20, 20, 44, 44)


def _edit_folders(root: Path, n: int = 4) -> dict[str, Path]:
    """Inputs; edits that change only a box (the object); masks of that box; and edits that change the rest."""
    folders = {k: root / k for k in ("inputs", "outputs", "masks", "bad")}
    for folder in folders.values():
        folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        image = blob_image(64, i)
        image.save(folders["inputs"] / f"im{i}.png")
        blob_image(64, i, box=BOX).save(folders["outputs"] / f"im{i}.png")
        mask = Image.new("L", (64, 64), 0)
        mask.paste(255, BOX)
        mask.save(folders["masks"] / f"im{i}.png")
        blob_image(64, 100 + i, box=BOX).save(folders["bad"] / f"im{i}.png")  # background replaced
    return folders


def _edit_args(folders, nets, outputs: str = "outputs") -> list[str]:
    return [
        "eval", "edits", "--inputs", str(folders["inputs"]), "--outputs", str(folders[outputs]),
        "--source", "cat", "--target", "dog", "--clip", str(nets["clip"]), "--dino", str(nets["dino"]),
        "--lpips-backbone", str(nets["lpips"]), "--masks", str(folders["masks"]),
    ]  # fmt: skip


def test_evaluate_edits_numbers(tmp_path, tiny_nets):
    folders = _edit_folders(tmp_path)
    config = EditEvalConfig(
        inputs=folders["inputs"], outputs=folders["outputs"], source="cat", target="dog",
        clip=str(tiny_nets["clip"]), dino=str(tiny_nets["dino"]), lpips_backbone=str(tiny_nets["lpips"]),
        masks=folders["masks"], batch_size=3,
    )  # fmt: skip
    good = evaluate_edits(config)
    assert good["count"] == 4 and len(good["per_image"]) == 4
    # the edit changed only the masked object: background LPIPS is exactly zero
    assert good["metrics"]["bg_lpips"] == 0.0
    config.outputs = folders["bad"]
    bad = evaluate_edits(config)
    assert bad["metrics"]["bg_lpips"] > 0.01
    assert bad["metrics"]["structure_distance"] > good["metrics"]["structure_distance"]
    # swapping the captions flips every CLIP decision
    config.source, config.target = "dog", "cat"
    swapped = evaluate_edits(config)
    assert [r["clip_correct"] for r in swapped["per_image"]] == [
        not r["clip_correct"] for r in bad["per_image"]
    ]
    assert swapped["metrics"]["clip_accuracy"] == pytest.approx(100.0 - bad["metrics"]["clip_accuracy"])


def test_eval_edits_cli_writes_json_table_and_plot_and_compares(tmp_path, tiny_nets, capsys):
    folders = _edit_folders(tmp_path)
    run_a, run_b, both = tmp_path / "run_a", tmp_path / "run_b", tmp_path / "both"
    assert main([*_edit_args(folders, tiny_nets), "--out", str(run_a), "--name", "zerocon"]) == 0
    data = json.loads((run_a / "metrics.json").read_text())
    assert data["method"] == "zerocon" and data["kind"] == "edits"
    assert set(data["metrics"]) == {"clip_accuracy", "clip_score", "bg_lpips", "structure_distance"}
    table = (run_a / "metrics.md").read_text()
    assert "| zerocon | 4 |" in table and "BG LPIPS ↓" in table
    assert (run_a / "metrics.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    args = [
        *_edit_args(folders, tiny_nets, "bad"),
        "--out",
        str(run_b),
        "--name",
        "word_swap",
        "--compare",
        str(run_a),
    ]
    assert main(args) == 0
    combined = json.loads((run_b / "metrics.json").read_text())
    assert [r["method"] for r in combined["runs"]] == ["zerocon", "word_swap"]
    table = (run_b / "metrics.md").read_text().splitlines()
    assert table[2].startswith("| zerocon |") and table[3].startswith("| word_swap |")
    assert "**0.0000**" in table[2]  # zerocon has the best (lowest) background LPIPS
    assert main(["eval", "compare", str(run_a), str(run_b / "metrics.json"), "--out", str(both)]) == 0
    # run_a is also inside run_b's comparison: it appears once
    assert [r["method"] for r in json.loads((both / "metrics.json").read_text())["runs"]] == [
        "zerocon",
        "word_swap",
    ]
    assert Image.open(both / "metrics.png").size[0] > 300


@pytest.mark.parametrize(
    ("drop", "option"),
    [("--lpips-backbone", "--lpips-backbone"), ("--masks", "--masks")],
)
def test_missing_network_or_masks_names_the_option(tmp_path, tiny_nets, capsys, drop, option):
    folders = _edit_folders(tmp_path, 1)
    args = _edit_args(folders, tiny_nets)
    i = args.index(drop)
    del args[i : i + 2]
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert option in capsys.readouterr().err
    assert not (tmp_path / "o" / "metrics.json").exists()


def test_missing_clip_folder_fails_before_work(tmp_path, tiny_nets, capsys):
    folders = _edit_folders(tmp_path, 1)
    args = _edit_args(folders, tiny_nets)
    args[args.index("--clip") + 1] = str(tmp_path / "no" / "clip")
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    assert "--clip" in capsys.readouterr().err


def test_outputs_without_inputs_are_an_error(tmp_path, tiny_nets):
    folders = _edit_folders(tmp_path, 2)
    blob_image(64, 50).save(folders["outputs"] / "stranger.png")
    config = EditEvalConfig(
        inputs=folders["inputs"], outputs=folders["outputs"], source="cat", target="dog",
        metrics=("structure_distance",), dino=str(tiny_nets["dino"]),
    )  # fmt: skip
    with pytest.raises(ZeroconError, match="stranger.png"):
        evaluate_edits(config)


def _domain_folders(root: Path) -> tuple[Path, Path]:
    real, fake = root / "real", root / "fake"
    for domain, offset in (("cat", 0), ("dog", 50)):
        (real / domain).mkdir(parents=True)
        (fake / domain).mkdir(parents=True)
        for i in range(6):
            blob_image(48, offset + i).save(real / domain / f"{i}.png")
            blob_image(48, offset + 20 + i).save(fake / domain / f"{i}.png")
    return real, fake


def test_eval_translation_per_domain_and_mfid(tmp_path, tiny_nets, capsys):
    real, fake = _domain_folders(tmp_path)
    out = tmp_path / "trans"
    args = ["eval", "translation", "--real", str(real), "--fake", str(fake), "--inception-torchscript", str(tiny_nets["inception_torchscript"]),
            "--k", "3", "--out", str(out), "--name", "cut"]  # fmt: skip
    assert main(args) == 0
    data = json.loads((out / "metrics.json").read_text())
    assert set(data["per_domain"]) == {"cat", "dog"}
    fids = [d["fid"] for d in data["per_domain"].values()]
    assert data["metrics"]["mfid"] == pytest.approx(sum(fids) / 2)
    for key in ("fid", "kid", "density", "coverage", "swd"):
        assert key in data["metrics"]
    assert "mFID ↓" in (out / "metrics.md").read_text()
    # a set against itself: FID ~ 0, SWD 0, full coverage
    same = tmp_path / "same"
    args = ["eval", "translation", "--real", str(real), "--fake", str(real), "--inception-torchscript", str(tiny_nets["inception_torchscript"]),
            "--k", "3", "--out", str(same)]  # fmt: skip
    assert main(args) == 0
    metrics = json.loads((same / "metrics.json").read_text())["metrics"]
    assert abs(metrics["fid"]) < 1e-6 and metrics["swd"] == 0.0 and metrics["coverage"] == 1.0


def test_eval_translation_without_inception_names_the_option(tmp_path, tiny_nets, capsys):
    real, fake = _domain_folders(tmp_path)
    assert (
        main(["eval", "translation", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "o")])
        == 2
    )
    assert "--inception" in capsys.readouterr().err
    # --inception takes weights only: a TorchScript file is refused, naming the explicit option
    args = ["eval", "translation", "--real", str(real), "--fake", str(fake), "--out", str(tmp_path / "o"),
            "--inception", str(tiny_nets["inception_torchscript"])]  # fmt: skip
    assert main(args) == 2
    assert "--inception-torchscript FILE" in capsys.readouterr().err
    # SWD alone needs no network
    assert main(["eval", "translation", "--real", str(real), "--fake", str(fake), "--metrics", "swd",
                 "--out", str(tmp_path / "o")]) == 0  # fmt: skip
    assert json.loads((tmp_path / "o" / "metrics.json").read_text())["metrics"]["swd"] > 0


def test_edit_cli_layout_is_understood(tmp_path, tiny_nets):
    """``zerocon edit`` writes OUT/<name>/edit.png; those folders pair with the inputs by name."""
    folders = _edit_folders(tmp_path, 2)
    layout = tmp_path / "edit_out"
    for i in range(2):
        (layout / f"im{i}").mkdir(parents=True)
        (folders["outputs"] / f"im{i}.png").rename(layout / f"im{i}" / "edit.png")
    config = EditEvalConfig(
        inputs=folders["inputs"], outputs=layout, source="cat", target="dog",
        metrics=("bg_lpips",), lpips_backbone=str(tiny_nets["lpips"]), masks=folders["masks"],
    )  # fmt: skip
    result = evaluate_edits(config)
    assert [r["name"] for r in result["per_image"]] == ["im0", "im1"]
    assert result["metrics"]["bg_lpips"] == 0.0
