"""Speed of ZeroConPipeline against diffusers' StableDiffusionPix2PixZeroPipeline on the same components.

Both pipelines are loaded with ``from_pretrained`` from one folder of random-weight components (so they hold
equal but separate modules), get the same image, prompt, direction and generator seeds, and run the full
pix2pix-zero job — ``invert`` then ``__call__`` — alternating in one process (peer, ours, ours-zerocon, then
rotated), so machine load affects all of them alike. Reported per config: median wall time of each, the
ratios, the memory of one job of each pipeline measured in a fresh process of its own (peak resident set
from the process's start, ``VmHWM``, and that peak above the resident set once the pipeline is loaded:
in one shared process the allocator reuses what an earlier job freed, so deltas there are not peaks), and
the max absolute difference of the inverted and the edited latents between the peer and ``method="pix2pix_zero"``
(our inversion uses ``allow_zero_roll=True`` — the peer's offsets — so the latents are comparable).

Configs:

* ``tiny``: the diffusers fast-test layout (UNet block_out_channels (32, 64), 2 layers per block, one
  cross-attention level; VAE (32, 64); CLIP text 32 wide, 5 layers), 32x32 images, 16x16 latents.
* ``small_sd``: Stable Diffusion 1.5's block layout — down CrossAttnDown x3 + Down, up Up + CrossAttnUp x3,
  2 layers per block, 8 attention heads, 4-block VAE (scale factor 8), 77-token CLIP text encoder — with
  narrower channels: UNet (32, 64, 128, 128), VAE (16, 32, 64, 64), cross-attention / text width 64,
  256x256 images, 32x32 latents (SD 1.5: 320..1280 channels, 768 text width, 512 px, 64x64 latents).

Usage: ``python benchmarks/edit_speed.py [--steps 10] [--repeats 2] [--configs tiny small_sd]``; prints
one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from dataclasses import asdict
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "edit"))

from tiny import save_tiny_pipeline, tiny_scheduler, write_clip_tokenizer  # noqa: E402

from zerocon.edit.config import patch_nce_for_model  # noqa: E402

PROMPT = "a photo of a cat"


def save_small_sd(folder: Path, seed: int = 0) -> Path:
    """SD 1.5's block layout with narrow channels (see the module docstring), saved with save_pretrained."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from zerocon.edit.pipeline import ZeroConPipeline

    torch.manual_seed(seed)
    unet = UNet2DConditionModel(
        sample_size=32,
        in_channels=4,
        out_channels=4,
        down_block_types=(
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "CrossAttnDownBlock2D",
            "DownBlock2D",
        ),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(32, 64, 128, 128),
        layers_per_block=2,
        attention_head_dim=8,
        cross_attention_dim=64,
        norm_num_groups=16,
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=["DownEncoderBlock2D"] * 4,
        up_block_types=["UpDecoderBlock2D"] * 4,
        block_out_channels=[16, 32, 64, 64],
        layers_per_block=2,
        latent_channels=4,
        norm_num_groups=16,
        sample_size=256,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            bos_token_id=0,
            eos_token_id=2,
            hidden_size=64,
            intermediate_size=256,
            num_attention_heads=4,
            num_hidden_layers=4,
            pad_token_id=1,
            vocab_size=1000,
            max_position_embeddings=77,
        )
    )
    pipe = ZeroConPipeline(
        vae=vae.eval(),
        text_encoder=text_encoder.eval(),
        tokenizer=write_clip_tokenizer(folder / "tok"),
        unet=unet.eval(),
        scheduler=tiny_scheduler(),
    )
    out = folder / "pipeline"
    pipe.save_pretrained(out)
    return out


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak_rss_mb() -> float:
    """This process's peak resident set (VmHWM). Not ``ru_maxrss``: Linux carries that over from the parent
    across fork + exec, so a child would report the benchmark's own peak."""
    with open("/proc/self/status") as fh:
        line = next(line for line in fh if line.startswith("VmHWM:"))
    return int(line.split()[1]) / 1024  # kB


def run_job(pipe, kind: str, image, source, target, steps: int) -> dict:
    """invert + __call__ with the peer's recipe; returns times and latents."""
    extra_inv = {} if kind == "peer" else {"allow_zero_roll": True}
    extra_call = {} if kind == "peer" else {"method": "pix2pix_zero" if kind == "ours" else "zerocon"}
    start = time.perf_counter()
    inv = pipe.invert(
        PROMPT,
        image=image,
        num_inference_steps=steps,
        generator=torch.Generator().manual_seed(0),
        output_type="latent",
        **extra_inv,
    ).latents
    t_inv = time.perf_counter() - start
    out = pipe(
        PROMPT,
        source_embeds=source,
        target_embeds=target,
        num_inference_steps=steps,
        guidance_scale=5.0,
        negative_prompt=PROMPT,
        cross_attention_guidance_amount=0.1,
        latents=inv,
        generator=torch.Generator().manual_seed(1),
        output_type="latent",
        **extra_call,
    ).images
    total = time.perf_counter() - start
    return {
        "invert_s": t_inv,
        "call_s": total - t_inv,
        "total_s": total,
        "inv": inv,
        "out": out,
    }


def load_inputs(
    folder: Path, size: int, kinds: tuple[str, ...]
) -> tuple[dict, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The pipelines of ``kinds`` ("peer", "ours", "zerocon"; the last two share one) and the job's inputs."""
    from diffusers import DDIMInverseScheduler, StableDiffusionPix2PixZeroPipeline

    from zerocon.edit.pipeline import ZeroConPipeline

    pipes = {}
    if "ours" in kinds or "zerocon" in kinds:
        pipes["ours"] = pipes["zerocon"] = ZeroConPipeline.from_pretrained(folder)
    if "peer" in kinds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            peer = StableDiffusionPix2PixZeroPipeline.from_pretrained(
                folder, safety_checker=None, feature_extractor=None, requires_safety_checker=False
            )
        peer.inverse_scheduler = DDIMInverseScheduler.from_config(peer.scheduler.config)
        pipes["peer"] = peer
    for pipe in pipes.values():
        pipe.set_progress_bar_config(disable=True)
    torch.manual_seed(3)
    image = torch.rand(1, 3, size, size)
    embedder = next(iter(pipes.values()))
    source = embedder.get_embeds(["a photo of a cat", "a cat on the grass"])
    target = embedder.get_embeds(["a photo of a dog", "a dog on the grass"])
    return pipes, image, source, target


def memory_probe(kind: str, folder: Path, size: int, steps: int) -> dict:
    """One job of ``kind`` in this (fresh) process: its peak RSS and that peak above the loaded state."""
    pipes, image, source, target = load_inputs(folder, size, (kind,))
    loaded = _rss_mb()
    run_job(pipes[kind], kind, image, source, target, steps)
    peak = _peak_rss_mb()
    return {
        "peak_rss_mb": round(peak, 1),
        "loaded_rss_mb": round(loaded, 1),
        "job_peak_mb": round(peak - loaded, 1),
    }


def measure_memory(kind: str, folder: Path, size: int, steps: int, threads: int) -> dict:
    cmd = [sys.executable, __file__, "--memory-probe", kind, "--folder", str(folder), "--size", str(size)]
    cmd += ["--steps", str(steps), "--threads", str(threads)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"memory probe of {kind} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def bench_config(name: str, folder: Path, size: int, steps: int, repeats: int) -> dict:
    pipes, image, source, target = load_inputs(folder, size, ("peer", "ours", "zerocon"))
    ours, peer = pipes["ours"], pipes["peer"]

    order = [("peer", peer), ("ours", ours), ("zerocon", ours)]
    runs: dict[str, list[dict]] = {k: [] for k, _ in order}
    for r in range(repeats):
        rotated = order[r % 3 :] + order[: r % 3]
        for kind, pipe in rotated:
            runs[kind].append(run_job(pipe, kind, image, source, target, steps))

    def med(kind: str, key: str) -> float:
        return statistics.median(run[key] for run in runs[kind])

    peer_t, ours_t, zc_t = med("peer", "total_s"), med("ours", "total_s"), med("zerocon", "total_s")
    last = {k: v[-1] for k, v in runs.items()}
    return {
        "config": name,
        "image_size": size,
        "steps": steps,
        "repeats": repeats,
        "peer_s": round(peer_t, 3),
        "ours_pix2pix_zero_s": round(ours_t, 3),
        "ours_zerocon_s": round(zc_t, 3),
        "speedup_pix2pix_zero": round(peer_t / ours_t, 3),
        "speedup_zerocon_vs_peer": round(peer_t / zc_t, 3),
        "peer_invert_s": round(med("peer", "invert_s"), 3),
        "ours_invert_s": round(med("ours", "invert_s"), 3),
        "peer_call_s": round(med("peer", "call_s"), 3),
        "ours_pix2pix_zero_call_s": round(med("ours", "call_s"), 3),
        "ours_zerocon_call_s": round(med("zerocon", "call_s"), 3),
        "memory_one_job_fresh_process": {
            kind: measure_memory(kind, folder, size, steps, torch.get_num_threads())
            for kind in ("peer", "ours", "zerocon")
        },
        "max_abs_diff_invert_latents": float((last["ours"]["inv"] - last["peer"]["inv"]).abs().max()),
        "max_abs_diff_edit_latents": float((last["ours"]["out"] - last["peer"]["out"]).abs().max()),
        "all_peer_totals_s": [round(run["total_s"], 3) for run in runs["peer"]],
        "all_ours_totals_s": [round(run["total_s"], 3) for run in runs["ours"]],
        "all_zerocon_totals_s": [round(run["total_s"], 3) for run in runs["zerocon"]],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--configs", nargs="+", default=["tiny", "small_sd"], choices=["tiny", "small_sd"])
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--memory-probe", choices=["peer", "ours", "zerocon"], help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.memory_probe:  # the child process of measure_memory
        print(json.dumps(memory_probe(args.memory_probe, args.folder, args.size, args.steps)))
        return 0
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            if name == "tiny":
                folder, size = save_tiny_pipeline(Path(tmp) / name), 32
            else:
                folder, size = save_small_sd(Path(tmp) / name), 256
            results[name] = bench_config(name, folder, size, args.steps, args.repeats)
    report = {
        "benchmark": "edit_speed",
        "command": " ".join(["python", *sys.argv]),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        # method="zerocon" runs with the defaults of a model without edit_defaults (these pipelines have none)
        "zerocon_patch_nce": asdict(patch_nce_for_model(None, {})),
        "load_average_at_end": os.getloadavg(),
        "results": results,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
