"""ShapesWorld: a procedural world of simple scenes with exact ground truth, its oracle and small models.

Every method of the project can run offline here: the scene generator (:mod:`zerocon.shapes.world`) makes
images with known captions, labels and masks; the oracle (:mod:`zerocon.shapes.oracle`) reads them back from
any image; small CLIP / VAE / UNet / BLIP models trained on the world are shipped in
``zerocon/assets/shapes``.
"""

from zerocon.shapes.world import (
    BACKGROUND_COLORS,
    OBJECT_COLORS,
    SHAPES,
    SIZE,
    TEXTURES,
    VOCABULARY,
    ObjectSpec,
    Scene,
    SceneFilter,
    SceneSpec,
    all_captions,
    caption_for,
    colour_alignment,
    iter_scenes,
    parse_caption,
    render,
    render_seed,
    sample_spec,
    write_dataset,
)

__all__ = [
    "BACKGROUND_COLORS",
    "OBJECT_COLORS",
    "SHAPES",
    "SIZE",
    "TEXTURES",
    "VOCABULARY",
    "ObjectSpec",
    "Scene",
    "SceneFilter",
    "SceneSpec",
    "all_captions",
    "caption_for",
    "colour_alignment",
    "iter_scenes",
    "parse_caption",
    "render",
    "render_seed",
    "sample_spec",
    "write_dataset",
]
