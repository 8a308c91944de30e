"""A "same" convolution followed by s×s average pooling, computed as one strided convolution: the discriminator's
down-sampling (`fastgan.models.blocks.ResBlockDown`).

avg_pool2d(conv2d(x, w, b, padding=k // 2), s) equals conv2d(x, K, b, stride=s, padding=k // 2) where the
(k + s − 1)² kernel K is w box-filtered: K[u, v] = Σ w[u − a, v − b] / s² over a, b < s. Only the pooled outputs are
computed — (k + s − 1)² / (k·s)² of the multiply-adds, 16/36 for 3×3 and ×2 — and the full-resolution convolution
output is neither formed nor kept for backward. A 1×1 convolution commutes with the pooling, so it pools first
(1/s² of the multiply-adds). Plain torch operations: autograd (and torch.compile) differentiate them.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fastgan.ops.autocast import without_autocast
from fastgan.ops.backends import cached_constant, current_backend, traced_by_compile


def conv_avgpool_ref(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: int = 2) -> torch.Tensor:
    """Eager reference: `F.conv2d` with "same" padding, then `F.avg_pool2d` by `scale`."""
    return F.avg_pool2d(F.conv2d(x, weight, bias, padding=weight.shape[-1] // 2), scale)


def box_filter_matrix(k: int, scale: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(k², (k + s − 1)²): row u·k + v is the unit tap at (u, v) box-filtered by s×s and divided by s² — the linear
    map `pooled_weight` applies to every (Cout, Cin) kernel, built on `device` (no host copy)."""
    unit_taps = torch.eye(k * k, dtype=dtype, device=device).view(k * k, 1, k, k)
    return F.avg_pool2d(F.pad(unit_taps, (scale - 1,) * 4), scale, stride=1).view(k * k, (k + scale - 1) ** 2)


#: `box_filter_matrix`, cached per device (`cached_constant`).
_cached_box_filter_matrix = cached_constant(box_filter_matrix)


def pooled_weight(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """(Cout, Cin, k, k) -> (Cout, Cin, k + s − 1, k + s − 1): the kernel box-filtered by s×s and divided by s² —
    the stride-1 average pooling of its zero-padded taps — as one matrix product with `box_filter_matrix` (a tenth
    of the time of pooling Cout·Cin one-channel planes, forward and backward, at D128's 128 × 128 kernels), summed in
    fp32 (fp64 for fp64; autocast off), in the weight's dtype."""
    cout, cin, k = weight.shape[:3]
    accumulate = torch.promote_types(weight.dtype, torch.float32)
    # under torch.compile: built inside the graph (one tiny fused kernel a call), no cache for Dynamo to trace
    build = box_filter_matrix if traced_by_compile() else _cached_box_filter_matrix
    box = build(k, scale, accumulate, weight.device)
    with without_autocast(weight.device.type):  # autocast would multiply in bf16/fp16
        pooled = weight.to(accumulate).flatten(2) @ box  # (Cout, Cin, (k + s − 1)²)
    return pooled.view(cout, cin, k + scale - 1, k + scale - 1).to(weight.dtype)


def _validate(x: torch.Tensor, weight: torch.Tensor, scale: int) -> None:
    if not isinstance(scale, int) or isinstance(scale, bool) or scale < 1:
        raise ValueError(f"conv_avgpool: scale must be a positive int, got {scale!r}")
    if x.dim() != 4 or weight.dim() != 4 or weight.shape[1] != x.shape[1]:
        raise ValueError(
            f"conv_avgpool expects x (N, Cin, H, W) and weight (Cout, Cin, k, k); got x {tuple(x.shape)}, "
            f"weight {tuple(weight.shape)}"
        )
    if weight.shape[2] != weight.shape[3] or weight.shape[2] % 2 == 0:
        raise ValueError(f"conv_avgpool: the kernel must be square with an odd side, got {tuple(weight.shape[2:])}")
    if min(x.shape[-2:]) < scale:
        raise ValueError(
            f"conv_avgpool: x of {tuple(x.shape[-2:])} pixels is smaller than the {scale}×{scale} pool; give at least "
            f"{scale}×{scale} pixels or a smaller scale"
        )


def conv_avgpool(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None, scale: int = 2
) -> torch.Tensor:
    """avg_pool2d(conv2d(x, weight, bias, padding=k // 2), scale), by the implementation `current_backend()` names.

    Args:
        x: (N, Cin, H, W) activations.
        weight: (Cout, Cin, k, k), k odd; bias: (Cout,) or None.
        scale: the pooling window and stride s.

    Returns:
        (N, Cout, H // s, W // s): `conv_avgpool_ref` on the "torch" backend; one strided convolution with the
        box-filtered kernel (for k = 1: pooling, then the convolution) on the fused ones — the same function up to
        rounding.
    """
    _validate(x, weight, scale)
    if current_backend() == "torch":
        return conv_avgpool_ref(x, weight, bias, scale)
    if weight.shape[-1] == 1:
        return F.conv2d(F.avg_pool2d(x, scale), weight, bias)
    return F.conv2d(x, pooled_weight(weight, scale), bias, stride=scale, padding=weight.shape[-1] // 2)
