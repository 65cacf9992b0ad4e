"""Killed training runs lose nothing: ``kill -9`` between checkpoints, ``--resume``, identical final weights.

Each test runs the real CLI in a child process with tiny settings, kills it with SIGKILL as soon as its first
checkpoint is on disk (so the kill lands between checkpoints, or while the next is being written), resumes
it, and compares every tensor of the final checkpoint (networks and optimizer state) with an uninterrupted
run of the same command: they must be bit-for-bit equal on the CPU. A non-finite loss must stop the CLI with
one line naming the step and the loss, after keeping the last good checkpoint.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from zerocon.io import load_checkpoint

SRC = Path(__file__).resolve().parents[1] / "src"
ENV = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


def zerocon(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "zerocon.cli", *args], capture_output=True, text=True, env=ENV, timeout=timeout
    )


def checkpoint_step(run: Path) -> int:
    try:
        return int(json.loads((run / "checkpoint" / "config.json").read_text())["step"])
    except (OSError, ValueError, KeyError):
        return 0


def kill_after_first_checkpoint(args: list[str], run: Path, total: int, timeout: float = 600) -> int:
    """Start ``zerocon *args``, SIGKILL it once ``run/checkpoint`` exists; return the step it had saved."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "zerocon.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    deadline = time.monotonic() + timeout
    try:
        while checkpoint_step(run) == 0:
            if proc.poll() is not None:
                pytest.fail(f"training ended before it could be killed: {proc.stderr.read()[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("no checkpoint appeared in time")
            time.sleep(0.01)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    saved = checkpoint_step(run)
    assert 0 < saved < total, f"the kill did not land mid-run (checkpoint at step {saved} of {total})"
    return saved


def assert_same_checkpoint(a: Path, b: Path) -> int:
    """Every tensor of both checkpoints equal bit for bit; returns how many tensors were compared."""
    compared = 0
    for name in ("networks.safetensors", "optimizers.safetensors"):
        left, right = load_file(str(a / "checkpoint" / name)), load_file(str(b / "checkpoint" / name))
        assert left.keys() == right.keys()
        for key in left:
            assert torch.equal(left[key], right[key]), f"{name}:{key} differs after resume"
            compared += 1
    config_a = json.loads((a / "checkpoint" / "config.json").read_text())
    config_b = json.loads((b / "checkpoint" / "config.json").read_text())
    assert config_a["step"] == config_b["step"]
    assert config_a["schedulers"] == config_b["schedulers"]
    return compared


def _noise_images(folder: Path, count: int, seed: int, size: int = 40) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def cut_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cut_data")
    _noise_images(root / "trainA", 4, seed=1)
    _noise_images(root / "trainB", 4, seed=2)
    return root


CUT_TINY = ["--size", "32", "--ngf", "4", "--ndf", "4", "--n-blocks", "1", "--num-patches", "16"]


def _cut_train(data: Path, run: Path, steps: int, *extra: str) -> list[str]:
    return [
        "cut", "train", str(data), "--out", str(run), "--steps", str(steps), *CUT_TINY,
        "--checkpoint-every", "2", "--sample-every", "3", "--no-progress", *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_cut_killed_and_resumed_matches_uninterrupted(tmp_path, cut_data):
    steps = 6
    full = zerocon(*_cut_train(cut_data, tmp_path / "full", steps))
    assert full.returncode == 0, full.stderr[-2000:]
    run = tmp_path / "killed"
    kill_after_first_checkpoint(_cut_train(cut_data, run, steps), run, steps)
    resumed = zerocon(*_cut_train(cut_data, run, steps, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoint_step(run) == steps
    assert assert_same_checkpoint(tmp_path / "full", run) > 10
    # outputs written around the kill are complete files (atomic writes), never torn ones
    for png in run.rglob("*.png"):
        if not png.name.startswith("."):
            Image.open(png).load()
    json.loads((run / "losses.json").read_text())


@pytest.mark.slow
def test_cut_nan_loss_stops_with_step_and_loss_after_last_good_checkpoint(tmp_path, cut_data):
    """An absurd learning rate makes the gradients overflow: the weights turn NaN one step before the losses
    would. The CLI stops with one line naming what went non-finite and the step, and the checkpoint it keeps is
    the last good one (every weight finite)."""
    run = tmp_path / "nan"
    done = zerocon(*_cut_train(cut_data, run, 8, "--lr", "1e8", "--checkpoint-every", "1"))
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert "Traceback" not in done.stderr
    message = lines[-1]
    found = re.search(
        r"(?:loss|weights) '([\w.]+)' (?:is (?:nan|inf|-inf) at|became non-finite by) step (\d+).*"
        r"Last good checkpoint: .* \(step (\d+)\)",
        message,
    )
    assert found, message
    failed_step, kept_step = int(found.group(2)), int(found.group(3))
    assert kept_step == failed_step - 1
    tensors, config = load_checkpoint(run / "checkpoint")
    assert config["step"] == kept_step
    assert all(torch.isfinite(t).all() for t in tensors["networks"].values())


@pytest.fixture(scope="module")
def lanit_data(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Six ShapesWorld scenes and a tiny random CLIP (the LANIT tests' builder) saved to a folder."""
    from zerocon.shapes import render_seed

    root = tmp_path_factory.mktemp("lanit_data")
    (root / "images").mkdir()
    for seed in range(6):
        render_seed(seed).pil().save(root / "images" / f"scene_{seed}.png")
    from module_files import load_module_file

    helpers = load_module_file(SRC.parent / "tests" / "lanit" / "conftest.py", "lanit_tiny_clip")
    return root / "images", helpers.make_tiny_clip(root / "clip")


def _lanit_train(data: tuple[Path, Path], run: Path, steps: int, *extra: str) -> list[str]:
    images, clip = data
    return [
        "lanit", "train", "--data", str(images), "--domains", "red,blue,circle,square", "--preset", "shapes",
        "--clip", str(clip), "--img-size", "32", "--batch-size", "2", "--steps", str(steps),
        "--prompt-start", "2", "--checkpoint-every", "2", "--sample-every", "3", "--no-progress",
        "--out", str(run), *extra,
    ]  # fmt: skip


@pytest.mark.slow
def test_lanit_killed_and_resumed_matches_uninterrupted(tmp_path, lanit_data):
    steps = 6
    full = zerocon(*_lanit_train(lanit_data, tmp_path / "full", steps))
    assert full.returncode == 0, full.stderr[-2000:]
    run = tmp_path / "killed"
    kill_after_first_checkpoint(_lanit_train(lanit_data, run, steps), run, steps)
    resumed = zerocon(*_lanit_train(lanit_data, run, steps, "--resume"))
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert checkpoint_step(run) == steps
    # generator, mapping, style encoder, discriminator, their EMA copies, the learned prompts and all optimizers
    assert assert_same_checkpoint(tmp_path / "full", run) > 50


def test_trainer_refuses_to_checkpoint_non_finite_weights(tmp_path):
    """Finite losses with non-finite gradients: the trainer stops at the checkpoint instead of saving NaNs."""
    from torch import nn

    from zerocon.training import NonFiniteLoss, TrainableMethod, TrainConfig, Trainer, TrainingDataset

    class Ones(TrainingDataset):
        def __len__(self):
            return 3

        def item(self, index, generator):
            return torch.ones(2)

    class PoisonedGradients(TrainableMethod):
        def __init__(self):
            torch.manual_seed(0)
            self.net = nn.Linear(2, 1)
            self.opt = torch.optim.SGD(self.net.parameters(), lr=0.1)

        def networks(self):
            return {"net": self.net}

        def optimizers(self):
            return {"opt": self.opt}

        def collate(self, items):
            return torch.stack(items)

        def train_step(self, batch, ctx):
            loss = self.net(batch).pow(2).mean()
            ctx.backward(loss, "mse")
            if ctx.step == 3:  # the loss is finite, its gradient is not
                self.net.weight.grad.fill_(float("inf"))
            ctx.optimizer_step(self.opt)
            return {"mse": loss.item()}

        def sample_grid(self, batch, generator):
            return Image.new("RGB", (8, 8))

        def config(self):
            return {"method": "toy", "preset": "default"}

    method = PoisonedGradients()
    config = TrainConfig(steps=6, checkpoint_every=2, sample_every=100, log_every=1)
    trainer = Trainer(method, Ones(), tmp_path / "run", config, progress=False)
    with pytest.raises(NonFiniteLoss, match=r"weights 'net.weight' became non-finite by step 4.*\(step 2\)"):
        trainer.train()
    tensors, saved = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert saved["step"] == 2 and all(torch.isfinite(t).all() for t in tensors["networks"].values())
