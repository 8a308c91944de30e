"""Pixel shuffle followed by PReLU, SRGAN's upsampling stage (conv → pixel_shuffle ×r → PReLU), fused.

x (N, C·r², H, W) → PReLU(pixel_shuffle(x, r)) (N, C, r·H, r·W), with one shared slope or one per output channel.
The fused backward keeps only x and the slopes, never the output, and recomputes the shuffle and the sign test on
the fly. (Eager autograd keeps the shuffled copy of x instead, the same size: the gain here is bytes moved, half
the eager forward's and under half its backward's, not activation memory.) Four faces, by `fastgan.ops.backends`:

- ``"torch"``: `pixel_shuffle_prelu_ref`, the eager reference (the truth);
- ``"fused-torch"``: the fused autograd Function with torch arithmetic (`_TorchKernels`);
- ``"fused-compiled"``: the same Function with that arithmetic compiled by torch.compile (`_TorchKernels.COMPILED`);
- ``"triton"``: the same Function launching the kernels of `fastgan.kernels.pixel_shuffle_prelu`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from fastgan.ops.backends import current_backend, kernels_for, traced_by_compile
from fastgan.ops.traffic import Traffic


def pixel_shuffle_prelu_ref(x: torch.Tensor, weight: torch.Tensor, upscale: int = 2) -> torch.Tensor:
    """Eager reference: ``F.prelu(F.pixel_shuffle(x, upscale), weight)``.

    Args:
        x: (N, C·r², H, W).
        weight: (1,) or (C,) slopes for the negatives; cast to x's dtype (differentiably) if it differs.
        upscale: r.

    Returns:
        (N, C, r·H, r·W).
    """
    return F.prelu(F.pixel_shuffle(x, upscale), weight.to(x.dtype))


class _TorchKernels:
    """Fused forward/backward in torch arithmetic (backend "fused-torch"), with the Triton launchers' signatures."""

    #: What "fused-compiled" compiles: the PReLU backward over x's layout only. TorchInductor's CPU code for the
    #: permuted gathers is slower than ATen's (2-core Intel Xeon, 2026-11-30, medians of 15–21 interleaved calls at
    #: (8, 256, 64, 64): forward 27.6 ms uncompiled, 39.9 compiled, eager 35.3; backward 44.1 ms with ATen's
    #: pixel_unshuffle and this core compiled, 69.5 with the whole backward compiled, eager 86.3).
    COMPILED = ("prelu_backward",)

    @staticmethod
    def forward(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
        """(N, C·r², H, W) → (N, C, r·H, r·W): PReLU on the shuffled *view* of x (no shuffle copy), then the
        reshape to contiguous (N, C, rH, rW) copies once: two passes where eager takes three."""
        n, _, h, w = x.shape
        r = upscale
        c = x.shape[1] // (r * r)
        shuffled = x.reshape(n, c, r, r, h, w).permute(0, 1, 4, 2, 5, 3)  # (N, C, H, r, W, r), a view of x
        return F.prelu(shuffled, weight.to(x.dtype).reshape(-1)).reshape(n, c, h * r, w * r)

    @classmethod
    def backward(
        cls, grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, upscale: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """dx (N, C·r², H, W) and dweight (weight's shape and dtype), in x's layout.

        grad_out is brought to x's element order by ATen's `F.pixel_unshuffle`; x is grouped as (N, C, r², H, W)
        so that dimension 1 is C, and `prelu_backward` (``cls``'s: compiled under "fused-compiled") finishes in
        that grouping without recomputing the forward.
        """
        n, _, h, w = x.shape
        r = upscale
        c = x.shape[1] // (r * r)
        grad = F.pixel_unshuffle(grad_out, r).reshape(n, c, r * r, h, w)
        dx, dweight = cls.prelu_backward(grad, x.reshape(n, c, r * r, h, w), weight.to(x.dtype))
        return dx.reshape(x.shape), dweight.reshape(weight.shape).to(weight.dtype)

    @staticmethod
    def prelu_backward(
        grad: torch.Tensor, grouped: torch.Tensor, weight: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """PReLU's gradients for grad and input grouped (N, C, r², H, W), weight (1,) or (C,) in their dtype:
        dx of grouped's shape, and dweight (() for one slope, (C,) otherwise) — by ATen's PReLU backward kernel
        (the one eager autograd runs: dx and the per-element slope terms in one pass), then the slope terms' sum."""
        dx, slope_terms = torch.ops.aten._prelu_kernel_backward(grad, grouped, weight.reshape(1, -1, 1, 1, 1))
        return dx, slope_terms.sum() if weight.numel() == 1 else slope_terms.sum(dim=(0, 2, 3, 4))


class _PixelShufflePReLU(torch.autograd.Function):
    """Forward and backward by `kernels` (`_TorchKernels` or the Triton launchers); saves only x and the slopes."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, upscale: int, kernels) -> torch.Tensor:
        ctx.upscale = upscale
        ctx.kernels = kernels
        ctx.save_for_backward(x, weight)
        return kernels.forward(x, weight, upscale)

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out: torch.Tensor):
        x, weight = ctx.saved_tensors
        dx, dweight = ctx.kernels.backward(grad_out, x, weight, ctx.upscale)
        return (
            dx if ctx.needs_input_grad[0] else None,
            dweight if ctx.needs_input_grad[1] else None,
            None,
            None,
        )


def validate(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> None:
    """Raise ValueError, saying what to do, unless x (N, C·r², H, W) and weight (1 or C slopes) fit the op."""
    if not isinstance(upscale, int) or isinstance(upscale, bool) or upscale < 1:
        raise ValueError(f"pixel_shuffle_prelu: upscale must be a positive int, got {upscale!r}")
    if x.dim() != 4:
        raise ValueError(f"pixel_shuffle_prelu: x must be (N, C·r², H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point() or not weight.is_floating_point():
        raise ValueError(f"pixel_shuffle_prelu: x and weight must be floating point, got {x.dtype} and {weight.dtype}")
    if x.shape[1] % (upscale * upscale):
        raise ValueError(
            f"pixel_shuffle_prelu: x has {x.shape[1]} channels, not a multiple of upscale² = {upscale * upscale}; "
            "give the convolution before it C·upscale² output channels"
        )
    channels = x.shape[1] // (upscale * upscale)
    if weight.dim() > 1 or weight.numel() not in (1, channels):
        raise ValueError(
            f"pixel_shuffle_prelu: weight must hold 1 or C = {channels} slopes (1-D), got shape {tuple(weight.shape)}"
        )
    if weight.device != x.device:
        raise ValueError(
            f"pixel_shuffle_prelu: x is on {x.device} but weight on {weight.device}; move them to one device"
        )


def pixel_shuffle_prelu(x: torch.Tensor, weight: torch.Tensor, upscale: int = 2) -> torch.Tensor:
    """PReLU(pixel_shuffle(x, upscale), weight), by the implementation `current_backend()` names.

    Args:
        x: (N, C·r², H, W) activations (typically a convolution's output), any strides.
        weight: (1,) or (C,) PReLU slopes for the negatives.
        upscale: r, a positive int.

    Returns:
        (N, C, r·H, r·W); contiguous on the fused backends.

    Raises:
        ValueError: x is not 4-D, its channels are not a multiple of r², weight does not hold 1 or C slopes, or
            the tensors are on different devices (the "triton" backend also requires fp32, fp16 or bf16).
    """
    name = current_backend()
    reference = name == "torch" or traced_by_compile()
    if reference or name != "triton":  # the Triton launchers run these checks (and their dtype checks) themselves
        validate(x, weight, upscale)
    if reference:
        return pixel_shuffle_prelu_ref(x, weight, upscale)
    return _PixelShufflePReLU.apply(x, weight, upscale, kernels_for(name, "pixel_shuffle_prelu", _TorchKernels))


class PixelShufflePReLU(nn.Module):
    """pixel_shuffle ×`upscale` then PReLU with learnt slopes (initialised to 0.25, like `nn.PReLU`).

    Args:
        channels: C, the output channels (the input has C·upscale²).
        upscale: r.
        shared_slope: one slope for all channels instead of one per channel.
    """

    def __init__(
        self,
        channels: int,
        upscale: int = 2,
        shared_slope: bool = False,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        if channels < 1 or not isinstance(upscale, int) or upscale < 1:
            raise ValueError(f"PixelShufflePReLU needs channels >= 1 and upscale >= 1, got {channels}, {upscale}")
        self.channels = channels
        self.upscale = upscale
        self.weight = nn.Parameter(torch.full((1 if shared_slope else channels,), 0.25, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C·r², H, W) → (N, C, r·H, r·W)."""
        return pixel_shuffle_prelu(x, self.weight, self.upscale)

    def extra_repr(self) -> str:
        return f"channels={self.channels}, upscale={self.upscale}, slopes={self.weight.numel()}"


def traffic(shape: tuple[int, int, int, int], dtype: torch.dtype, upscale: int = 2) -> dict[str, Traffic]:
    """Global-memory bytes of one forward and one backward, for input `shape` (N, C·r², H, W) and C slopes of `dtype`.

    - minimum: read x (and grad_out), the slopes once; write out (dx and dweight) once.
    - fused: the Triton kernels as launched: one slope load per program; the backward writes one fp32 partial
      per program, which a torch sum reads and reduces (then a cast to the slopes' dtype).
    - eager (`pixel_shuffle_prelu_ref` under autograd): forward = pixel_shuffle copy + PReLU; backward = ATen's
      PReLU backward (writes dx and a full-size slope-gradient tensor) + its reduction to (C,) + pixel_unshuffle
      copy of the gradient.

    Returns:
        {"forward": Traffic, "backward": Traffic}.
    """
    from fastgan.kernels.pixel_shuffle_prelu import BLOCK, BLOCK_BACKWARD, bands  # launch geometry (imports Triton)

    n, crr, h, w = shape
    c = crr // (upscale * upscale)
    size = torch.empty((), dtype=dtype).element_size()
    tensor = n * crr * h * w * size  # x, out, grad_out and dx all have this many bytes
    slopes = c * size

    forward_programs = n * c * bands(h * upscale, w * upscale, BLOCK)
    backward_programs = n * c * bands(h, w, BLOCK_BACKWARD)
    reduce = backward_programs * 4 + c * 4 + (0 if dtype == torch.float32 else c * 4 + slopes)
    return {
        "forward": Traffic(
            minimum=2 * tensor + slopes,
            fused=2 * tensor + forward_programs * size,
            eager=(2 * tensor) + (2 * tensor + slopes),
        ),
        "backward": Traffic(
            minimum=3 * tensor + 2 * slopes,
            fused=3 * tensor + backward_programs * size + backward_programs * 4 + reduce,
            eager=(3 * tensor + slopes + tensor) + (tensor + slopes) + (2 * tensor),
        ),
    }
