"""Object masks for background LPIPS: mask files and the CLIPSeg segmenter (tiny random model)."""

from __future__ import annotations

import pytest
import torch
from PIL import Image
from tiny_metric_nets import blob_image, save_tiny_clipseg

from zerocon.errors import ZeroconError
from zerocon.metrics.masks import ClipSegSegmenter, find_mask, load_mask, object_masks


def test_mask_file_is_thresholded_and_resized(tmp_path):
    mask = Image.new("L", (8, 8), 0)
    mask.paste(200, (0, 0, 4, 8))  # left half object
    mask.paste(100, (4, 0, 8, 8))  # grey below the threshold: background
    mask.save(tmp_path / "a.png")
    found = find_mask(tmp_path, "a")
    loaded = load_mask(found, (16, 16))
    assert loaded.shape == (16, 16)
    assert loaded[:, :8].min().item() == 1.0 and loaded[:, 8:].max().item() == 0.0
    with pytest.raises(ZeroconError, match="no mask for 'b'"):
        find_mask(tmp_path, "b")
    with pytest.raises(ZeroconError, match="--masks"):
        find_mask(tmp_path / "absent", "a")


def test_no_masks_and_no_segmenter_is_a_clear_error():
    image = blob_image(32, 0)
    with pytest.raises(ZeroconError, match="--masks DIR .* --segmenter"):
        object_masks([image], [image], ["a"], "cat", "dog")


def test_segmenter_mask_is_the_union_of_source_and_target(tmp_path):
    segmenter = ClipSegSegmenter.from_pretrained(str(save_tiny_clipseg(tmp_path)))
    src, out = blob_image(48, 1), blob_image(48, 2)
    m_src, m_out = segmenter.mask(src, "cat"), segmenter.mask(out, "dog")
    assert m_src.shape == (48, 48) and set(m_src.unique().tolist()) <= {0.0, 1.0}
    union = object_masks([src], [out], ["x"], "cat", "dog", segmenter=segmenter)[0]
    assert torch.equal(union, torch.maximum(m_src, m_out))


def test_missing_segmenter_names_the_option(tmp_path):
    with pytest.raises(ZeroconError, match="--segmenter"):
        ClipSegSegmenter.from_pretrained(str(tmp_path / "no" / "seg"))
