"""HRGAN objectives: the generalized hinge loss (Eq. 2) and the generator loss with L_MS (Eq. 3–4)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastgan.ops import mobilenet_score


def discriminator_hinge_loss(real_scores: torch.Tensor, fake_scores: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """mean(relu(K − D(x, y))) + mean(relu(K + D(G_d(z, y), y))), the negation of Eq. 2; K = `margin`.

    Args:
        real_scores: (N,) discriminator scores of real images.
        fake_scores: (M,) scores of generated images.
        margin: the Lipschitz constant K > 0.
    """
    if margin <= 0:
        raise ValueError(f"the hinge margin K must be positive, got {margin}")
    return F.relu(margin - real_scores).mean() + F.relu(margin + fake_scores).mean()


def generator_adversarial_loss(fake_scores: torch.Tensor) -> torch.Tensor:
    """−mean(D(G_d(z, w), w)), the first term of Eq. 3. fake_scores: (M,)."""
    return -fake_scores.mean()


def mobilenet_score_loss(ms_fake: torch.Tensor, ms_real: float, hr: int) -> torch.Tensor:
    """L_MS = max(0, log(MS_real · √HR) − log MS_fake) (Eq. 4).

    Args:
        ms_fake: () MobileNet score of the generated batch (differentiable).
        ms_real: MobileNet score of the whole real dataset, precomputed.
        hr: output resolution over training resolution (1, 2 or 4).
    """
    target = math.log(ms_real) + 0.5 * math.log(hr)
    return F.relu(target - torch.log(ms_fake))


def generator_loss(
    fake_scores: torch.Tensor, evaluator_logits: torch.Tensor | None, ms_real: float, hr: int, lambda_ms: float
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Eq. 3: −mean D(G_d(z, w), w) + λ_MS · L_MS; λ_MS = 0 (or no logits) drops the evaluator term.

    Args:
        fake_scores: (M,) discriminator scores of the down-sampled generated batch.
        evaluator_logits: (M, K) evaluator logits of the full-resolution generated batch, or None.
        ms_real, hr, lambda_ms: see `mobilenet_score_loss`; λ_MS ≥ 0.

    Returns:
        The scalar loss and its parts as detached () tensors (g_adv, and ms_fake and l_ms when the evaluator is
        used): reading them is left to the caller, so a step can run without host synchronisation.
    """
    adversarial = generator_adversarial_loss(fake_scores)
    parts = {"g_adv": adversarial.detach()}
    if lambda_ms == 0 or evaluator_logits is None:
        return adversarial, parts
    ms_fake = mobilenet_score(evaluator_logits)
    l_ms = mobilenet_score_loss(ms_fake, ms_real, hr)
    parts.update(ms_fake=ms_fake.detach(), l_ms=l_ms.detach())
    return adversarial + lambda_ms * l_ms, parts
