"""CLIP accuracy / score and DINO structure distance: hand-computed cases and tiny saved networks."""

from __future__ import annotations

import math

import pytest
import torch
from tiny_metric_nets import blob_image, tiny_vit

from zerocon.errors import ZeroconError
from zerocon.metrics.clip import (
    ClipEmbedder,
    clip_accuracy,
    clip_accuracy_per_image,
    clip_score,
    clip_score_per_image,
    edit_texts,
)
from zerocon.metrics.common import to_batch
from zerocon.metrics.structure import (
    DinoKeyExtractor,
    find_last_key_projection,
    self_similarity,
    structure_distance,
    structure_distance_from_keys,
)


def test_clip_accuracy_by_hand_and_swapped_captions_flip_it():
    images = torch.tensor([[1.0, 0.1], [0.2, 1.0], [0.9, 0.8], [-1.0, 0.0]])
    source, target = torch.tensor([1.0, 0.0]), torch.tensor([0.0, 1.0])
    # cos to target vs source: image 0 source, 1 target, 2 source (0.9 > 0.8), 3 target (0 > -1)
    assert clip_accuracy_per_image(images, source, target).tolist() == [False, True, False, True]
    assert clip_accuracy(images, source, target) == 0.5
    assert clip_accuracy_per_image(images, target, source).tolist() == [True, False, True, False]
    # scale of the embeddings does not matter (cosine)
    assert clip_accuracy(images * 7.0, source * 0.1, target * 3.0) == 0.5


def test_clip_score_by_hand():
    images = torch.tensor([[3.0, 4.0], [0.0, -1.0]])
    text = torch.tensor([1.0, 0.0])
    # cos = 0.6 -> 60; cos = 0 -> 0 (and negatives are clamped to 0)
    assert clip_score_per_image(images, text).tolist() == pytest.approx([60.0, 0.0])
    assert clip_score(images, text) == pytest.approx(30.0)
    assert clip_score_per_image(torch.tensor([[-1.0, 0.0]]), text).item() == 0.0


def test_edit_texts_template():
    assert edit_texts("cat", "dog") == ("a photo of a cat", "a photo of a dog")
    with pytest.raises(ValueError):
        edit_texts("cat", "dog", "no placeholder")


def test_tiny_clip_from_folder_and_swapped_captions(tiny_nets):
    clip = ClipEmbedder.from_pretrained(str(tiny_nets["clip"]))
    images = [blob_image(40, seed) for seed in range(6)]
    image_emb = clip.embed_images(images)
    assert image_emb.shape == (6, 16)
    assert torch.equal(image_emb, clip.embed_images(images))  # deterministic
    text = clip.embed_texts(["a photo of a cat", "a photo of a dog"])
    forward = clip_accuracy_per_image(image_emb, text[0], text[1])
    backward = clip_accuracy_per_image(image_emb, text[1], text[0])
    assert torch.equal(forward, ~backward)  # no ties with random float embeddings
    # the embedder's texts agree with one-by-one encoding (padding does not change the embedding)
    assert torch.allclose(clip.embed_texts(["a photo of a dog"])[0], text[1], atol=1e-5)


def test_missing_clip_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroconError, match="--clip"):
        ClipEmbedder.from_pretrained(None)
    with pytest.raises(ZeroconError, match="--clip .*no such file"):
        ClipEmbedder.from_pretrained(str(tmp_path / "absent" / "clip"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ZeroconError, match="--clip"):
        ClipEmbedder.from_pretrained(str(tmp_path / "empty"))


def test_self_similarity_and_structure_distance_by_hand():
    eye = torch.eye(4)[None]  # 4 orthogonal tokens -> identity self-similarity
    same = torch.ones(1, 4, 4)  # 4 identical tokens -> all-ones self-similarity
    assert torch.allclose(self_similarity(eye), torch.eye(4)[None])
    assert torch.allclose(self_similarity(same), torch.ones(1, 4, 4))
    # mean over 16 entries of (I - 1)^2: 12 off-diagonal ones
    assert structure_distance_from_keys(eye, same).item() == pytest.approx(12 / 16)
    assert structure_distance_from_keys(eye, eye * 5).item() == 0.0


def test_hook_reads_the_last_layer_keys():
    """The hooked keys equal k_proj(layernorm_before(input of the last layer)) computed by hand."""
    model = tiny_vit()
    name, projection, fused = find_last_key_projection(model)
    assert name.endswith("k_proj") and not fused and "1" in name
    extractor = DinoKeyExtractor(model=model, image_size=32, patch_size=8)
    images = to_batch([blob_image(32, 1)])
    keys = extractor.keys(images)
    from zerocon.metrics.common import imagenet_normalize

    with torch.no_grad():
        out = model(pixel_values=imagenet_normalize(images), output_hidden_states=True)
        last = model.layers[-1] if hasattr(model, "layers") else model.encoder.layer[-1]
        expected = projection(last.layernorm_before(out.hidden_states[-2]))
    assert keys.shape == (1, 17, 32)  # CLS + 4x4 patches
    assert torch.allclose(keys, expected, atol=1e-5)


def test_structure_distance_zero_for_identical_and_raised_by_shuffling(tiny_nets):
    extractor = DinoKeyExtractor.from_pretrained(str(tiny_nets["dino"]))
    image = blob_image(64, 2)
    a = to_batch([image])
    assert structure_distance(extractor, a, a).item() == 0.0
    # a colour tweak keeps the layout; shuffling 16x16 tiles destroys it
    tweaked = (a * 0.9 + 0.05).clamp(-1, 1)
    tiles = a.unfold(2, 16, 16).unfold(3, 16, 16).reshape(1, 3, 16, 16, 16)
    order = torch.randperm(16, generator=torch.Generator().manual_seed(0))
    shuffled = tiles[:, :, order].reshape(1, 3, 4, 4, 16, 16).permute(0, 1, 2, 4, 3, 5).reshape(1, 3, 64, 64)
    small = structure_distance(extractor, a, tweaked).item()
    large = structure_distance(extractor, a, shuffled).item()
    assert large > 3 * small and large > 0, (small, large)
    assert math.isfinite(large)


def test_non_square_images_use_interpolated_positions(tiny_nets):
    extractor = DinoKeyExtractor.from_pretrained(str(tiny_nets["dino"]))
    keys = extractor.keys(to_batch([blob_image(64, 3).resize((96, 64))]))
    assert keys.shape == (1, 1 + 4 * 6, 32)  # shorter side -> 32, longer 48: 4 x 6 patches


def test_missing_dino_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroconError, match="--dino"):
        DinoKeyExtractor.from_pretrained(None)
    with pytest.raises(ZeroconError, match="--dino"):
        DinoKeyExtractor.from_pretrained(str(tmp_path / "missing" / "dino"))


class _TensorFeatures(torch.nn.Module):
    """transformers 5 returns output objects from get_*_features; torchmetrics 1.9 expects tensors."""

    def __init__(self, model):
        super().__init__()
        self.model = model
        self.config = model.config

    def get_image_features(self, *args, **kwargs):
        return self.model.get_image_features(*args, **kwargs).pooler_output

    def get_text_features(self, *args, **kwargs):
        return self.model.get_text_features(*args, **kwargs).pooler_output


def test_clip_score_matches_torchmetrics_clipscore(tiny_nets):
    """Our CLIP score equals torchmetrics' CLIPScore given the same (tiny) CLIP model and processor."""
    import numpy as np

    pytest.importorskip("torchmetrics")
    from torchmetrics.multimodal.clip_score import CLIPScore

    clip = ClipEmbedder.from_pretrained(str(tiny_nets["clip"]))
    images = [blob_image(32, s) for s in range(3)]
    texts = ["a photo of a cat", "a photo of a dog", "a red ball"]
    ours = clip_score_per_image(clip.embed_images(images), clip.embed_texts(texts))
    metric = CLIPScore(model_name_or_path=lambda: (_TensorFeatures(clip.model), clip.processor))
    pixels = torch.stack([torch.from_numpy(np.array(im)).permute(2, 0, 1) for im in images])
    # torchmetrics clamps the batch mean at 0, we clamp each image's score: compare one pair at a time
    theirs = torch.stack([metric(pixels[i : i + 1], texts[i : i + 1]) for i in range(len(texts))])
    assert ours.tolist() == pytest.approx(theirs.tolist(), abs=1e-3)
    assert ours.max() > 0  # not every score clamped to 0
