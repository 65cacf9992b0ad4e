"""FID / KID / mFID against hand computations, and the TorchScript Inception loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import linalg
from tiny_metric_nets import blob_image

from zerocon.errors import ZeroconError
from zerocon.metrics.fid import InceptionFeatures, frechet_distance, kernel_inception_distance, mean_fid


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


def test_torchscript_inception_file_loads_and_gives_features(tiny_nets):
    features = InceptionFeatures.from_file(tiny_nets["inception"])
    images = [blob_image(48, s) for s in range(3)] + [blob_image(70, 9).resize((90, 70))]
    out = features(images)
    assert out.shape == (4, 16) and out.dtype == torch.float64
    assert torch.equal(out[:2], features(images[:2]))  # batching does not change features
    assert frechet_distance(out, out) == pytest.approx(0.0, abs=1e-8)


def test_missing_or_bad_inception_is_a_clear_error(tmp_path):
    with pytest.raises(ZeroconError, match="--inception"):
        InceptionFeatures.from_file(None)
    with pytest.raises(ZeroconError, match="no such file"):
        InceptionFeatures.from_file(tmp_path / "inception-2015-12-05.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torchscript")
    with pytest.raises(ZeroconError, match="not a TorchScript"):
        InceptionFeatures.from_file(bad)
