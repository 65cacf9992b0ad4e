import numpy as np
import pytest
from PIL import Image, ImageFilter

from zerocon.shapes import render, render_seed, sample_spec
from zerocon.shapes.oracle import mask_iou, read_scene

FRESH = 30_000_000  # seeds used by no training split


def _check(scenes, images):
    hits = {"shape": 0, "color": 0, "background": 0}
    ious = []
    for scene, image in zip(scenes, images):
        reading = read_scene(image)
        hits["shape"] += reading.shape == scene.spec.obj.shape
        hits["color"] += reading.color == scene.spec.obj.color
        hits["background"] += reading.background == scene.spec.background
        ious.append(mask_iou(reading.mask, scene.mask))
    return {k: v / len(scenes) for k, v in hits.items()}, float(np.mean(ious))


def test_oracle_reads_fresh_renders():
    rng = np.random.default_rng()
    start = FRESH + int(rng.integers(0, 1_000_000))
    scenes = [render_seed(start + i) for i in range(150)]
    acc, iou = _check(scenes, [s.image for s in scenes])
    assert min(acc.values()) >= 0.99, acc
    assert iou > 0.95


def test_oracle_tolerates_noise_and_blur():
    scenes = [render_seed(FRESH + 5000 + i) for i in range(60)]
    rng = np.random.default_rng(0)
    images = []
    for s in scenes:
        blurred = np.asarray(Image.fromarray(s.image).filter(ImageFilter.GaussianBlur(0.7)), dtype=np.float32)
        images.append(np.clip(blurred + rng.normal(0, 8, blurred.shape), 0, 255).astype(np.uint8))
    acc, iou = _check(scenes, images)
    assert min(acc.values()) >= 0.95, acc
    assert iou > 0.9


def test_oracle_sees_colour_change_and_empty_scene():
    spec = sample_spec(FRESH + 1)
    new_color = "blue" if spec.obj.color != "blue" else "red"
    reading = read_scene(render(spec.with_object(color=new_color)).image)
    assert reading.color == new_color and reading.shape == spec.obj.shape
    empty = np.full((64, 64, 3), 128, np.uint8)
    blank = read_scene(empty)
    assert blank.background == "gray" and blank.color is None and blank.shape is None


@pytest.mark.parametrize("size", [32, 128])
def test_oracle_accepts_other_sizes(size):
    scene = render_seed(FRESH + 7)
    image = Image.fromarray(scene.image).resize((size, size), Image.Resampling.BICUBIC)
    reading = read_scene(image)
    assert reading.color == scene.spec.obj.color
