"""`accelerate launch -m zerocon.cli edit DIR` with two CPU processes: the inputs are shared out by rank,
each edited exactly once, one summary of both processes' failures, and a re-run only does what is left."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image


def _launch(argv: list[str]) -> subprocess.CompletedProcess:
    accelerate = Path(sys.executable).parent / "accelerate"
    # several CPU processes go through the torchrun launcher (--multi_gpu) with the CPU forced by
    # ACCELERATE_USE_CPU (Accelerate's MULTI_CPU), as in the CUT distributed test
    env = {**os.environ, "OMP_NUM_THREADS": "1", "ACCELERATE_USE_CPU": "1"}
    cmd = [str(accelerate), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1"]
    cmd += ["--mixed_precision", "no", "--dynamo_backend", "no", "-m", "zerocon.cli", *argv]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_two_processes_edit_every_input_exactly_once(tiny_dir, tmp_path):
    photos = tmp_path / "in"
    photos.mkdir()
    rng = np.random.default_rng(0)
    for name in ("b", "c", "e", "f"):
        Image.fromarray((rng.random((32, 32, 3)) * 255).astype("uint8")).save(photos / f"{name}.png")
    for name in ("a", "d"):  # one broken file in each process's share (a, b, c | d, e, f)
        (photos / f"{name}.png").write_bytes(b"\x89PNG\r\n\x1a\nnot a png")
    out = tmp_path / "out"
    argv = ["edit", str(photos), "--target", "cat->dog", "--caption", "a photo of a cat", "--model"]
    argv += [str(tiny_dir), "--steps", "2", "--out", str(out), "--no-cache", "--quiet", "--device", "cpu"]
    done = _launch(argv)
    assert done.returncode != 0  # the failures make every process exit 2
    assert sorted(p.name for p in out.iterdir()) == ["b", "c", "e", "f"]
    processes = [json.loads((out / n / "record.json").read_text())["process"] for n in ("b", "c", "e", "f")]
    assert processes == ["0 of 2", "0 of 2", "1 of 2", "1 of 2"]
    assert done.stderr.count("failed:") == 1, done.stderr[-3000:]  # one summary, from the main process
    summary = done.stderr[done.stderr.index("failed:") :]
    assert "edited 4 of 6 inputs" in done.stderr and "a.png" in summary and "d.png" in summary
    # interrupted runs: the same command again only remakes what is missing
    stamps = {n: (out / n / "record.json").stat().st_mtime_ns for n in ("b", "c", "f")}
    (photos / "a.png").unlink()
    (photos / "d.png").unlink()
    for child in (out / "e").iterdir():
        child.unlink()
    (out / "e").rmdir()
    again = _launch(argv)
    assert again.returncode == 0, again.stderr[-3000:]
    assert stamps == {n: (out / n / "record.json").stat().st_mtime_ns for n in ("b", "c", "f")}
    assert (out / "e" / "record.json").is_file() and "3 input(s) already done" in again.stderr
