"""FID / KID / mFID against hand computations; the weights-only Inception loader and the explicit TorchScript one."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from tiny_metric_nets import blob_image

from zerocon.errors import ZeroconError
from zerocon.metrics.fid import (
    InceptionFeatures,
    frechet_distance,
    kernel_inception_distance,
    load_inception,
    mean_fid,
)
from zerocon.metrics.inception import FEATURES, FID_CLASSES, FIDInceptionV3


def _features(n: int, d: int, seed: int, shift: float = 0.0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(n, d, generator=generator, dtype=torch.float64) * 1.5 + shift


def test_fid_of_a_set_against_itself_is_zero():
    f = _features(64, 8, 0)
    assert abs(frechet_distance(f, f)) < 1e-8


def test_fid_matches_the_formula():
    a, b = _features(80, 6, 1), _features(70, 6, 2, shift=0.7)
    mu_a, mu_b = a.mean(0).numpy(), b.mean(0).numpy()
    cov_a, cov_b = np.cov(a.numpy(), rowvar=False), np.cov(b.numpy(), rowvar=False)
    expected = ((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * linalg.sqrtm(cov_a @ cov_b).real)
    assert frechet_distance(a, b) == pytest.approx(expected, rel=1e-6)


def test_fid_of_two_point_sets_by_hand():
    # 1-D: real {0, 2} (mean 1, var 2), fake {3, 5} (mean 4, var 2): FID = 9 + 2 + 2 - 2*2 = 9
    real = torch.tensor([[0.0], [2.0]], dtype=torch.float64)
    fake = torch.tensor([[3.0], [5.0]], dtype=torch.float64)
    assert frechet_distance(real, fake) == pytest.approx(9.0)


def _unbiased_mmd(x: np.ndarray, y: np.ndarray) -> float:
    d = x.shape[1]

    def k(a, b):
        return (a @ b.T / d + 1.0) ** 3

    m, n = len(x), len(y)
    kxx, kyy, kxy = k(x, x), k(y, y), k(x, y)
    return (
        (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
        + (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
        - 2 * kxy.mean()
    )


def test_kid_with_one_full_subset_is_the_unbiased_mmd():
    a, b = _features(40, 5, 3), _features(40, 5, 4, shift=0.5)
    mean, std = kernel_inception_distance(a, b, subsets=1, subset_size=40)
    assert mean == pytest.approx(_unbiased_mmd(a.numpy(), b.numpy()), rel=1e-6)
    assert std == 0.0


def test_kid_is_seeded_and_leaves_global_rng_alone():
    a, b = _features(60, 5, 5), _features(50, 5, 6, shift=0.3)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    first = kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    assert first == kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=7)
    assert first != kernel_inception_distance(a, b, subsets=10, subset_size=20, seed=8)


def test_kid_near_zero_for_one_distribution_and_large_for_a_shift():
    a, b = _features(200, 4, 10), _features(200, 4, 11)
    shifted = _features(200, 4, 12, shift=1.0)
    same = kernel_inception_distance(a, b, subsets=1, subset_size=200)[0]
    different = kernel_inception_distance(a, shifted, subsets=1, subset_size=200)[0]
    assert abs(same) < 0.05 * different, (same, different)


def test_mfid_is_the_mean_over_domains():
    assert mean_fid({"cat": 10.0, "dog": 20.0, "wild": 60.0}) == pytest.approx(30.0)
    with pytest.raises(ValueError):
        mean_fid({})


def test_too_few_images_is_a_clear_error():
    with pytest.raises(ZeroconError, match="at least 2"):
        frechet_distance(_features(1, 3, 0), _features(5, 3, 1))


@pytest.fixture(scope="module")
def inception_state() -> dict[str, torch.Tensor]:
    """Seeded weights for the full FID Inception-v3 (non-trivial batch-norm statistics), with its 1008-class
    classifier, as in pytorch-fid's pt_inception-2015-12-05-6726825d.pth."""
    torch.manual_seed(0)
    state = FIDInceptionV3().state_dict()
    generator = torch.Generator().manual_seed(1)
    for key, value in state.items():
        if key.endswith("running_mean"):
            value.copy_(torch.randn(value.shape, generator=generator) * 0.1)
        elif key.endswith("running_var"):
            value.copy_(torch.rand(value.shape, generator=generator) + 0.5)
    state["fc.weight"] = torch.randn(FID_CLASSES, FEATURES, generator=generator) * 0.01
    state["fc.bias"] = torch.zeros(FID_CLASSES)
    return state


def _save_half(state: dict[str, torch.Tensor], path) -> None:
    """torch.save in float16 (half the bytes to write; the loader casts to the network's float32)."""
    torch.save({k: v.half() if v.is_floating_point() else v for k, v in state.items()}, path)


def test_state_dict_inception_loads_as_weights_and_gives_features(tmp_path, inception_state):
    path = tmp_path / "pt_inception-2015-12-05.pth"
    torch.save(inception_state, path)
    features = InceptionFeatures.from_file(path)
    loaded = features.net.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in inception_state.items() if not k.startswith("fc."))
    images = [blob_image(48, 0), blob_image(70, 9).resize((90, 70))]
    out = features(images)
    assert out.shape == (2, FEATURES) and out.dtype == torch.float64 and torch.isfinite(out).all()
    assert torch.allclose(out[:1], features(images[:1]), atol=1e-5)  # batching does not change features
    # the same tensors as .safetensors load too (without the classifier, which features do not need)
    from safetensors.torch import save_file

    safe = tmp_path / "inception.safetensors"
    save_file({k: v.half() for k, v in inception_state.items() if not k.startswith("fc.")}, str(safe))
    again = InceptionFeatures.from_file(safe).net.state_dict()
    assert torch.allclose(
        again["Mixed_7c.branch_pool.conv.weight"], loaded["Mixed_7c.branch_pool.conv.weight"].half().float()
    )


def test_default_path_refuses_torchscript_and_names_the_explicit_option(tiny_nets):
    with pytest.raises(ZeroconError) as error:
        InceptionFeatures.from_file(tiny_nets["inception_torchscript"])
    message = str(error.value)
    assert "\n" not in message and "TorchScript" in message and "--inception-torchscript FILE" in message
    with pytest.raises(ZeroconError, match="--inception-torchscript FILE"):
        load_inception(weights=tiny_nets["inception_torchscript"])


def test_torchscript_inception_loads_only_through_the_explicit_option(tiny_nets):
    features = load_inception(torchscript=tiny_nets["inception_torchscript"])
    images = [blob_image(48, s) for s in range(3)] + [blob_image(70, 9).resize((90, 70))]
    out = features(images)
    assert out.shape == (4, 16) and out.dtype == torch.float64
    assert torch.equal(out[:2], features(images[:2]))  # batching does not change features
    assert frechet_distance(out, out) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ZeroconError, match="not both"):
        load_inception(tiny_nets["inception_torchscript"], tiny_nets["inception_torchscript"])


def test_inception_weights_that_do_not_fit_are_refused(tmp_path, inception_state):
    path = tmp_path / "inception.pth"
    broken = {k: v for k, v in inception_state.items() if not k.startswith("Mixed_6b.branch7x7_2.conv.")}
    _save_half(broken, path)
    with pytest.raises(ZeroconError, match=r"^--inception .*missing 1: Mixed_6b\.branch7x7_2\.conv\.weight"):
        InceptionFeatures.from_file(path)
    _save_half({**inception_state, "AuxLogits.fc.weight": torch.zeros(2)}, path)
    with pytest.raises(ZeroconError, match=r"unexpected 1: AuxLogits\.fc\.weight"):
        InceptionFeatures.from_file(path)
    # torchvision's ImageNet Inception-v3 has the same layout and 1000 classes: not the FID network
    _save_half(
        {**inception_state, "fc.weight": torch.zeros(1000, FEATURES), "fc.bias": torch.zeros(1000)}, path
    )
    with pytest.raises(ZeroconError, match="1000 classes"):
        InceptionFeatures.from_file(path)


def test_missing_or_bad_inception_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroconError, match="--inception FILE.*--inception-torchscript FILE"):
        InceptionFeatures.from_file(None)
    with pytest.raises(ZeroconError, match="no such file"):
        InceptionFeatures.from_file(tmp_path / "pt_inception-2015-12-05.pth")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ZeroconError, match="not a weights-only"):
        InceptionFeatures.from_file(bad)
    with pytest.raises(ZeroconError, match="--inception-torchscript .*not a TorchScript"):
        InceptionFeatures.from_torchscript(bad)
    # a pickle that needs code to rebuild (a whole module, not a state dict) is not unpickled
    pickled = tmp_path / "module.pt"
    torch.save(torch.nn.Linear(2, 2), pickled)
    with pytest.raises(ZeroconError, match="not a weights-only"):
        InceptionFeatures.from_file(pickled)
