"""LPIPS and background LPIPS: parity with torchmetrics' LPIPS, zero for identical images, masks, errors."""

from __future__ import annotations

import pytest
import torch
from lpips_reference import reference_pairs
from tiny_metric_nets import save_lpips_backbone

from zerocon.errors import ZeroconError
from zerocon.metrics.lpips import apply_background, background_lpips, load_lpips, lpips_distance

# torchmetrics' LPIPS (torchvision backbone, same seeded weights, shipped heads) on reference_pairs();
# produced by tests/metrics/lpips_reference.py
REFERENCE = {"alex": [0.023553, 0.019901, 0.022869], "vgg": [0.033431, 0.033528, 0.034236]}


@pytest.mark.parametrize("net", ["alex", "vgg"])
def test_lpips_matches_torchmetrics_reference(tmp_path, net):
    model = load_lpips(save_lpips_backbone(tmp_path, net), net=net)
    a, b = reference_pairs()
    got = lpips_distance(model, a, b)
    assert torch.allclose(got, torch.tensor(REFERENCE[net]), atol=1e-5), got


def test_identical_images_have_zero_distance(tmp_path):
    model = load_lpips(save_lpips_backbone(tmp_path))
    a, _ = reference_pairs()
    assert lpips_distance(model, a, a).abs().max().item() == 0.0


def test_mask_excludes_object_changes_from_background_lpips(tmp_path):
    model = load_lpips(save_lpips_backbone(tmp_path))
    generator = torch.Generator().manual_seed(3)
    image = torch.rand(1, 3, 64, 64, generator=generator) * 2 - 1
    mask = torch.zeros(1, 64, 64)
    mask[:, 16:48, 16:48] = 1.0  # the object
    inside = image.clone()
    inside[:, :, 16:48, 16:48] = torch.rand(1, 3, 32, 32, generator=generator) * 2 - 1
    outside = image.clone()
    outside[:, :, :12, :] = torch.rand(1, 3, 12, 64, generator=generator) * 2 - 1
    assert background_lpips(model, image, inside, mask).item() == 0.0
    assert background_lpips(model, image, outside, mask).item() > 0.01
    # without the mask the object change counts
    assert background_lpips(model, image, inside, torch.zeros(1, 64, 64)).item() > 0.01


def test_apply_background_blackens_the_object():
    images = torch.full((1, 3, 4, 4), 0.5)
    background = torch.ones(1, 4, 4)
    background[:, 0, 0] = 0
    out = apply_background(images, background)
    assert out[0, :, 0, 0].tolist() == [-1.0, -1.0, -1.0]
    assert torch.allclose(out[0, :, 1, 1], torch.full((3,), 0.5))


def test_missing_or_wrong_backbone_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroconError, match="--lpips-backbone"):
        load_lpips(None)
    with pytest.raises(ZeroconError, match="no such file"):
        load_lpips(tmp_path / "absent.pth")
    vgg_file = save_lpips_backbone(tmp_path, "vgg")
    with pytest.raises(ZeroconError, match="does not match torchvision's AlexNet 'features.*' weights"):
        load_lpips(vgg_file, net="alex")
    with pytest.raises(ZeroconError, match="--lpips-heads"):
        load_lpips(save_lpips_backbone(tmp_path), heads=tmp_path / "nope.pth")


def test_torchvision_checkpoint_format_loads(tmp_path):
    """A torchvision .pth (pickled state dict with features.* and classifier.*) loads with weights_only."""
    from tiny_metric_nets import seeded_backbone_state

    state = seeded_backbone_state("alex")
    state["classifier.1.weight"] = torch.zeros(4, 4)
    path = tmp_path / "alexnet-owt.pth"
    torch.save(state, path)
    model = load_lpips(path)
    assert torch.equal(model.features[0].weight, state["features.0.weight"])
