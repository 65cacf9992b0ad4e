"""Sliced Wasserstein distance: exact against scipy on small point sets, ~0 for identical image sets."""

import numpy as np
import pytest
import torch
from scipy.stats import wasserstein_distance

from zerocon.metrics.swd import image_swd, random_directions, sliced_wasserstein, wasserstein_1d


def test_swd_matches_a_direct_computation_with_scipy():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(7, 3, generator=g), torch.randn(11, 3, generator=g) + 0.5
    directions = random_directions(3, 6, g)
    direct = np.mean(
        [wasserstein_distance((x.double() @ t).numpy(), (y.double() @ t).numpy()) for t in directions]
    )
    assert sliced_wasserstein(x, y, directions=directions) == pytest.approx(direct, rel=1e-10)
    # W2 in 1-D, equal sizes: root mean squared difference of the sorted values
    a, b = torch.tensor([[0.0, 3.0, 1.0]]), torch.tensor([[2.0, 2.0, 5.0]])
    assert float(wasserstein_1d(a, b, p=2)) == pytest.approx(((0 - 2) ** 2 + (1 - 2) ** 2 + (3 - 5) ** 2) / 3)


def test_identical_sets_zero_shifted_sets_larger():
    g = torch.Generator().manual_seed(1)
    images = torch.rand(6, 3, 48, 48, generator=g) * 2 - 1
    same = image_swd(images, images.clone())
    shifted = image_swd((images + 0.4).clamp(-1, 1), images)
    other = image_swd(torch.rand(6, 3, 48, 48, generator=g) * 2 - 1, images)
    assert same["swd"] == 0.0 and len(same["levels"]) == 3
    assert shifted["swd"] > 5 * other["swd"] > 0
    x = torch.randn(200, 4, generator=g)
    assert sliced_wasserstein(x, x + 1.0, generator=g) > sliced_wasserstein(x, x + 0.1, generator=g) > 0
