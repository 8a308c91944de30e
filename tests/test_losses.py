import math

import pytest
import torch

from fastgan.losses import discriminator_hinge_loss, generator_adversarial_loss, generator_loss, mobilenet_score_loss
from fastgan.ops import mobilenet_score


def test_hinge_loss_hand_computed():
    real, fake = torch.tensor([2.0, 0.5, -1.0]), torch.tensor([-3.0, 0.0])
    # K=1: relu(1-2)=0, relu(0.5)=0.5, relu(2)=2 -> 2.5/3 ; relu(1-3)=0, relu(1)=1 -> 0.5
    assert discriminator_hinge_loss(real, fake).item() == pytest.approx(2.5 / 3 + 0.5)
    # K=2: relu(0)=0, 1.5, 3 -> 1.5 ; relu(-1)=0, relu(2)=2 -> 1
    assert discriminator_hinge_loss(real, fake, margin=2.0).item() == pytest.approx(1.5 + 1.0)
    with pytest.raises(ValueError):
        discriminator_hinge_loss(real, fake, margin=0.0)


def test_generator_adversarial_loss():
    assert generator_adversarial_loss(torch.tensor([1.0, 3.0])).item() == pytest.approx(-2.0)


def test_mobilenet_score_uniform_is_one_and_confident_distinct_is_k():
    assert mobilenet_score(torch.zeros(5, 7)).item() == pytest.approx(1.0)
    confident = torch.eye(4) * 50.0
    assert mobilenet_score(confident).item() == pytest.approx(4.0, rel=1e-4)


def test_mobilenet_score_hand_computed():
    logits = torch.log(torch.tensor([[0.5, 0.5], [0.9, 0.1]]))
    p = torch.tensor([[0.5, 0.5], [0.9, 0.1]])
    marginal = p.mean(0)
    kl = (p * (p / marginal).log()).sum(1).mean()
    assert mobilenet_score(logits).item() == pytest.approx(math.exp(kl.item()), rel=1e-6)


def test_mobilenet_score_is_stable_for_extreme_logits_and_low_precision():
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, 1e4, 0.0]])
    assert torch.isfinite(mobilenet_score(logits))
    assert mobilenet_score(logits).item() == pytest.approx(2.0, rel=1e-5)
    assert mobilenet_score(logits.bfloat16()).dtype == torch.float32


def test_mobilenet_score_gradient_matches_finite_differences():
    """float64 logits run the reference (the fused ops take fp32/fp16/bf16), so this checks the formula's gradient;
    tests/ops/test_mobilenet_score.py checks the fused gradients against it."""
    logits = torch.randn(6, 5, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(mobilenet_score, (logits,))


def test_mobilenet_score_rejects_bad_shapes():
    with pytest.raises(ValueError, match="B >= 1, K >= 2"):
        mobilenet_score(torch.randn(4))


def test_ms_loss_hand_computed_and_clamped():
    # log(2·√4) − log(3) = log(4/3)
    assert mobilenet_score_loss(torch.tensor(3.0), ms_real=2.0, hr=4).item() == pytest.approx(math.log(4 / 3))
    assert mobilenet_score_loss(torch.tensor(5.0), ms_real=2.0, hr=4).item() == 0.0


def test_generator_loss_combines_terms_and_lambda_zero_disables_evaluator():
    scores = torch.tensor([0.5, 1.5])
    logits = torch.zeros(2, 3)  # MS_fake = 1
    loss, parts = generator_loss(scores, logits, ms_real=2.0, hr=1, lambda_ms=0.5)
    assert loss.item() == pytest.approx(-1.0 + 0.5 * math.log(2.0))
    assert parts["ms_fake"].item() == pytest.approx(1.0) and parts["g_adv"].item() == pytest.approx(-1.0)
    loss0, parts0 = generator_loss(scores, logits, ms_real=2.0, hr=1, lambda_ms=0.0)
    assert loss0.item() == pytest.approx(-1.0) and "ms_fake" not in parts0
