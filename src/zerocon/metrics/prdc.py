"""Precision, recall, Density and Coverage of generated samples (Naeem et al., ICML 2020).

With N real and M fake feature vectors and ``NND_k(x)`` the distance from a real sample to its k-th nearest
real neighbour:

* density  = 1/(kM) · Σ_j Σ_i 1[‖y_j − x_i‖ < NND_k(x_i)]  — how many real neighbourhoods each fake falls in;
* coverage = 1/N · Σ_i 1[∃ j: ‖y_j − x_i‖ < NND_k(x_i)]     — the share of real neighbourhoods that hold a fake;
* precision / recall as in Kynkäänniemi et al. with the same k-NN balls.

The comparisons are strict and the k-th neighbour counts the sample itself as its 0-th, exactly as the
reference ``prdc`` package (clovaai/generative-evaluation-prdc) does, so the numbers match it; distances are
computed in float64. LANIT reports density and coverage with k = 5 (``DEFAULT_K``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

DEFAULT_K = 5


@dataclass(frozen=True)
class PRDC:
    precision: float
    recall: float
    density: float
    coverage: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _as_features(features, name: str) -> np.ndarray:
    array = features.detach().cpu().numpy() if hasattr(features, "detach") else np.asarray(features)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (samples, dims), got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def pairwise_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Euclidean distances (N, M) between the rows of ``x`` and ``y``, in float64."""
    sq = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.sqrt(np.maximum(sq, 0.0))


def kth_neighbour_radii(features: np.ndarray, k: int) -> np.ndarray:
    """Distance from each row to its k-th nearest other row (the row itself is neighbour 0)."""
    distances = pairwise_distances(features, features)
    return np.sort(distances, axis=1)[:, k]


def compute_prdc(real_features, fake_features, k: int = DEFAULT_K) -> PRDC:
    """Precision, recall, density and coverage of ``fake_features`` against ``real_features`` (k-NN balls).

    Needs more than ``k`` samples on each side. Accepts NumPy arrays or torch tensors of shape (n, dims).
    """
    real = _as_features(real_features, "real_features")
    fake = _as_features(fake_features, "fake_features")
    if real.shape[1] != fake.shape[1]:
        raise ValueError(f"feature sizes differ: real {real.shape[1]}, fake {fake.shape[1]}")
    if k < 1 or real.shape[0] <= k or fake.shape[0] <= k:
        raise ValueError(
            f"need more than k={k} real and fake samples, got {real.shape[0]} real and {fake.shape[0]} fake"
        )
    real_radii = kth_neighbour_radii(real, k)  # (N,)
    fake_radii = kth_neighbour_radii(fake, k)  # (M,)
    real_fake = pairwise_distances(real, fake)  # (N, M)
    inside_real = real_fake < real_radii[:, None]  # fake j inside the ball of real i
    return PRDC(
        precision=float(inside_real.any(axis=0).mean()),
        recall=float((real_fake < fake_radii[None, :]).any(axis=1).mean()),
        density=float(inside_real.sum(axis=0).mean() / k),
        coverage=float((real_fake.min(axis=1) < real_radii).mean()),
    )


def density_coverage(real_features, fake_features, k: int = DEFAULT_K) -> dict[str, float]:
    """Density and coverage only (the two LANIT reports), k = 5 by default."""
    result = compute_prdc(real_features, fake_features, k)
    return {"density": result.density, "coverage": result.coverage}
