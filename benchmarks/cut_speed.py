"""Training speed of CUT and FastCUT on this machine's CPU: images/s and peak memory, batch 1.

Prints one JSON object. Every configuration runs in its own subprocess (so its peak memory is its own) with
random data and the paper's full-size networks. Two training steps are timed per configuration:

* ``zerocon``: :meth:`zerocon.cut.model.CUTModel.train_step` (encoder features of the input reused as
  PatchNCE keys, keys projected without autograd, query encoder passes batched);
* ``reference_order``: :func:`reference_order_step` below, the same losses computed in the order of the
  paper's code (a separate encoder pass with autograd for every key set, one NCE term at a time). It is the
  baseline measured on the same machine at the same time, because the machine is shared and absolute
  numbers move with its load. Its maths is the same; ``tests/cut`` checks that both give the same gradients.

Because both timings depend on the CPU, the report also counts the floating-point operations of one step
(``torch.utils.flop_counter``: convolutions and matrix products, forward and backward) and measures this
machine's single-precision matrix-multiply rate with the same thread count. ``flops / seconds`` is then the
rate a step achieves, and ``flops / reference seconds`` the rate the issue's reference figures would need
here: when that exceeds the machine's matmul rate, the reference figure was measured on a faster CPU and no
implementation of the same maths can reach it on this one.

Usage::

    python benchmarks/cut_speed.py [--sizes 128 256] [--presets cut fastcut] [--steps 3] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import torch

from zerocon.cut.config import preset
from zerocon.cut.model import CUTModel, gan_loss
from zerocon.training import StepContext

# the reference implementation, as measured by the issue on a machine of this kind (s/iteration, batch 1)
REFERENCE_SECONDS = {("cut", 256): 8.70, ("fastcut", 256): 4.52, ("cut", 128): 2.27}


class _Accelerator:
    """The two things ``StepContext`` needs from Accelerate, for a single CPU process."""

    device = torch.device("cpu")
    num_processes = 1

    def backward(self, loss: torch.Tensor) -> None:
        loss.backward()


class _Trainer:
    def check_finite(self, losses: dict, step: int) -> None:
        pass


def context(step: int, generator: torch.Generator) -> StepContext:
    return StepContext(step=step, generator=generator, accelerator=_Accelerator(), trainer=_Trainer())


def reference_order_step(model: CUTModel, batch: tuple[torch.Tensor, torch.Tensor], ctx: StepContext) -> dict:
    """One CUT step computed as the paper's code orders it (same losses, same random draws as ours)."""
    cfg, gen = model.cfg, ctx.generator
    real_a, real_b = batch
    n = real_a.shape[0]
    real = torch.cat([real_a, real_b]) if cfg.nce_idt else real_a
    flipped = cfg.flip_equivariance and bool(torch.rand((), generator=gen) < 0.5)
    if flipped:
        real = real.flip(3)
    fake = model.netG(real)
    fake_b, idt_b = fake[:n], fake[n:]

    model.netD.requires_grad_(True)
    loss_d = 0.5 * (
        gan_loss(model.netD(fake_b.detach()), False, cfg.gan_mode)
        + gan_loss(model.netD(real_b), True, cfg.gan_mode)
    )
    ctx.backward(loss_d, "D")
    ctx.optimizer_step(model.optD)

    model.netD.requires_grad_(False)
    loss_g = gan_loss(model.netD(fake_b), True, cfg.gan_mode) * cfg.lambda_gan

    def nce(src: torch.Tensor, tgt: torch.Tensor) -> torch.Tensor:
        feat_q = model.netG.encode(tgt, cfg.nce_layers)
        if flipped:
            feat_q = [f.flip(3) for f in feat_q]
        feat_k = model.netG.encode(src, cfg.nce_layers)  # a second encoder pass, with autograd
        k_pool, ids = model.netF(feat_k, cfg.num_patches, generator=gen)
        q_pool, _ = model.netF(feat_q, cfg.num_patches, location_ids=ids)
        from zerocon.contrastive import patch_nce_loss

        total = 0.0
        for q, k in zip(q_pool, k_pool):
            total = (
                total
                + patch_nce_loss(q, k, cfg.nce_temperature, cfg.negatives_from_minibatch).mean()
                * cfg.lambda_nce
            )
        return total / len(q_pool)

    loss_nce = nce(real_a, fake_b)
    if cfg.nce_idt:
        loss_nce = 0.5 * (loss_nce + nce(real_b, idt_b))
    loss_g = loss_g + loss_nce
    ctx.backward(loss_g, "G")
    ctx.optimizer_step(model.optG)
    ctx.optimizer_step(model.optF)
    model.netD.requires_grad_(True)
    return {"D": loss_d.item(), "G": loss_g.item()}


def step_flops(step_fn: Callable, batch: tuple[torch.Tensor, torch.Tensor]) -> int:
    """Floating-point operations of one call of the training step ``step_fn`` (counted, not timed)."""
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        step_fn(batch, context(10_000, torch.Generator().manual_seed(10_000)))
    return counter.get_total_flops()


def matmul_gflops(threads: int, side: int = 2048, repeats: int = 5) -> float:
    """This machine's float32 matrix-multiply rate (GFLOP/s) with ``threads`` threads: a practical peak."""
    torch.set_num_threads(threads)
    a, b = torch.randn(side, side), torch.randn(side, side)
    a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return repeats * 2 * side**3 / (time.perf_counter() - start) / 1e9


def measure_one(name: str, size: int, variant: str, steps: int) -> dict:
    """Time ``steps`` training steps (after one warm-up step) of one configuration in this process."""
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    model = CUTModel(preset(name, size=size), total_steps=1000, seed=0)
    gen = torch.Generator().manual_seed(0)
    batch = (
        torch.rand(1, 3, size, size, generator=gen) * 2 - 1,
        torch.rand(1, 3, size, size, generator=gen) * 2 - 1,
    )
    step_fn = model.train_step if variant == "zerocon" else (lambda b, c: reference_order_step(model, b, c))
    step_fn(batch, context(0, torch.Generator().manual_seed(0)))
    times = []
    for step in range(1, steps + 1):
        start = time.perf_counter()
        step_fn(batch, context(step, torch.Generator().manual_seed(step)))
        times.append(time.perf_counter() - start)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    seconds = sorted(times)[len(times) // 2]
    flops = step_flops(step_fn, batch)
    return {
        "preset": name,
        "size": size,
        "variant": variant,
        "seconds_per_step_median": round(seconds, 3),
        "seconds_per_step_all": [round(t, 3) for t in times],
        "images_per_second": round(1.0 / seconds, 4),
        "gflop_per_step": round(flops / 1e9, 1),
        "achieved_gflops": round(flops / 1e9 / seconds, 1),
        "peak_rss_mb": round(peak_kb / 1024, 1),
        "peak_rss_above_startup_mb": round((peak_kb - base_rss) / 1024, 1),
    }


def _load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--presets", nargs="+", default=["cut", "fastcut"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--variants", nargs="+", default=["zerocon", "reference_order"])
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--single", nargs=3, metavar=("PRESET", "SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.single:
        name, size, variant = args.single
        print(json.dumps(measure_one(name, int(size), variant, args.steps)))
        return 0
    results = []
    load_before = _load_average()
    peak = matmul_gflops(args.threads)
    for size in args.sizes:
        for name in args.presets:
            for variant in args.variants:
                cmd = [sys.executable, __file__, "--single", name, str(size), variant]
                cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
                done = subprocess.run(cmd, capture_output=True, text=True, check=True)
                row = json.loads(done.stdout.strip().splitlines()[-1])
                row["load_average_after"] = _load_average()
                ref = REFERENCE_SECONDS.get((name, size))
                if ref is not None:
                    row["speedup_vs_issue_reference_seconds"] = round(ref / row["seconds_per_step_median"], 3)
                    row["gflops_the_reference_figure_needs"] = round(row["gflop_per_step"] / ref, 1)
                results.append(row)
                print(json.dumps(row), file=sys.stderr, flush=True)
    speedups = {}
    for size in args.sizes:
        for name in args.presets:
            rows = {r["variant"]: r for r in results if r["preset"] == name and r["size"] == size}
            if "zerocon" in rows and "reference_order" in rows:
                speedups[f"{name}@{size}"] = round(
                    rows["reference_order"]["seconds_per_step_median"]
                    / rows["zerocon"]["seconds_per_step_median"],
                    3,
                )
    report = {
        "benchmark": "cut_speed",
        "batch_size": 1,
        "threads": args.threads,
        "steps_timed": args.steps,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_end": _load_average(),
        "machine_matmul_gflops": round(peak, 1),
        "reference_seconds_per_step_from_issue": {f"{k[0]}@{k[1]}": v for k, v in REFERENCE_SECONDS.items()},
        "speedup_zerocon_vs_reference_order_same_machine": speedups,
        "results": results,
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
