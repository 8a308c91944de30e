"""Fused pixel-shuffle → PReLU (SRGAN's upsampling stage after its convolution): Triton kernels and launchers.

Maths, with r = upscale, x of shape (N, C·r², H, W) and PReLU slopes a (one shared, or one per output channel c):

    s[n, c, h·r + i, w·r + j] = x[n, c·r² + i·r + j, h, w]       (pixel shuffle, i, j in [0, r))
    out = s if s > 0 else a[c] · s                                 (PReLU)

Backward, with g = ∂L/∂out (so g[n, c, h·r + i, w·r + j] pairs with x[n, c·r² + i·r + j, h, w]):

    ∂L/∂x = g if s > 0 else a[c] · g
    ∂L/∂a[c] = Σ over n, h, w, i, j with s ≤ 0 of s · g           (over every c too for one shared slope)

Every load is upcast to fp32 and the compare, select, multiply and the slope-gradient accumulation run in fp32;
out and dx are rounded once, on store, to the input's dtype. The slope gradient is reduced without atomics: each
program writes the fp32 sum of its tile to a small buffer (N, C, bands) that torch sums in fp32 (deterministic),
then casts to the slopes' dtype.

Launch design: a 2-D grid (N·C, bands). Axis 0 is one output plane (n, c), so every program needs one slope;
axis 1 is a band of BLOCK_H rows. A program loops over its band in BLOCK_H × BLOCK_W tiles, BLOCK_W fitted to the
image width. The forward tiles the *output* band (1024-element tiles): contiguous stores, loads gathered from r²
input channels. The backward tiles the *input* rows of plane (n, c) (512-element tiles) and loops over the r²
input channels c·r² + k of that plane: contiguous x loads and dx stores, gathered grad_out loads, one partial
slope gradient per program. Plane bases are int64; offsets inside a plane are int32 (a launcher copies an input
whose strides would overflow them to contiguous first). Inputs may have any strides (channels_last, transposed
or sliced views); outputs are contiguous NCHW.
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from fastgan.kernels.aot import KernelBuild
from fastgan.kernels.launch import element_type, on_device_of, with_int32_offsets
from fastgan.ops.pixel_shuffle_prelu import validate

#: Elements per tile (BLOCK_H · BLOCK_W), forward: 8 per thread with 4 warps.
BLOCK = 1024
#: Elements per tile and input channel, backward (which walks r² channels per tile and holds x, g and the
#: slope-gradient accumulator): 4 per thread, which keeps it well clear of spills.
BLOCK_BACKWARD = 512
NUM_WARPS = 4
#: Tile widths the launchers pick from (the smallest that covers the row, at most 128).
BLOCK_WIDTHS = (32, 64, 128)
#: CUDA's limit on grid axis 1 (the bands of rows).
_MAX_BANDS = 65535


@triton.jit
def _pixel_shuffle_prelu_fwd_kernel(
    # pointers
    x_ptr,  # (N, C·R², H, W), any strides
    weight_ptr,  # (1,) or (C,) slopes
    out_ptr,  # (N, C, R·H, R·W), contiguous
    # sizes
    C,  # output channels
    OH,  # R·H
    OW,  # R·W
    # strides (elements)
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_weight,  # 0 for one shared slope
    # constexprs
    R: tl.constexpr,  # upscale factor
    BLOCK_H: tl.constexpr,  # output rows per tile
    BLOCK_W: tl.constexpr,  # output columns per tile
):
    """out[n, c, oh, ow] = PReLU(x[n, c·R² + (oh % R)·R + ow % R, oh // R, ow // R]); grid (N·C, cdiv(OH, BLOCK_H))."""
    plane = tl.program_id(0).to(tl.int64)  # n·C + c
    band = tl.program_id(1)
    n = plane // C
    c = plane % C
    slope = tl.load(weight_ptr + c * stride_weight).to(tl.float32)
    # int64 plane bases; int32 offsets inside a plane (the launcher makes sure they fit)
    x_plane = x_ptr + n * stride_xn + c * (R * R) * stride_xc
    out_plane = out_ptr + plane * OH * OW

    oh = band * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]  # (BLOCK_H, 1)
    h = oh // R
    i = oh - h * R
    x_rows = h * stride_xh + (i * R) * stride_xc
    out_rows = oh * OW
    row_mask = oh < OH
    for col in range(0, OW, BLOCK_W):
        ow = col + tl.arange(0, BLOCK_W)[None, :]  # (1, BLOCK_W)
        w = ow // R
        j = ow - w * R
        mask = row_mask & (ow < OW)  # (BLOCK_H, BLOCK_W)
        s = tl.load(x_plane + (x_rows + (j * stride_xc + w * stride_xw)), mask=mask, other=0.0).to(tl.float32)
        out = tl.where(s > 0, s, s * slope)
        tl.store(out_plane + (out_rows + ow), out.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _pixel_shuffle_prelu_bwd_kernel(
    # pointers
    grad_out_ptr,  # (N, C, R·H, R·W), any strides
    x_ptr,  # (N, C·R², H, W), any strides
    weight_ptr,  # (1,) or (C,) slopes
    dx_ptr,  # (N, C·R², H, W), contiguous
    dweight_partial_ptr,  # (N, C, bands) fp32: one partial slope gradient per program
    # sizes
    C,  # output channels
    H,
    W,
    # strides (elements)
    stride_gn,
    stride_gc,
    stride_gh,
    stride_gw,
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_weight,  # 0 for one shared slope
    # constexprs
    R: tl.constexpr,  # upscale factor
    BLOCK_H: tl.constexpr,  # input rows per tile
    BLOCK_W: tl.constexpr,  # input columns per tile
):
    """dx for the R² input channels of output plane (n, c), and that plane's slope-gradient partial for one band.

    grid (N·C, cdiv(H, BLOCK_H)); dweight_partial[n, c, band] = Σ_tile [s ≤ 0] · s · g.
    """
    plane = tl.program_id(0).to(tl.int64)  # n·C + c
    band = tl.program_id(1)
    n = plane // C
    c = plane % C
    slope = tl.load(weight_ptr + c * stride_weight).to(tl.float32)
    # int64 plane bases; int32 offsets inside a plane (the launcher makes sure they fit)
    g_plane = grad_out_ptr + n * stride_gn + c * stride_gc
    x_plane = x_ptr + n * stride_xn + c * (R * R) * stride_xc
    dx_plane = dx_ptr + plane * (R * R) * H * W  # dx channel c·R² + k of sample n is plane n·C·R² + c·R² + k

    h = band * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]  # (BLOCK_H, 1)
    row_mask = h < H
    acc = tl.zeros((BLOCK_H, BLOCK_W), dtype=tl.float32)
    for col in range(0, W, BLOCK_W):
        w = col + tl.arange(0, BLOCK_W)[None, :]  # (1, BLOCK_W)
        mask = row_mask & (w < W)
        x_offsets = h * stride_xh + w * stride_xw
        g_offsets = (h * R) * stride_gh + (w * R) * stride_gw
        dx_offsets = h * W + w
        for k in range(R * R):  # input channel c·R² + k holds output sub-pixel (i, j) = (k // R, k % R)
            s = tl.load(x_plane + k * stride_xc + x_offsets, mask=mask, other=0.0).to(tl.float32)
            g = tl.load(g_plane + (k // R) * stride_gh + (k % R) * stride_gw + g_offsets, mask=mask, other=0.0)
            g = g.to(tl.float32)
            positive = s > 0
            dx = tl.where(positive, g, g * slope)
            tl.store(dx_plane + k * H * W + dx_offsets, dx.to(dx_ptr.dtype.element_ty), mask=mask)
            acc += tl.where(positive, 0.0, s * g)
    partial = tl.sum(tl.sum(acc, axis=1), axis=0)
    tl.store(dweight_partial_ptr + plane * tl.num_programs(1) + band, partial)


@functools.cache  # asked per launch: no Triton host helpers once a shape is seen
def tile_shape(width: int, block: int = BLOCK) -> tuple[int, int]:
    """(BLOCK_H, BLOCK_W) for rows of `width`: the narrowest of `BLOCK_WIDTHS` covering a row, `block` in all."""
    block_w = next((b for b in BLOCK_WIDTHS if width <= b), BLOCK_WIDTHS[-1])
    return block // block_w, block_w


@functools.cache
def bands(rows: int, width: int, block: int = BLOCK) -> int:
    """Programs along grid axis 1 for `rows` × `width` images (forward: the output's, backward: the input's)."""
    return triton.cdiv(rows, tile_shape(width, block)[0])


def _check(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> int:
    """Validate the launchers' inputs (the op's own checks, then the kernels' dtypes and sizes); return C."""
    validate(x, weight, upscale)
    for name, t in (("x", x), ("weight", weight)):
        if t.dtype not in (torch.float32, torch.float16, torch.bfloat16):
            raise ValueError(
                f"pixel_shuffle_prelu (triton): {name} must be fp32, fp16 or bf16, got {t.dtype}; cast it, or use the "
                '"fused-torch" backend for other dtypes'
            )
    if upscale * upscale * x.shape[2] * x.shape[3] >= 2**31:
        raise ValueError(
            f"pixel_shuffle_prelu (triton): a {x.shape[2]}×{x.shape[3]} image upscaled ×{upscale} has 2³¹ or more "
            "pixels per channel, beyond the kernels' 32-bit in-plane offsets; process it in tiles"
        )
    return x.shape[1] // (upscale * upscale)


def _with_int32_offsets(t: torch.Tensor, first_channels: int) -> torch.Tensor:
    """`t`, or a contiguous copy if offsets over `first_channels` channels and the whole plane overflow int32."""
    return with_int32_offsets(t, {1: first_channels, 2: t.shape[2], 3: t.shape[3]})


def _bands_checked(rows: int, width: int, block: int) -> int:
    count = bands(rows, width, block)
    if count > _MAX_BANDS:
        raise ValueError(
            f"pixel_shuffle_prelu: {rows} rows need {count} row bands, more than CUDA's grid limit {_MAX_BANDS}; "
            "process the image in tiles"
        )
    return count


def _weight_stride(weight: torch.Tensor) -> int:
    return weight.stride(0) if weight.numel() > 1 else 0


def forward(x: torch.Tensor, weight: torch.Tensor, upscale: int) -> torch.Tensor:
    """PReLU(pixel_shuffle(x, upscale), weight) in one pass.

    Args:
        x: (N, C·r², H, W), fp32/fp16/bf16, any strides.
        weight: (1,) or (C,) PReLU slopes, fp32/fp16/bf16.
        upscale: r, a positive int.

    Returns:
        (N, C, r·H, r·W) contiguous, in x's dtype.
    """
    channels = _check(x, weight, upscale)
    n, _, h, w = x.shape
    oh, ow = h * upscale, w * upscale
    out = torch.empty((n, channels, oh, ow), dtype=x.dtype, device=x.device)
    if out.numel() == 0:
        return out
    x = _with_int32_offsets(x, upscale * upscale)
    block_h, block_w = tile_shape(ow, BLOCK)
    grid = (n * channels, _bands_checked(oh, ow, BLOCK))
    on_device_of(_pixel_shuffle_prelu_fwd_kernel, x, weight, out)[grid](
        x, weight, out,
        channels, oh, ow,
        *x.stride(), _weight_stride(weight),
        R=upscale, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=NUM_WARPS,
    )  # fmt: skip
    return out


def backward(
    grad_out: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, upscale: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Gradients of `forward` from x and weight alone (the output is recomputed on the fly, never stored).

    Args:
        grad_out: (N, C, r·H, r·W), x's dtype, any strides.
        x, weight, upscale: as given to `forward`.

    Returns:
        dx: (N, C·r², H, W) contiguous, x's dtype.
        dweight: weight's shape and dtype, reduced deterministically in fp32.
    """
    channels = _check(x, weight, upscale)
    n, _, h, w = x.shape
    expected = (n, channels, h * upscale, w * upscale)
    if tuple(grad_out.shape) != expected or grad_out.dtype != x.dtype or grad_out.device != x.device:
        raise ValueError(
            f"pixel_shuffle_prelu backward: grad_out must be {expected} {x.dtype} on {x.device}, got "
            f"{tuple(grad_out.shape)} {grad_out.dtype} on {grad_out.device}"
        )
    dx = torch.empty((n, x.shape[1], h, w), dtype=x.dtype, device=x.device)
    if x.numel() == 0:
        return dx, torch.zeros_like(weight)
    x = _with_int32_offsets(x, upscale * upscale)
    grad_out = _with_int32_offsets(grad_out, 1)
    block_h, block_w = tile_shape(w, BLOCK_BACKWARD)
    grid = (n * channels, _bands_checked(h, w, BLOCK_BACKWARD))
    partial = torch.empty((n, channels, grid[1]), dtype=torch.float32, device=x.device)
    on_device_of(_pixel_shuffle_prelu_bwd_kernel, grad_out, x, weight, dx, partial)[grid](
        grad_out, x, weight, dx, partial,
        channels, h, w,
        *grad_out.stride(), *x.stride(), _weight_stride(weight),
        R=upscale, BLOCK_H=block_h, BLOCK_W=block_w, num_warps=NUM_WARPS,
    )  # fmt: skip
    dweight = partial.sum() if weight.numel() == 1 else partial.sum(dim=(0, 2))
    return dx, dweight.reshape(weight.shape).to(weight.dtype)


def _signatures(ty: str) -> tuple[dict[str, str], dict[str, str]]:
    forward_signature = {
        "x_ptr": f"*{ty}", "weight_ptr": f"*{ty}", "out_ptr": f"*{ty}",
        "C": "i32", "OH": "i32", "OW": "i32",
        "stride_xn": "i32", "stride_xc": "i32", "stride_xh": "i32", "stride_xw": "constexpr",
        "stride_weight": "constexpr",
        "R": "constexpr", "BLOCK_H": "constexpr", "BLOCK_W": "constexpr",
    }  # fmt: skip
    backward_signature = {
        "grad_out_ptr": f"*{ty}", "x_ptr": f"*{ty}", "weight_ptr": f"*{ty}", "dx_ptr": f"*{ty}",
        "dweight_partial_ptr": "*fp32",
        "C": "i32", "H": "i32", "W": "i32",
        "stride_gn": "i32", "stride_gc": "i32", "stride_gh": "i32", "stride_gw": "constexpr",
        "stride_xn": "i32", "stride_xc": "i32", "stride_xh": "i32", "stride_xw": "constexpr",
        "stride_weight": "constexpr",
        "R": "constexpr", "BLOCK_H": "constexpr", "BLOCK_W": "constexpr",
    }  # fmt: skip
    return forward_signature, backward_signature


def aot_builds() -> list[KernelBuild]:
    """Both kernels as the launchers launch them for upscale=2 on contiguous NCHW inputs with per-channel slopes.

    As the JIT does, unit strides (the last dimension's, the slopes') are constexpr 1 and the other ints i32.
    "aligned" builds: every size and stride but C is a multiple of 16, as the JIT specialises them for feature
    maps whose width is a multiple of 16 (e.g. 32×32, 64×64): one build per dtype and tile width. One fp16
    "unaligned" build per kernel shows the other case (e.g. SRGAN's 24×24 low-resolution crops).
    """
    builds = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        ty = element_type(dtype)
        forward_signature, backward_signature = _signatures(ty)
        for block_w in BLOCK_WIDTHS:
            for aligned in (True, False) if (dtype == torch.float16 and block_w == 32) else (True,):
                for kernel, signature, block, unit in (
                    (_pixel_shuffle_prelu_fwd_kernel, forward_signature, BLOCK, ("stride_xw", "stride_weight")),
                    (
                        _pixel_shuffle_prelu_bwd_kernel,
                        backward_signature,
                        BLOCK_BACKWARD,
                        ("stride_gw", "stride_xw", "stride_weight"),
                    ),
                ):
                    label = f"{ty} r=2 {block // block_w}x{block_w} {'aligned' if aligned else 'unaligned'}"
                    multiples = tuple(k for k, v in signature.items() if v == "i32" and k != "C") if aligned else ()
                    constexprs = {**dict.fromkeys(unit, 1), "R": 2, "BLOCK_H": block // block_w, "BLOCK_W": block_w}
                    builds.append(KernelBuild(kernel, signature, constexprs, label, NUM_WARPS, multiples))
    return builds
