"""The shared trainer skeleton, with a toy method small enough to run in a second."""

import json

import pytest
import torch
from PIL import Image
from torch import nn

from zerocon.errors import ZeroconError
from zerocon.io import load_checkpoint
from zerocon.training import (
    NonFiniteLoss,
    TrainableMethod,
    TrainConfig,
    Trainer,
    TrainingDataset,
    batch_indices,
)


class Points(TrainingDataset):
    def __len__(self):
        return 7

    def item(self, index, generator):
        x = torch.full((3,), float(index)) + 0.1 * torch.randn(3, generator=generator)
        return x, x.sum(dim=0, keepdim=True)


class Regression(TrainableMethod):
    def __init__(self, explode_at=None):
        torch.manual_seed(0)
        self.net = nn.Linear(3, 1)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=0.05)
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda s: 1.0 - s / 100)
        self.explode_at = explode_at

    def networks(self):
        return {"net": self.net}

    def optimizers(self):
        return {"opt": self.opt}

    def schedulers(self):
        return {"sched": self.sched}

    def collate(self, items):
        return torch.stack([i[0] for i in items]), torch.stack([i[1] for i in items])

    def train_step(self, batch, ctx):
        x, y = batch
        noise = 0.01 * torch.randn(y.shape, generator=ctx.generator)
        loss = ((self.net(x) - y - noise) ** 2).mean()
        if ctx.step == self.explode_at:
            loss = loss * float("nan")
        ctx.backward(loss, "mse")
        ctx.optimizer_step(self.opt)
        return {"mse": loss.item()}

    def sample_grid(self, batch, generator):
        return Image.new("RGB", (8, 8))

    def config(self):
        return {"method": "toy", "preset": "default"}


def _train(run, steps, resume=False, seed=0, **kw):
    method = Regression(**kw)
    trainer = Trainer(
        method,
        Points(),
        run,
        TrainConfig(steps=steps, batch_size=2, seed=seed, checkpoint_every=3, sample_every=5, log_every=1),
        progress=False,
    )
    if resume:
        trainer.resume()
    trainer.train()
    return method, trainer


def test_same_seed_same_weights(tmp_path):
    initial = Regression().net.weight.clone()  # every run starts from these weights
    a, _ = _train(tmp_path / "a", 6)
    b, _ = _train(tmp_path / "b", 6)
    c, _ = _train(tmp_path / "c", 6, seed=1)
    assert not torch.equal(a.net.weight, initial)  # the run really trained
    assert torch.equal(a.net.weight, b.net.weight) and torch.equal(a.net.bias, b.net.bias)
    assert not torch.equal(a.net.weight, c.net.weight)  # the seed sets the data order and the noise


def test_resume_matches_uninterrupted_bit_for_bit(tmp_path):
    full, _ = _train(tmp_path / "full", 8)
    _train(tmp_path / "part", 5)
    resumed, trainer = _train(tmp_path / "part", 8, resume=True)
    assert trainer.step == 8
    assert torch.equal(full.net.weight, resumed.net.weight) and torch.equal(full.net.bias, resumed.net.bias)
    tensors, config = load_checkpoint(tmp_path / "part" / "checkpoint")
    assert config["step"] == 8 and [h["step"] for h in config["history"]] == list(range(1, 9))
    assert (tmp_path / "part" / "losses.png").is_file() and (
        tmp_path / "part" / "samples" / "step_000005.png"
    ).is_file()


def test_nan_loss_stops_with_step_and_name_and_keeps_last_checkpoint(tmp_path):
    with pytest.raises(NonFiniteLoss, match=r"loss 'mse' is nan at step 5.*step 3"):
        _train(tmp_path / "run", 10, explode_at=4)
    _, config = load_checkpoint(tmp_path / "run" / "checkpoint")
    assert config["step"] == 3


def test_tampered_and_foreign_checkpoints_are_rejected(tmp_path):
    _train(tmp_path / "run", 3)
    weights = tmp_path / "run" / "checkpoint" / "networks.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ZeroconError, match="does not match its manifest"):
        _train(tmp_path / "run", 6, resume=True)
    _train(tmp_path / "other", 3)
    config_file = tmp_path / "other" / "checkpoint" / "config.json"
    config = json.loads(config_file.read_text())
    config["method"]["preset"] = "fancy"
    config_file.write_text(json.dumps(config))
    with pytest.raises(ZeroconError, match="does not match its manifest"):
        _train(tmp_path / "other", 6, resume=True)


def test_batch_indices_cover_each_epoch_once():
    seen = [i for step in range(7) for i in batch_indices(7, step, 0, 1, 1, seed=3)]
    assert sorted(seen) == list(range(7))
    ranks = [batch_indices(10, 0, r, 2, 5, seed=1) for r in range(2)]
    assert sorted(ranks[0] + ranks[1]) == list(range(10))
