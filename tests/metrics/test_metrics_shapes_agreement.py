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
    reason="the edits are too imperfect for the two judges to agree: with the bundle of 2026-11-22 and its "
    "guidance scale 2 (chosen on ShapesBench's tune split) agreement is 0.604 on 48 edits (oracle acc 0.562, "
    "CLIP acc 0.958; it was 0.271 at guidance 5): CLIP prefers the target caption for edits that get the colour "
    "right but the shape wrong, which the oracle counts as failures. Remove this marker when better edits pass.",
)
def test_clip_accuracy_agrees_with_the_oracle_on_shapesworld_edits():
    if not (SHAPES_DIR / "pipeline").is_dir() or not (SHAPES_DIR / "clip").is_dir():
        pytest.skip(
            f"bundled ShapesWorld editor/CLIP not installed at {SHAPES_DIR} (run 'zerocon shapes train')"
        )
    from zerocon.edit.pipeline import EditConfig, ZeroConPipeline
    from zerocon.metrics.clip import ClipEmbedder, clip_accuracy_per_image
    from zerocon.shapes.bench import bench_scenes, score_edit, target_spec
    from zerocon.shapes.data import BENCH_SEED
    from zerocon.shapes.world import render

    pipe = ZeroConPipeline.from_pretrained("shapes")
    pipe.set_progress_bar_config(disable=True)
    clip = ClipEmbedder.from_pretrained("shapes-clip")
    edits, sources, targets, oracle = [], [], [], []
    for i, spec in enumerate(bench_scenes(SCENES)):
        scene = render(spec)
        rng = np.random.default_rng([BENCH_SEED, i])
        configs = {m: EditConfig(method=m, num_inference_steps=STEPS, use_templates=False) for m in METHODS}
        inversion = pipe.invert_image(scene.pil(), caption=spec.caption, config=configs[METHODS[0]])
        for task in TASKS:
            tgt = target_spec(spec, task, rng)
            for method in METHODS:
                edited = pipe.edit(
                    scene.pil(),
                    target=tgt.caption,
                    caption=spec.caption,
                    config=configs[method],
                    inversion=inversion,
                ).edit.convert("RGB")
                small = edited.resize(scene.pil().size)
                oracle.append(
                    bool(score_edit(scene.image, scene.mask, np.asarray(small), tgt, task)["edit_acc"])
                )
                edits.append(edited)
                sources.append(spec.caption)
                targets.append(tgt.caption)
    image_emb = clip.embed_images(edits)
    clip_ok = clip_accuracy_per_image(
        image_emb, clip.embed_texts(sources), clip.embed_texts(targets)
    ).tolist()
    agree = np.mean([a == b for a, b in zip(clip_ok, oracle)])
    detail = f"agreement {agree:.3f} on {len(edits)} edits; oracle acc {np.mean(oracle):.3f}, CLIP acc {np.mean(clip_ok):.3f}"
    print(detail)
    assert agree >= 0.9, detail


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
