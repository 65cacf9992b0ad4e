"""The one training loop of the ShapesWorld stages, and the settings every stage shares.

A stage is a :class:`Stage` subclass: its ``__init__`` builds the model and renders the data, and it supplies
the per-batch loss, the evaluation, the save and the final metrics. :func:`train_stage` does the rest, the
same way for every stage: seeding, shuffled batches, AdamW with a warmup + cosine learning rate, gradient
clipping, the curve file ``RUN/<stage>/curve.jsonl``, evaluation every ``eval_every`` steps, an atomic save
every ``save_every`` steps (so a partial result always exists), stopping after ``steps`` steps or
``max_minutes`` of wall clock, and ``metrics.json``.

All randomness comes from ``seed``: model init through ``torch.manual_seed`` and data order and noise through
the stage's ``torch.Generator``, so the same command with the same seed gives the same weights and metrics on
the same machine. The shared Accelerate :class:`zerocon.training.Trainer` is not used: its per-step
generators and data order would change the runs this loop reproduces.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from zerocon.errors import ZeroconError
from zerocon.io import staged_folder, write_json
from zerocon.shapes.data import SceneBatch, train_split, val_split


@dataclass
class StageConfig:
    """Settings shared by every stage."""

    steps: int = 1000
    """Maximum number of optimisation steps."""
    max_minutes: float = 0.0
    """Stop after this much wall clock (0 = no limit); metrics record the steps actually done."""
    batch_size: int = 32
    """Scenes per optimisation step."""
    lr: float = 1e-3
    """Peak learning rate (AdamW), reached after ``warmup`` steps and then decayed on a cosine to 0."""
    warmup: int = 50
    """Steps of linear learning-rate warmup."""
    seed: int = 0
    """Seeds the model init, the data order and every random draw of the stage."""
    n_train: int = 6000
    """Training scenes rendered once at the start (held-out captions excluded)."""
    n_val: int = 128
    """Validation scenes per split (seen captions / held-out captions)."""
    eval_every: int = 200
    """Evaluate on the validation splits and append the result to the curve every this many steps."""
    save_every: int = 200
    """Save the model (atomically) every this many steps, and at the end."""
    threads: int = 1
    """torch threads (1 when two jobs share the 2 cores)."""
    device: str = "cpu"
    """Where the model and its training tensors live ("cpu", "cuda", "cuda:1"; stages with
    ``Stage.supports_device``). Random draws still come from the CPU generator and are moved there, so a seed
    draws the same noise on every device."""
    bf16: bool = False
    """bf16 autocast of the loss's forward pass (tensor cores on a GPU; AVX-512 BF16 on a CPU)."""


@dataclass
class TowerConfig(StageConfig):
    """Settings of a stage whose model is a text part and a ViT vision tower of one width (CLIP, BLIP)."""

    hidden: int = 64
    """Hidden size of both parts (their MLPs are twice as wide)."""
    layers: int = 2
    """Layers of the text part (and of the vision tower unless ``vision_layers`` is set)."""
    heads: int = 4
    """Attention heads of both parts."""
    patch: int = 8
    """Side of the vision tower's patches on the 64x64 scenes."""
    vision_layers: int = 0
    """Layers of the vision tower (0 = ``layers``)."""

    def text_tower(self) -> dict[str, int]:
        """The text part's size, as transformers' text configs name it."""
        return dict(
            hidden_size=self.hidden,
            intermediate_size=2 * self.hidden,
            num_hidden_layers=self.layers,
            num_attention_heads=self.heads,
        )

    def vision_tower(self) -> dict[str, int]:
        """The vision tower's size on the 64x64 scenes, as transformers' vision configs name it."""
        return dict(
            hidden_size=self.hidden,
            intermediate_size=2 * self.hidden,
            num_hidden_layers=self.vision_layers or self.layers,
            num_attention_heads=self.heads,
            image_size=64,
            patch_size=self.patch,
        )


class CurveLog:
    """The stage's curve file, stopwatch and time budget."""

    def __init__(self, out: Path, cfg: StageConfig) -> None:
        self.cfg = cfg
        self.start = time.time()
        out.mkdir(parents=True, exist_ok=True)
        self.curve = out / "curve.jsonl"
        self.curve.write_text("")

    def seconds(self) -> float:
        return time.time() - self.start

    def out_of_time(self) -> bool:
        return self.cfg.max_minutes > 0 and self.seconds() > 60 * self.cfg.max_minutes

    def write(self, step: int, **values: Any) -> None:
        """Append ``{"step", "seconds", **values}`` to the curve and print it."""
        row = {"step": step, "seconds": round(self.seconds(), 1), **values}
        with open(self.curve, "a") as fh:
            fh.write(json.dumps(row) + "\n")
        print(json.dumps(row), flush=True)


def seed_everything(cfg: StageConfig) -> torch.Generator:
    """Set the thread count and the global seed (model init); return the generator of data order and noise."""
    torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    return torch.Generator().manual_seed(cfg.seed)


def lr_lambda(cfg: StageConfig) -> Callable[[int], float]:
    """Learning-rate factor of a step: linear warmup times a cosine decay over ``steps``."""

    def f(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, cfg.warmup))
        return warm * 0.5 * (1 + math.cos(math.pi * min(1.0, step / max(1, cfg.steps))))

    return f


def save_atomic(out: Path, save: Callable[[Path], None]) -> None:
    """Write a ``save_pretrained`` folder to ``out`` via a temporary sibling swapped into place."""
    with staged_folder(out) as staging:
        save(staging)


def optimise(
    loss: torch.Tensor, opt: torch.optim.Optimizer, sched: Any, max_grad_norm: float | None = 1.0
) -> None:
    """One optimiser step on ``loss``, gradients of ``opt``'s parameters clipped to ``max_grad_norm``."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(
            [q for group in opt.param_groups for q in group["params"]], max_grad_norm
        )
    opt.step()
    sched.step()


def batches(n: int, batch_size: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless shuffled index batches over ``range(n)`` drawn from ``gen`` (an incomplete last batch is
    dropped)."""
    while True:
        perm = torch.randperm(n, generator=gen)
        for i in range(0, n - batch_size + 1, batch_size):
            yield perm[i : i + batch_size]


def render_splits(cfg: StageConfig) -> tuple[SceneBatch, SceneBatch, SceneBatch]:
    """The training scenes and the two validation splits (seen captions, held-out captions)."""
    return train_split(cfg.n_train), val_split(cfg.n_val, held_out=False), val_split(cfg.n_val, held_out=True)


def finish(
    out: Path, cfg: StageConfig, stage: str, step: int, log: CurveLog, metrics: dict[str, Any]
) -> dict:
    """Write and return the stage's record ``metrics.json`` (with the command line when run as ``zerocon``)."""
    argv = sys.argv[1:] if Path(sys.argv[0]).name == "zerocon" else None
    result = {
        "stage": stage,
        "command": " ".join(["zerocon", *argv]) if argv else None,
        "steps_done": step,
        "seconds": round(log.seconds(), 1),
        "config": asdict(cfg),
        "metrics": metrics,
    }
    write_json(out / "metrics.json", result)
    return result


class Stage:
    """One stage of training. ``__init__`` builds the model and sets ``self.data`` (the training scenes the
    batches index); subclasses supply the methods below that raise ``NotImplementedError``."""

    name = ""
    """The stage's name in ``metrics.json`` (and its folder under the run, unless ``__init__`` moves ``out``)."""
    weight_decay = 0.0
    """AdamW's weight decay."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clipping (None: none)."""
    eval_at_last_step = False
    """Also evaluate after the last of ``steps`` (even when ``eval_every`` does not divide it)."""
    loss_every = 0
    """Write the loss alone to the curve every this many steps; 0: the loss goes with each evaluation row."""
    supports_device = False
    """Whether the stage honours ``StageConfig.device`` (the others refuse any device but the CPU)."""

    def __init__(self, run: Path, cfg: Any, gen: torch.Generator) -> None:
        self.run, self.cfg, self.gen = run, cfg, gen
        self.out = run / self.name
        self.data: SceneBatch

    def parameters(self) -> list[torch.nn.Parameter]:
        """The parameters to optimise."""
        raise NotImplementedError

    def loss(self, idx: torch.Tensor) -> torch.Tensor:
        """The loss of the training scenes ``idx`` (random draws from ``self.gen``)."""
        raise NotImplementedError

    def after_step(self, step: int) -> None:
        """Called after optimisation step ``step`` (1-based), e.g. to update an EMA copy."""

    def initial_row(self) -> dict[str, Any] | None:
        """A curve row for step 0, before any training (None: no such row)."""
        return None

    def evaluate(self) -> dict[str, Any]:
        """The values of a periodic evaluation row of the curve."""
        raise NotImplementedError

    def save(self) -> None:
        """Save the model atomically (under ``self.out``)."""
        raise NotImplementedError

    def final_metrics(self) -> dict[str, Any]:
        """The metrics of the trained model, recorded in ``metrics.json``."""
        raise NotImplementedError

    def final_row(self, metrics: dict[str, Any]) -> dict[str, Any] | None:
        """The last curve row, from the final metrics (None: no such row)."""
        return metrics


def train_stage(stage_cls: type[Stage], run_dir: str | os.PathLike, cfg: StageConfig) -> dict:
    """Seed, build ``stage_cls`` and run the stage loop on it; returns the ``metrics.json`` record."""
    if cfg.device != "cpu" and not stage_cls.supports_device:
        raise ZeroconError(f"the {stage_cls.name} stage trains on the CPU only (device={cfg.device!r})")
    gen = seed_everything(cfg)
    stage = stage_cls(Path(run_dir), cfg, gen)
    opt = torch.optim.AdamW(stage.parameters(), lr=cfg.lr, weight_decay=stage.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    log = CurveLog(stage.out, cfg)
    first = stage.initial_row()
    if first is not None:
        log.write(0, **first)
    step = 0
    device_type = torch.device(cfg.device).type
    for idx in batches(len(stage.data), cfg.batch_size, gen):
        if step >= cfg.steps or log.out_of_time():
            break
        with torch.autocast(device_type, dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = stage.loss(idx)
        optimise(loss, opt, sched, stage.max_grad_norm)
        step += 1
        stage.after_step(step)
        _log_step(stage, log, step, loss)
        if step % cfg.save_every == 0:
            stage.save()
    stage.save()
    metrics = stage.final_metrics()
    last = stage.final_row(metrics)
    if last is not None:
        log.write(step, **last)
    return finish(stage.out, cfg, stage.name, step, log, metrics)


def _log_step(stage: Stage, log: CurveLog, step: int, loss: torch.Tensor) -> None:
    """The curve rows due after step ``step``: the loss on its own schedule, then an evaluation."""
    cfg = stage.cfg
    if stage.loss_every and step % stage.loss_every == 0:
        log.write(step, loss=loss.item())
    if step % cfg.eval_every == 0 or (stage.eval_at_last_step and step == cfg.steps):
        row = stage.evaluate()
        if not stage.loss_every:
            row = {"loss": loss.item(), **row}
        log.write(step, **row)
