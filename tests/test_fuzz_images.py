"""Fuzzing the image loader: random and mutated bytes, sizes and modes never escape as anything but ZeroconError.

Every image that enters the project goes through :func:`zerocon.images.load_image`, so it is the one place
that must turn *any* file into either an 8-bit RGB image or a one-line :class:`ZeroconError`. Hypothesis
builds real images of many modes, sizes and formats, then truncates them, flips bytes, splices in garbage or
replaces them with random bytes; the test asserts the contract for every one of them. The number of examples
and the per-example deadline are bounded so the test takes seconds (a longer run is marked slow).
"""

from __future__ import annotations

import io
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import load_image

MODES = ["RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"]
FORMATS = {
    "PNG": ".png",
    "JPEG": ".jpg",
    "WEBP": ".webp",
    "BMP": ".bmp",
    "TIFF": ".tif",
    "GIF": ".gif",
}
# Which modes each format can store (others are converted first, so every combination is valid).
_WRITABLE = {
    "PNG": {"RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I"},
    "JPEG": {"RGB", "L", "CMYK"},
    "WEBP": {"RGB", "RGBA"},
    "BMP": {"RGB", "L", "P", "1"},
    "TIFF": {"RGB", "RGBA", "L", "LA", "P", "1", "I;16", "I", "F", "CMYK"},
    "GIF": {"L", "P", "1"},
}


def _rgb_pixels(width: int, height: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def _encode(mode: str, fmt: str, width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    rgb = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), mode="RGB")
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    elif mode == "F":
        image = Image.fromarray(rng.normal(size=(height, width)).astype(np.float32), mode="F")
    elif mode == "I":
        image = Image.fromarray(rng.integers(-1000, 70000, (height, width), dtype=np.int32), mode="I")
    else:
        image = rgb.convert(mode)
        if mode in ("RGBA", "LA"):  # varied transparency, so compositing is exercised
            image.putalpha(Image.fromarray(rng.integers(0, 256, (height, width), dtype=np.uint8)))
    if mode not in _WRITABLE[fmt]:
        image = image.convert("RGB" if fmt != "GIF" else "P")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@dataclass(frozen=True)
class Made:
    """How :func:`described_image_bytes` made its bytes (the oracle's knowledge of the file)."""

    fmt: str
    mode: str
    width: int
    height: int
    seed: int
    mutation: str

    @property
    def intact(self) -> bool:
        return self.mutation == "none"

    @property
    def lossless_rgb(self) -> bool:
        """Stored as the very RGB pixels of :func:`_rgb_pixels` (lossless format, RGB kept)."""
        return self.mode == "RGB" and self.fmt in ("PNG", "BMP", "TIFF")


@st.composite
def described_image_bytes(draw: st.DrawFn) -> tuple[bytes, Made]:
    """A valid encoded image of a random mode / format / size, possibly mutated afterwards, and how."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(MODES))
    width = draw(st.integers(1, 80))
    height = draw(st.integers(1, 80))
    seed = draw(st.integers(0, 2**16))
    data = bytearray(_encode(mode, fmt, width, height, seed))
    mutation = draw(st.sampled_from(["none", "truncate", "flip", "splice", "header_only", "zero_fill"]))
    if mutation == "truncate" and len(data) > 1:
        data = data[: draw(st.integers(0, len(data) - 1))]
    elif mutation == "flip":
        for _ in range(draw(st.integers(1, 16))):
            position = draw(st.integers(0, len(data) - 1))
            data[position] ^= draw(st.integers(1, 255))
    elif mutation == "splice":
        position = draw(st.integers(0, len(data)))
        data[position:position] = draw(st.binary(min_size=1, max_size=64))
    elif mutation == "header_only":
        data = data[: min(len(data), 32)]
    elif mutation == "zero_fill" and len(data) > 8:
        start = draw(st.integers(8, len(data) - 1))
        data[start:] = bytes(len(data) - start)
    else:
        mutation = "none"  # a mutation that could not apply to so short a file
    return bytes(data), Made(fmt, mode, width, height, seed, mutation)


def image_bytes() -> st.SearchStrategy[bytes]:
    """The bytes of :func:`described_image_bytes` alone."""
    return described_image_bytes().map(lambda made: made[0])


def reference_size(path: Path) -> tuple[int, int] | None:
    """The oracle: the displayed (width, height) if Pillow by itself decodes every pixel of the file, else None.

    Independent of ``load_image``: Pillow's open and full decode, and the EXIF orientation tag read directly
    (values 5-8 are the transposing ones).
    """
    try:
        with Image.open(path) as image:
            image.load()
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except Exception:
        return None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_contract(path: Path, made: Made | None = None) -> None:
    """load_image returns an 8-bit RGB image exactly when Pillow alone can decode the file and each side is at
    least 32 (then with Pillow's size), and otherwise raises a one-line ZeroconError. For an unmutated file
    the expectation comes from how it was made; lossless RGB pixels must come back unchanged."""
    expected = reference_size(path)
    if made is not None and made.intact:
        assert expected == (made.width, made.height), "the reference decoder disagrees with the generator"
    try:
        image = load_image(path)
    except ZeroconError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"error message must be one line: {message!r}"
        assert expected is None or min(expected) < 32, f"a decodable {expected} image was refused: {message}"
        if expected is not None:
            assert "too small" in message, message
        return
    assert expected is not None, "load_image accepted a file Pillow cannot decode"
    assert min(expected) >= 32, f"an image of {expected} is too small to accept"
    assert image.mode == "RGB" and image.size == expected
    pixels = np.asarray(image)
    assert pixels.dtype == np.uint8 and pixels.shape == (expected[1], expected[0], 3)
    if made is not None and made.intact and made.lossless_rgb:
        assert np.array_equal(pixels, _rgb_pixels(made.width, made.height, made.seed))


FUZZ = settings(
    max_examples=int(os.environ.get("ZEROCON_FUZZ_EXAMPLES", "60")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@FUZZ
@given(made=described_image_bytes(), suffix=st.sampled_from([*FORMATS.values(), ".png", ".jpeg", ".txt", ""]))
def test_mutated_images_only_raise_zerocon_error(made: tuple[bytes, Made], suffix: str) -> None:
    data, how = made
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        _check_contract(path, how)


@FUZZ
@given(data=st.binary(min_size=0, max_size=4096), suffix=st.sampled_from([".png", ".jpg", ".gif", ".tif"]))
def test_random_bytes_only_raise_zerocon_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"random{suffix}"
        path.write_bytes(data)
        _check_contract(path)


@FUZZ
@given(
    magic=st.sampled_from(
        [b"\x89PNG\r\n\x1a\n", b"\xff\xd8\xff\xe0", b"GIF89a", b"BM", b"II*\x00", b"MM\x00*", b"RIFF"]
    ),
    tail=st.binary(min_size=0, max_size=2048),
)
def test_valid_magic_with_garbage_body_is_rejected_cleanly(magic: bytes, tail: bytes) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "magic.img"
        path.write_bytes(magic + tail)
        _check_contract(path)


@FUZZ
@given(mode=st.sampled_from(MODES), width=st.integers(1, 96), height=st.integers(1, 96))
def test_in_memory_images_of_every_mode_and_size(mode: str, width: int, height: int) -> None:
    image = Image.open(io.BytesIO(_encode(mode, "TIFF", width, height, 0)))
    try:
        out = load_image(image)
    except ZeroconError as exc:
        assert min(width, height) < 32 and "too small" in str(exc)
        return
    assert min(width, height) >= 32, "an image below the minimum side was accepted"
    assert out.mode == "RGB" and out.size == (width, height)
    got = np.asarray(out).astype(np.int64)
    # reference conversions, written out per mode (not through load_image's converter)
    if mode == "RGB":
        assert np.array_equal(got, _rgb_pixels(width, height, 0))
    elif mode in ("L", "I;16", "I", "F"):
        assert (got == got[..., :1]).all(), "a one-channel image must become gray"
        source = np.asarray(image, dtype=np.float64)
        if mode == "L":
            want = source
        elif mode == "F":
            want = np.round((source - source.min()) / (source.max() - source.min()) * 255)
        else:  # 16-bit range (I;16, and I whose values pass 255) onto 0..255
            want = np.clip(np.round(source * 255 / 65535), 0, 255)
        assert np.abs(got[..., 0] - want).max() <= 1
    elif mode == "RGBA":  # composited on white
        rgba = np.asarray(image, dtype=np.float64)
        alpha = rgba[..., 3:] / 255
        want = rgba[..., :3] * alpha + 255 * (1 - alpha)
        assert np.abs(got - want).max() <= 1


def test_declared_huge_dimensions_are_rejected_before_decoding(tmp_path: Path) -> None:
    """A PNG whose header claims 100000 x 100000 pixels is refused from its header alone (bomb guard)."""
    import struct
    import zlib

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", 100_000, 100_000, 8, 2, 0, 0, 0)
    data = (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )
    path = tmp_path / "bomb.png"
    path.write_bytes(data)
    with pytest.raises(ZeroconError, match="too large"):
        load_image(path)


@pytest.mark.slow
@settings(
    max_examples=2000, deadline=5000, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
@given(made=described_image_bytes(), suffix=st.sampled_from(list(FORMATS.values())))
def test_mutated_images_long_run(made: tuple[bytes, Made], suffix: str) -> None:
    data, how = made
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        _check_contract(path, how)
