"""Fidelity and diversity from feature vectors: FID, KID and precision/recall/density/coverage.

All functions take float feature matrices (N, D) from one feature space (`features.extract_features`) and are
exact computations, not approximations of a library's: FID is the Fréchet distance of the two Gaussian fits
(the matrix square root through symmetric eigendecompositions, in float64); KID is the unbiased MMD^2 with the
cubic polynomial kernel k(x, y) = (x.y / D + 1)^3 over random subsets (Binkowski et al. 2018, as torchmetrics and
torch-fidelity compute it); PRDC follows Naeem et al. 2020 (k-nearest-neighbour balls around real and fake
samples, k = 5).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CHUNK = 2048  # rows per distance block: a 2048 x 10,000 float32 block is 80 MB


def sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def sq_distances(a: np.ndarray, b: np.ndarray, b_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared Euclidean distances (len(a), len(b)), float32, clipped at 0 (the expansion can dip below it)."""
    b_sq = sq_norms(b) if b_sq is None else b_sq
    d = a @ b.T
    d *= -2.0
    d += sq_norms(a)[:, None]
    d += b_sq[None, :]
    np.maximum(d, 0.0, out=d)
    return d


def nearest(queries: np.ndarray, reference: np.ndarray, chunk: int = CHUNK) -> tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each query row's nearest reference row."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    r = np.ascontiguousarray(reference, dtype=np.float32)
    r_sq = sq_norms(r)
    dist = np.empty(len(q), dtype=np.float32)
    idx = np.empty(len(q), dtype=np.int64)
    for s in range(0, len(q), chunk):
        d = sq_distances(q[s : s + chunk], r, r_sq)
        j = d.argmin(1)
        idx[s : s + chunk] = j
        dist[s : s + chunk] = np.sqrt(d[np.arange(len(j)), j])
    return dist, idx


def knn_radii(x: np.ndarray, k: int, chunk: int = CHUNK) -> np.ndarray:
    """Distance from each row to its k-th nearest other row of the same set."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    k_eff = min(k, len(x) - 1)
    if k_eff < 1:
        return np.full(len(x), np.inf, dtype=np.float32)
    x_sq = sq_norms(x)
    out = np.empty(len(x), dtype=np.float32)
    for s in range(0, len(x), chunk):
        d = sq_distances(x[s : s + chunk], x, x_sq)
        d[np.arange(len(d)), np.arange(s, s + len(d))] = np.inf  # a row is not its own neighbour
        out[s : s + chunk] = np.sqrt(np.partition(d, k_eff - 1, axis=1)[:, k_eff - 1])
    return out


def _sqrtm_psd(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """FID between two feature sets: |mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2)).

    tr((S_a S_b)^(1/2)) is the sum of square roots of the eigenvalues of S_a^(1/2) S_b S_a^(1/2), which is
    symmetric positive semi-definite, so no complex parts or non-convergence as with a general sqrtm.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if len(a) < 2 or len(b) < 2:
        return float("nan")
    mu = a.mean(0) - b.mean(0)
    s_a, s_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = _sqrtm_psd(s_a)
    cross = np.linalg.eigvalsh(root @ s_b @ root)
    value = mu @ mu + np.trace(s_a) + np.trace(s_b) - 2.0 * np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(max(value, 0.0))


def kernel_inception_distance(
    a: np.ndarray, b: np.ndarray, *, subsets: int = 20, subset_size: int = 1000, seed: int = 0
) -> tuple[float, float]:
    """KID (mean, std over `subsets` random subsets of `subset_size` rows from each set, without replacement).

    20 subsets, not torchmetrics' 100: each costs three 1000 x 1000 Gram matrices, and the std over 20 already
    says whether two KIDs differ. Gram matrices in float32, kernel sums in float64.
    """
    a = np.asarray(a, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    m = min(subset_size, len(a), len(b))
    if m < 2:
        return float("nan"), float("nan")
    d = a.shape[1]
    rng = np.random.default_rng(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = a[rng.choice(len(a), m, replace=False)]
        y = b[rng.choice(len(b), m, replace=False)]
        k_xx = (np.float64(1.0) + x @ x.T / d) ** 3
        k_yy = (np.float64(1.0) + y @ y.T / d) ** 3
        k_xy = (np.float64(1.0) + x @ y.T / d) ** 3
        values[i] = (
            (k_xx.sum() - np.trace(k_xx)) / (m * (m - 1))
            + (k_yy.sum() - np.trace(k_yy)) / (m * (m - 1))
            - 2.0 * k_xy.mean()
        )
    return float(values.mean()), float(values.std())


@dataclass(frozen=True)
class PRDC:
    precision: float  # share of fake samples inside some real sample's k-NN ball (fidelity)
    recall: float  # share of real samples inside some fake sample's k-NN ball (diversity)
    density: float  # mean number of real balls holding a fake sample, / k (fidelity, ~1 for matched sets)
    coverage: float  # share of real samples whose own ball holds a fake sample (diversity, robust to outliers)


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5, chunk: int = CHUNK) -> PRDC:
    """Naeem et al. 2020 in one pass over fake x real distance blocks (plus one k-NN pass per set)."""
    real = np.ascontiguousarray(real, dtype=np.float32)
    fake = np.ascontiguousarray(fake, dtype=np.float32)
    if len(real) < 2 or len(fake) < 2:
        return PRDC(float("nan"), float("nan"), float("nan"), float("nan"))
    r_rad2 = knn_radii(real, k, chunk) ** 2
    f_rad2 = knn_radii(fake, k, chunk) ** 2
    r_sq = sq_norms(real)
    in_real = 0  # fake samples inside any real ball
    density_hits = 0
    recalled = np.zeros(len(real), dtype=bool)
    nearest_fake = np.full(len(real), np.inf, dtype=np.float32)
    for s in range(0, len(fake), chunk):
        d = sq_distances(fake[s : s + chunk], real, r_sq)  # (fake chunk, real)
        inside = d <= r_rad2[None, :]
        in_real += int(inside.any(1).sum())
        density_hits += int(inside.sum())
        recalled |= (d <= f_rad2[s : s + chunk, None]).any(0)
        np.minimum(nearest_fake, d.min(0), out=nearest_fake)
    k_eff = min(k, len(real) - 1)
    return PRDC(
        precision=in_real / len(fake),
        recall=float(recalled.mean()),
        density=density_hits / (k_eff * len(fake)),
        coverage=float((nearest_fake <= r_rad2).mean()),
    )
