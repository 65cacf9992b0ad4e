"""The one trainer skeleton for every trainable method (CUT / FastCUT / SinCUT, LANIT).

A method subclasses :class:`TrainableMethod`: it owns its networks, optimizers and schedulers and implements
one ``train_step``. The :class:`Trainer` runs the loop on HF Accelerate (one CPU, one GPU or several processes
under ``accelerate launch``) and owns everything around it: deterministic data order, per-step random
generators, progress bar, loss history and plot, sample grids, atomic safetensors checkpoints and exact
resume, and stopping on a non-finite loss.

Exact resume needs no saved RNG state: the data order of epoch ``e`` is a permutation drawn from
``(seed, e)`` and every step's random generator is seeded from ``(seed, rank, step)``, so step ``s`` does the
same thing whether the run got there in one go or after a restart. Gradients are averaged across processes
explicitly in :meth:`StepContext.optimizer_step`, so a method may call a network several times per step (GAN
and contrastive losses do) without the constraints of ``DistributedDataParallel``.
"""

from __future__ import annotations

import json
import math
import os
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import nn

from zerocon.errors import ZeroconError
from zerocon.io import load_checkpoint, network_state, save_checkpoint, save_image_atomic, write_json

CHECKPOINT_DIR = "checkpoint"


@torch.no_grad()
def moving_average(model: nn.Module, ema: nn.Module, beta: float = 0.999) -> None:
    """ema <- beta * ema + (1 - beta) * model, parameter by parameter (buffers copied)."""
    for p, p_ema in zip(model.parameters(), ema.parameters(), strict=True):
        p_ema.lerp_(p.detach(), 1.0 - beta)
    for b, b_ema in zip(model.buffers(), ema.buffers(), strict=True):
        b_ema.copy_(b)


def checkpoint_folder(path: str | os.PathLike) -> Path:
    """``RUN/checkpoint`` when given a run folder, else ``path`` itself."""
    path = Path(path)
    return path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path


@dataclass
class TrainConfig:
    """Settings of the training loop shared by every method."""

    steps: int = 1000
    """Number of optimisation steps (one batch each)."""
    batch_size: int = 1
    """Images per process per step."""
    seed: int = 0
    """Seeds the data order and every random draw of the run."""
    checkpoint_every: int = 500
    """Write ``RUN/checkpoint`` every this many steps (and at the end)."""
    sample_every: int = 500
    """Write a sample grid ``RUN/samples/step_XXXXXX.png`` and the loss plot every this many steps."""
    log_every: int = 10
    """Record the losses in the history every this many steps."""
    mixed_precision: str = "no"
    """``no``, ``bf16`` or ``fp16`` (Accelerate's autocast)."""
    tensorboard: bool = False
    """Also log losses to TensorBoard under ``RUN/tensorboard``."""
    cpu: bool = False
    """Force the CPU even when a GPU is present."""


@dataclass
class StepContext:
    """What a method's ``train_step`` gets from the trainer for one step."""

    step: int
    generator: torch.Generator
    accelerator: Any
    trainer: Trainer = field(repr=False)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    def backward(self, loss: torch.Tensor, name: str = "loss") -> None:
        """Check ``loss`` is finite (else stop the run, naming it), then back-propagate it."""
        self.trainer.check_finite({name: loss}, self.step)
        self.accelerator.backward(loss)

    def optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Average the gradients of ``optimizer``'s parameters over processes, step it and zero its gradients."""
        if self.accelerator.num_processes > 1:
            for group in optimizer.param_groups:
                for param in group["params"]:
                    if param.grad is not None:
                        torch.distributed.all_reduce(param.grad, op=torch.distributed.ReduceOp.AVG)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)


class TrainableMethod(ABC):
    """A method the :class:`Trainer` can train: networks, optimizers, schedulers and one training step."""

    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """Every network whose weights are part of the checkpoint (trained ones and EMA copies)."""

    @abstractmethod
    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """The optimizers, created in ``__init__`` after every network (heads included) exists."""

    def schedulers(self) -> dict[str, Any]:
        """Learning-rate schedulers, stepped once per training step by the trainer."""
        return {}

    @abstractmethod
    def train_step(self, batch: Any, ctx: StepContext) -> dict[str, float]:
        """One optimisation step on ``batch``; returns the losses to log as floats."""

    @abstractmethod
    def collate(self, items: Sequence[Any]) -> Any:
        """Turn dataset items into one batch."""

    @abstractmethod
    def sample_grid(self, batch: Any, generator: torch.Generator) -> Image.Image:
        """An image of what the method currently does on ``batch`` (inputs and outputs)."""

    @abstractmethod
    def config(self) -> dict[str, Any]:
        """The method's configuration, stored in the checkpoint; must identify the method and preset."""

    def to(self, device: torch.device) -> TrainableMethod:
        for net in self.networks().values():
            net.to(device)
        return self


class TrainingDataset(ABC):
    """A dataset whose items may use randomness, drawn only from the generator it is given."""

    @abstractmethod
    def __len__(self) -> int: ...

    @abstractmethod
    def item(self, index: int, generator: torch.Generator) -> Any: ...

    def set_step(self, step: int) -> None:  # noqa: B027 (optional hook, a no-op by default)
        """Called by the trainer before the items of step ``step`` (a schedule of augmentations may
        depend on it; a pure function of ``step`` keeps resume exact)."""


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (SplitMix64 mixing), so nearby seeds give unrelated streams."""
    value = 0x9E3779B97F4A7C15
    for part in parts:
        value = (value ^ (int(part) & 0xFFFFFFFFFFFFFFFF)) * 0xBF58476D1CE4E5B9 & 0xFFFFFFFFFFFFFFFF
        value ^= value >> 31
    return value & 0x7FFFFFFFFFFFFFFF


def batch_indices(
    dataset_size: int, step: int, rank: int, world: int, batch_size: int, seed: int
) -> list[int]:
    """Indices of step ``step``'s batch for process ``rank``: an endless sequence of seeded epoch permutations."""
    start = (step * world + rank) * batch_size
    indices = []
    for position in range(start, start + batch_size):
        epoch, offset = divmod(position, dataset_size)
        perm = torch.randperm(dataset_size, generator=torch.Generator().manual_seed(mix_seed(seed, epoch)))
        indices.append(int(perm[offset]))
    return indices


class NonFiniteLoss(ZeroconError):
    """A loss became NaN or infinite; the run stops without overwriting the last good checkpoint."""


class Trainer:
    """Runs a :class:`TrainableMethod` on a :class:`TrainingDataset` and writes everything to ``run_dir``."""

    def __init__(
        self,
        method: TrainableMethod,
        dataset: TrainingDataset,
        run_dir: str | Path,
        config: TrainConfig,
        accelerator: Any | None = None,
        progress: bool = True,
    ) -> None:
        from accelerate import Accelerator

        self.method = method
        self.dataset = dataset
        self.run_dir = Path(run_dir)
        self.config = config
        self.accelerator = accelerator or Accelerator(
            mixed_precision=config.mixed_precision,
            cpu=config.cpu,
            log_with="tensorboard" if config.tensorboard else None,
            project_dir=str(self.run_dir),
        )
        self.progress = progress
        self.step = 0
        self.history: list[dict[str, float]] = []
        if len(dataset) == 0:
            raise ZeroconError("the training set is empty")
        method.to(self.accelerator.device)
        self._optimizers = {k: self.accelerator.prepare_optimizer(v) for k, v in method.optimizers().items()}

    # -- checkpoints -------------------------------------------------------------------------------------
    @property
    def checkpoint_dir(self) -> Path:
        return self.run_dir / CHECKPOINT_DIR

    def save(self) -> Path:
        """Write ``RUN/checkpoint`` atomically (main process only).

        Weights that became NaN or infinite (finite losses can still give non-finite gradients) stop the run
        instead, so the checkpoint on disk is always the last good one.
        """
        self.check_finite_weights()
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            tensors: dict[str, dict[str, torch.Tensor]] = {}
            nets = {}
            for name, net in self.method.networks().items():
                for key, value in self.accelerator.unwrap_model(net).state_dict().items():
                    nets[f"{name}.{key}"] = value
            tensors["networks"] = nets
            optim_tensors, optim_meta = {}, {}
            for name, optimizer in self.method.optimizers().items():
                state = optimizer.state_dict()
                scalars = {}
                for index, param_state in state["state"].items():
                    for key, value in param_state.items():
                        if torch.is_tensor(value):
                            optim_tensors[f"{name}.{index}.{key}"] = value
                        else:
                            scalars[f"{index}.{key}"] = value
                optim_meta[name] = {"param_groups": state["param_groups"], "scalars": scalars}
            tensors["optimizers"] = optim_tensors
            config = {
                "method": self.method.config(),
                "train": asdict(self.config),
                "step": self.step,
                "optimizers": optim_meta,
                "schedulers": {k: s.state_dict() for k, s in self.method.schedulers().items()},
                "history": self.history,
                "world_size": self.accelerator.num_processes,
            }
            save_checkpoint(self.checkpoint_dir, tensors, config)
        self.accelerator.wait_for_everyone()
        return self.checkpoint_dir

    def resume(self, checkpoint_dir: str | Path | None = None) -> int:
        """Restore networks, optimizers, schedulers, step and history; returns the step reached."""
        tensors, config = load_checkpoint(checkpoint_dir or self.checkpoint_dir)
        check_method_config(
            config.get("method", {}), self.method.config(), checkpoint_dir or self.checkpoint_dir
        )
        nets = tensors.get("networks", {})
        for name, net in self.method.networks().items():
            state = network_state(nets, name)
            try:
                self.accelerator.unwrap_model(net).load_state_dict(state)
            except RuntimeError as exc:
                raise ZeroconError(
                    f"checkpoint does not fit network '{name}': {str(exc).splitlines()[0]}"
                ) from exc
        optim_tensors = tensors.get("optimizers", {})
        for name, optimizer in self.method.optimizers().items():
            meta = config["optimizers"][name]
            state: dict[int, dict[str, Any]] = {}
            for key, value in optim_tensors.items():
                opt_name, index, param_key = key.rsplit(".", 2)
                if opt_name == name:
                    state.setdefault(int(index), {})[param_key] = value
            for key, value in meta["scalars"].items():
                index, param_key = key.split(".", 1)
                state.setdefault(int(index), {})[param_key] = value
            optimizer.load_state_dict({"state": state, "param_groups": meta["param_groups"]})
        for name, scheduler in self.method.schedulers().items():
            scheduler.load_state_dict(config["schedulers"][name])
        self.step = int(config["step"])
        self.history = list(config.get("history", []))
        return self.step

    # -- the loop ----------------------------------------------------------------------------------------
    def check_finite(self, losses: dict[str, Any], step: int) -> None:
        for name, value in losses.items():
            number = float(value.detach()) if torch.is_tensor(value) else float(value)
            if not math.isfinite(number):
                last = self._last_checkpoint_note()
                raise NonFiniteLoss(f"loss '{name}' is {number} at step {step + 1}; training stopped. {last}")

    def check_finite_weights(self) -> None:
        """Stop the run (``NonFiniteLoss``) if any network weight is NaN or infinite, naming it and the step."""
        for name, net in self.method.networks().items():
            for key, value in self.accelerator.unwrap_model(net).state_dict().items():
                if value.is_floating_point() and not bool(torch.isfinite(value).all()):
                    last = self._last_checkpoint_note()
                    raise NonFiniteLoss(
                        f"weights '{name}.{key}' became non-finite by step {self.step} (the losses were finite "
                        f"but their gradients were not); training stopped. {last}"
                    )

    def _last_checkpoint_note(self) -> str:
        if (self.checkpoint_dir / "config.json").is_file():
            saved = json.loads((self.checkpoint_dir / "config.json").read_text())["step"]
            return f"Last good checkpoint: {self.checkpoint_dir} (step {saved}); continue with --resume."
        return "No checkpoint had been written yet."

    def fixed_batch(self, count: int = 4) -> Any:
        generator = torch.Generator().manual_seed(mix_seed(self.config.seed, 0xFACE))
        items = [self.dataset.item(i % len(self.dataset), generator) for i in range(count)]
        return self.method.collate(items)

    def write_samples(self) -> Path | None:
        if not self.accelerator.is_main_process:
            return None
        generator = torch.Generator().manual_seed(mix_seed(self.config.seed, 0x5A3F))
        with torch.no_grad():
            grid = self.method.sample_grid(self.fixed_batch(), generator)
        path = self.run_dir / "samples" / f"step_{self.step:06d}.png"
        save_image_atomic(grid, path)
        plot_losses(self.history, self.run_dir / "losses.png")
        write_json(self.run_dir / "losses.json", self.history)
        return path

    def train(self, on_step: Callable[[int, dict[str, float]], None] | None = None) -> dict[str, float]:
        """Train until ``config.steps``; returns the last step's losses."""
        from tqdm.auto import tqdm

        cfg = self.config
        acc = self.accelerator
        if acc.is_main_process:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            write_json(self.run_dir / "config.json", {"method": self.method.config(), "train": asdict(cfg)})
        if cfg.tensorboard:
            acc.init_trackers("tensorboard")
        bar = tqdm(
            total=cfg.steps,
            initial=self.step,
            disable=not (self.progress and acc.is_main_process),
            desc="train",
        )
        losses: dict[str, float] = {}
        started = time.perf_counter()
        while self.step < cfg.steps:
            step = self.step
            torch.manual_seed(mix_seed(cfg.seed, acc.process_index, step, 1))
            generator = torch.Generator(device="cpu").manual_seed(mix_seed(cfg.seed, acc.process_index, step))
            ids = batch_indices(
                len(self.dataset), step, acc.process_index, acc.num_processes, cfg.batch_size, cfg.seed
            )
            self.dataset.set_step(step)
            batch = self.method.collate([self.dataset.item(i, generator) for i in ids])
            ctx = StepContext(step=step, generator=generator, accelerator=acc, trainer=self)
            with acc.autocast():
                losses = self.method.train_step(batch, ctx)
            self.check_finite(losses, step)
            for scheduler in self.method.schedulers().values():
                scheduler.step()
            self.step = step + 1
            if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                record = {"step": self.step, "seconds": round(time.perf_counter() - started, 3), **losses}
                self.history.append(record)
                if cfg.tensorboard:
                    acc.log(losses, step=self.step)
            bar.update(1)
            bar.set_postfix({k: f"{v:.3g}" for k, v in losses.items()}, refresh=False)
            if on_step is not None:
                on_step(self.step, losses)
            if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                self.write_samples()
            if self.step % cfg.checkpoint_every == 0 or self.step == cfg.steps:
                self.save()
        bar.close()
        if cfg.tensorboard:
            acc.end_training()
        return losses


def check_method_config(saved: dict[str, Any], current: dict[str, Any], where: Any) -> None:
    """Refuse a checkpoint of another method or preset than the one being resumed or loaded."""
    for key in ("method", "preset"):
        if key in current and saved.get(key) != current.get(key):
            raise ZeroconError(
                f"checkpoint {where} was made by {key} '{saved.get(key)}', not '{current.get(key)}'"
            )


def plot_losses(history: Sequence[dict[str, float]], path: str | Path) -> None:
    """Plot every loss of ``history`` against the step into ``path`` (PNG, written atomically)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not history:
        return
    names = [k for k in history[-1] if k not in ("step", "seconds")]
    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps = [h["step"] for h in history]
    for name in names:
        ax.plot(steps, [h.get(name, float("nan")) for h in history], label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, ncol=2)
    fig.tight_layout()
    from zerocon.io import atomic_path

    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    plt.close(fig)
