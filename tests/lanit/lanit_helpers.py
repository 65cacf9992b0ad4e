"""Tiny LANIT pieces shared by the LANIT and web-app tests: a CLIPModel + tokenizer built in code (no
downloads), a tiny method config, a deterministic unlabeled dataset and a trainer."""

from pathlib import Path

import torch

from zerocon.lanit.model import make_config
from zerocon.shapes.tokenizers import build_clip_tokenizer
from zerocon.training import TrainConfig, Trainer, TrainingDataset

DOMAINS = ["red", "blue", "circle", "square"]

WORDS = [
    "a", "photo", "of", "the", "red", "blue", "green", "circle", "square", "triangle", "on", "background",
    "picture", "an", "image", "close", "-", "up", ".", ",",
]  # fmt: skip


def make_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """Build, save and return the folder of a random tiny CLIPModel + tokenizer."""
    from transformers import CLIPConfig, CLIPModel

    tokenizer = build_clip_tokenizer(folder, 77, words=WORDS, alphabet=[chr(i) for i in range(33, 127)])
    config = CLIPConfig(
        text_config=dict(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            max_position_embeddings=32,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
        ),
        vision_config=dict(
            hidden_size=32,
            intermediate_size=64,
            num_hidden_layers=2,
            num_attention_heads=2,
            image_size=image_size,
            patch_size=8,
        ),
        projection_dim=16,
    )
    torch.manual_seed(seed)
    model = CLIPModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def tiny_config(**kw):
    values = dict(
        domains=DOMAINS, templates="a photo of the {}.|a {} on a background", clip="unused", img_size=16,
        base_dim=8, max_conv_dim=16, mapping_dim=16, style_dim=8, prompt_start=0, prompt_lr=1e-2, ds_iter=10,
        augment=True,
    )  # fmt: skip
    values.update(kw)
    return make_config("default", **values)


class Images(TrainingDataset):
    """A deterministic tiny unlabeled dataset."""

    def __init__(self, n=6, size=16):
        g = torch.Generator().manual_seed(5)
        self.images = torch.rand(n, 3, size, size, generator=g) * 2 - 1

    def __len__(self):
        return len(self.images)

    def item(self, index, generator):
        refs = torch.randint(len(self), (2,), generator=generator)
        return {"x": self.images[index], "ref": self.images[refs[0]], "ref2": self.images[refs[1]]}


def tiny_trainer(method, run, steps):
    cfg = TrainConfig(steps=steps, batch_size=3, checkpoint_every=2, sample_every=3, log_every=1, seed=1)
    return Trainer(method, Images(), run, cfg, progress=False)
