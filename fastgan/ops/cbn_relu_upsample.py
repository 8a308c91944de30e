"""Conditional batch-norm → ReLU → nearest up-sampling, the generator's hot elementwise chain, and its variant
that feeds a convolution without keeping the activation for backward, convolving by phases at the input's
resolution (`fastgan.ops.upsample_conv`) where that saves work.

Three faces (see `fastgan.ops.backends`): `cbn_relu_upsample_ref` (eager torch, the truth), and autograd Functions
(the op, and the op followed by its convolution) whose kernels are either torch arithmetic (``"fused-torch"``) or
Triton (``"triton"``, `fastgan.kernels.cbn_relu_upsample`). They save x, the (C,) statistics and the (N, C)
gain/bias — never the normalised, activated or up-sampled tensors — and recompute what backward needs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.autograd.function import once_differentiable

from fastgan.ops.autocast import autocast_dtype, without_autocast
from fastgan.ops.backends import current_backend, kernels_for, traced_by_compile
from fastgan.ops.nearest_upsample import is_nhwc, nearest_upsample, repeat_blocks
from fastgan.ops.traffic import Traffic
from fastgan.ops.upsample_conv import phase_layout, upsample_conv, upsample_conv_backward


def cbn_relu_upsample_ref(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    scale: int = 2,
) -> torch.Tensor:
    """Eager reference: `F.batch_norm` (no affine), gain/bias, `F.relu`, nearest up-sampling; in x's dtype."""
    if _one_affine_aten_takes(x, gain, bias, running_mean, running_var):  # plain BN: ATen applies it
        out = F.relu(F.batch_norm(x, running_mean, running_var, gain[0], bias[0], training, momentum, eps))
    else:
        normalised = F.batch_norm(x, running_mean, running_var, None, None, training, momentum, eps)
        out = F.relu(normalised * gain[:, :, None, None] + bias[:, :, None, None])
    return nearest_upsample(out.to(x.dtype), scale)


def _one_affine_aten_takes(x, gain, bias, running_mean, running_var) -> bool:
    """Whether gain and bias are one (C,) affine broadcast over the batch (stride 0) in dtypes `F.batch_norm` takes
    as its weight and bias: the same as the running buffers', and x's or fp32 (its CPU kernel refuses others)."""
    if gain.stride(0) != 0 or bias.stride(0) != 0:
        return False
    dtypes = {gain.dtype, bias.dtype} | {b.dtype for b in (running_mean, running_var) if b is not None}
    return len(dtypes) == 1 and dtypes <= {x.dtype, torch.float32}


def _accumulation_dtype(x: torch.Tensor) -> torch.dtype:
    """fp32 for fp32/fp16/bf16, fp64 for fp64 (so gradcheck sees the exact maths)."""
    return torch.promote_types(x.dtype, torch.float32)


@torch.compiler.disable
def _repeat_blocks_eagerly(y: torch.Tensor, scale: int) -> torch.Tensor:
    """`repeat_blocks`, kept out of `torch.compile` ("fused-compiled"): for NCHW planes TorchInductor's
    dynamic-shape loop for this broadcast copy was 2.5× slower than ATen's copy on the CPU (8.6 vs 3.4 ms at
    (16, 256, 16, 16))."""
    return repeat_blocks(y, scale)


def _upsampled(y: torch.Tensor, scale: int) -> torch.Tensor:
    """`repeat_blocks(y, scale)`: compiled together with y's arithmetic for channels-last y (there TorchInductor's
    one loop beats y then ATen's copy on the CPU: 0.54 vs 1.06 ms at (16, 32, 32, 32), 23.5 vs 25.5 at
    (16, 256, 32, 32)), by ATen's copy for NCHW planes."""
    if is_nhwc(y):
        return repeat_blocks(y, scale)
    return _repeat_blocks_eagerly(y, scale)


def _pre_activation(x, mean, rstd, gain, bias) -> torch.Tensor:
    """z = gain·x̂ + bias as x·(gain·rstd) + (bias − mean·gain·rstd): (N, C, H, W) in fp32 (fp64 for fp64)."""
    acc = _accumulation_dtype(x)
    multiplier = gain.to(acc) * rstd  # (N, C)
    offset = bias.to(acc) - mean * multiplier
    return torch.addcmul(offset[:, :, None, None], x, multiplier[:, :, None, None])


class _TorchKernels:
    """The Triton launchers' contract (`fastgan.kernels.cbn_relu_upsample`) in torch arithmetic, fp32 inside."""

    @staticmethod
    def forward_batch_stats(x, gain, bias, running_mean, running_var, momentum, eps, scale):
        var, mean = torch.var_mean(x.to(_accumulation_dtype(x)), dim=(0, 2, 3), correction=0)
        if running_mean is not None and running_var is not None:
            count = x.numel() // x.shape[1]
            running_mean.lerp_(mean.to(running_mean.dtype), momentum)
            running_var.lerp_((var * (count / max(count - 1, 1))).to(running_var.dtype), momentum)
        rstd = torch.rsqrt(var + eps)
        return _TorchKernels.forward_given_stats(x, mean, rstd, gain, bias, scale), mean, rstd

    @staticmethod
    def forward_given_stats(x, mean, rstd, gain, bias, scale):
        y = _pre_activation(x, mean, rstd, gain, bias).clamp_(min=0).to(x.dtype)
        return _upsampled(y, scale) if scale > 1 else y

    @staticmethod
    def backward(grad_out, x, mean, rstd, gain, bias, scale, batch_stats):
        acc = _accumulation_dtype(x)
        if scale > 1:
            g = F.avg_pool2d(grad_out.to(acc), scale, divisor_override=1)  # (N, C, H, W): each block summed
        else:
            g = grad_out.to(acc, copy=True)  # modified in place below
        gain32 = gain.to(acc)
        gz = g.masked_fill_(_pre_activation(x, mean, rstd, gain, bias) <= 0, 0)  # the forward's ReLU mask, exactly
        x_hat = (x.to(acc) - mean[:, None, None]) * rstd[:, None, None]
        dbias = gz.sum(dim=(2, 3))
        dgain = (gz * x_hat).sum(dim=(2, 3))
        multiplier = (gain32 * rstd)[:, :, None, None]
        if batch_stats:
            count = x.numel() // x.shape[1]
            mean_dbias = (gain32 * dbias).sum(0) / count  # (C,)
            mean_dgain = (gain32 * dgain).sum(0) / count
            correction = torch.addcmul(mean_dbias[:, None, None], x_hat, mean_dgain[:, None, None])
            dx = gz.mul_(multiplier).sub_(correction.mul_(rstd[:, None, None]))
        else:
            dx = gz.mul_(multiplier)
        return _in_layout_of(x, dx), dgain.to(gain.dtype), dbias.to(bias.dtype)


def _in_layout_of(x: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """dx in x's dtype and memory layout, as `F.batch_norm`'s backward gives it, whatever grad_out's layout was.

    Under torch.compile always written through `empty_like(x)` (fused into the last loop): with dynamic strides
    the traced strides cannot be trusted, and `dx.contiguous(memory_format=...)` had come out NCHW for a
    channels-last x, costing the next convolution's backward a copy. Eagerly, copied only when needed.
    """
    if torch.compiler.is_compiling() or dx.dtype != x.dtype or dx.stride() != x.stride():
        return torch.empty_like(x).copy_(dx)
    return dx


def _statistics(kernels, x, gain, bias, running_mean, running_var, training, momentum, eps, scale):
    """(out, mean, rstd) of the forward: batch statistics in training, running ones (copied, fp32) in eval."""
    if training:
        return kernels.forward_batch_stats(x, gain, bias, running_mean, running_var, momentum, eps, scale)
    acc = _accumulation_dtype(x)
    mean = running_mean.to(acc, copy=True)
    rstd = torch.rsqrt(running_var.to(acc) + eps)
    return kernels.forward_given_stats(x, mean, rstd, gain, bias, scale), mean, rstd


class _CBNReluUpsample(torch.autograd.Function):
    """Fused forward; backward from x, statistics and gain/bias in one pass over the up-sampled gradient.

    Not twice differentiable (its backward is itself fused): use the "torch" backend for double backward.
    """

    @staticmethod
    def forward(ctx, x, gain, bias, running_mean, running_var, training, momentum, eps, scale, kernels):
        out, mean, rstd = _statistics(kernels, x, gain, bias, running_mean, running_var, training, momentum, eps, scale)
        ctx.save_for_backward(x, mean, rstd, gain, bias)
        ctx.scale, ctx.training, ctx.kernels = scale, training, kernels
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, mean, rstd, gain, bias = ctx.saved_tensors
        dx, dgain, dbias = ctx.kernels.backward(grad_out, x, mean, rstd, gain, bias, ctx.scale, ctx.training)
        return dx, dgain, dbias, None, None, None, None, None, None, None


#: Largest multiply-add ratio (phase / direct, the discarded border counted) at which the conv variant convolves
#: by phases. Conv variant fwd+bwd, `fused-compiled`, batch 16, 2-core Xeon, channels-last (NCHW): 3×3 after ×2 at
#: 8×8 → 16×16, 128→64 channels (ratio 0.56) 6.7 vs 8.0 ms (9.8 vs 18.2) by phases vs direct; at 4×4, 128→128
#: (ratio 0.69) 6.0 vs 4.7 ms (8.1 vs 7.3), where the fixed costs of the phase path outweigh the saving.
_PHASE_SAVING = 0.6


def _by_phases(x: torch.Tensor, weight: torch.Tensor, scale: int) -> bool:
    """Whether the conv variant convolves x's activation phase by phase (`fastgan.ops.upsample_conv`) instead of
    up-sampling it first: when that saves enough multiply-adds, counting the phase outputs' discarded border."""
    if scale == 1:
        return False
    layout = phase_layout(scale, weight.shape[-1])
    h, w = x.shape[-2:]
    border = layout.output_size(h) * layout.output_size(w) / (h * w)
    return layout.multiply_add_ratio * border <= _PHASE_SAVING


class _CBNReluUpsampleConv(torch.autograd.Function):
    """conv2d(cbn_relu_upsample(x)) that keeps x, not the up-sampled activation: backward recomputes what it needs.

    After ×s up-sampling a k×k convolution runs as s² phase convolutions of the activation at x's resolution
    (`fastgan.ops.upsample_conv`; four 2×2 ones for ×2, 3×3) where `_by_phases` says that saves work: the up-sampled
    activation is then never formed, forward or backward. Not twice differentiable, like `_CBNReluUpsample`.
    """

    @staticmethod
    def forward(
        ctx, x, gain, bias, weight, conv_bias, running_mean, running_var, training, momentum, eps, scale, kernels
    ):
        conv_dtype = autocast_dtype(x.device.type, weight.dtype)
        by_phases = _by_phases(x, weight, scale)
        with without_autocast(x.device.type):
            h, mean, rstd = _statistics(
                kernels, x, gain, bias, running_mean, running_var, training, momentum, eps, 1 if by_phases else scale
            )
            conv_bias_cast = None if conv_bias is None else conv_bias.to(conv_dtype)
            if by_phases:
                out = upsample_conv(h.to(conv_dtype), weight, conv_bias_cast, scale)  # phase kernels as in backward
            else:
                out = F.conv2d(h.to(conv_dtype), weight.to(conv_dtype), conv_bias_cast, padding=weight.shape[-1] // 2)
        ctx.save_for_backward(x, mean, rstd, gain, bias, weight)
        ctx.scale, ctx.by_phases, ctx.training, ctx.kernels = scale, by_phases, training, kernels
        ctx.conv_dtype, ctx.has_conv_bias = conv_dtype, conv_bias is not None
        return out

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_out):
        x, mean, rstd, gain, bias, weight = ctx.saved_tensors
        activation_scale = 1 if ctx.by_phases else ctx.scale
        wanted = [True, ctx.needs_input_grad[3], ctx.has_conv_bias and ctx.needs_input_grad[4]]
        with without_autocast(x.device.type):
            h = ctx.kernels.forward_given_stats(x, mean, rstd, gain, bias, activation_scale).to(ctx.conv_dtype)
            if ctx.by_phases:
                grad_h, grad_weight, grad_conv_bias = upsample_conv_backward(
                    grad_out.to(ctx.conv_dtype), h, weight, ctx.scale, wanted
                )
            else:
                padding = weight.shape[-1] // 2
                grad_h, grad_weight, grad_conv_bias = torch.ops.aten.convolution_backward(
                    grad_out.to(ctx.conv_dtype),
                    h,
                    weight.to(ctx.conv_dtype),
                    [weight.shape[0]] if ctx.has_conv_bias else None,
                    [1, 1],
                    [padding, padding],
                    [1, 1],
                    False,
                    [0, 0],
                    1,
                    wanted,
                )
            del h
            dx, dgain, dbias = ctx.kernels.backward(
                grad_h.to(x.dtype), x, mean, rstd, gain, bias, activation_scale, ctx.training
            )
        grad_weight = None if grad_weight is None else grad_weight.to(weight.dtype)
        grad_conv_bias = None if grad_conv_bias is None else grad_conv_bias.to(weight.dtype)
        return dx, dgain, dbias, grad_weight, grad_conv_bias, None, None, None, None, None, None, None


def _validate(x, gain, bias, running_mean, running_var, training, scale, eps) -> None:
    if x.dim() != 4 or gain.shape != x.shape[:2] or bias.shape != x.shape[:2]:
        raise ValueError(
            f"cbn_relu_upsample expects x (N, C, H, W) and gain, bias (N, C); got x {tuple(x.shape)}, "
            f"gain {tuple(gain.shape)}, bias {tuple(bias.shape)}"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got {x.dtype}; convert it with x.float()")
    if x.numel() == 0 and training:
        raise ValueError(
            f"x {tuple(x.shape)} is empty: batch statistics need at least one value per channel (eval mode, on the "
            "running statistics, takes an empty batch)"
        )
    if isinstance(scale, bool) or not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be a positive integer, got {scale!r}")
    if not eps > 0:
        raise ValueError(f"eps must be positive, got {eps!r}")
    if (running_mean is None) != (running_var is None):
        raise ValueError("running_mean and running_var must both be given or both be None")
    channels = x.shape[1]
    for name, buffer in (("running_mean", running_mean), ("running_var", running_var)):
        if buffer is not None and buffer.shape != (channels,):
            raise ValueError(f"{name} must have shape ({channels},) for x {tuple(x.shape)}, got {tuple(buffer.shape)}")
    if not training and running_mean is None:
        raise ValueError("eval mode (training=False) normalises with running_mean and running_var; pass both")
    if training and x.numel() == channels:
        raise ValueError(f"batch statistics need more than one value per channel, got x {tuple(x.shape)}")


def cbn_relu_upsample(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    scale: int = 2,
) -> torch.Tensor:
    """nearest_upsample(relu(gain · x̂ + bias), scale), x̂ batch-normalised without affine.

    Args:
        x: (N, C, H, W) activations (fp32, fp16 or bf16 on the fused backends).
        gain, bias: (N, C) per-sample (class-conditional) affine parameters.
        running_mean, running_var: (C,) fp32 buffers; updated in place in training mode like `F.batch_norm`.
        training: use batch statistics (True) or the running ones (False).
        momentum, eps: as in `F.batch_norm`.
        scale: integer nearest up-sampling factor; 1 skips the up-sampling.

    Returns:
        (N, C, scale·H, scale·W) in x's dtype, computed by the current backend.
    """
    _validate(x, gain, bias, running_mean, running_var, training, scale, eps)
    name = current_backend()
    if name == "torch" or traced_by_compile() or x.numel() == 0:  # an empty eval batch: nothing to fuse
        return cbn_relu_upsample_ref(x, gain, bias, running_mean, running_var, training, momentum, eps, scale)
    return _CBNReluUpsample.apply(
        x,
        gain,
        bias,
        running_mean,
        running_var,
        training,
        momentum,
        eps,
        scale,
        kernels_for(name, "cbn_relu_upsample", _TorchKernels),
    )


def cbn_relu_upsample_conv(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    weight: torch.Tensor,
    conv_bias: torch.Tensor | None,
    running_mean: torch.Tensor | None = None,
    running_var: torch.Tensor | None = None,
    training: bool = True,
    momentum: float = 0.1,
    eps: float = 1e-5,
    scale: int = 2,
) -> torch.Tensor:
    """conv2d(cbn_relu_upsample(x, ...), weight, conv_bias) with "same" padding (odd square kernels).

    On the fused backends the activation is not kept for backward but recomputed from x and the statistics; where
    `_by_phases` says so the convolution runs by phases at x's resolution (`fastgan.ops.upsample_conv`) and the
    up-sampled activation is never formed. In a compiled model the fused backends keep only the phases: the rest is
    the reference arithmetic, differentiated and fused by torch.compile.
    Shapes: x (N, Cin, H, W), weight (Cout, Cin, k, k) -> (N, Cout, sH, sW).
    """
    _validate(x, gain, bias, running_mean, running_var, training, scale, eps)
    if (
        weight.dim() != 4
        or weight.shape[1] != x.shape[1]
        or weight.shape[2] != weight.shape[3]
        or weight.shape[2] % 2 == 0
    ):
        raise ValueError(f"weight must be (Cout, {x.shape[1]}, k, k) with k odd, got {tuple(weight.shape)}")
    if conv_bias is not None and conv_bias.shape != weight.shape[:1]:
        raise ValueError(
            f"conv_bias must be ({weight.shape[0]},) for weight {tuple(weight.shape)}, got {tuple(conv_bias.shape)}"
        )
    if weight.device != x.device:
        raise ValueError(f"weight is on {weight.device} and x on {x.device}: move them to one device")
    name = current_backend()
    if name == "torch" or traced_by_compile() or x.numel() == 0:
        by_phases = name != "torch" and x.numel() > 0 and _by_phases(x, weight, scale)
        h = cbn_relu_upsample_ref(
            x, gain, bias, running_mean, running_var, training, momentum, eps, 1 if by_phases else scale
        )
        if by_phases:  # compiled: TorchInductor keeps or recomputes h, at x's resolution
            return upsample_conv(h, weight, conv_bias, scale)
        return F.conv2d(h, weight, conv_bias, padding=weight.shape[-1] // 2)
    return _CBNReluUpsampleConv.apply(
        x,
        gain,
        bias,
        weight,
        conv_bias,
        running_mean,
        running_var,
        training,
        momentum,
        eps,
        scale,
        kernels_for(name, "cbn_relu_upsample", _TorchKernels),
    )


class CBNReLUUpsample(nn.Module):
    """Batch-norm statistics (running buffers) for `cbn_relu_upsample`; gain and bias come per call.

    forward(x (N, C, H, W), gain (N, C), bias (N, C), scale) -> (N, C, sH, sW);
    forward_conv(x, gain, bias, conv, scale) -> conv(that), without keeping the up-sampled activation.
    """

    def __init__(self, channels: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__()
        self.momentum, self.eps = momentum, eps
        self.register_buffer("running_mean", torch.zeros(channels))
        self.register_buffer("running_var", torch.ones(channels))

    def forward(self, x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, scale: int = 2) -> torch.Tensor:
        return cbn_relu_upsample(
            x, gain, bias, self.running_mean, self.running_var, self.training, self.momentum, self.eps, scale
        )

    def forward_conv(
        self, x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, conv: nn.Conv2d, scale: int = 2
    ) -> torch.Tensor:
        k = conv.kernel_size[0]
        same = conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1 and conv.padding_mode == "zeros"
        same_padding = conv.padding in ((k // 2, k // 2), "same")
        if not (same and conv.kernel_size == (k, k) and k % 2 == 1 and same_padding):
            raise ValueError(
                f"forward_conv fuses only 'same' convolutions (square odd kernel, stride 1, padding k//2, dilation 1, "
                f"groups 1, zero padding), got {conv}; apply such a conv to forward()'s output instead"
            )
        return cbn_relu_upsample_conv(
            x,
            gain,
            bias,
            conv.weight,
            conv.bias,
            self.running_mean,
            self.running_var,
            self.training,
            self.momentum,
            self.eps,
            scale,
        )


def _eager_launches(
    elements: int, dtype: torch.dtype, affine_dtype: torch.dtype, scale: int, training: bool
) -> dict[str, list[tuple[str, int]]]:
    """{"forward", "backward"}: (kernel, bytes read + written) of `cbn_relu_upsample_ref` and of autograd's backward
    through it, launch by launch, for x of `elements` elements. Per-sample gain/bias of `affine_dtype` (fp32, as
    the generator's embeddings give them under autocast) promote x̂·gain + bias, its ReLU and their gradients to
    the wider dtype, cast back to x's around them."""
    x = elements * dtype.itemsize  # one x-sized tensor in x's dtype
    wide = elements * torch.promote_types(dtype, affine_dtype).itemsize  # one in the promoted dtype
    casts = wide != x
    up = scale * scale
    forward = [
        *([("batch_norm statistics: read x", x)] if training else []),
        ("batch_norm normalise: x -> x̂", 2 * x),
        ("mul gain: x̂ -> wide", x + wide),
        ("add bias", 2 * wide),
        ("relu", 2 * wide),
        *([("to x's dtype", wide + x)] if casts else []),
        *([("nearest up-sampling", (1 + up) * x)] if scale > 1 else []),
    ]
    backward = [
        *([("up-sampling backward: sum-pool the gradient", (up + 1) * x)] if scale > 1 else []),
        *([("to-copy backward: gradient to wide", x + wide)] if casts else []),
        ("relu backward: grad, saved output -> grad", 3 * wide),
        ("dbias: sum the gradient", wide),
        ("dgain: grad · x̂", 2 * wide + x),
        ("dgain: sum", wide),
        ("dx̂: grad · gain", 2 * wide),
        *([("dx̂ to x's dtype", wide + x)] if casts else []),
        # training: a reduction over grad and x, then dx from grad and x; eval: dx = grad · rstd
        *([("batch_norm backward reduce", 2 * x), ("batch_norm backward dx", 3 * x)] if training else []),
        *([] if training else [("batch_norm backward dx", 2 * x)]),
    ]
    return {"forward": forward, "backward": backward}


def traffic(
    shape: tuple[int, int, int, int],
    dtype: torch.dtype,
    scale: int = 2,
    training: bool = True,
    affine_dtype: torch.dtype = torch.float32,
) -> dict:
    """Analytic bytes of the forward and backward passes for x of `shape`: {"forward": Traffic, "backward": ...}.

    Counts the (N, C, H, W)-sized and larger tensors; (C,) and (N, C) vectors are negligible and left out.
    Eager counts each kernel of `cbn_relu_upsample_ref` and its autograd backward reading its inputs and writing
    its output (`_eager_launches`, with gain/bias of `affine_dtype`); fused counts the Triton launchers of
    `fastgan.kernels.cbn_relu_upsample`.
    """
    n, c, h, w = shape
    unit = n * c * h * w * dtype.itemsize  # one x-sized tensor in x's dtype
    gz_unit = n * c * h * w * 4 if dtype == torch.float16 else unit  # gz is staged in fp32 for fp16
    up = scale * scale
    eager = _eager_launches(n * c * h * w, dtype, affine_dtype, scale, training)
    forward = Traffic(
        minimum=(1 + up) * unit,
        fused=((2 if training else 1) + up) * unit,  # (plane sums: read x) + (read x, write out)
        eager=sum(bytes_ for _, bytes_ in eager["forward"]),
    )
    backward = Traffic(
        minimum=(up + 2) * unit,  # read grad and x, write dx
        fused=(up + 1) * unit + (2 * gz_unit + 2 * unit if training else unit),  # + gz written/read, x read, dx
        eager=sum(bytes_ for _, bytes_ in eager["backward"]),
    )
    return {"forward": forward, "backward": backward}
