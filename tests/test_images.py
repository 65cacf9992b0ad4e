import io

import numpy as np
import pytest
from PIL import Image

from zerocon.errors import ZeroconError
from zerocon.images import find_images, fit_size, load_image, pil_to_tensor, tensor_to_pil


def _save(tmp_path, name, image, **kw):
    path = tmp_path / name
    image.save(path, **kw)
    return path


def test_missing_file(tmp_path):
    with pytest.raises(ZeroconError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_text_file_named_png(tmp_path):
    path = tmp_path / "fake.png"
    path.write_text("hello, I am not an image")
    with pytest.raises(ZeroconError, match="not an image"):
        load_image(path)


def test_truncated_png(tmp_path):
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, "PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    with pytest.raises(ZeroconError, match="truncated|unreadable"):
        load_image(path)


GRAY = round(0.299 * 200 + 0.587 * 30 + 0.114 * 30)  # ITU-R 601 luma of (200, 30, 30): 81


@pytest.mark.parametrize(
    ("mode", "mean", "tolerance"),
    [
        ("L", (GRAY,) * 3, 0),
        ("RGBA", (200, 30, 30), 0),  # opaque: the colour itself
        ("P", (200, 30, 30), 3),  # dithered onto the web palette: right on average
        ("LA", (GRAY,) * 3, 0),
        ("CMYK", (200, 30, 30), 2),  # JPEG
        ("1", (GRAY,) * 3, 5),  # dithered black and white
    ],
)
def test_modes_are_converted(tmp_path, mode, mean, tolerance):
    image = Image.new("RGB", (40, 40), (200, 30, 30)).convert(mode)
    path = _save(tmp_path, f"x_{mode}.{'jpg' if mode == 'CMYK' else 'png'}", image)
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (40, 40)
    pixels = np.asarray(out, dtype=float).reshape(-1, 3)
    assert np.abs(pixels.mean(0) - mean).max() <= tolerance, pixels.mean(0)
    if mode in ("L", "LA", "1"):  # gray stays gray
        assert (pixels == pixels[:, :1]).all()
    if mode == "1":
        assert set(np.unique(pixels)) == {0.0, 255.0}


def test_sixteen_bit_png_is_rescaled(tmp_path):
    array = np.full((40, 40), 65535 // 2, dtype=np.uint16)
    path = _save(tmp_path, "deep.png", Image.fromarray(array))
    out = np.asarray(load_image(path))
    assert out.dtype == np.uint8 and abs(int(out[0, 0, 0]) - 127) <= 1


def test_rgba_transparent_becomes_white(tmp_path):
    path = _save(tmp_path, "clear.png", Image.new("RGBA", (40, 40), (0, 0, 0, 0)))
    assert np.asarray(load_image(path))[0, 0].tolist() == [255, 255, 255]


def test_exif_rotation_is_honoured(tmp_path):
    image = Image.new("RGB", (60, 40), "red")
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    path = _save(tmp_path, "rot.jpg", image, exif=exif)
    assert load_image(path).size == (40, 60)


def test_tiny_and_huge_are_rejected(tmp_path):
    with pytest.raises(ZeroconError, match="too small"):
        load_image(_save(tmp_path, "tiny.png", Image.new("RGB", (16, 16))))
    with pytest.raises(ZeroconError, match="too large"):
        load_image(_save(tmp_path, "big.png", Image.new("L", (5000, 5000))), max_pixels=10_000_000)


def test_find_images_and_tensor_roundtrip(tmp_path):
    _save(tmp_path, "a.png", Image.new("RGB", (40, 40), (10, 20, 30)))
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in find_images([tmp_path])] == ["a.png"]
    image = load_image(tmp_path / "a.png")
    assert np.array_equal(np.asarray(tensor_to_pil(pil_to_tensor(image))), np.asarray(image))
    assert fit_size((640, 480), 512) == (512, 384)
