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
    if mode not in _WRITABLE[fmt]:
        image = image.convert("RGB" if fmt != "GIF" else "P")
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


@st.composite
def image_bytes(draw: st.DrawFn) -> bytes:
    """A valid encoded image of a random mode / format / size, possibly mutated afterwards."""
    fmt = draw(st.sampled_from(sorted(FORMATS)))
    mode = draw(st.sampled_from(MODES))
    width = draw(st.integers(1, 80))
    height = draw(st.integers(1, 80))
    data = bytearray(_encode(mode, fmt, width, height, draw(st.integers(0, 2**16))))
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
    return bytes(data)


def _check_contract(path: Path) -> None:
    """load_image either returns an 8-bit RGB image of a plausible size or raises a one-line ZeroconError."""
    try:
        image = load_image(path)
    except ZeroconError as exc:
        message = str(exc)
        assert message and "\n" not in message, f"error message must be one line: {message!r}"
        return
    assert image.mode == "RGB"
    assert min(image.size) >= 32
    np.asarray(image)  # the pixels are really there


FUZZ = settings(
    max_examples=int(os.environ.get("ZEROCON_FUZZ_EXAMPLES", "60")),
    deadline=2000,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    derandomize=True,
)


@FUZZ
@given(data=image_bytes(), suffix=st.sampled_from([*FORMATS.values(), ".png", ".jpeg", ".txt", ""]))
def test_mutated_images_only_raise_zerocon_error(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        _check_contract(path)


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
    assert out.mode == "RGB" and out.size == (width, height)


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
@given(data=image_bytes(), suffix=st.sampled_from(list(FORMATS.values())))
def test_mutated_images_long_run(data: bytes, suffix: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"input{suffix}"
        path.write_bytes(data)
        _check_contract(path)
