import json

import numpy as np
import pytest

from zerocon.errors import ZeroconError
from zerocon.shapes import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    SHAPES,
    SceneFilter,
    all_captions,
    colour_alignment,
    parse_caption,
    render,
    render_seed,
    sample_spec,
    write_dataset,
)


def test_same_seed_same_scene_and_different_seeds_differ():
    a, b, c = render_seed(7), render_seed(7), render_seed(8)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.mask, b.mask)
    assert a.spec == b.spec
    assert not np.array_equal(a.image, c.image)


def test_world_size_and_vocabulary():
    assert len(SHAPES) >= 4 and len(OBJECT_COLORS) >= 6 and len(BACKGROUND_COLORS) >= 4
    assert len(all_captions()) == len(SHAPES) * len(OBJECT_COLORS) * len(BACKGROUND_COLORS)


@pytest.mark.parametrize("seed", range(40))
def test_caption_labels_and_mask_agree(seed):
    scene = render_seed(seed)
    spec = scene.spec
    assert scene.image.shape == (64, 64, 3) and scene.image.dtype == np.uint8
    assert parse_caption(scene.caption) == {
        "shape": spec.obj.shape,
        "color": spec.obj.color,
        "background": spec.background,
    }
    # inside the mask the pixels have the object's colour, on the border the background's
    inside = scene.image[scene.coverage > 0.99].astype(float)
    assert len(inside) > 50
    assert np.abs(inside - OBJECT_COLORS[spec.obj.color]).max() < 1.0
    border = np.concatenate([scene.image[0], scene.image[-1], scene.image[:, 0], scene.image[:, -1]])
    assert np.abs(np.median(border, 0) - BACKGROUND_COLORS[spec.background]).max() < 15
    # mask area matches the shape's analytic area
    r = spec.obj.radius
    area = {"circle": np.pi * r**2, "square": 2 * r**2, "triangle": 3 * np.sqrt(3) / 4 * r**2}.get(
        spec.obj.shape
    )
    if area is not None:
        assert abs(scene.mask.sum() - area) / area < 0.08
    # distractor: other colour, disjoint from the main object
    if spec.distractor is not None:
        assert spec.distractor.color != spec.obj.color


def test_filters_restrict_attributes_and_unknown_values_fail():
    flt = SceneFilter(shapes=["circle"], colors=["red", "blue"], backgrounds=["gray"])
    specs = [sample_spec(s, flt) for s in range(30)]
    assert {s.obj.shape for s in specs} == {"circle"}
    assert {s.obj.color for s in specs} <= {"red", "blue"}
    assert {s.background for s in specs} == {"gray"}
    with pytest.raises(ZeroconError):
        SceneFilter(shapes=["hexagon"]).check()


def test_with_object_changes_only_that_attribute():
    spec = sample_spec(3)
    edited = render(spec.with_object(color="blue" if spec.obj.color != "blue" else "red"))
    original = render(spec)
    assert np.array_equal(edited.mask, original.mask)
    outside = ~edited.mask & (original.coverage == 0) & (edited.coverage == 0)
    assert np.array_equal(edited.image[outside], original.image[outside])


@pytest.mark.parametrize("background", list(BACKGROUND_COLORS))
def test_colour_alignment_says_which_reading_of_a_recoloured_scene_is_nearer(background):
    """Below 0 exactly when the object recoloured in place is farther from the original scene, in pixels, than
    the background alone plus the recoloured object elsewhere (the same spot, counted once for each)."""
    spec = sample_spec(5, SceneFilter(backgrounds=[background], texture_prob=0.0, distractor_prob=0.0))
    empty = render(spec.with_object(radius=1e-4)).image.astype(np.float64)
    for color in OBJECT_COLORS:
        for other in OBJECT_COLORS:
            if color == other:
                continue
            first = render(spec.with_object(color=color)).image.astype(np.float64)
            second = render(spec.with_object(color=other)).image.astype(np.float64)
            in_place = ((first - second) ** 2).sum()
            move = ((first - empty) ** 2).sum() + ((second - empty) ** 2).sum()
            assert (colour_alignment(color, other, background) < 0) == (in_place > move), (color, other)
    assert colour_alignment("red", "blue", "gray") < 0 < colour_alignment("red", "blue", "white")


def test_write_dataset(tmp_path):
    write_dataset(tmp_path, 3, seed=10, flt=SceneFilter(shapes=["star"]))
    lines = (tmp_path / "labels.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["seed"] for r in records] == [10, 11, 12]
    assert all(r["shape"] == "star" and (tmp_path / r["file"]).exists() for r in records)
    # images and masks in separate folders with the same names: a clean training folder and an eval mask folder
    assert sorted(p.name for p in (tmp_path / "images").iterdir()) == [
        f"scene_{s:06d}.png" for s in (10, 11, 12)
    ]
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == [
        f"scene_{s:06d}.png" for s in (10, 11, 12)
    ]
    assert all((tmp_path / r["mask"]).exists() for r in records)
