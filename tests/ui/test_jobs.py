"""The web app's logic without a browser: limits, its own folders, the model cache, runs and edit records."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image, ImageOps

from zerocon.edit.records import RECORD_KEYS
from zerocon.errors import ZeroconError
from zerocon.io import save_checkpoint
from zerocon.ui.jobs import (
    EditSettings,
    ModelCache,
    UIConfig,
    caption_of,
    check_upload,
    inside,
    list_runs,
    new_job_dir,
    resolve_run,
    run_edit,
    write_examples,
)


def _png(path: Path, size=(64, 48), color=(200, 30, 30)) -> Path:
    Image.new("RGB", size, color).save(path)
    return path


def test_inside_refuses_every_way_out(tmp_path):
    base = tmp_path / "runs"
    (base / "a").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (base / "link").symlink_to(tmp_path / "secret")
    assert inside(base, "a") == (base / "a").resolve()
    for name in ("../secret", "/etc", "a/../../secret", "link", str(tmp_path / "secret")):
        with pytest.raises(ZeroconError, match="outside the app's folder"):
            inside(base, name)


def test_check_upload_limits_and_messages(tmp_path):
    config = UIConfig(workdir=tmp_path, max_upload_mb=0.01, max_pixels=5000)
    fake = tmp_path / "holiday.png"
    fake.write_text("I am text, not a picture")
    with pytest.raises(ZeroconError, match=r"^holiday.png: not an image file") as info:
        check_upload(fake, config)
    assert str(tmp_path) not in str(info.value)  # the server's folders are not shown to the user
    big = tmp_path / "big.bmp"
    Image.new("RGB", (100, 100)).save(big)  # 30 kB > 0.01 MB
    with pytest.raises(ZeroconError, match="file is too large"):
        check_upload(big, config)
    wide = _png(tmp_path / "wide.png", size=(200, 40))  # 8000 pixels > 5000
    with pytest.raises(ZeroconError, match="image is too large"):
        check_upload(wide, config)
    with pytest.raises(ZeroconError, match="no photo uploaded"):
        check_upload(None, config, "photo")
    gray = tmp_path / "gray.png"
    Image.new("L", (50, 40), 90).save(gray)
    image = check_upload(gray, config)
    assert image.mode == "RGB" and image.size == (50, 40)


def test_edit_settings_are_checked():
    config = UIConfig(max_steps=30)
    EditSettings(target="circle->square").check(config)
    for bad, match in [
        (EditSettings(target="  "), "target is empty"),
        (EditSettings(target="x", method="magic"), "unknown method 'magic'"),
        (EditSettings(target="x", steps=31), "steps must be between 1 and 30"),
        (EditSettings(target="x", guidance_scale=float("nan")), "guidance_scale must be"),
        (EditSettings(target="x", patch_nce_weight=-1), "patch_nce_weight must be"),
    ]:
        with pytest.raises(ZeroconError, match=match):
            bad.check(config)


def test_model_cache_loads_once_even_when_raced():
    cache = ModelCache()
    calls = []

    def loader():
        calls.append(1)
        time.sleep(0.05)
        return object()

    results = []
    threads = [threading.Thread(target=lambda: results.append(cache.get("m", loader))) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and cache.loads == 1 and len({id(r) for r in results}) == 1
    cache.get("other", loader)
    assert cache.loads == 2 and "other" in cache


class InvertingEditor:
    """A test double with ZeroConPipeline's edit() signature. Its 'edit' is the top-left quarter of the photo's
    negative and its 'reconstruction' the photo mirrored, so each written file can be traced to its source.
    Like a pipeline it has a model config, a name, a device and a UNet dtype (the record states them)."""

    caption_generator = "a captioner"
    config: dict = {}
    name_or_path = "tiny"
    _execution_device = "cpu"
    unet = SimpleNamespace(dtype="torch.float32")

    @property
    def has_captioner(self):
        return self.caption_generator is not None

    def __init__(self, caption="  a red circle on a gray background\n", fail=None):
        self.calls = []
        self.caption = caption
        self.fail = fail

    def generate_caption(self, image):
        if self.fail is not None:
            raise self.fail
        return self.caption

    def edit(
        self, image, target=None, source=None, caption=None, direction=None, config=None, inversion=None
    ):
        self.calls.append(dict(target=target, caption=caption, config=config))
        if self.fail is not None:
            raise self.fail
        return SimpleNamespace(
            edit=ImageOps.invert(image).crop((0, 0, image.width // 2, image.height // 2)),
            reconstruction=ImageOps.mirror(image),
            caption=caption or "an automatic caption",
            caption_source="given" if caption else "captioner",
            edited_caption="an edited caption",
            direction=SimpleNamespace(describe=lambda: {"kind": "word_swap", "bank": Path("/banks/x.txt")}),
            scheduler={"class": "DDIMScheduler"},
            timings={"inversion": 0.123456, "edit": 2},
        )


def _random_image(width=56, height=40):
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8))


def test_run_edit_passes_the_page_settings_and_writes_every_output_and_the_record(tmp_path):
    editor = InvertingEditor()
    image = _random_image()
    job = new_job_dir(tmp_path, "edit")
    assert job.parent == (tmp_path / "jobs").resolve() and job.name.startswith("edit-")
    assert new_job_dir(tmp_path, "edit") != job  # every request gets its own folder
    settings = EditSettings(
        target="  circle->square ", source=" a red circle\n", steps=3, seed=7, method="pix2pix_zero",
        patch_nce_weight=2.5,
    )  # fmt: skip
    outcome = run_edit(editor, image, settings, job, model="tiny")
    # what run_edit hands the editor: the target and the page's caption stripped, the settings as an EditConfig
    (call,) = editor.calls
    assert call["target"] == "circle->square" and call["caption"] == "a red circle"
    config = call["config"]
    assert (config.method, config.num_inference_steps, config.seed) == ("pix2pix_zero", 3, 7)
    assert config.patch_nce.weight == 2.5 and config.cross_attention_guidance_amount == 0.1
    assert config.guidance_scale is None  # left to the model's own choice
    # what it writes: each file holds its own image (input, edit, reconstruction are not mixed up)
    assert sorted(p.name for p in job.iterdir()) == sorted(
        ["input.png", "edit.png", "reconstruction.png", "comparison.png", "record.json"]
    )
    pixels = np.asarray(image)
    assert np.array_equal(np.asarray(Image.open(job / "input.png")), pixels)
    assert np.array_equal(np.asarray(Image.open(job / "edit.png")), 255 - pixels[:20, :28])
    assert np.array_equal(np.asarray(Image.open(job / "reconstruction.png")), pixels[:, ::-1])
    # three panels at height 256 (56x40 and 28x20 both become 358 wide) under a 14-pixel label strip
    assert Image.open(job / "comparison.png").size == (3 * 358, 256 + 14)
    # the record is zerocon edit's (zerocon.edit.records): the page's settings as the EditConfig used
    record = json.loads((job / "record.json").read_text())
    assert set(record) == set(RECORD_KEYS)
    assert record["model"] == "tiny" and record["input"] == "input.png"
    asked = (record["target"], record["source"], record["method"], record["seed"])
    assert asked == ("circle->square", None, "pix2pix_zero", 7)
    settings = record["settings"]
    assert (settings["num_inference_steps"], settings["seed"], settings["method"]) == (3, 7, "pix2pix_zero")
    assert settings["patch_nce"]["weight"] == 2.5 and settings["cross_attention_guidance_amount"] == 0.1
    assert settings["guidance_scale"] == 5.0  # resolved: the model's choice (here the default) is recorded
    assert record["caption"] == "a red circle" and record["caption_source"] == "given"
    assert record["direction"] == {"kind": "word_swap", "bank": "/banks/x.txt"}  # made JSON-safe
    assert record["input_size"] == [56, 40] and record["output_size"] == [28, 20]
    timings = record["timings_seconds"]
    assert {k: timings[k] for k in ("inversion", "edit")} == {"inversion": 0.123, "edit": 2.0}  # rounded
    assert isinstance(timings["total"], float) and 0 <= timings["total"] < 60
    assert record["files"] == ["input.png", "edit.png", "reconstruction.png", "comparison.png"]
    assert record["inversion_cache_hit"] is False and record["device"] == "cpu"
    assert record["dtype"] == "float32" and record["process"] == "0 of 1"
    assert outcome.record == record
    names = {"input", "edit", "reconstruction", "comparison"}
    assert outcome.files == {k: job / f"{k}.png" for k in names} | {"record": job / "record.json"}
    assert outcome.edit.size == (28, 20) and outcome.caption == "a red circle"


def test_run_edit_without_a_caption_lets_the_editor_caption_or_refuses(tmp_path):
    editor = InvertingEditor()
    image = _random_image()
    outcome = run_edit(
        editor, image, EditSettings(target="a square", source="   "), new_job_dir(tmp_path, "e"), "m"
    )
    assert editor.calls[-1]["caption"] is None  # a blank caption box: the editor captions the photo itself
    assert outcome.record["caption"] == "an automatic caption"
    editor.caption_generator = None
    job = new_job_dir(tmp_path, "edit")
    with pytest.raises(ZeroconError, match="no captioner: type a caption"):
        run_edit(editor, image, EditSettings(target="a square"), job, model="tiny")
    assert len(editor.calls) == 1 and list(job.iterdir()) == []  # refused before editing or writing
    failing = InvertingEditor(fail=ZeroconError("NaN/Inf at edit step 2"))
    with pytest.raises(ZeroconError, match="NaN/Inf at edit step 2"):
        run_edit(failing, image, EditSettings(target="a square", source="a circle"), job, model="tiny")
    assert list(job.iterdir()) == []  # a failed edit leaves no half-filled record behind


def test_caption_of_strips_and_falls_back_to_empty():
    image = _random_image()
    assert caption_of(InvertingEditor(), image) == "a red circle on a gray background"
    assert caption_of(InvertingEditor(fail=ZeroconError("captioner failed")), image) == ""
    no_captioner = InvertingEditor()
    no_captioner.caption_generator = None
    assert caption_of(no_captioner, image) == ""
    assert caption_of(object(), image) == ""
    with pytest.raises(RuntimeError):  # only the project's own errors are turned into 'no caption'
        caption_of(InvertingEditor(fail=RuntimeError("bug")), image)


def _fake_run(runs: Path, name: str, method: dict) -> Path:
    run = runs / name
    save_checkpoint(run / "checkpoint", {"networks": {}}, {"method": method, "step": 1})
    return run


def test_runs_are_listed_and_only_those_can_be_picked(tmp_path):
    runs = tmp_path / "runs"
    _fake_run(runs, "zebra", {"method": "cut", "preset": "fastcut"})
    _fake_run(runs, "group/colors", {"method": "lanit", "domains": ["red", "blue"]})
    _fake_run(runs, "toy", {"method": "toy"})
    (runs / "empty").mkdir()
    found = list_runs(runs)
    assert [(r.name, r.kind) for r in found] == [("group/colors", "lanit"), ("zebra", "cut")]
    assert found[0].domains == ["red", "blue"] and "fastcut" in found[1].label
    assert resolve_run(runs, "zebra").kind == "cut"
    outside = _fake_run(tmp_path, "outside", {"method": "cut", "preset": "cut"})
    for name, match in [
        ("", "no checkpoint chosen"),
        ("toy", "not a CUT or LANIT run"),
        ("empty", "not a CUT or LANIT run"),
        ("../outside", "outside the app's folder"),
        (str(outside), "outside the app's folder"),
    ]:
        with pytest.raises(ZeroconError, match=match):
            resolve_run(runs, name)
    assert list_runs(tmp_path / "missing") == []


def test_examples_are_shapes_scenes_written_once(tmp_path):
    paths = write_examples(tmp_path, count=2)
    assert [p.name for p in paths] == ["scene_0.png", "scene_1.png"]
    first = paths[0].stat().st_mtime_ns
    write_examples(tmp_path, count=2)
    assert paths[0].stat().st_mtime_ns == first
    assert Image.open(paths[0]).size[0] >= 32
