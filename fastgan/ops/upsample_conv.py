"""Nearest up-sampling followed by a "same" convolution, computed without forming the up-sampled tensor.

conv2d(nearest_upsample(x, s), w) is a sub-pixel convolution: output pixel (s·i + p, s·j + q) reads x only at
rows i + lo_p … i + lo_p + kw − 1 (and columns likewise), so each of the s² phases (p, q) is a kw×kw convolution of
x whose kernel sums the k×k weight's rows and columns falling on the same input pixel. For s = 2 and k = 3 the
four phases are 2×2 convolutions: 16 multiply-adds per input pixel and output channel instead of 36, reading x
instead of its 4× up-sampled copy. All phases run as one convolution with s²·Cout output channels; its output is
interleaved into (N, Cout, sH, sW). Forward and backward are plain functions for the fused autograd Functions;
in a compiled model torch.compile differentiates the forward itself.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastgan.ops.backends import cached_constant, traced_by_compile
from fastgan.ops.nearest_upsample import is_nhwc


@dataclass(frozen=True)
class PhaseLayout:
    """Where each phase of a k×k "same" convolution after ×scale nearest up-sampling reads the input.

    bins[p][u] lists the kernel taps d (0 … k−1) whose input row, seen from output row s·i + p, is i + lo_p + u;
    `padding` is the symmetric zero padding of the phase convolution and starts[p] = lo_p + padding the first
    row of its output that phase p keeps.
    """

    scale: int
    kernel_size: int
    width: int  # kw: the phase kernels' size
    padding: int
    starts: tuple[int, ...]
    bins: tuple[tuple[tuple[int, ...], ...], ...]

    def output_size(self, size: int) -> int:
        """Rows (or columns) the phase convolution produces for an input of `size` rows."""
        return size + 2 * self.padding - self.width + 1

    @property
    def multiply_add_ratio(self) -> float:
        """Multiply-adds of the phase convolution per those of the direct one (ignoring its border)."""
        return (self.width / self.kernel_size) ** 2


def _traced_uncached(cached: Callable) -> Callable:
    """`cached` (a `functools.cache`d function) that calls the function itself while torch.compile traces: the trace
    runs it once per compilation anyway, and Dynamo warns about every cache it cannot honour."""

    @functools.wraps(cached.__wrapped__)
    def call(*args):
        return (cached.__wrapped__ if traced_by_compile() else cached)(*args)

    return call


@_traced_uncached
@functools.cache
def phase_layout(scale: int, kernel_size: int) -> PhaseLayout:
    """The `PhaseLayout` of a `kernel_size`² "same" convolution (odd size) after ×`scale` up-sampling."""
    radius = kernel_size // 2
    lows = [(p - radius) // scale for p in range(scale)]
    highs = [(p + radius) // scale for p in range(scale)]
    width = max(high - low + 1 for low, high in zip(lows, highs, strict=True))
    padding = max(max(-low for low in lows), max(low + width - 1 for low in lows))
    bins = tuple(
        tuple(tuple(d for d in range(kernel_size) if (p + d - radius) // scale - low == u) for u in range(width))
        for p, low in enumerate(lows)
    )
    return PhaseLayout(scale, kernel_size, width, padding, tuple(low + padding for low in lows), bins)


@cached_constant
def _tap_sums(layout: PhaseLayout, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """(k², s²·kw²) 0/1 matrix: entry [(y, x), (p, q, u, v)] is 1 when tap (y, x) of phase (p, q) reads input offset
    (u, v). A weight's rows times it are its phase kernels.

    Built on `device` from slice fills (each bin is a run of consecutive taps), so no host-to-device copy happens;
    cached per device (`cached_constant`).
    """
    s, kw, k = layout.scale, layout.width, layout.kernel_size
    binning = torch.zeros(s, kw, k, dtype=dtype, device=device)  # [p, u, y]: tap y of phase p reads offset u
    for p, phase in enumerate(layout.bins):
        for u, taps in enumerate(phase):
            if taps:
                binning[p, u, taps[0] : taps[0] + len(taps)].fill_(1)
    return torch.einsum("puy,qvx->yxpquv", binning, binning).reshape(k * k, s * s * kw * kw)


def _binned(taps: torch.Tensor, dim: int, bins: tuple[tuple[int, ...], ...]) -> torch.Tensor:
    """`taps` with dimension `dim` (k taps) replaced by one per bin (kw), each the sum of its run of taps."""
    return torch.stack([taps.narrow(dim, run[0] if run else 0, len(run)).sum(dim) for run in bins], dim)


def phase_weight(weight: torch.Tensor, scale: int) -> torch.Tensor:
    """(Cout, Cin, k, k) -> (s²·Cout, Cin, kw, kw): phase (p, q)'s kernels at output channels (p·s + q)·Cout …,
    summed and returned in fp32 (fp64 for an fp64 weight).

    Eagerly one product with the cached tap-sum matrix; under torch.compile sums of tap slices (each bin is a run of
    consecutive taps), so the graph holds no constant to build and copy to the device on every call."""
    cout, cin, k = weight.shape[:3]
    layout = phase_layout(scale, k)
    acc = torch.promote_types(weight.dtype, torch.float32)
    if traced_by_compile():
        taps = weight.to(acc)
        rows = [_binned(taps, -2, bins) for bins in layout.bins]
        return torch.cat([_binned(row, -1, bins) for row in rows for bins in layout.bins])
    phases = weight.reshape(cout * cin, k * k).to(acc) @ _tap_sums(layout, acc, weight.device)
    phases = phases.view(cout, cin, scale, scale, layout.width, layout.width).permute(2, 3, 0, 1, 4, 5)
    return phases.reshape(scale * scale * cout, cin, layout.width, layout.width)


def _weight_gradient(grad_phases: torch.Tensor, weight: torch.Tensor, layout: PhaseLayout) -> torch.Tensor:
    """The gradient of `phase_weight`: (s²·Cout, Cin, kw, kw) -> (Cout, Cin, k, k), its taps summed in fp32."""
    cout, cin, k = weight.shape[:3]
    s, kw = layout.scale, layout.width
    acc = torch.promote_types(grad_phases.dtype, torch.float32)
    per_tap = grad_phases.view(s, s, cout, cin, kw, kw).permute(2, 3, 0, 1, 4, 5).reshape(cout * cin, s * s * kw * kw)
    return (per_tap.to(acc) @ _tap_sums(layout, acc, weight.device).T).view(cout, cin, k, k).to(weight.dtype)


def _memory_format(x: torch.Tensor) -> torch.memory_format:
    return torch.channels_last if is_nhwc(x) else torch.contiguous_format


def _phase_pairs(phases: torch.Tensor, full: torch.Tensor, layout: PhaseLayout, h: int, w: int):
    """[(pixels the phase convolution keeps, the matching pixels of the (N, Cout, sH, sW) tensor)].

    When the phases' first kept rows step evenly (s = 2, k = 3: rows 0 and 1) one strided view of `phases` covers
    all of them, so interleaving is a single copy; otherwise one pair per phase.
    """
    s = layout.scale
    n, cout = full.shape[:2]
    blocks = full.view(n, cout, h, s, w, s)
    first, steps = layout.starts[0], {b - a for a, b in zip(layout.starts, layout.starts[1:], strict=False)}
    if len(steps) <= 1:
        step = steps.pop() if steps else 0
        sn, sc, sh, sw = phases.stride()
        kept = phases.as_strided(
            (n, cout, h, s, w, s),
            (sn, sc, sh, s * cout * sc + step * sh, sw, cout * sc + step * sw),
            phases.storage_offset() + first * (sh + sw),
        )
        return [(kept, blocks)]
    kept = _kept_by_phase(phases, layout, h, w)
    return [(kept[p][q], blocks[:, :, :, p, :, q]) for p in range(s) for q in range(s)]


def _kept_by_phase(phases: torch.Tensor, layout: PhaseLayout, h: int, w: int) -> list[list[torch.Tensor]]:
    """[p][q]: the (N, Cout, H, W) pixels that phase (p, q) of the (N, s²·Cout, oh, ow) phase output keeps."""
    s = layout.scale
    by_phase = phases.view(phases.shape[0], s, s, phases.shape[1] // (s * s), *phases.shape[2:])
    return [
        [by_phase[:, p, q, :, top : top + h, left : left + w] for q, left in enumerate(layout.starts)]
        for p, top in enumerate(layout.starts)
    ]


def _interleaved(phases: torch.Tensor, layout: PhaseLayout, h: int, w: int) -> torch.Tensor:
    """The kept pixels of (N, s²·Cout, oh, ow) phases as (N, Cout, sH, sW) in the phases' memory layout, by slices
    and stacks alone: what torch.compile traces, differentiates and fuses into one loop (it fuses the strided view
    and copies of the eager path poorly)."""
    s = layout.scale
    n, cout = phases.shape[0], phases.shape[1] // (s * s)
    kept = _kept_by_phase(phases, layout, h, w)
    if is_nhwc(phases):  # stacked as (N, H, s, W, s, Cout): channels-last
        rows = [torch.stack([pixels.permute(0, 2, 3, 1) for pixels in row], 3) for row in kept]  # s × (N, H, W, s, C)
        return torch.stack(rows, 2).view(n, s * h, s * w, cout).permute(0, 3, 1, 2)
    rows = [torch.stack(row, -1) for row in kept]  # s × (N, Cout, H, W, s)
    return torch.stack(rows, 3).view(n, cout, s * h, s * w)


def upsample_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, scale: int) -> torch.Tensor:
    """conv2d(nearest_upsample(x, scale), weight, bias, padding=k // 2): (N, Cin, H, W) -> (N, Cout, sH, sW).

    x and bias share the convolution's dtype; the weight may be wider (fp32 under autocast): its phase kernels are
    summed from it in fp32, then cast. The result keeps x's memory layout, and is differentiable (when autograd
    records, the phases are interleaved by slices and stacks instead of copies into one output).
    """
    n, _, h, w = x.shape
    layout = phase_layout(scale, weight.shape[-1])
    phase_bias = None if bias is None else bias.repeat(scale * scale)
    phases = F.conv2d(x, phase_weight(weight, scale).to(x.dtype), phase_bias, padding=layout.padding)
    if traced_by_compile() or phases.requires_grad:
        return _interleaved(phases, layout, h, w)
    out = torch.empty(
        (n, weight.shape[0], scale * h, scale * w), dtype=x.dtype, device=x.device, memory_format=_memory_format(x)
    )
    for source, target in _phase_pairs(phases, out, layout, h, w):
        target.copy_(source)
    return out


def upsample_conv_backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    weight: torch.Tensor,
    scale: int,
    output_mask: Sequence[bool],
) -> tuple[torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Gradients of `upsample_conv` for (x, weight, bias), each only where `output_mask` asks.

    grad_out (N, Cout, sH, sW) and x in the convolution's dtype, the weight as `upsample_conv` took it. The x
    gradient (N, Cin, H, W) comes in x's dtype; the weight and bias gradients in the weight's, the bias one summed
    in fp32, the weight one reduced over pixels by the convolution's backward and over each phase's taps in fp32.
    """
    n, _, h, w = x.shape
    layout = phase_layout(scale, weight.shape[-1])
    kernels = phase_weight(weight, scale)
    out_h, out_w = layout.output_size(h), layout.output_size(w)
    grad_phases = torch.empty(
        (n, kernels.shape[0], out_h, out_w),
        dtype=grad_out.dtype,
        device=grad_out.device,
        memory_format=_memory_format(x),  # the convolution's layout, whatever grad_out's: one copy, not two
    ).zero_()  # the phases' discarded border gets no gradient
    for target, source in _phase_pairs(grad_phases, grad_out, layout, h, w):
        target.copy_(source)
    grad_x, grad_kernels, _ = torch.ops.aten.convolution_backward(
        grad_phases,
        x,
        kernels.to(x.dtype),
        None,
        [1, 1],
        [layout.padding, layout.padding],
        [1, 1],
        False,
        [0, 0],
        1,
        [output_mask[0], output_mask[1], False],
    )
    grad_weight = grad_bias = None
    if output_mask[1]:
        grad_weight = _weight_gradient(grad_kernels, weight, layout)
    if output_mask[2]:
        grad_bias = grad_out.sum(dim=(0, 2, 3), dtype=torch.promote_types(grad_out.dtype, torch.float32))
        grad_bias = grad_bias.to(weight.dtype)
    return grad_x, grad_weight, grad_bias
