"""The web app in a real browser: headless Debian Chromium driven by Playwright, the app served on localhost.

The Edit tab runs with the bundled ShapesWorld model when it is installed, otherwise with a tiny random-weight
ZeroConPipeline (with a tiny BLIP captioner) built by the editor's test helpers and saved to a temporary
folder. Set ``ZEROCON_SCREENSHOT=docs/ui.png`` to save the page after an edit for the README.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zerocon.models import BUNDLED
from zerocon.ui.jobs import UIConfig

pytestmark = pytest.mark.browser
REPO = Path(__file__).resolve().parents[2]
EDIT_TIMEOUT_MS = 300_000


@pytest.fixture(scope="module")
def edit_model(tmp_path_factory: pytest.TempPathFactory):
    """The model name for the page and a loader that makes it on first use (error tests never load one)."""
    from zerocon.ui.jobs import load_editor

    if BUNDLED["shapes"].is_dir():
        return "shapes", load_editor
    folder = tmp_path_factory.mktemp("tiny_ui")

    def build_and_load(name: str):
        sys.path.insert(0, str(REPO / "tests" / "edit"))
        from tiny import save_tiny_pipeline

        return load_editor(str(save_tiny_pipeline(folder, with_blip=True)))

    return "tiny-random (tests/edit/tiny.py)", build_and_load


@pytest.fixture(scope="module")
def served(edit_model, tmp_path_factory: pytest.TempPathFactory):
    import socket

    from zerocon.ui.app import launch

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    root = tmp_path_factory.mktemp("ui")
    _tiny_cut_run(root / "runs" / "tiny-cut")
    _tiny_lanit_run(root / "runs" / "tiny-lanit", tmp_path_factory.mktemp("lanit_clip"))
    name, loader = edit_model
    config = UIConfig(
        model=name,
        port=port,
        workdir=root / "work",
        runs=root / "runs",
        cache_dir=root / "cache",
        max_upload_mb=1.0,
    )
    demo, url = launch(config, block=False, editor_loader=loader)
    try:
        yield config, url
    finally:
        demo.close()


def _tiny_cut_run(run: Path) -> None:
    """A real CUT checkpoint with a tiny random generator, in the app's runs folder."""
    import torch

    from zerocon.cut.config import preset
    from zerocon.cut.networks import ResnetGenerator
    from zerocon.io import save_checkpoint

    cfg = preset("cut", size=32, ngf=4, ndf=4, n_blocks=1, num_patches=16)
    torch.manual_seed(0)
    generator = ResnetGenerator(ngf=cfg.ngf, n_blocks=cfg.n_blocks)
    networks = {f"G.{k}": v for k, v in generator.state_dict().items()}
    save_checkpoint(run / "checkpoint", {"networks": networks}, {"method": cfg.to_dict(), "step": 0})


def _tiny_lanit_run(run: Path, clip_dir: Path) -> None:
    """A real LANIT run (one training step of tiny random networks, tiny CLIP), in the app's runs folder."""
    sys.path.insert(0, str(REPO / "tests" / "lanit"))
    from lanit_helpers import make_tiny_clip, tiny_config, tiny_trainer

    from zerocon.lanit.model import LanitMethod
    from zerocon.lanit.prompts import load_clip

    make_tiny_clip(clip_dir)
    method = LanitMethod(tiny_config(clip=str(clip_dir), empty="slack"), clip=load_clip(str(clip_dir)))
    tiny_trainer(method, run, 1).train()


@pytest.fixture
def page(browser, served):
    context = browser.new_context(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    page = context.new_page()
    page.set_default_timeout(60_000)
    page.goto(served[1])
    page.wait_for_selector("#edit-upload")
    yield page
    context.close()


def _scene(tmp_path: Path) -> Path:
    from zerocon.shapes import render_seed

    path = tmp_path / "scene.png"
    render_seed(0).pil().save(path)  # a green circle on a gray background
    return path


def _upload(page, selector: str, path: Path) -> None:
    page.locator(f"{selector} input[type=file]").set_input_files(str(path))


def _download_first_translation(page) -> Image.Image:
    with page.expect_download() as download_info:
        page.locator("#tr-files a").first.click()
    return Image.open(download_info.value.path())


def _pick_run(page, name: str) -> None:
    page.get_by_role("tab", name="Translate").click()
    page.wait_for_selector("#tr-upload")
    page.locator("#tr-run input").click()
    page.get_by_role("option", name=name).first.click()


@pytest.mark.slow
def test_upload_edit_see_result_and_download(page, served, tmp_path):
    config, _ = served
    _upload(page, "#edit-upload", _scene(tmp_path))
    # the input appears and the caption is filled in by the model's captioner (or the page asks for one)
    page.wait_for_selector("#edit-input img")
    page.wait_for_function(
        "document.querySelector('#edit-caption textarea').value.trim().length > 0"
        " || /No captioner/.test(document.querySelector('#edit-status').innerText)",
        timeout=EDIT_TIMEOUT_MS,
    )
    if not page.input_value("#edit-caption textarea").strip():
        page.fill("#edit-caption textarea", "a green circle on a gray background")
    caption = page.input_value("#edit-caption textarea")
    page.fill("#edit-target textarea", "circle->square")
    page.click("#edit-method >> text=word_swap")  # the cheapest method keeps this test short on a busy CPU
    steps = "10" if os.environ.get("ZEROCON_SCREENSHOT") else "2"  # a nicer edit for the README picture
    page.locator("#edit-steps input[type=number]").fill(steps)
    page.locator("#edit-steps input[type=number]").press("Enter")
    page.click("#edit-run")
    page.wait_for_selector("#edit-result img", timeout=EDIT_TIMEOUT_MS)
    page.wait_for_selector("#dl-edit", state="visible")
    assert "Done in" in page.inner_text("#edit-status")

    with page.expect_download() as download_info:
        page.click("#dl-edit")
    downloaded = tmp_path / "downloaded.png"
    download_info.value.save_as(downloaded)
    image = Image.open(downloaded)
    assert image.mode == "RGB" and min(image.size) >= 32

    # the download is the file the job wrote in the app's own folder, and the record has the page's settings
    jobs = sorted((config.workdir.resolve() / "jobs").glob("edit-*"))
    assert jobs, "no job folder was written"
    written = jobs[-1]
    assert np.array_equal(np.asarray(Image.open(written / "edit.png")), np.asarray(image))
    import json

    record = json.loads((written / "record.json").read_text())
    assert record["target"] == "circle->square" and record["settings"]["num_inference_steps"] == int(steps)
    assert record["caption"] == caption.strip() and record["input"] == "scene.png"
    assert record["inversion_cache_hit"] is False and len(list((config.cache_dir).glob("*.safetensors"))) == 1
    with page.expect_download() as record_info:
        page.click("#dl-record")
    assert json.loads(Path(record_info.value.path()).read_text()) == record

    shot = os.environ.get("ZEROCON_SCREENSHOT")
    page.screenshot(path=str(REPO / shot) if shot else str(tmp_path / "ui.png"), full_page=True)


def test_text_file_renamed_png_shows_the_error(page, tmp_path):
    fake = tmp_path / "holiday.png"
    fake.write_text("this is a text file, not a photo\n" * 3)
    _upload(page, "#edit-upload", fake)
    status = page.locator("#edit-status")
    status.get_by_text("holiday.png: not an image file").wait_for()
    assert page.locator("#edit-input img").count() == 0  # nothing is shown as if it were the photo
    # asking for an edit anyway gives the same clear error, in the page
    page.fill("#edit-target textarea", "circle->square")
    page.click("#edit-run")
    page.get_by_text("holiday.png: not an image file").first.wait_for()
    assert page.locator("#edit-result img").count() == 0


def test_too_large_upload_is_refused_in_the_page(page, tmp_path):
    """Uploads above the app's size limit (1 MB here) are refused with a message, not processed."""
    big = tmp_path / "big.bmp"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (700, 700, 3), dtype=np.uint8)).save(big)
    assert big.stat().st_size > 1 << 20
    _upload(page, "#edit-upload", big)
    page.get_by_text("big.bmp", exact=False).first.wait_for()
    page.wait_for_function(
        "/file (size )?exceeds|too large|maximum/i.test(document.body.innerText)", timeout=30_000
    )
    assert page.locator("#edit-input img").count() == 0


def test_translate_tab_with_a_cut_run(page, served, tmp_path):
    """Pick the CUT run, upload two photos and one bad file: two results to see and download, one skip line."""
    config, _ = served
    page.get_by_role("tab", name="Translate").click()
    page.wait_for_selector("#tr-upload")
    assert (
        "tiny-cut" in page.locator("#tr-run").inner_text()
        or "tiny-cut" in page.locator("#tr-run input").input_value()
    )
    good = []
    for i, size in enumerate([(48, 40), (64, 64)]):
        path = tmp_path / f"photo{i}.png"
        Image.fromarray(
            np.random.default_rng(i).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8)
        ).save(path)
        good.append(path)
    bad = tmp_path / "notes.png"
    bad.write_text("not a photo")
    page.locator("#tr-upload input[type=file]").set_input_files([str(p) for p in [*good, bad]])
    page.wait_for_function(
        "document.querySelectorAll('#tr-upload .file-preview tr, #tr-upload tr').length >= 3"
    )
    page.click("#tr-run-button")
    page.locator("#tr-status").get_by_text("Translated 2 image(s)").wait_for(timeout=EDIT_TIMEOUT_MS)
    assert "notes.png: not an image file" in page.inner_text("#tr-status")
    assert page.locator("#tr-gallery img").count() >= 2
    result = _download_first_translation(page)
    assert result.size in [(48, 40), (64, 64)]  # CUT keeps each photo's size
    written = sorted((config.workdir.resolve() / "jobs").glob("translate-*/*.png"))
    assert [p.name for p in written] == ["000_photo0.png", "001_photo1.png"]


def test_translate_tab_with_a_lanit_run(page, tmp_path):
    """LANIT: target words give one result per photo; a word the run does not know is an error in the page."""
    _pick_run(page, "tiny-lanit")
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(3).integers(0, 255, (40, 40, 3), dtype=np.uint8)).save(photo)
    page.locator("#tr-upload input[type=file]").set_input_files([str(photo)])
    page.wait_for_function("document.querySelectorAll('#tr-upload tr').length >= 1")
    page.fill("#tr-words textarea", "dog")
    page.click("#tr-run-button")
    page.get_by_text("unknown domain word(s) dog").first.wait_for(timeout=EDIT_TIMEOUT_MS)
    assert page.locator("#tr-gallery img").count() == 0
    page.fill("#tr-words textarea", "red,square")
    page.click("#tr-run-button")
    page.locator("#tr-status").get_by_text("Translated 1 image(s)").wait_for(timeout=EDIT_TIMEOUT_MS)
    assert "lanit" in page.inner_text("#tr-status")
    assert page.locator("#tr-gallery img").count() >= 1
    assert _download_first_translation(page).mode == "RGB"


@pytest.mark.slow
def test_second_edit_waits_in_a_visible_queue(browser, served, tmp_path):
    """Two users, one model: the second edit shows its place in the queue, then runs after the first."""
    scene = _scene(tmp_path)
    pages = []
    for _ in range(2):
        context = browser.new_context(viewport={"width": 1400, "height": 1000})
        p = context.new_page()
        p.set_default_timeout(EDIT_TIMEOUT_MS)
        p.goto(served[1])
        _upload(p, "#edit-upload", scene)
        p.wait_for_selector("#edit-input img")
        p.wait_for_function("document.querySelector('#edit-caption textarea').value.trim().length > 0")
        p.fill("#edit-target textarea", "circle->square")
        pages.append(p)
    first, second = pages
    first.locator("#edit-steps input[type=number]").fill("40")  # long enough to be overtaken
    first.locator("#edit-steps input[type=number]").press("Enter")
    second.click("#edit-method >> text=word_swap")
    second.locator("#edit-steps input[type=number]").fill("2")
    second.locator("#edit-steps input[type=number]").press("Enter")
    first.click("#edit-run")
    first.wait_for_function("/processing|\\d+\\.\\d+\\s*s/i.test(document.body.innerText)")
    second.click("#edit-run")
    # Gradio writes "queue: position/size" on the outputs of a waiting event
    second.wait_for_function("/queue:\\s*\\d+\\/\\d+/i.test(document.body.innerText)", timeout=60_000)
    assert second.locator("#edit-result img").count() == 0
    first.wait_for_selector("#edit-result img")
    second.wait_for_selector("#edit-result img")
    assert "Done in" in second.inner_text("#edit-status")
    for p in pages:
        p.context.close()
