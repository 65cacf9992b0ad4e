"""Can a generator pass ShapesWorld scenes through unchanged? An identity fit with and without instance norm.

ShapesWorld scenes are flat colours. Instance norm removes each feature map's spatial mean, and an
instance norm right before the output layer (StarGAN v2's ``to_rgb``) fixes each output channel's mean up to
the shape of its distribution, so the absolute background colour of the input can hardly reach the output.
This script trains a generator for a few hundred steps on one thing only, reproducing its input (L1), then
asks the ShapesWorld oracle how often the background, object colour and shape of held-out scenes survive.

* ``--net lanit``: the LANIT/StarGAN v2 generator at the ShapesWorld preset's sizes (a fixed zero style),
  ``--norm instance`` with StarGAN v2's norm before ``to_rgb``, ``--norm none`` without it.
* ``--net cut``: CUT's ResNet generator (ngf 32, 6 blocks), ``--norm instance`` or ``none`` (every norm).

Prints one JSON object. Example::

    python benchmarks/generator_identity_fit.py --net lanit --norm none --steps 400 --threads 1
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable

import torch

from zerocon.images import tensor_to_pil
from zerocon.shapes.data import VAL_SEED, render_batch
from zerocon.shapes.oracle import read_scene


def build(net: str, norm: str) -> tuple[torch.nn.Module, Callable[[torch.Tensor], torch.Tensor]]:
    """The generator and a function mapping a batch of images to its output."""
    if net == "lanit":
        from zerocon.lanit.model import make_config
        from zerocon.lanit.networks import Generator

        cfg = make_config("shapes", domains=["red", "circle"], output_norm=norm == "instance")
        generator = Generator(cfg.network_config())
        return generator, lambda x: generator(x, torch.zeros(x.shape[0], cfg.style_dim))
    from zerocon.cut.networks import ResnetGenerator, init_weights

    generator = init_weights(ResnetGenerator(ngf=32, n_blocks=6, norm=norm))
    return generator, generator


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--net", choices=["lanit", "cut"], default="lanit")
    parser.add_argument("--norm", choices=["instance", "none"], default="instance")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--train-scenes", type=int, default=256)
    parser.add_argument("--test-scenes", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    train = render_batch(args.train_scenes, 0).as_float()
    test = render_batch(args.test_scenes, VAL_SEED).as_float()
    generator, forward = build(args.net, args.norm)
    optimizer = torch.optim.Adam(generator.parameters(), 2e-4, betas=(0.5, 0.999))
    order = torch.Generator().manual_seed(args.seed)
    started = time.perf_counter()
    for _ in range(args.steps):
        x = train[torch.randint(0, len(train), (args.batch_size,), generator=order)]
        loss = (forward(x) - x).abs().mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    seconds = time.perf_counter() - started
    with torch.no_grad():
        out = forward(test)
    kept = {"background": 0, "color": 0, "shape": 0}
    for source, result in zip(test, out, strict=True):
        seen, made = read_scene(tensor_to_pil(source)), read_scene(tensor_to_pil(result))
        for key in kept:
            kept[key] += getattr(seen, key) == getattr(made, key)
    report = {
        "net": args.net,
        "norm": args.norm,
        "steps": args.steps,
        "batch_size": args.batch_size,
        "train_seconds": round(seconds, 1),
        "last_train_l1": round(loss.item(), 4),
        "test_l1": round(float((out - test).abs().mean()), 4),
        **{f"{key}_kept": round(count / len(test), 3) for key, count in kept.items()},
    }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
