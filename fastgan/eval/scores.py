"""GAN metric formulas on features and logits, in float64: the split score (Inception and MobileNet scores),
Fréchet distance, and improved precision/recall. Network-free, so they are tested on hand-made numbers."""

from __future__ import annotations

import math

import torch


def _check_finite(values: torch.Tensor, what: str, minus_inf: bool = False) -> None:
    """Raise ValueError if `values` hold NaN or ±inf (LAPACK's eigen-solver crashes the process on them); with
    `minus_inf`, −inf passes (a logit that rules a class out)."""
    invalid = values.isnan() | (values == math.inf) if minus_inf else ~torch.isfinite(values)
    if invalid.any():
        rows = invalid.reshape(len(values), -1).any(dim=1) if values.dim() > 1 else invalid.reshape(-1)
        unit = "rows" if values.dim() > 1 else "values"
        raise ValueError(
            f"{what} hold NaN or inf ({int(rows.sum())} of {len(rows)} {unit}): a generator that diverged, or a broken "
            "network; score a checkpoint from before the failure"
        )


def split_score(logits: torch.Tensor, splits: int = 10) -> tuple[float, float]:
    """Inception-score formula (Salimans et al. 2016; the paper's Eq. 5 with MobileNet logits): the samples are
    cut into exactly `splits` consecutive parts (part i is samples i·N//splits to (i+1)·N//splits, as in the
    reference code); in each, exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the part's mean; returns the mean and the
    (population, as in the reference code) standard deviation over the parts. p·log p counts 0 where p = 0, so
    logits confident beyond float64's range still score.

    Args:
        logits: (N, K) class logits, N ≥ splits.
        splits: number of parts (the field's default is 10).
    """
    if logits.dim() != 2 or not 1 <= splits <= logits.shape[0]:
        raise ValueError(f"split_score needs (N, K) logits with N ≥ splits = {splits}, got {tuple(logits.shape)}")
    _check_finite(logits, "logits", minus_inf=True)
    ruled_out = (logits == -math.inf).all(dim=1)
    if ruled_out.any():
        raise ValueError(
            f"{int(ruled_out.sum())} of {len(logits)} rows of logits are −inf throughout (every class ruled out): "
            f"rows {ruled_out.nonzero().flatten()[:10].tolist()}; a broken network or a bad mask"
        )
    n = logits.shape[0]
    scores = []
    for i in range(splits):
        part = logits[i * n // splits : (i + 1) * n // splits].double()
        log_p = part.log_softmax(dim=1)
        p = log_p.exp()
        log_marginal = p.mean(dim=0).log()
        kl = torch.where(p > 0, p * (log_p - log_marginal), 0.0).sum(dim=1).mean()
        scores.append(kl.exp().item())
    mean = sum(scores) / len(scores)
    return mean, math.sqrt(sum((s - mean) ** 2 for s in scores) / len(scores))


def feature_statistics(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean (D,) and unbiased covariance (D, D) of (N, D) features, float64 (as numpy.cov(rowvar=False))."""
    if features.dim() != 2 or features.shape[0] < 2:
        raise ValueError(f"feature statistics need (N ≥ 2, D) features, got {tuple(features.shape)}")
    _check_finite(features, "features")
    x = features.double()
    mean = x.mean(dim=0)
    centred = x - mean
    return mean, centred.T @ centred / (x.shape[0] - 1)


def frechet_distance(a: tuple[torch.Tensor, torch.Tensor], b: tuple[torch.Tensor, torch.Tensor]) -> float:
    """‖μa − μb‖² + tr(Σa + Σb − 2 (Σa Σb)^½) between two Gaussians given as (mean, covariance).

    tr (Σa Σb)^½ is the sum of the square roots of the eigenvalues of Σa Σb, which are those of the symmetric PSD
    Σa^½ Σb Σa^½: two symmetric eigen-solves (Σa's for its root, then that product's), real by construction and
    three times faster than a general one of Σa Σb at D = 576.
    """
    (mu_a, sigma_a), (mu_b, sigma_b) = a, b
    dims = mu_a.shape[-1]
    if any(t.shape != (dims,) for t in (mu_a, mu_b)) or any(t.shape != (dims, dims) for t in (sigma_a, sigma_b)):
        raise ValueError(
            f"frechet_distance takes two (mean (D,), covariance (D, D)) pairs of one D (feature_statistics makes "
            f"them), got means {tuple(mu_a.shape)}, {tuple(mu_b.shape)} and covariances {tuple(sigma_a.shape)}, "
            f"{tuple(sigma_b.shape)}"
        )
    for name, statistic in (("means", torch.cat([mu_a, mu_b])), ("covariances", torch.cat([sigma_a, sigma_b]))):
        _check_finite(statistic, f"Fréchet distance {name}")
    sigma_a, sigma_b = sigma_a.double(), sigma_b.double()
    values, vectors = torch.linalg.eigh(sigma_a)
    root_a = (vectors * values.clamp_min(0).sqrt()) @ vectors.T
    trace_sqrt = torch.linalg.eigvalsh(root_a @ sigma_b @ root_a).clamp_min(0).sqrt().sum()
    return _frechet(mu_a - mu_b, sigma_a.trace() + sigma_b.trace(), trace_sqrt)


def _frechet(mean_difference: torch.Tensor, traces: torch.Tensor, trace_sqrt: torch.Tensor) -> float:
    """‖Δμ‖² + tr Σa + tr Σb − 2 tr (Σa Σb)^½, never below 0 (rounding gives −4e-15 for equal Gaussians)."""
    return max(0.0, float(mean_difference.double().square().sum() + traces - 2 * trace_sqrt))


def frechet_distance_of_features(a: torch.Tensor, b: torch.Tensor) -> float:
    """`frechet_distance` between the Gaussians fitted to (Na, D) real and (Nb, D) generated features
    (`feature_statistics`).

    With fewer samples than dimensions on a side (a class of intra-class FID: 500 CIFAR-100 images against 2 048
    Inception features) the D × D eigen-solves are avoided: with Xa, Xb the centred features, Σa Σb =
    Xaᵀ (Xa Xbᵀ) Xb / ((Na − 1)(Nb − 1)), whose non-zero eigenvalues are the squared singular values of K = Xa Xbᵀ
    (Na × Nb), so tr (Σa Σb)^½ = ‖K‖_* / √((Na − 1)(Nb − 1)), the nuclear norm.
    """
    if a.dim() != 2 or b.dim() != 2 or a.shape[1] != b.shape[1] or min(len(a), len(b)) < 2:
        raise ValueError(
            f"Fréchet distance of features takes (N ≥ 2, D) features of one D, got {tuple(a.shape)}, {tuple(b.shape)}"
        )
    for side, features in (("real", a), ("fake", b)):
        _check_finite(features, f"{side} features")
    if min(len(a), len(b)) > a.shape[1]:
        return frechet_distance(feature_statistics(a), feature_statistics(b))
    a, b = a.double(), b.double()
    mean_a, mean_b = a.mean(dim=0), b.mean(dim=0)
    centred_a, centred_b = a - mean_a, b - mean_b
    scale_a, scale_b = len(a) - 1, len(b) - 1
    traces = centred_a.square().sum() / scale_a + centred_b.square().sum() / scale_b
    nuclear = torch.linalg.svdvals(centred_a @ centred_b.T).sum()
    return _frechet(mean_a - mean_b, traces, nuclear / math.sqrt(scale_a * scale_b))


def _kth_neighbour_radii(features: torch.Tensor, k: int, chunk: int = 1024) -> torch.Tensor:
    radii = torch.empty(features.shape[0], dtype=torch.float64)
    for start in range(0, features.shape[0], chunk):
        distances = torch.cdist(features[start : start + chunk], features)
        radii[start : start + chunk] = distances.kthvalue(k + 1, dim=1).values  # +1: the point itself is at 0
    return radii


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    inside = torch.empty(points.shape[0], dtype=torch.bool)
    for start in range(0, points.shape[0], chunk):
        inside[start : start + chunk] = (torch.cdist(points[start : start + chunk], centres) <= radii).any(dim=1)
    return inside


#: k of improved precision/recall: the k-th nearest neighbour sets each sample's ball (the paper's choice).
PRECISION_NEIGHBOURS = 3


def precision_recall(real: torch.Tensor, fake: torch.Tensor, k: int = PRECISION_NEIGHBOURS) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the fraction of fake samples inside
    some real sample's k-nearest-neighbour ball, recall the fraction of real samples inside some fake one's.

    Args:
        real: (N, D) features of real images; fake: (M, D) of generated ones; N, M > k.
    """
    if k < 1:
        raise ValueError(f"precision/recall needs k ≥ 1 nearest neighbours, got {k}")
    if real.dim() != 2 or fake.dim() != 2 or real.shape[1] != fake.shape[1]:
        raise ValueError(
            f"precision/recall compares (N, D) and (M, D) features of one space, got {tuple(real.shape)} and "
            f"{tuple(fake.shape)}"
        )
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(f"precision/recall with k = {k} needs more than {k} real and fake samples")
    _check_finite(real, "real features")
    _check_finite(fake, "fake features")
    real, fake = real.double(), fake.double()
    precision = _covered(fake, real, _kth_neighbour_radii(real, k)).double().mean()
    recall = _covered(real, fake, _kth_neighbour_radii(fake, k)).double().mean()
    return float(precision), float(recall)
