"""Tiny random networks for the metric tests, saved the way users' real networks are given.

CLIP and DINO are saved with ``save_pretrained`` into folders (the ``--clip`` / ``--dino`` code path), the
LPIPS backbone as a torchvision-layout ``.safetensors`` file (``--lpips-backbone``) and a tiny Inception as a
TorchScript file with the same call signature as ``inception-2015-12-05.pt`` (``--inception-torchscript``; the
weights-only ``--inception`` path is tested with the full-size network in test_metrics_fid.py). All weights
come from seeded generators.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import save_file
from torch import nn

_EDIT_TINY = Path(__file__).resolve().parents[1] / "edit" / "tiny.py"


def _write_clip_tokenizer(folder: Path):
    """The byte-level CLIP tokenizer the editing tests build (tests/edit/tiny.py), loaded by path."""
    from module_files import load_module_file  # here: lpips_reference.py imports this file as a script

    module = load_module_file(_EDIT_TINY, "_zerocon_edit_tiny_for_metrics")
    return module.write_clip_tokenizer(folder)


def save_tiny_clip(folder: Path, seed: int = 0) -> Path:
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    torch.manual_seed(seed)
    tokenizer = _write_clip_tokenizer(folder / "tok")
    config = CLIPConfig(
        text_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "vocab_size": len(tokenizer),
            "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 37,
            "num_attention_heads": 4,
            "num_hidden_layers": 2,
            "image_size": 32,
            "patch_size": 8,
        },
        projection_dim=16,
    )
    model = CLIPModel(config).eval()
    processor = CLIPProcessor(
        image_processor=CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}),
        tokenizer=tokenizer,
    )
    out = folder / "clip"
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return out


def tiny_vit(seed: int = 0):
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(seed)
    config = ViTConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=37,
        image_size=32,
        patch_size=8,
    )
    return ViTModel(config, add_pooling_layer=False).eval()


def save_tiny_dino(folder: Path, seed: int = 0) -> Path:
    out = folder / "dino"
    tiny_vit(seed).save_pretrained(out)
    return out


def seeded_backbone_state(net: str = "alex", seed: int = 0) -> dict[str, torch.Tensor]:
    """torchvision-layout ``features.N.*`` tensors drawn from a seeded generator (He-like scale)."""
    from zerocon.metrics.lpips import LPIPS

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for name, tensor in LPIPS(net).features.state_dict().items():
        if name.endswith("weight"):
            fan_in = tensor[0].numel()
            value = torch.randn(tensor.shape, generator=generator) * (2.0 / fan_in) ** 0.5
        else:
            value = torch.randn(tensor.shape, generator=generator) * 0.01
        state[f"features.{name}"] = value
    return state


def save_lpips_backbone(folder: Path, net: str = "alex", seed: int = 0) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{net}_backbone.safetensors"
    save_file(seeded_backbone_state(net, seed), str(path))
    return path


class TinyInception(nn.Module):
    """Same call as the TorchScript Inception: pixels in [0, 255], ``return_features=True`` -> (N, 16)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 16, kernel_size=5, stride=4)

    def forward(self, x: torch.Tensor, return_features: bool = False) -> torch.Tensor:
        h = torch.relu(self.conv(x / 127.5 - 1.0))
        return h.mean(dim=(2, 3))


def save_tiny_inception(folder: Path, seed: int = 0) -> Path:
    torch.manual_seed(seed)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "tiny-inception.pt"
    torch.jit.save(torch.jit.script(TinyInception().eval()), str(path))
    return path


def blob_image(size: int, seed: int, box: tuple[int, int, int, int] | None = None) -> Image.Image:
    """A smooth random RGB image (low-frequency noise); ``box`` (x0, y0, x1, y1) is painted solid red."""
    rng = np.random.default_rng(seed)
    small = rng.uniform(0, 255, size=(8, 8, 3)).astype(np.uint8)
    image = Image.fromarray(small).resize((size, size), Image.BICUBIC)
    if box is not None:
        array = np.array(image)
        x0, y0, x1, y1 = box
        array[y0:y1, x0:x1] = (220, 30, 30)
        image = Image.fromarray(array)
    return image


def save_tiny_clipseg(folder: Path, seed: int = 0) -> Path:
    """A tiny CLIPSegForImageSegmentation + processor (the ``--segmenter`` code path)."""
    from transformers import CLIPSegConfig, CLIPSegForImageSegmentation, CLIPSegProcessor, ViTImageProcessor

    tokenizer = _write_clip_tokenizer(folder / "seg_tok")
    torch.manual_seed(seed)
    config = CLIPSegConfig(
        text_config={
            "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
            "vocab_size": len(tokenizer), "bos_token_id": tokenizer.bos_token_id,
            "eos_token_id": tokenizer.eos_token_id, "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4, "num_hidden_layers": 2,
            "image_size": 32, "patch_size": 8,
        },
        projection_dim=16, reduce_dim=16, extract_layers=[1], decoder_num_attention_heads=2,
        decoder_intermediate_size=32,
    )  # fmt: skip
    out = folder / "clipseg"
    CLIPSegForImageSegmentation(config).eval().save_pretrained(out)
    CLIPSegProcessor(
        image_processor=ViTImageProcessor(size={"height": 32, "width": 32}), tokenizer=tokenizer
    ).save_pretrained(out)
    return out
