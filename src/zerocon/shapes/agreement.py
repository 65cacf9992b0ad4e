"""Do CLIP accuracy and the oracle judge the same ShapesWorld edits the same way?

An edit is CLIP-correct when CLIP puts it closer to the target caption than to the source caption, and
oracle-correct when the oracle reads the target's attributes (ShapesBench's ``edit_acc``). Their agreement on
real edits says how far the CLIP-accuracy metric can be trusted where no oracle exists (on photos).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

TASKS = ("color", "shape", "both", "background")


def clip_oracle_agreement(
    pipe: Any,
    clip: Any,
    scenes: int,
    methods: Sequence[str] = ("word_swap", "zerocon"),
    steps: int = 10,
    split: str = "bench",
) -> dict[str, Any]:
    """Edit the first ``scenes`` scenes of ``split`` with each method and task (one inversion per scene) and
    compare the two judges: agreement, each judge's accuracy, and the counts of the two kinds of disagreement."""
    from zerocon.edit.config import EditConfig
    from zerocon.metrics.clip import clip_accuracy_per_image
    from zerocon.shapes.bench import bench_scenes, score_edit, target_spec
    from zerocon.shapes.data import BENCH_SEED
    from zerocon.shapes.world import render

    edits, sources, targets, oracle = [], [], [], []
    for i, spec in enumerate(bench_scenes(scenes, split)):
        scene = render(spec)
        rng = np.random.default_rng([BENCH_SEED, i])
        configs = {m: EditConfig(method=m, num_inference_steps=steps, use_templates=False) for m in methods}
        inversion = pipe.invert_image(scene.pil(), caption=spec.caption, config=configs[methods[0]])
        for task in TASKS:
            target = target_spec(spec, task, rng)
            for method in methods:
                edited = pipe.edit(
                    scene.pil(),
                    target=target.caption,
                    caption=spec.caption,
                    config=configs[method],
                    inversion=inversion,
                ).edit.convert("RGB")
                small = np.asarray(edited.resize(scene.pil().size))
                oracle.append(bool(score_edit(scene.image, scene.mask, small, target, task)["edit_acc"]))
                edits.append(edited)
                sources.append(spec.caption)
                targets.append(target.caption)
    by_clip = clip_accuracy_per_image(
        clip.embed_images(edits), clip.embed_texts(sources), clip.embed_texts(targets)
    ).tolist()
    pairs = list(zip(by_clip, oracle))
    return {
        "edits": len(pairs),
        "agreement": float(np.mean([a == b for a, b in pairs])),
        "oracle_accuracy": float(np.mean(oracle)),
        "clip_accuracy": float(np.mean(by_clip)),
        "clip_yes_oracle_no": sum(a and not b for a, b in pairs),
        "clip_no_oracle_yes": sum(b and not a for a, b in pairs),
    }
