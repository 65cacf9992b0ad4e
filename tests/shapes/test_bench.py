import numpy as np
import pytest

from zerocon.errors import ZeroconError
from zerocon.shapes.bench import (
    TASKS,
    BenchConfig,
    bench_scenes,
    markdown_table,
    method_nce_weight,
    paired_differences,
    score_edit,
    summarise,
    target_spec,
)
from zerocon.shapes.data import BENCH_SEED
from zerocon.shapes.world import render


@pytest.mark.parametrize("task", TASKS)
def test_ideal_edit_scores_perfectly_and_no_edit_fails(task):
    spec = bench_scenes(3)[2]
    tgt = target_spec(spec, task, np.random.default_rng([BENCH_SEED, 2]))
    assert tgt != spec and tgt.caption != spec.caption
    source, ideal = render(spec), render(tgt)
    good = score_edit(source.image, source.mask, ideal.image, tgt, task)
    assert good["edit_acc"] == 1.0 and good["target_attr_acc"] == 1.0
    if task in ("color", "background"):
        assert good["mask_iou"] > 0.9 and good["centroid_err"] < 1.0
    if task == "background":
        assert good["obj_err"] < 0.01
    else:
        assert good["bg_err"] < 0.01
    unchanged = score_edit(source.image, source.mask, source.image, tgt, task)
    assert unchanged["edit_acc"] == 0.0


def test_background_error_sees_a_damaged_background():
    spec = bench_scenes(1)[0]
    tgt = target_spec(spec, "color", np.random.default_rng(0))
    source, ideal = render(spec), render(tgt)
    damaged = ideal.image.copy()
    damaged[:8] = 255 - damaged[:8]
    assert score_edit(source.image, source.mask, damaged, tgt, "color")["bg_err"] > 0.05


def test_summary_has_confidence_intervals_and_table():
    cfg = BenchConfig(scenes=2, seeds=(0, 1), tasks=("color",), methods=("word_swap",))
    records = [
        {
            "scene": s,
            "seed": k,
            "task": "color",
            "method": "word_swap",
            "edit_acc": float(s),
            "mask_iou": 0.5,
            "bg_err": 0.1,
        }
        for s in range(2)
        for k in range(2)
    ]
    summary = summarise(records, cfg)
    entry = summary["color/word_swap"]["edit_acc"]
    assert entry["mean"] == 0.5 and entry["n"] == 4 and entry["ci95"] > 0
    assert "| color | word_swap |" in markdown_table(summary, cfg)


def test_zerocon_at_weight_names_a_patchnce_weight():
    assert method_nce_weight("zerocon", 1.0) == 1.0 and method_nce_weight("pix2pix_zero", 3.0) == 3.0
    assert method_nce_weight("zerocon@100", 1.0) == 100.0 and method_nce_weight("zerocon@0", 1.0) == 0.0
    for bad in ("zerocon@x", "zerocon@-1", "word_swap@10", "cut", "zerocon@"):
        with pytest.raises(ZeroconError):
            method_nce_weight(bad, 1.0)


def test_paired_differences_match_scene_and_seed():
    cfg = BenchConfig(scenes=2, seeds=(0, 1), tasks=("shape",), methods=("pix2pix_zero", "zerocon@100"))
    records = [
        {"scene": s, "seed": k, "task": "shape", "method": m, "edit_acc": 1.0, "mask_iou": iou}
        for s in range(2)
        for k in range(2)
        for m, iou in (("pix2pix_zero", 0.5 + 0.1 * s), ("zerocon@100", 0.7 + 0.1 * s + 0.01 * k))
    ]
    paired = paired_differences(records, cfg)
    entry = paired["shape/zerocon@100 - pix2pix_zero"]
    assert (
        np.isclose(entry["mask_iou"]["mean"], 0.205) and entry["mask_iou"]["n"] == 4
    )  # (0.2*2 + 0.21*2) / 4
    assert entry["edit_acc"]["mean"] == 0.0 and "bg_err" not in entry
    assert "| shape | zerocon@100 − pix2pix_zero | 4 | +0.000" in markdown_table(
        summarise(records, cfg), cfg, paired
    )
    assert paired_differences(records, BenchConfig(tasks=("shape",), methods=("zerocon@100",))) == {}


def test_unknown_task_fails():
    with pytest.raises(ZeroconError):
        target_spec(bench_scenes(1)[0], "texture", np.random.default_rng(0))


def test_grid_and_merge(tmp_path):
    import json

    from PIL import Image

    from zerocon.shapes.bench import example_grid, merge_results

    img = Image.new("RGB", (64, 64), "gray")
    grid = example_grid([(img, img, {"word_swap": img, "sdedit": img})], ("word_swap", "sdedit"))
    assert grid.size == (96 * 4, 14 + 96)
    cfg = BenchConfig(scenes=1, seeds=(0,), tasks=("color",), methods=("word_swap",))
    from dataclasses import asdict

    for start in (0, 1):
        folder = tmp_path / f"part{start}"
        folder.mkdir()
        record = {
            "scene": start,
            "seed": 0,
            "task": "color",
            "method": "word_swap",
            "edit_acc": 1.0,
            "mask_iou": 0.9,
        }
        part = {"config": {**asdict(cfg), "start": start}, "seconds": 1.0, "records": [record]}
        (folder / "results.json").write_text(json.dumps(part))
    merged = merge_results([tmp_path / "part0", tmp_path / "part1"], tmp_path / "merged")
    assert merged["config"]["scenes"] == 2 and merged["summary"]["color/word_swap"]["edit_acc"]["n"] == 2
    with pytest.raises(ZeroconError):
        merge_results([tmp_path / "part0", tmp_path / "part0"], tmp_path / "bad")  # same scene and seed twice
    # A later run adding scenes for one method only: each method is summarised over the scenes it ran.
    folder = tmp_path / "part2"
    folder.mkdir()
    extra = {"scene": 2, "seed": 0, "task": "color", "method": "sdedit", "edit_acc": 0.0, "mask_iou": 0.5}
    part = {"config": {**asdict(cfg), "start": 2, "methods": ["sdedit"]}, "seconds": 1.0, "records": [extra]}
    (folder / "results.json").write_text(json.dumps(part))
    merged = merge_results([tmp_path / f"part{i}" for i in range(3)], tmp_path / "merged3")
    assert list(merged["config"]["methods"]) == ["word_swap", "sdedit"] and merged["config"]["scenes"] == 3
    assert merged["summary"]["color/word_swap"]["edit_acc"]["n"] == 2
    assert merged["summary"]["color/sdedit"]["edit_acc"]["n"] == 1
    table = (tmp_path / "merged3" / "table.md").read_text()
    assert "| color | word_swap | 2 | 1.000" in table and "| color | sdedit | 1 | 0.000" in table
    part["config"]["steps"] = 10  # a different setting still refuses to merge
    (folder / "results.json").write_text(json.dumps(part))
    with pytest.raises(ZeroconError, match="different settings"):
        merge_results([tmp_path / "part0", folder], tmp_path / "bad2")
    (tmp_path / "unfinished").mkdir()  # a run killed before it wrote its results
    with pytest.raises(ZeroconError, match="unfinished holds no finished bench run"):
        merge_results([tmp_path / "part0", tmp_path / "unfinished"], tmp_path / "bad3")
    (tmp_path / "unfinished" / "results.json").write_text("[1, 2]")
    with pytest.raises(ZeroconError, match="no finished bench run"):
        merge_results([tmp_path / "part0", tmp_path / "unfinished"], tmp_path / "bad3")


def test_tuning_scenes_are_disjoint_from_the_reported_ones():
    tune, bench = bench_scenes(50, "tune"), bench_scenes(50)
    assert not {repr(s) for s in tune} & {repr(s) for s in bench}
    assert len({s.caption for s in tune}) > 20  # a varied set, not one scene repeated
    with pytest.raises(ZeroconError, match="unknown split"):
        bench_scenes(1, "train")


def test_the_guidance_sweep_writes_its_choice_into_the_model_folder(tmp_path):
    import json

    from module_files import ROOT, load_module_file

    module = load_module_file(ROOT / "benchmarks" / "shapes_guidance.py")
    (tmp_path / "model_index.json").write_text(
        json.dumps({"_class_name": "ZeroConPipeline", "edit_defaults": {"use_templates": False}})
    )
    module.apply_scale(str(tmp_path), 1.5)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["edit_defaults"] == {"use_templates": False, "guidance_scale": 1.5}
    assert index["_class_name"] == "ZeroConPipeline"
    with pytest.raises(ZeroconError, match="model_index.json"):
        module.apply_scale(str(tmp_path / "empty_dir_that_is_not_a_model"), 2.0)
    from zerocon.models import set_edit_defaults

    set_edit_defaults(str(tmp_path), patch_nce_weight=30.0)
    chosen = json.loads((tmp_path / "model_index.json").read_text())["edit_defaults"]
    # a weight is written with the scale it was chosen on (a weight alone would be read as the old scale)
    assert chosen["patch_nce_weight"] == 30.0 and chosen["patch_nce_scale"] == "relative"
    set_edit_defaults(str(tmp_path), patch_nce_weight=3.0, patch_nce_scale="absolute")
    chosen = json.loads((tmp_path / "model_index.json").read_text())["edit_defaults"]
    assert chosen["patch_nce_weight"] == 3.0 and chosen["patch_nce_scale"] == "absolute"
    with pytest.raises(ZeroconError, match="unknown edit setting"):
        set_edit_defaults(str(tmp_path), guidance=1.0)


def test_tradeoff_script_averages_tasks_per_method(tmp_path):
    import json
    from dataclasses import asdict

    from module_files import ROOT, load_module_file

    module = load_module_file(ROOT / "benchmarks" / "shapes_tradeoff.py")
    cfg = BenchConfig(scenes=1, seeds=(0,), tasks=("color", "background"), methods=("zerocon@100",))
    records = [
        {"scene": 0, "seed": 0, "task": "color", "method": "zerocon@100", "edit_acc": 1.0, "mask_iou": 0.8,
         "bg_err": 0.01, "centroid_err": 2.0},
        {"scene": 0, "seed": 0, "task": "background", "method": "zerocon@100", "edit_acc": 0.0, "mask_iou": 0.2,
         "obj_err": 0.3, "centroid_err": 9.0},
    ]  # fmt: skip
    run = tmp_path / "run"
    run.mkdir()
    (run / "results.json").write_text(json.dumps({"config": asdict(cfg), "summary": summarise(records, cfg)}))
    point = module.summarise(run)["zerocon@100"]
    assert point["edit_acc"] == 0.5  # both tasks
    assert point["mask_iou"] == 0.8 and point["bg_err"] == 0.01  # the object-keeping task only
    module.plot({"λ=100": point}, tmp_path / "plot.png")
    from PIL import Image

    with Image.open(tmp_path / "plot.png") as plotted:  # a whole PNG at the figure's 5.5 x 4 in, 110 dpi
        plotted.load()
        assert plotted.format == "PNG" and plotted.size == (605, 440)
    assert point["method"] == "zerocon" and point["nce_weight"] == 100.0  # the label's weight, not the run's


def test_wilson_interval_is_sound_at_the_ends_and_symmetric():
    from zerocon.shapes.bench import wilson_interval

    none, every = wilson_interval(0, 8), wilson_interval(8, 8)
    assert none["low"] == 0.0 and 0.3 < none["high"] < 0.35
    assert every["high"] == 1.0 and abs(every["low"] - (1 - none["high"])) < 1e-4
    half = wilson_interval(12, 24)
    assert half["rate"] == 0.5 and abs(half["low"] + half["high"] - 1.0) < 1e-4 and half["low"] < 0.5
    with pytest.raises(ValueError):
        wilson_interval(0, 0)
