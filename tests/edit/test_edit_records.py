"""One edit output, one inversion cache: ``zerocon edit`` and the web app write the same folder and record
(zerocon.edit.records) and share the inversion cache (zerocon.edit.cache), on a tiny pipeline with a BLIP."""

from __future__ import annotations

import json
import os
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zerocon.cli import main
from zerocon.edit.cache import InversionCache, file_digest, read_inversion
from zerocon.edit.outputs import Inversion
from zerocon.edit.records import RECORD_KEYS
from zerocon.ui.jobs import (
    EditSettings,
    UIConfig,
    check_upload,
    editor_identity,
    load_editor,
    new_job_dir,
    run_edit,
)

CAPTION = "a photo of a cat"


@pytest.fixture
def photo(tmp_path: Path) -> Path:
    path = tmp_path / "photo.png"
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((40, 64, 3)) * 255).astype("uint8")).save(path)
    return path


@pytest.fixture(scope="module")
def editor(tiny_blip_dir: Path):
    """The web app's editor for the tiny model (as ``zerocon ui --model DIR --device cpu`` loads it)."""
    pipe = load_editor(str(tiny_blip_dir), device="cpu")
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _web_edit(
    editor,
    model: Path,
    photo: Path,
    folder: Path,
    cache: InversionCache | None,
    model_identity=None,
    **settings,
):
    """What the Edit tab does with an upload (see zerocon.ui.app.on_edit)."""
    settings = {"target": "cat->dog", "source": CAPTION, "method": "word_swap", "steps": 2, **settings}
    image = check_upload(photo, UIConfig(), "photo")
    job = new_job_dir(folder, "edit")
    return run_edit(
        editor,
        image,
        EditSettings(**settings),
        job,
        str(model),
        cache=cache,
        image_digest=file_digest(photo),
        input_name=photo.name,
        model_identity=model_identity,
    )


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def test_the_web_app_and_the_cli_write_the_same_record(tiny_blip_dir, editor, photo, tmp_path):
    cache = tmp_path / "cache"
    argv = ["edit", str(photo), "--target", "cat->dog", "--caption", CAPTION, "--method", "word_swap"]
    argv += ["--model", str(tiny_blip_dir), "--steps", "2", "--out", str(tmp_path / "out")]
    assert main([*argv, "--cache-dir", str(cache), "--quiet", "--device", "cpu"]) == 0
    cli_folder = tmp_path / "out" / "photo"
    cli = json.loads((cli_folder / "record.json").read_text())
    outcome = _web_edit(editor, tiny_blip_dir, photo, tmp_path / "ui", InversionCache(cache))
    web = json.loads(outcome.files["record"].read_text())
    assert set(cli) == set(web) == set(RECORD_KEYS)
    # the same edit: every setting, text, runtime and version agree, and so does the request key
    differ = {"input", "files", "timings_seconds", "inversion_cache_hit"}
    assert {k: web[k] for k in web if k not in differ} == {k: cli[k] for k in cli if k not in differ}
    assert web["request_key"] == cli["request_key"] and web["caption"] == CAPTION
    assert (cli["input"], web["input"]) == (str(photo), "photo.png")
    assert cli["files"] == ["edit.png", "reconstruction.png", "comparison.png"]
    assert web["files"] == ["input.png", *cli["files"]]  # the web app also keeps the upload
    assert set(cli["timings_seconds"]) >= {"inversion", "edit", "total"}
    # the web app found the command line's inversion in the shared cache: the same images
    assert (cli["inversion_cache_hit"], web["inversion_cache_hit"]) == (False, True)
    assert len(list(cache.glob("*.safetensors"))) == 1
    for name in cli["files"]:
        assert np.array_equal(_pixels(cli_folder / name), _pixels(outcome.files[name.removesuffix(".png")]))


def test_the_web_app_reuses_the_inversion_of_the_same_photo(tiny_blip_dir, editor, photo, tmp_path):
    cache = InversionCache(tmp_path / "cache")
    first = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache)
    second = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache)
    assert first.files["record"].parent != second.files["record"].parent
    records = [json.loads(o.files["record"].read_text()) for o in (first, second)]
    assert [r["inversion_cache_hit"] for r in records] == [False, True]
    assert "inversion" in records[0]["timings_seconds"] and "inversion" not in records[1]["timings_seconds"]
    for kind in ("edit", "reconstruction", "comparison"):
        assert np.array_equal(_pixels(first.files[kind]), _pixels(second.files[kind])), kind
    assert len(list(cache.folder.glob("*.safetensors"))) == 1
    # another target needs the same inversion; another number of steps is another inversion
    other_target = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache, target="cat->bird")
    assert other_target.record["inversion_cache_hit"] is True
    other_steps = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache, steps=3)
    assert other_steps.record["inversion_cache_hit"] is False
    assert len(list(cache.folder.glob("*.safetensors"))) == 2
    # without a cache nothing is reused
    plain = _web_edit(editor, tiny_blip_dir, photo, tmp_path, None)
    assert plain.record["inversion_cache_hit"] is False
    assert np.array_equal(_pixels(plain.files["edit"]), _pixels(first.files["edit"]))


@pytest.mark.parametrize("damage", ["empty", "junk", "truncated", "no metadata"])
def test_a_damaged_cache_entry_is_recomputed(tiny_blip_dir, editor, photo, tmp_path, damage):
    cache = InversionCache(tmp_path / "cache")
    first = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache)
    (entry,) = cache.folder.glob("*.safetensors")
    data, stored = entry.read_bytes(), read_inversion(entry)
    if damage == "empty":
        entry.write_bytes(b"")
    elif damage == "junk":
        entry.write_bytes(b"not a safetensors file" * 10)
    elif damage == "truncated":
        entry.write_bytes(data[: len(data) // 2])
    else:
        from safetensors.torch import save_file

        save_file({"latents": torch.zeros(1, 4, 16, 16)}, str(entry))  # no caption, no size
    assert read_inversion(entry) is None
    again = _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache)
    assert again.record["inversion_cache_hit"] is False  # recomputed, not used
    assert np.array_equal(_pixels(again.files["edit"]), _pixels(first.files["edit"]))
    rewritten = read_inversion(entry)  # written again, complete
    assert rewritten is not None and torch.equal(rewritten.latents, stored.latents)
    assert (
        (rewritten.caption, rewritten.input_size)
        == (stored.caption, stored.input_size)
        == (CAPTION, (64, 40))
    )
    assert _web_edit(editor, tiny_blip_dir, photo, tmp_path, cache).record["inversion_cache_hit"] is True


def test_the_cli_recomputes_a_damaged_cache_entry(tiny_blip_dir, photo, tmp_path):
    argv = ["edit", str(photo), "--target", "cat->dog", "--caption", CAPTION, "--method", "word_swap"]
    argv += ["--model", str(tiny_blip_dir), "--steps", "2", "--cache-dir", str(tmp_path / "cache")]
    argv += ["--quiet", "--device", "cpu", "--out"]
    assert main([*argv, str(tmp_path / "a")]) == 0
    (entry,) = (tmp_path / "cache").glob("*.safetensors")
    entry.write_bytes(entry.read_bytes()[:100])
    assert main([*argv, str(tmp_path / "b")]) == 0
    record = json.loads((tmp_path / "b" / "photo" / "record.json").read_text())
    assert record["inversion_cache_hit"] is False and read_inversion(entry) is not None
    assert np.array_equal(_pixels(tmp_path / "a/photo/edit.png"), _pixels(tmp_path / "b/photo/edit.png"))


def test_writers_sharing_a_cache_never_leave_a_torn_entry(tmp_path):
    """Two jobs storing the same key while a third reads it: every read is one complete inversion."""
    cache = InversionCache(tmp_path / "cache")
    cache.write("k", Inversion(torch.zeros(1, 4, 32, 32), "a caption", (64, 64)), {})
    seen, stop = [], threading.Event()

    def write(value: float) -> None:
        for _ in range(25):
            cache.write("k", Inversion(torch.full((1, 4, 32, 32), value), f"caption {value}", (64, 64)), {})

    def read() -> None:
        while not stop.is_set():
            seen.append(cache.read("k"))

    reader = threading.Thread(target=read)
    writers = [threading.Thread(target=write, args=(v,)) for v in (1.0, 2.0)]
    reader.start()
    for thread in writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    reader.join()
    assert seen and all(inv is not None for inv in seen)
    for inv in seen:
        value = float(inv.latents.flatten()[0])
        assert torch.all(inv.latents == value) and inv.caption in ("a caption", f"caption {value}")
    assert [p.name for p in cache.folder.iterdir()] == ["k.safetensors"]  # no temporary files left


def test_the_web_app_keys_inversions_by_the_model_as_it_was_loaded(tiny_blip_dir, photo, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(tiny_blip_dir, model)
    editor = load_editor(str(model), device="cpu")
    editor.set_progress_bar_config(disable=True)
    identity = editor_identity(editor, str(model))  # what the app computes when the editor loads
    cache = InversionCache(tmp_path / "cache")
    first = _web_edit(editor, model, photo, tmp_path / "a", cache, model_identity=identity)
    weights = next(model.rglob("*.safetensors"))
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    # the folder changed after loading, the editor in memory did not: its inversions are still its own
    again = _web_edit(editor, model, photo, tmp_path / "b", cache, model_identity=identity)
    assert (first.record["inversion_cache_hit"], again.record["inversion_cache_hit"]) == (False, True)
    assert editor_identity(editor, str(model)) != identity  # a model loaded now would be another model
