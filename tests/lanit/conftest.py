"""A tiny CLIPModel and CLIPTokenizer built in code (no downloads), saved to and loaded from a folder."""

import json
from pathlib import Path

import pytest
import torch

WORDS = [
    "a", "photo", "of", "the", "red", "blue", "green", "circle", "square", "triangle", "on", "background",
    "picture", "an", "image", "close-up", ".", ",",
]  # fmt: skip


def build_tokenizer_files(folder: Path, words=WORDS) -> None:
    """vocab.json + merges.txt of a byte-level BPE that spells each word of ``words`` as one token."""
    vocab: dict[str, int] = {}
    for ch in (chr(i) for i in range(33, 127)):
        vocab[ch] = len(vocab)
    for ch in (chr(i) for i in range(33, 127)):
        vocab[ch + "</w>"] = len(vocab)
    merges = ["#version: 0.2"]
    pieces = {w for word in words for w in word.replace("-", " - ").split()}
    for word in sorted(pieces):
        if len(word) == 1:
            continue
        toks = list(word[:-1]) + [word[-1] + "</w>"]
        while len(toks) > 1:
            merged = toks[0] + toks[1]
            line = f"{toks[0]} {toks[1]}"
            if line not in merges:
                merges.append(line)
            vocab.setdefault(merged, len(vocab))
            toks = [merged] + toks[2:]
    vocab["<|startoftext|>"] = len(vocab)
    vocab["<|endoftext|>"] = len(vocab)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("\n".join(merges) + "\n")


def make_tiny_clip(folder: Path, seed: int = 0, image_size: int = 32) -> Path:
    """Build, save and return the folder of a random tiny CLIPModel + tokenizer."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    build_tokenizer_files(folder)
    tokenizer = CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))
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


@pytest.fixture(scope="session")
def tiny_clip_dir(tmp_path_factory) -> Path:
    return make_tiny_clip(tmp_path_factory.mktemp("tiny_clip"))


@pytest.fixture(scope="session")
def tiny_clip(tiny_clip_dir):
    from zerocon.lanit.prompts import load_clip

    return load_clip(str(tiny_clip_dir))


@pytest.fixture(autouse=True)
def _one_thread():
    """These tiny networks run fastest on one thread, and do not slow down on a busy shared CPU."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
