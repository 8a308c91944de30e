"""Metric formulas on hand-computed cases and against torchmetrics' reference implementations."""

import math

import numpy as np
import pytest
import torch
from torchmetrics.image.fid import _compute_fid
from torchmetrics.image.inception import InceptionScore

from fastgan.eval.scores import (
    feature_statistics,
    frechet_distance,
    frechet_distance_of_features,
    precision_recall,
    split_score,
)


def test_split_score_hand_cases():
    assert split_score(torch.zeros(40, 7), splits=4) == pytest.approx((1.0, 0.0))  # uniform: no information
    confident = torch.full((40, 8), -1e4)
    confident[torch.arange(40), torch.arange(40) % 8] = 0  # certain and balanced: score = K
    mean, std = split_score(confident, splits=5)
    assert mean == pytest.approx(8.0) and std == pytest.approx(0.0, abs=1e-9)
    with pytest.raises(ValueError, match="splits"):
        split_score(torch.zeros(3, 5), splits=4)


def test_split_score_uses_exactly_splits_parts():
    """N = 11, splits = 10: ten parts (nine of one sample, scoring 1, and one of two), not torch.chunk's six."""
    logits = torch.full((11, 2), -50.0)
    logits[torch.arange(11), torch.arange(11) % 2] = 50.0  # certain; samples 9 and 10 disagree
    mean, std = split_score(logits, splits=10)
    scores = [1.0] * 9 + [2.0]  # the last part holds two certain, different predictions: exp(log 2)
    expected = sum(scores) / 10
    assert mean == pytest.approx(expected)
    assert std == pytest.approx(math.sqrt(sum((s - expected) ** 2 for s in scores) / 10))


def test_split_score_of_logits_beyond_float64_range():
    """Class probabilities that underflow to exactly 0 count 0·log 0 = 0, not NaN."""
    logits = torch.zeros(20, 3)
    logits[:, 0] = 1000.0  # every sample certain of class 0: score 1
    assert split_score(logits, splits=2) == pytest.approx((1.0, 0.0))


def test_split_score_refuses_rows_that_rule_out_every_class():
    """−inf rules one class out and scores; a row of −inf only has no distribution (its softmax is NaN)."""
    logits = torch.randn(20, 3, generator=torch.Generator().manual_seed(0))
    logits[:, 1] = -math.inf
    assert math.isfinite(split_score(logits, splits=2)[0])
    logits[4] = -math.inf
    with pytest.raises(ValueError, match=r"1 of 20 rows of logits are −inf throughout .* rows \[4\]"):
        split_score(logits, splits=2)


class _Logits(torch.nn.Module):
    def forward(self, x):
        return x


def test_split_score_matches_torchmetrics_inception_score():
    logits = torch.randn(200, 11, generator=torch.Generator().manual_seed(1)) * 3
    metric = InceptionScore(feature=_Logits(), splits=10)
    metric.update(logits)
    torch.manual_seed(7)
    reference_mean, reference_std = metric.compute()  # it permutes the samples with torch.randperm first
    torch.manual_seed(7)
    mean, std = split_score(logits[torch.randperm(200)], splits=10)
    assert mean == pytest.approx(reference_mean.item(), rel=1e-5)
    assert std * math.sqrt(10 / 9) == pytest.approx(reference_std.item(), rel=1e-4)  # torchmetrics: unbiased std


def test_frechet_distance_hand_case_and_torchmetrics():
    one_d = (torch.tensor([0.0]), torch.tensor([[1.0]])), (torch.tensor([1.0]), torch.tensor([[4.0]]))
    assert frechet_distance(*one_d) == pytest.approx(1 + 1 + 4 - 2 * 2)
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(500, 16, generator=generator)
    b = torch.randn(400, 16, generator=generator) @ torch.randn(16, 16, generator=generator) * 0.3 + 0.5
    stats_a, stats_b = feature_statistics(a), feature_statistics(b)
    np.testing.assert_allclose(stats_a[1].numpy(), np.cov(a.double().numpy(), rowvar=False), rtol=1e-12)
    reference = _compute_fid(*(t.double() for t in (*stats_a, *stats_b))).item()
    assert frechet_distance(stats_a, stats_b) == pytest.approx(reference, rel=1e-9)
    assert frechet_distance(stats_a, stats_a) == pytest.approx(0.0, abs=1e-8)


@pytest.mark.parametrize(("real", "fake", "dims"), [(30, 20, 64), (500, 40, 64), (200, 300, 16)])
def test_frechet_distance_of_features_with_fewer_samples_than_dimensions(real, fake, dims):
    """Below D samples on a side it takes the nuclear norm of the cross-Gram matrix instead of D × D eigen-solves
    (the first two cases; the third has more samples than dimensions on both sides and takes the covariances): the
    same distance as torchmetrics' from the covariances."""
    generator = torch.Generator().manual_seed(dims)
    a = torch.randn(real, dims, generator=generator)
    b = torch.randn(fake, dims, generator=generator) @ torch.randn(dims, dims, generator=generator) * 0.3 + 0.5
    stats_a, stats_b = feature_statistics(a), feature_statistics(b)
    reference = _compute_fid(*(t.double() for t in (*stats_a, *stats_b))).item()
    assert frechet_distance_of_features(a, b) == pytest.approx(reference, rel=1e-7)
    assert frechet_distance(stats_a, stats_b) == pytest.approx(reference, rel=1e-7)
    assert frechet_distance_of_features(a, a.clone()) == pytest.approx(0.0, abs=1e-8)
    with pytest.raises(ValueError, match="fake features hold NaN"):
        frechet_distance_of_features(a, b.index_fill(0, torch.tensor([1]), math.nan))
    with pytest.raises(ValueError, match=r"of one D, got \(1, 16\)"):
        frechet_distance_of_features(a[:1, :16], b[:, :16])


def test_precision_recall_hand_cases():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(300, 4, generator=generator)
    assert precision_recall(real, real.clone()) == (1.0, 1.0)
    assert precision_recall(real, real + 100) == (0.0, 0.0)
    collapsed = real[:50] * 0.05  # mode collapse to a tight cluster: precise, poor recall
    precision, recall = precision_recall(real, collapsed)
    assert precision == 1.0 and recall < 0.5


def test_non_finite_features_and_logits_are_errors_not_crashes():
    """LAPACK's eigen-solver kills the process (SIGSEGV in MKL) on a NaN covariance; precision/recall gave plausible
    numbers for NaN features. All are ValueErrors naming the rows now; a −inf logit (a class ruled out) still
    scores."""
    features = torch.randn(50, 8)
    features[3, 2] = float("nan")
    with pytest.raises(ValueError, match=r"features hold NaN or inf \(1 of 50 rows\)"):
        feature_statistics(features)
    with pytest.raises(ValueError, match="fake features hold NaN or inf"):
        precision_recall(torch.randn(50, 8), features)
    with pytest.raises(ValueError, match="covariances hold NaN or inf"):
        frechet_distance((torch.zeros(8), torch.eye(8) * math.inf), (torch.zeros(8), torch.eye(8)))
    logits = torch.randn(20, 5)
    with pytest.raises(ValueError, match="logits hold NaN or inf"):
        split_score(torch.where(torch.arange(5) == 1, math.nan, logits), splits=2)
    assert math.isfinite(split_score(torch.where(torch.arange(5) == 1, -math.inf, logits), splits=2)[0])


def test_accuracy_and_precision_recall_refuse_arguments_they_would_misread():
    """(N, 1) labels once broadcast against (N,) predictions (0.12 for a true 0.20); k = 0 gave (0, 0)."""
    from fastgan.eval.generator_eval import accuracy

    logits, labels = torch.eye(5), torch.tensor([0, 1, 2, 0, 0])
    assert accuracy(logits, labels) == pytest.approx(0.6)
    with pytest.raises(ValueError, match=r"\(N,\) labels"):
        accuracy(logits, labels[:, None])
    with pytest.raises(ValueError, match="k ≥ 1"):
        precision_recall(torch.randn(10, 4), torch.randn(10, 4), k=0)


def test_frechet_distance_and_intra_class_fid_name_mismatched_shapes():
    from fastgan.eval.generator_eval import intra_class_fid

    a, b = feature_statistics(torch.randn(20, 4)), feature_statistics(torch.randn(20, 5))
    with pytest.raises(ValueError, match="pairs of one D"):
        frechet_distance(a, b)
    with pytest.raises(ValueError, match="the fake pair is \\(20, 4\\), \\(19,\\)"):
        intra_class_fid((torch.randn(20, 4), torch.arange(20) % 2), (torch.randn(20, 4), torch.arange(19) % 2))
