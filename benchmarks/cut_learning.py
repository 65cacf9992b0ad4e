"""Does CUT learn? Train on real or synthetic unpaired data and measure translations before and after.

Experiments (each writes OUT/results.json and OUT/comparison.png; run in the background, they take a while):

* ``textures``: scikit-image's grass -> brick textures (random crops; test crops come from a held-out band of
  each texture). Metric: patch sliced Wasserstein distance (``zerocon.metrics.swd``) between translated test
  crops and real brick test crops, for the identity (no translation), the untrained and the trained G.
* ``catdog``: AFHQ cat -> dog photos of ``../shared/data/afhq-samples`` for training, the pix2pix-zero cat and
  dog photos for testing. Same metric.
* ``shapes``: ShapesWorld circles -> squares; the translations are scored by the ShapesWorld oracle (shape
  accuracy, colour kept) and by mask IoU against the input object's mask, when the oracle is available.

With ``--inception FILE`` (pytorch-fid's Inception weights, loaded as weights only; or
``--inception-torchscript FILE``, which runs code from the file; see :mod:`zerocon.metrics.fid`) the
same three image sets also get FID and KID against the real target test images.

Example::

    python benchmarks/cut_learning.py textures --out /tmp/cut_textures --steps 1200 --threads 1
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from zerocon.cut.config import GENERATOR_NORMS, preset
from zerocon.cut.data import UnpairedDataset
from zerocon.cut.model import CUTModel
from zerocon.cut.translate import CUTTranslator
from zerocon.errors import ZeroconError
from zerocon.images import find_images, load_image, pil_to_tensor, side_by_side, tensor_to_pil
from zerocon.metrics.evaluate import TranslationEvalConfig, evaluate_translation
from zerocon.metrics.fid import InceptionFeatures, load_inception
from zerocon.metrics.swd import image_swd
from zerocon.training import TrainConfig, Trainer

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _save_all(images: list[Image.Image], folder: Path, prefix: str) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, im in enumerate(images):
        im.save(folder / f"{prefix}_{i:04d}.png")


def _crops(
    texture: np.ndarray, count: int, side: int, rows: tuple[int, int], rng: np.random.Generator
) -> list:
    top_lo, top_hi = rows
    out = []
    for _ in range(count):
        top = int(rng.integers(top_lo, top_hi - side + 1))
        left = int(rng.integers(0, texture.shape[1] - side + 1))
        out.append(Image.fromarray(texture[top : top + side, left : left + side]).convert("RGB"))
    return out


def prepare_textures(data: Path, size: int) -> None:
    import skimage.data

    rng = np.random.default_rng(0)
    side = round(size * 1.25)
    for name, domain in (("grass", "A"), ("brick", "B")):
        texture = getattr(skimage.data, name)()
        # rows 0..383 for training, 384..511 for testing: the test crops were never seen
        _save_all(_crops(texture, 48, side, (0, 384), rng), data / f"train{domain}", name)
        _save_all(
            [im.resize((size, size), Image.BICUBIC) for im in _crops(texture, 24, side, (384, 512), rng)],
            data / f"test{domain}",
            name,
        )


def prepare_catdog(data: Path, size: int) -> None:
    afhq = SHARED / "afhq-samples"
    p2p = SHARED / "pix2pix-zero-test-images"
    for domain, animal in (("A", "cat"), ("B", "dog")):
        train = [load_image(p) for p in find_images([afhq / "src" / animal, afhq / "ref" / animal])]
        _save_all(train, data / f"train{domain}", animal)
        test = [load_image(p).resize((size, size), Image.BICUBIC) for p in find_images([p2p / f"{animal}s"])]
        _save_all(test, data / f"test{domain}", animal)


def prepare_shapes(data: Path, size: int) -> None:
    from zerocon.shapes.data import VAL_SEED, render_batch
    from zerocon.shapes.world import SceneFilter

    for domain, shape in (("A", "circle"), ("B", "square")):
        train = render_batch(300, 0, SceneFilter(shapes=[shape]))
        _save_all([tensor_to_pil(x) for x in train.as_float()], data / f"train{domain}", shape)
        test = render_batch(100, VAL_SEED, SceneFilter(shapes=[shape]))
        _save_all([tensor_to_pil(x) for x in test.as_float()], data / f"test{domain}", shape)


def _load_folder(folder: Path) -> list[Image.Image]:
    return [load_image(p) for p in find_images([folder])]


@torch.no_grad()
def _translate(model: CUTModel, images: list[Image.Image]) -> list[Image.Image]:
    model.netG.eval()
    out = [tensor_to_pil(model.translate_tensor(pil_to_tensor(im)[None])[0]) for im in images]
    model.netG.train()
    return out


def swd(images: list[Image.Image], reference: list[Image.Image], seed: int = 0) -> float:
    return float(image_swd(images, reference, generator=torch.Generator().manual_seed(seed))["swd"])


def shapes_scores(images: list[Image.Image], data: Path) -> dict[str, float] | None:
    """ShapesWorld oracle on translated test circles: read as a square, colour and background kept, and IoU
    of the object's mask with the input circle's mask (position and size kept)."""
    try:
        from zerocon.shapes.oracle import mask_iou, read_scene
    except ImportError:
        return None
    inputs = _load_folder(data / "testA")
    square = colour = background = iou = 0.0
    for source, image in zip(inputs, images, strict=True):
        before, after = read_scene(source), read_scene(image)
        square += after.shape == "square"
        colour += after.color == before.color
        background += after.background == before.background
        iou += mask_iou(after.mask, before.mask)
    n = len(images)
    return {
        "oracle_square_rate": square / n,
        "color_kept": colour / n,
        "background_kept": background / n,
        "mask_iou_vs_input": iou / n,
    }


def inception_scores(
    sets: dict[str, list[Image.Image]], reference: Path, out: Path, inception: InceptionFeatures
) -> dict[str, dict[str, float]]:
    """FID and KID of each image set against the images of ``reference``, through ``zerocon eval
    translation``'s :func:`~zerocon.metrics.evaluate.evaluate_translation` (the sets are written under ``out``)."""
    scores = {}
    for name, images in sets.items():
        _save_all(images, out / name, name)
        config = TranslationEvalConfig(real=reference, fake=out / name, metrics=("fid", "kid"))
        scores[name] = evaluate_translation(config, features=inception)["metrics"]
    return scores


def run(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    use_inception = args.inception or args.inception_torchscript
    inception = load_inception(args.inception, args.inception_torchscript) if use_inception else None
    out = Path(args.out)
    data = out / "data"
    if not (data / "trainA").is_dir():
        {"textures": prepare_textures, "catdog": prepare_catdog, "shapes": prepare_shapes}[args.experiment](
            data, args.size
        )
    load_size = args.size if args.experiment == "shapes" else round(args.size * 286 / 256)
    cfg = preset(
        args.preset,
        size=args.size,
        load_size=load_size,
        ngf=args.ngf,
        ndf=args.ndf,
        n_blocks=args.n_blocks,
        norm_g=args.norm_g,
    )
    test_a, test_b = _load_folder(data / "testA"), _load_folder(data / "testB")
    model = CUTModel(cfg, total_steps=args.steps, seed=args.seed)
    before = _translate(model, test_a)
    dataset = UnpairedDataset(
        data / "trainA",
        data / "trainB",
        cfg.size,
        cfg.resolved_load_size,
        cfg.flip,
        plain_from_step=cfg.plain_from_step(args.steps),
    )
    trainer = Trainer(
        model,
        dataset,
        out / "run",
        TrainConfig(
            steps=args.steps,
            seed=args.seed,
            sample_every=args.sample_every,
            checkpoint_every=args.sample_every,
        ),
        progress=False,
    )
    if (out / "run" / "checkpoint").is_dir():
        trainer.resume()
    started = time.perf_counter()
    trainer.train(
        on_step=lambda s, losses: (
            print(s, {k: round(v, 3) for k, v in losses.items()}, flush=True) if s % 25 == 0 else None
        )
    )
    seconds = time.perf_counter() - started
    after = CUTTranslator.from_checkpoint(out / "run").translate(test_a)
    result = {
        "experiment": args.experiment,
        "preset": cfg.preset,
        "settings": {
            "size": cfg.size,
            "ngf": cfg.ngf,
            "ndf": cfg.ndf,
            "n_blocks": cfg.n_blocks,
            "norm_g": cfg.norm_g,
            "steps": args.steps,
            "train_images": [len(dataset.images_a), len(dataset.images_b)],
            "test_images": [len(test_a), len(test_b)],
            "threads": args.threads,
        },
        "train_seconds": round(seconds, 1),
        "swd_identity": swd(test_a, test_b),
        "swd_untrained": swd(before, test_b),
        "swd_trained": swd(after, test_b),
    }
    if inception is not None:
        result["inception"] = inception_scores(
            {"identity": test_a, "untrained": before, "trained": after},
            data / "testB",
            out / "fid",
            inception,
        )
    if args.experiment == "shapes":
        result["shapes_identity"] = shapes_scores(test_a, data)
        result["shapes_untrained"] = shapes_scores(before, data)
        result["shapes_trained"] = shapes_scores(after, data)
    rows = [
        side_by_side([a, b, c, r], labels=["input", "untrained", "trained", "real target"], height=128)
        for a, b, c, r in list(zip(test_a, before, after, test_b))[:6]
    ]
    grid = Image.new("RGB", (rows[0].width, sum(r.height for r in rows)), "white")
    y = 0
    for r in rows:
        grid.paste(r, (0, y))
        y += r.height
    grid.save(out / "comparison.png")
    result["comparison"] = str(out / "comparison.png")
    result["last_samples"] = str(sorted((out / "run" / "samples").glob("*.png"))[-1])
    (out / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("experiment", choices=["textures", "catdog", "shapes"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--preset", default="cut", choices=["cut", "fastcut"])
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--ndf", type=int, default=64)
    parser.add_argument("--n-blocks", type=int, default=9)
    parser.add_argument("--norm-g", default="instance", choices=GENERATOR_NORMS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sample-every", type=int, default=100)
    parser.add_argument(
        "--inception",
        help="FID Inception weights (pt_inception-2015-12-05-6726825d.pth, weights only): adds FID, KID",
    )
    parser.add_argument(
        "--inception-torchscript",
        help="a TorchScript Inception file you trust instead (runs code from the file)",
    )
    args = parser.parse_args()
    try:
        print(json.dumps(run(args), indent=2))
    except ZeroconError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
