"""In ShapesWorld, CLIP accuracy (shipped CLIP) agrees with the oracle's judgement of the same edits.

The editor and the CLIP are the bundled ShapesWorld models; the oracle reads the edited scene exactly. An edit
is CLIP-correct when the edit is closer to the target caption than to the source caption, and oracle-correct
when the oracle reads the target's shape, colour and background. The issue asks for agreement on >= 90 % of
edits.
"""

from __future__ import annotations

import numpy as np
import pytest

from zerocon.models import SHAPES_DIR

SCENES = 6
TASKS = ("color", "shape", "both", "background")
METHODS = ("word_swap", "zerocon")
STEPS = 10


@pytest.mark.slow
@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,  # a crash is a failure, not the expected one
    reason="the edits are too imperfect for the two judges to agree: CLIP prefers the target caption for edits "
    "that get one attribute right and another wrong, which the oracle counts as failures (record: "
    "benchmarks/results/shapes/clip_agreement.json). Remove this marker when better edits pass.",
)
def test_clip_accuracy_agrees_with_the_oracle_on_shapesworld_edits():
    if not (SHAPES_DIR / "pipeline").is_dir() or not (SHAPES_DIR / "clip").is_dir():
        pytest.skip(
            f"bundled ShapesWorld editor/CLIP not installed at {SHAPES_DIR} (run 'zerocon shapes train')"
        )
    from zerocon.edit.pipeline import ZeroConPipeline
    from zerocon.metrics.clip import ClipEmbedder
    from zerocon.shapes.agreement import clip_oracle_agreement

    pipe = ZeroConPipeline.from_pretrained("shapes")
    pipe.set_progress_bar_config(disable=True)
    clip = ClipEmbedder.from_pretrained("shapes-clip")
    result = clip_oracle_agreement(pipe, clip, SCENES, METHODS, STEPS)
    assert result["edits"] == SCENES * len(TASKS) * len(METHODS)
    assert result["clip_yes_oracle_no"] + result["clip_no_oracle_yes"] == round(
        (1 - result["agreement"]) * result["edits"]
    )
    assert result["agreement"] >= 0.9, result


@pytest.mark.slow
def test_clip_accuracy_separates_rendered_targets_from_unchanged_sources():
    """Without the editor: a perfect edit (the target rendered) vs no edit (the source) for 30 scenes x 4 tasks.

    With the interim ShapesWorld CLIP (before bundling) this gave 91.7 % agreement on 240 images.
    """
    if not (SHAPES_DIR / "clip").is_dir():
        pytest.skip(f"bundled ShapesWorld CLIP not installed at {SHAPES_DIR / 'clip'}")
    from zerocon.metrics.clip import ClipEmbedder, clip_accuracy_per_image
    from zerocon.shapes.bench import bench_scenes, score_edit, target_spec
    from zerocon.shapes.data import BENCH_SEED
    from zerocon.shapes.world import render

    clip = ClipEmbedder.from_pretrained("shapes-clip")
    images, sources, targets, oracle = [], [], [], []
    for i, spec in enumerate(bench_scenes(30)):
        scene = render(spec)
        rng = np.random.default_rng([BENCH_SEED, i])
        for task in TASKS:
            tgt = target_spec(spec, task, rng)
            for image in (render(tgt).pil(), scene.pil()):
                edited = np.asarray(image.convert("RGB"))
                oracle.append(bool(score_edit(scene.image, scene.mask, edited, tgt, task)["edit_acc"]))
                images.append(image)
                sources.append(spec.caption)
                targets.append(tgt.caption)
    assert 0.4 < np.mean(oracle) < 0.6  # half are perfect edits, half unchanged
    ok = clip_accuracy_per_image(
        clip.embed_images(images), clip.embed_texts(sources), clip.embed_texts(targets)
    )
    agree = np.mean([a == b for a, b in zip(ok.tolist(), oracle)])
    assert agree >= 0.9, f"agreement {agree:.3f} on {len(images)} images"
