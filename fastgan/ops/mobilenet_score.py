"""The MobileNet score (HRGAN Eq. 5): an Inception-score-style statistic of classifier logits.

Three faces (see `fastgan.ops.backends`):

- ``"torch"``: `mobilenet_score_ref`, the eager truth, differentiable by plain autograd (twice, too).
- ``"fused-torch"`` / ``"fused-compiled"``: `_ScoreAndGradientFunction` over `_TorchKernels` — the score and its
  gradient dS/dlogits in one pass of torch arithmetic (compiled: one TorchInductor call), the way fused
  cross-entropy losses do it; backward only scales the kept (B, K) fp32 gradient. On a CPU that halves the
  calls: with 1 280 logits the calls, not the arithmetic, are the cost.
- ``"triton"``: `_MobileNetScoreFunction` over `fastgan.kernels.mobilenet_score`: two launches forward (row-group
  partials, then one program reducing them), one backward that re-derives p from the logits, saving only the
  logits, row statistics (2, B), log q (K,) and the score.

fp64 logits always take the eager reference (the kernels take fp32/fp16/bf16), whatever the backend.
"""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.autograd.function import once_differentiable

from fastgan.ops.backends import current_backend, kernels_for, traced_by_compile
from fastgan.ops.traffic import Traffic


def _check_shape(logits: torch.Tensor) -> None:
    if logits.dim() != 2 or logits.shape[0] < 1 or logits.shape[1] < 2:
        raise ValueError(f"mobilenet_score expects logits of shape (B >= 1, K >= 2), got {tuple(logits.shape)}")


def mobilenet_score_ref(logits: torch.Tensor) -> torch.Tensor:
    """exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the batch-mean of p(y|x); differentiable (eager reference).

    Computed in fp32 (fp64 for fp64 input) from logits with log-softmax (never the log of a softmax), so confident
    predictions do not produce log(0).

    Args:
        logits: (B, K) classifier logits, any float dtype.

    Returns:
        () scalar in [1, K], fp32 (fp64 for fp64 logits).
    """
    _check_shape(logits)
    precise = logits if logits.dtype == torch.float64 else logits.float()
    log_p = torch.log_softmax(precise, dim=1)  # (B, K) log p(y|x)
    log_marginal = torch.logsumexp(log_p, dim=0) - math.log(logits.shape[0])  # (K,)
    kl = (log_p.exp() * (log_p - log_marginal)).sum(dim=1)  # (B,)
    return kl.mean().exp()


class _TorchKernels:
    """The score with its gradient in torch arithmetic ("fused-torch"; "fused-compiled" compiles it)."""

    @staticmethod
    def score_and_gradient(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(score (), dscore/dlogits (B, K)) from (B, K) logits, fp32 (fp64 for fp64 logits).

        log p = (l − max) − log Σ exp(l − max) keeps its precision for large logits; with q the batch mean of p,
        d = log p − log q and KL_b = Σ_k p·d, the gradient is S/B · p · (d − KL_b). As in the Triton kernels,
        0·log 0 counts 0: a −inf logit (p = 0) adds nothing to KL_b and gets a zero gradient.
        """
        x = logits.to(torch.promote_types(logits.dtype, torch.float32))
        shifted = x - x.amax(dim=1, keepdim=True)  # (B, K)
        log_p = shifted - torch.logsumexp(shifted, dim=1, keepdim=True)  # (B, K)
        log_marginal = torch.logsumexp(log_p, dim=0) - math.log(x.shape[0])  # (K,)
        p = log_p.exp()
        d = torch.where(p > 0, log_p - log_marginal, 0.0)  # (B, K)
        kl = (p * d).sum(dim=1, keepdim=True)  # (B, 1)
        score = kl.mean().exp()
        return score, (score / x.shape[0]) * p * (d - kl)


class _ScoreAndGradientFunction(torch.autograd.Function):
    """score = kernels.score_and_gradient(logits)[0]; keeps the gradient, not the logits."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, kernels) -> torch.Tensor:
        score, gradient = kernels.score_and_gradient(logits)
        ctx.logits_dtype = logits.dtype
        ctx.save_for_backward(gradient)
        return score

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_score: torch.Tensor) -> tuple[torch.Tensor, None]:
        (gradient,) = ctx.saved_tensors
        return (grad_score * gradient).to(ctx.logits_dtype), None


class _MobileNetScoreFunction(torch.autograd.Function):
    """score = kernels.forward(logits)[0] (the Triton launchers); the backward recomputes p from the logits, row
    stats and log q."""

    @staticmethod
    def forward(ctx, logits: torch.Tensor, kernels) -> torch.Tensor:
        score, row_stats, log_marginal = kernels.forward(logits)
        ctx.kernels = kernels
        ctx.save_for_backward(logits, row_stats, log_marginal, score)
        return score

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_score: torch.Tensor) -> tuple[torch.Tensor, None]:
        logits, row_stats, log_marginal, score = ctx.saved_tensors
        return ctx.kernels.backward(grad_score, logits, row_stats, log_marginal, score), None


def mobilenet_score(logits: torch.Tensor) -> torch.Tensor:
    """exp(mean_x KL(p(y|x) ‖ p(y))) with p(y) the batch-mean of p(y|x); differentiable, on the current backend.

    Computed in fp32 (fp64 for fp64 input) from logits with log-softmax (never the log of a softmax), so confident
    predictions do not produce log(0). The fused paths count 0·log 0 as 0, so a −inf logit (a masked class) adds
    nothing to the score and gets a zero gradient; the eager reference's arithmetic gives NaN there, as eager
    Inception-score code does, and it is what the torch-arithmetic backends run when no gradient is wanted (a very
    negative finite logit, whose p underflows to 0, scores the same everywhere). On the fused backends the backward
    is not twice-differentiable: "triton" keeps the logits and O(B + K) statistics and re-derives the gradient in
    one pass; the torch-arithmetic ones compute it with the score and keep it ((B, K) fp32). fp64 logits, the
    "torch" backend, the torch-arithmetic backends when no gradient is wanted, and a caller compiled by
    torch.compile use `mobilenet_score_ref`.

    Args:
        logits: (B, K) classifier logits, any float dtype.

    Returns:
        () scalar in [1, K], fp32 (fp64 for fp64 logits).
    """
    _check_shape(logits)
    backend = current_backend()
    needs_gradient = torch.is_grad_enabled() and logits.requires_grad
    if (
        backend == "torch"
        or traced_by_compile()
        or logits.dtype not in (torch.float32, torch.float16, torch.bfloat16)
        or (backend != "triton" and not needs_gradient)  # the torch arithmetic fuses the score with its gradient
    ):
        return mobilenet_score_ref(logits)
    kernels = kernels_for(backend, "mobilenet_score", _TorchKernels)
    if backend != "triton":
        return _ScoreAndGradientFunction.apply(logits, kernels)
    if logits.stride(1) != 1:
        logits = logits.contiguous()  # the kernels read rows with unit stride along K
    return _MobileNetScoreFunction.apply(logits, kernels)


class MobileNetScore(nn.Module):
    """`mobilenet_score` as a module: forward((B, K) logits) -> () score, on the current ops backend."""

    def forward(self, logits: torch.Tensor) -> torch.Tensor:
        return mobilenet_score(logits)


def _eager_forward_launches(batch: int, classes: int, size: int) -> list[tuple[str, int]]:
    """(kernel, bytes read + written) of `mobilenet_score_ref`'s forward, launch by launch."""
    bk, f32 = batch * classes * 4, 4
    k = classes * f32
    launches = [("to fp32", batch * classes * size + bk)] if size != 4 else []
    return launches + [
        ("log_softmax", 2 * bk),
        # logsumexp(log_p, 0) as ATen runs it: amax, |max| == inf masking, sub, exp_, sum, log_, add_
        ("logsumexp amax", bk + k),
        ("logsumexp abs", 2 * k),
        ("logsumexp eq inf", k + classes),
        ("logsumexp masked_fill_", 2 * k + classes),
        ("logsumexp sub", 2 * bk + k),
        ("logsumexp exp_", 2 * bk),
        ("logsumexp sum", bk + k),
        ("logsumexp log_", 2 * k),
        ("logsumexp add_", 3 * k),
        ("sub log B", 2 * k),
        ("exp", 2 * bk),
        ("sub log q", 2 * bk + k),
        ("mul", 3 * bk),
        ("sum dim 1", bk + batch * f32),
        ("mean", batch * f32 + f32),
        ("exp", 2 * f32),
    ]


def _eager_backward_launches(batch: int, classes: int, size: int) -> list[tuple[str, int]]:
    """(kernel, bytes read + written) of autograd's backward through `mobilenet_score_ref`, launch by launch."""
    bk, f32 = batch * classes * 4, 4
    k, b = classes * f32, batch * f32
    launches = [
        ("ExpBackward mul", 3 * f32),
        ("MeanBackward expand / B", f32 + b),
        # SumBackward expands (B, 1) -> (B, K) as a view: no launch
        ("MulBackward grad·(log p − log q)", bk + b + bk),
        ("MulBackward grad·p", bk + b + bk),
        ("SubBackward neg", 2 * bk),
        ("SubBackward sum_to (K,)", bk + k),
        ("ExpBackward mul", 3 * bk),
        ("accumulate into log p", 3 * bk),
        # SubBackward of log B passes the (K,) gradient through; LogsumexpBackward: grad · exp(log p − lse)
        ("LogsumexpBackward sub", 2 * bk + k),
        ("LogsumexpBackward exp", 2 * bk),
        ("LogsumexpBackward mul", 2 * bk + k),
        ("accumulate into log p", 3 * bk),
        ("LogSoftmaxBackward", 3 * bk),
    ]
    if size != 4:
        launches.append(("ToCopyBackward to logits dtype", bk + batch * classes * size))
    return launches


def traffic(batch: int, classes: int, dtype: torch.dtype = torch.float32) -> dict[str, Traffic]:
    """Analytic global-memory bytes of one forward and one backward for (batch, classes) logits of `dtype`.

    minimum: logits read once and the score written (forward); grad and logits read once, dlogits written
    (backward). fused: what the Triton kernels load and store as `fastgan.kernels.mobilenet_score.launch_plan`
    launches them (row stats, the forward's partials, log q, the scalars; log q once per backward program; the
    logits twice when K > TILE).
    eager: the launches of `mobilenet_score_ref` and of autograd's backward through it.
    """
    size = torch.empty((), dtype=dtype).element_size()
    plan = kernels_for("triton", "mobilenet_score", _TorchKernels).launch_plan(batch, classes, size)
    logits, f32 = batch * classes * size, 4
    passes = 1 if plan["whole_rows"] else 2
    # forward: logits read (twice for split rows, with the row stats re-read per K block), the row stats (2, B)
    # written; the partials (P, K) and (P,) written and read back; log q (K,) and the score written
    partials = plan["forward_programs"] * (classes + 1) * f32
    fused_forward = passes * logits + 2 * batch * f32 + 2 * partials + classes * f32 + f32
    if not plan["whole_rows"]:
        fused_forward += plan["k_blocks"] * 2 * batch * f32
    # backward: per program the grad and score scalars and log q (per K block and pass for split rows); per row
    # the two row stats; the logits (twice for split rows) read and dlogits written once
    programs = plan["backward_programs"]
    if plan["whole_rows"]:
        log_q_reads = programs * classes * f32
    else:
        log_q_reads = 2 * plan["row_blocks"] * classes * f32
    fused_backward = programs * 2 * f32 + 2 * batch * f32 + log_q_reads + passes * logits + logits
    return {
        "forward": Traffic(
            minimum=logits + f32,
            fused=fused_forward,
            eager=sum(bytes_ for _, bytes_ in _eager_forward_launches(batch, classes, size)),
        ),
        "backward": Traffic(
            minimum=f32 + 2 * logits,
            fused=fused_backward,
            eager=sum(bytes_ for _, bytes_ in _eager_backward_launches(batch, classes, size)),
        ),
    }
