"""Bad input at volume: a folder of 100 mixed good and bad files through ``zerocon edit`` and
``zerocon cut translate``.

Every good file (RGB, grayscale, RGBA, palette, 16-bit, JPEG, EXIF-rotated, non-square) must produce its
output; every bad file (text renamed .png, truncated, random bytes, empty, too small, decompression bomb,
broken checksum, HTML named .gif, ...) must get exactly one line in the summary; the exit status must say
that some failed; nothing half-written may be left under a final name.
"""

from __future__ import annotations

import io
import os
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import load_image

SRC = Path(__file__).resolve().parents[1] / "src"
REPO = SRC.parent
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}


def _png_bytes(image: Image.Image, **kw) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", **kw)
    return buffer.getvalue()


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _good(index: int, rng: np.random.Generator) -> tuple[str, Image.Image, dict, tuple[int, int]]:
    """A valid image of one of several kinds (mode, format, orientation, aspect) and the (width, height) it is
    displayed at: the oracle of every size check below."""
    width, height = int(rng.integers(40, 96)), int(rng.integers(40, 96))
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
    kind = index % 8
    size = (width, height)
    if kind == 0:
        return f"good_{index:03d}.png", rgb, {}, size
    if kind == 1:
        return f"good_{index:03d}.png", rgb.convert("L"), {}, size
    if kind == 2:
        return f"good_{index:03d}.png", rgb.convert("RGBA"), {}, size
    if kind == 3:
        return f"good_{index:03d}.png", rgb.convert("P"), {}, size
    if kind == 4:
        deep = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
        return f"good_{index:03d}.png", deep, {}, size
    if kind == 5:
        return f"good_{index:03d}.jpg", rgb, {"quality": 90}, size
    if kind == 6:
        exif = Image.Exif()
        exif[0x0112] = 6  # shown rotated by 90 degrees: width and height swap
        return f"good_{index:03d}.jpg", rgb, {"exif": exif}, (height, width)
    return f"good_{index:03d}.webp", rgb.resize((width * 2, height)), {}, (width * 2, height)


def _bad(index: int, rng: np.random.Generator) -> tuple[str, bytes]:
    """A file with an image suffix that is not a usable image, of one of several kinds."""
    picture = Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8))
    data = _png_bytes(picture)
    kind = index % 9
    if kind == 0:
        return f"bad_{index:03d}_text.png", b"just some notes, not a picture\n" * 4
    if kind == 1:
        return f"bad_{index:03d}_truncated.png", data[: len(data) // 2]
    if kind == 2:
        return f"bad_{index:03d}_random.jpg", rng.integers(0, 256, 2000, dtype=np.uint8).tobytes()
    if kind == 3:
        return f"bad_{index:03d}_empty.png", b""
    if kind == 4:
        return f"bad_{index:03d}_tiny.png", _png_bytes(picture.resize((16, 16)))
    if kind == 5:  # a header claiming 60000 x 60000 pixels: a decompression bomb
        header = struct.pack(">IIBBBBB", 60_000, 60_000, 8, 2, 0, 0, 0)
        body = _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(b"\0" * 100)) + _chunk(b"IEND", b"")
        return f"bad_{index:03d}_bomb.png", b"\x89PNG\r\n\x1a\n" + body
    if kind == 6:  # image data whose checksum does not match
        broken = bytearray(data)
        idat = broken.index(b"IDAT")
        broken[idat + 10] ^= 0xFF
        return f"bad_{index:03d}_crc.png", bytes(broken)
    if kind == 7:
        return f"bad_{index:03d}_html.gif", b"<html><body>404 not found</body></html>"
    return f"bad_{index:03d}_header_only.jpg", b"\xff\xd8\xff\xe0\x00\x10JFIF\x00"


# why each kind of bad file is refused (its name says its kind)
REASONS = {
    "text": "not an image",
    "random": "not an image",
    "empty": "not an image",
    "html": "not an image",
    "truncated": "unreadable or truncated",
    "crc": "unreadable or truncated",
    "header_only": "unreadable or truncated",
    "tiny": "too small",
    "bomb": "too large",
}


def _reason(bad_name: str) -> str:
    return REASONS[Path(bad_name).stem.split("_", 2)[2]]


def make_mixed_folder(
    folder: Path, good: int, bad: int, seed: int = 0
) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Write ``good`` valid and ``bad`` invalid image files into ``folder``; returns the good names with the
    size each is displayed at, and the bad names."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    good_sizes, bad_names = {}, []
    for i in range(good):
        name, image, kw, size = _good(i, rng)
        image.save(folder / name, **kw)
        good_sizes[name] = size
    for i in range(bad):
        name, data = _bad(i, rng)
        (folder / name).write_bytes(data)
        bad_names.append(name)
    return good_sizes, bad_names


def test_the_mixed_folder_is_what_it_claims(tmp_path):
    """The generator and the loader agree: every 'good' file loads at the size it was made to be shown at,
    every 'bad' file is refused for the reason of its kind."""
    good, bad = make_mixed_folder(tmp_path, good=16, bad=18)
    assert len(set(good.values())) > 8  # varied sizes, so a size mix-up cannot pass unnoticed
    for name, size in good.items():
        image = load_image(tmp_path / name)
        assert image.mode == "RGB" and image.size == size, name
    for name in bad:
        with pytest.raises(ZeroconError, match=_reason(name)):
            load_image(tmp_path / name)


def _zerocon(*args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zerocon.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )


def _summary_lines(stderr: str, bad: list[str]) -> list[str]:
    """The lines of stderr naming a bad file; each bad file must be named on exactly one line."""
    lines = [line for line in stderr.splitlines() if "bad_" in line]
    for name in bad:
        naming = [line for line in lines if name in line]
        assert len(naming) == 1, f"{name} is named on {len(naming)} lines of the summary: {naming}"
        assert _reason(name) in naming[0], f"{name}: the summary does not say why: {naming[0]}"
    return lines


def _no_partial_files(out: Path) -> None:
    for path in out.rglob("*"):
        assert not path.name.startswith("."), f"temporary file left behind: {path}"
        if path.suffix == ".png":
            Image.open(path).load()


@pytest.mark.slow
def test_cut_translate_folder_of_100_mixed_files(tmp_path):
    folder = tmp_path / "inputs"
    good, bad = make_mixed_folder(folder, good=50, bad=50)
    data = tmp_path / "data"
    make_mixed_folder(data / "trainA", good=3, bad=0, seed=1)
    make_mixed_folder(data / "trainB", good=3, bad=0, seed=2)
    run = tmp_path / "run"
    tiny = ["--size", "32", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--num-patches", "16"]
    trained = _zerocon("cut", "train", str(data), "--out", str(run), "--steps", "1", *tiny, "--no-progress")
    assert trained.returncode == 0, trained.stderr[-2000:]

    out = tmp_path / "out"
    done = _zerocon("cut", "translate", str(folder), "--checkpoint", str(run), "--out", str(out))
    assert done.returncode != 0, "some inputs failed, so the exit status must say so"
    assert "Traceback" not in done.stderr
    assert len(_summary_lines(done.stderr, bad)) == len(bad)
    written = sorted(p.name for p in out.iterdir())
    assert written == sorted(f"{Path(n).stem}.png" for n in good)
    for name, size in good.items():  # CUT keeps each input's displayed size (EXIF rotation honoured)
        assert Image.open(out / f"{Path(name).stem}.png").size == size, name
    _no_partial_files(out)


@pytest.fixture(scope="module")
def tiny_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped ShapesWorld model (its 8 x 8 latent once made the inversion of two of these 16-bit images
    diverge), else a tiny random SD pipeline."""
    from zerocon.models import BUNDLED

    if BUNDLED["shapes"].is_dir():
        return BUNDLED["shapes"]
    sys.path.insert(0, str(REPO / "tests" / "edit"))
    from tiny import save_tiny_pipeline

    return save_tiny_pipeline(tmp_path_factory.mktemp("tiny_volume"))


@pytest.mark.slow
def test_edit_folder_of_100_mixed_files(tmp_path, tiny_pipeline):
    folder = tmp_path / "inputs"
    good, bad = make_mixed_folder(folder, good=16, bad=84)  # edits are the costly part: 16 good ones
    out = tmp_path / "out"
    done = _zerocon(
        "edit", str(folder), "--model", str(tiny_pipeline), "--target", "circle->square",
        "--caption", "a photo of a red circle", "--method", "word_swap", "--steps", "1", "--no-templates",
        "--no-cache", "--quiet", "--out", str(out),
    )  # fmt: skip
    assert done.returncode != 0, "some inputs failed, so the exit status must say so"
    assert "Traceback" not in done.stderr
    assert len(_summary_lines(done.stderr, bad)) == len(bad)
    folders = sorted(p.name for p in out.iterdir())
    assert folders == sorted(Path(n).stem for n in good)
    for name in good:
        result = out / Path(name).stem
        assert {"edit.png", "reconstruction.png", "comparison.png", "record.json"} <= {
            p.name for p in result.iterdir()
        }
    _no_partial_files(out)
