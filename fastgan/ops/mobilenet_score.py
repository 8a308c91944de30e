"""The MobileNet score (HRGAN Eq. 5): an Inception-score-style statistic of classifier logits."""

from __future__ import annotations

import torch


def mobilenet_score(logits: torch.Tensor) -> torch.Tensor:
    """exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the batch-mean of p(y|x); differentiable.

    Computed in fp32 (fp64 for fp64 input) from logits with log-softmax (never the log of a softmax), so confident
    predictions do not produce log(0).

    Args:
        logits: (B, K) classifier logits, any float dtype.

    Returns:
        () scalar in [1, K], fp32 (fp64 for fp64 logits).
    """
    if logits.dim() != 2 or logits.shape[0] < 1 or logits.shape[1] < 2:
        raise ValueError(f"mobilenet_score expects logits of shape (B >= 1, K >= 2), got {tuple(logits.shape)}")
    precise = logits if logits.dtype == torch.float64 else logits.float()
    log_p = torch.log_softmax(precise, dim=1)  # (B, K) log p(y|x)
    log_marginal = torch.logsumexp(log_p, dim=0) - torch.log(log_p.new_tensor(float(logits.shape[0])))  # (K,)
    kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=1)  # (B,)
    return kl.mean().exp()
