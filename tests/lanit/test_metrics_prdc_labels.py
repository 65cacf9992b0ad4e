"""Density & Coverage equal the reference ``prdc`` package; pseudo-label scores on hand-made tables."""

import numpy as np
import pytest
import torch

from zerocon.metrics.labels import label_scores
from zerocon.metrics.prdc import compute_prdc, density_coverage


@pytest.mark.parametrize("seed,n_real,n_fake,dim,shift", [(0, 60, 50, 8, 0.0), (1, 40, 70, 16, 0.7)])
def test_prdc_equals_reference_package(seed, n_real, n_fake, dim, shift):
    prdc = pytest.importorskip("prdc")
    rng = np.random.default_rng(seed)
    real = rng.standard_normal((n_real, dim)).astype(np.float32)
    fake = (rng.standard_normal((n_fake, dim)) + shift).astype(np.float32)
    ref = prdc.compute_prdc(real, fake, nearest_k=5)
    ours = compute_prdc(torch.from_numpy(real), fake, k=5)
    for key in ("precision", "recall", "density", "coverage"):
        assert getattr(ours, key) == pytest.approx(float(ref[key]), abs=1e-12), key
    assert density_coverage(real, fake) == {"density": ours.density, "coverage": ours.coverage}
    if shift:
        assert ours.coverage < 0.9  # a shifted fake set misses some real neighbourhoods


def test_prdc_identical_sets_and_errors():
    rng = np.random.default_rng(3)
    real = rng.standard_normal((30, 4))
    same = compute_prdc(real, real.copy())
    assert same.coverage == 1.0 and same.precision == 1.0
    with pytest.raises(ValueError, match="more than k=5"):
        compute_prdc(real[:5], real)
    with pytest.raises(ValueError, match="feature sizes"):
        compute_prdc(real, real[:, :3])


def test_label_scores_hand_made():
    truth = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0], [0, 0, 1]])
    pred = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0], [1, 0, 1]])
    scores = label_scores(pred, truth, ["red", "blue", "circle"])
    # red: tp 2, fp 1, fn 0 -> p 2/3 r 1; blue: tp 1 fp 0 fn 1 -> p 1 r .5; circle: tp 1 fp 0 fn 1 -> p 1 r .5
    assert scores.per_domain["red"]["precision"] == pytest.approx(2 / 3)
    assert scores.per_domain["blue"]["recall"] == pytest.approx(0.5)
    f1s = [0.8, 2 / 3, 2 / 3]
    assert scores.f1 == pytest.approx(np.mean(f1s))
    assert scores.micro["precision"] == pytest.approx(4 / 5) and scores.micro["recall"] == pytest.approx(
        4 / 6
    )
    assert scores.exact_match == pytest.approx(1 / 4)
    never = label_scores(np.zeros((2, 1)), np.ones((2, 1)))
    assert never.f1 == 0.0 and never.undefined == ["0"]
