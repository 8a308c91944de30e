"""Channels-last (NHWC) twins of the `cbn_relu_upsample` kernels: the same maths, tiled for channel-dense memory.

The plane kernels of `fastgan.kernels.cbn_relu_upsample` give each program one (n, c) plane; on a channels-last
tensor that plane is a stride-C gather, 2–5× slower on an H200 than on NCHW (measured 2026-11-29). These kernels
give each program one sample n, a block of BLOCK_C channels and one of SPLIT ranges of its pixels, walked in
[BLOCK_P, BLOCK_C] tiles whose rows are contiguous runs of channels: every load and store is coalesced along C,
and every output is channels-last too, so a channels-last network needs no layout copies around the op.

Launch plan (pixel grids are (N, cdiv(C, BLOCK_C), SPLIT); SPLIT spreads a sample's pixels over programs so that
small batches still fill the GPU, and partial sums come back as N·SPLIT rows, reduced in a fixed order):
    training forward: pixel sums → finalise statistics (grid over channel blocks; updates the running buffers)
                      → normalise/activate/up-sample; eval forward: the last kernel alone
    backward:         block-sum + masked partial reductions (writes gz, or dx directly in eval) → finalise
                      dgain/dbias and their batch sums Σ_n gain·dbias, Σ_n gain·dgain → dx (training only)
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import torch
import triton
import triton.language as tl

from fastgan.kernels.launch import on_device_of

#: Elements of one [BLOCK_P, BLOCK_C] tile (as the plane kernels' BLOCK).
TILE = 1024
#: Widest channel block: 64 channels of bf16 are one 128-byte row segment.
MAX_BLOCK_C = 64
#: Programs a pixel grid aims for (enough 4-warp programs to fill every multiprocessor of an H100/H200: at 1024,
#: half the warp slots stayed empty — ncu, 2026-11-30), by splitting each sample's pixels ...
TARGET_PROGRAMS = 2048
#: ... into at most this many ranges (the backward finalise loads [·, SPLIT, BLOCK_C] tiles).
MAX_SPLIT = 64
#: The finalise kernels are latency-bound (ncu, 2026-11-30: 27–83 µs for HRGAN-128 with one or two programs of
#: 64 channels walking the partial rows 64 at a time), so each program takes a narrow block of channels (one
#: 32-byte sector of a partial-sum row: C / 8 programs) and wide tiles of rows, [BLOCK_R, BLOCK_C] (or
#: [BLOCK_N, BLOCK_S, BLOCK_C]) of FINALIZE_TILE elements over FINALIZE_WARPS warps: one or two loop trips.
FINALIZE_TILE = 8192
FINALIZE_BLOCK_C = 8
FINALIZE_WARPS = 8
NUM_WARPS = 4


def gz_staging(dx: torch.Tensor, batch_stats: bool) -> torch.Tensor:
    """Where a training backward stages gz before the dx kernel finishes it: dx's own buffer, except in fp16,
    whose range a block sum of fp16 gradients can exceed (an fp32 tensor of dx's layout then); eval writes dx."""
    return torch.empty_like(dx, dtype=torch.float32) if batch_stats and dx.dtype == torch.float16 else dx


@functools.cache
def tile_shape(channels: int) -> tuple[int, int]:
    """(BLOCK_P, BLOCK_C) for `channels` channels: BLOCK_C a power of two ≤ MAX_BLOCK_C, TILE elements in all."""
    block_c = min(MAX_BLOCK_C, triton.next_power_of_2(channels))
    return TILE // block_c, block_c


@functools.cache  # launchers ask per call; a layer's shapes repeat every iteration
def pixel_split(batch: int, channels: int, pixels: int) -> tuple[int, int]:
    """(SPLIT, CHUNK): each sample's `pixels` in SPLIT ranges of CHUNK (a multiple of BLOCK_P) pixels, SPLIT chosen
    so that the grid has about TARGET_PROGRAMS programs."""
    block_p, block_c = tile_shape(channels)
    tiles = triton.cdiv(pixels, block_p)
    wanted = triton.cdiv(TARGET_PROGRAMS, batch * triton.cdiv(channels, block_c))
    chunk = triton.cdiv(tiles, max(1, min(wanted, tiles, MAX_SPLIT))) * block_p
    return triton.cdiv(pixels, chunk), chunk


@triton.jit
def _pixel_tile(p, W, stride_h, stride_w, cols, col_mask, end):
    """Offsets [BLOCK_P, BLOCK_C] of pixels p (< end) and channels `cols` in a channels-last sample, and the mask."""
    mask = (p < end)[:, None] & col_mask[None, :]
    return ((p // W) * stride_h + (p % W) * stride_w)[:, None] + cols[None, :], mask


@triton.jit
def _program_range(C, H, W, CHUNK, BLOCK_C: tl.constexpr):
    """This pixel-grid program's sample n (int64), channels `cols` with their mask, and pixel range [begin, end)."""
    cols = tl.program_id(1) * BLOCK_C + tl.arange(0, BLOCK_C)
    begin = tl.program_id(2) * CHUNK
    return tl.program_id(0).to(tl.int64), cols, cols < C, begin, tl.minimum(begin + CHUNK, H * W)


@triton.jit
def _store_partial_rows(a_ptr, b_ptr, a, b, n, C, cols, col_mask):
    """Column sums of the [BLOCK_P, BLOCK_C] accumulators a, b into row n·SPLIT + s of two (N·SPLIT, C) buffers."""
    row = (n * tl.num_programs(2) + tl.program_id(2)) * C
    tl.store(a_ptr + row + cols, tl.sum(a, axis=0), mask=col_mask)
    tl.store(b_ptr + row + cols, tl.sum(b, axis=0), mask=col_mask)


@triton.jit
def cbn_pixel_sums_nhwc_kernel(
    # pointers
    x_ptr,
    sums_ptr,
    squares_ptr,
    # sizes
    C,
    H,
    W,
    CHUNK,
    # strides of x (unit channel stride)
    stride_xn,
    stride_xh,
    stride_xw,
    # constexprs
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """sums[n·SPLIT + s, c] = Σ (x − pivot_c), squares[...] = Σ (x − pivot_c)² over pixel range s; pivot_c =
    x[0, c, 0, 0]; fp32."""
    n, cols, col_mask, begin, end = _program_range(C, H, W, CHUNK, BLOCK_C)
    pivot = tl.load(x_ptr + cols, mask=col_mask, other=0.0).to(tl.float32)
    base = x_ptr + n * stride_xn
    total = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    total_sq = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for start in range(begin, end, BLOCK_P):
        offsets, mask = _pixel_tile(start + tl.arange(0, BLOCK_P), W, stride_xh, stride_xw, cols, col_mask, end)
        v = tl.where(mask, tl.load(base + offsets, mask=mask, other=0.0).to(tl.float32) - pivot[None, :], 0.0)
        total += v
        total_sq += v * v
    _store_partial_rows(sums_ptr, squares_ptr, total, total_sq, n, C, cols, col_mask)


@triton.jit
def cbn_finalize_statistics_kernel(
    # pointers
    x_ptr,
    sums_ptr,
    squares_ptr,
    mean_ptr,
    rstd_ptr,
    running_mean_ptr,
    running_var_ptr,
    # sizes
    ROWS,
    C,
    count,
    # scalars
    momentum,
    eps,
    # constexprs
    UPDATE_RUNNING: tl.constexpr,
    BLOCK_R: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """mean_c, rstd_c from the (ROWS, C) pivot-shifted sums of `count` values per channel; with UPDATE_RUNNING blend
    them into the running buffers like F.batch_norm (unbiased variance); grid (cdiv(C, BLOCK_C),)."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < C
    total = tl.zeros([BLOCK_C], dtype=tl.float32)
    total_sq = tl.zeros([BLOCK_C], dtype=tl.float32)
    for r0 in range(0, ROWS, BLOCK_R):
        rows = r0 + tl.arange(0, BLOCK_R).to(tl.int64)
        mask = (rows < ROWS)[:, None] & col_mask[None, :]
        offsets = rows[:, None] * C + cols[None, :]
        total += tl.sum(tl.load(sums_ptr + offsets, mask=mask, other=0.0), axis=0)
        total_sq += tl.sum(tl.load(squares_ptr + offsets, mask=mask, other=0.0), axis=0)
    shifted_mean = total / count
    var = tl.maximum(total_sq / count - shifted_mean * shifted_mean, 0.0, propagate_nan=tl.PropagateNan.ALL)
    mean = tl.load(x_ptr + cols, mask=col_mask, other=0.0).to(tl.float32) + shifted_mean
    tl.store(mean_ptr + cols, mean, mask=col_mask)
    tl.store(rstd_ptr + cols, 1.0 / tl.sqrt(var + eps), mask=col_mask)
    if UPDATE_RUNNING:
        unbiased = var * count / tl.maximum(count - 1, 1)
        old_mean = tl.load(running_mean_ptr + cols, mask=col_mask, other=0.0)
        old_var = tl.load(running_var_ptr + cols, mask=col_mask, other=0.0)
        tl.store(running_mean_ptr + cols, (1.0 - momentum) * old_mean + momentum * mean, mask=col_mask)
        tl.store(running_var_ptr + cols, (1.0 - momentum) * old_var + momentum * unbiased, mask=col_mask)


@triton.jit
def cbn_relu_upsample_forward_nhwc_kernel(
    # pointers
    x_ptr,
    gain_ptr,
    bias_ptr,
    out_ptr,
    mean_ptr,
    rstd_ptr,
    # sizes
    C,
    H,
    W,
    CHUNK,
    # strides of x (unit channel stride), gain, bias (out is dense channels-last)
    stride_xn,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    stride_bn,
    stride_bc,
    # constexprs
    SCALE: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """out = relu(gain·(x − mean)·rstd + bias) up-sampled ×SCALE into dense NHWC, for one pixel range."""
    n, cols, col_mask, begin, end = _program_range(C, H, W, CHUNK, BLOCK_C)
    mean = tl.load(mean_ptr + cols, mask=col_mask, other=0.0)
    rstd = tl.load(rstd_ptr + cols, mask=col_mask, other=0.0)
    multiplier = tl.load(gain_ptr + n * stride_gn + cols * stride_gc, mask=col_mask, other=0.0).to(tl.float32) * rstd
    offset = tl.load(bias_ptr + n * stride_bn + cols * stride_bc, mask=col_mask, other=0.0).to(tl.float32)
    offset -= mean * multiplier
    x_base = x_ptr + n * stride_xn
    out_base = out_ptr + n * (H * W * SCALE * SCALE * C)
    for start in range(begin, end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        offsets, mask = _pixel_tile(p, W, stride_xh, stride_xw, cols, col_mask, end)
        v = tl.load(x_base + offsets, mask=mask, other=0.0).to(tl.float32)
        z = v * multiplier[None, :] + offset[None, :]
        y = tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL).to(out_ptr.dtype.element_ty)  # NaN stays
        h = p // W
        w = p % W
        for dh in tl.static_range(SCALE):
            for dw in tl.static_range(SCALE):
                pixel = (h * SCALE + dh) * (W * SCALE) + w * SCALE + dw
                tl.store(out_base + (pixel * C)[:, None] + cols[None, :], y, mask=mask)


@triton.jit
def cbn_relu_upsample_backward_reduce_nhwc_kernel(
    # pointers
    grad_ptr,
    x_ptr,
    gain_ptr,
    bias_ptr,
    mean_ptr,
    rstd_ptr,
    dest_ptr,
    dgain_ptr,
    dbias_ptr,
    # sizes
    C,
    H,
    W,
    CHUNK,
    # strides of grad (unit channel stride), x (unit channel stride), gain, bias (dest is dense channels-last)
    stride_dn,
    stride_dh,
    stride_dw,
    stride_xn,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    stride_bn,
    stride_bc,
    # constexprs
    SCALE: tl.constexpr,
    BATCH_STATS: tl.constexpr,
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """Sum each SCALE×SCALE block of grad, mask by z > 0; partial dgain/dbias rows n·SPLIT + s over pixel range s.

    dest receives gz with BATCH_STATS (see `gz_staging`) — the dx kernel finishes it — or dx = gain·rstd·gz.
    """
    n, cols, col_mask, begin, end = _program_range(C, H, W, CHUNK, BLOCK_C)
    mean = tl.load(mean_ptr + cols, mask=col_mask, other=0.0)
    rstd = tl.load(rstd_ptr + cols, mask=col_mask, other=0.0)
    multiplier = tl.load(gain_ptr + n * stride_gn + cols * stride_gc, mask=col_mask, other=0.0).to(tl.float32) * rstd
    offset = tl.load(bias_ptr + n * stride_bn + cols * stride_bc, mask=col_mask, other=0.0).to(tl.float32)
    offset -= mean * multiplier  # z = x·multiplier + offset exactly as the forward computes it
    x_base = x_ptr + n * stride_xn
    grad_base = grad_ptr + n * stride_dn
    dest_base = dest_ptr + n * (H * W * C)
    acc_dbias = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    acc_dgain = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
    for start in range(begin, end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        offsets, mask = _pixel_tile(p, W, stride_xh, stride_xw, cols, col_mask, end)
        h = p // W
        w = p % W
        g = tl.zeros([BLOCK_P, BLOCK_C], dtype=tl.float32)
        for dh in tl.static_range(SCALE):
            for dw in tl.static_range(SCALE):
                rows = (h * SCALE + dh) * stride_dh + (w * SCALE + dw) * stride_dw
                g += tl.load(grad_base + rows[:, None] + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        v = tl.load(x_base + offsets, mask=mask, other=0.0).to(tl.float32)
        gz = tl.where(v * multiplier[None, :] + offset[None, :] <= 0.0, 0.0, g)  # torch's ReLU mask: NaN passes g
        acc_dbias += gz
        acc_dgain += gz * ((v - mean[None, :]) * rstd[None, :])
        dest = gz if BATCH_STATS else gz * multiplier[None, :]
        tl.store(dest_base + (p * C)[:, None] + cols[None, :], dest.to(dest_ptr.dtype.element_ty), mask=mask)
    _store_partial_rows(dgain_ptr, dbias_ptr, acc_dgain, acc_dbias, n, C, cols, col_mask)


@triton.jit
def cbn_backward_finalize_kernel(
    # pointers
    partial_dgain_ptr,
    partial_dbias_ptr,
    gain_ptr,
    dgain_ptr,
    dbias_ptr,
    batch_sums_ptr,
    # sizes
    N,
    C,
    SPLIT,
    # strides of gain (partials, dgain, dbias and batch_sums are dense)
    stride_gn,
    stride_gc,
    # constexprs
    BLOCK_N: tl.constexpr,
    BLOCK_S: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """dgain/dbias[n, c] = Σ_s partial[n·SPLIT + s, c]; batch_sums = (Σ_n gain·dbias, Σ_n gain·dgain) (2, C);
    grid (cdiv(C, BLOCK_C),), BLOCK_N samples at a time in [BLOCK_N, BLOCK_S, BLOCK_C] tiles."""
    cols = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
    col_mask = cols < C
    splits = tl.arange(0, BLOCK_S)
    sum_dbias = tl.zeros([BLOCK_C], dtype=tl.float32)
    sum_dgain = tl.zeros([BLOCK_C], dtype=tl.float32)
    for n0 in range(0, N, BLOCK_N):
        samples = n0 + tl.arange(0, BLOCK_N).to(tl.int64)
        sample_mask = (samples < N)[:, None] & col_mask[None, :]  # [BLOCK_N, BLOCK_C]
        rows = samples[:, None] * SPLIT + splits[None, :]  # [BLOCK_N, BLOCK_S]
        mask = sample_mask[:, None, :] & (splits < SPLIT)[None, :, None]
        offsets = rows[:, :, None] * C + cols[None, None, :]
        dgain = tl.sum(tl.load(partial_dgain_ptr + offsets, mask=mask, other=0.0), axis=1)  # [BLOCK_N, BLOCK_C]
        dbias = tl.sum(tl.load(partial_dbias_ptr + offsets, mask=mask, other=0.0), axis=1)
        dense = samples[:, None] * C + cols[None, :]
        tl.store(dgain_ptr + dense, dgain, mask=sample_mask)
        tl.store(dbias_ptr + dense, dbias, mask=sample_mask)
        gain_offsets = samples[:, None] * stride_gn + cols[None, :] * stride_gc
        gain = tl.load(gain_ptr + gain_offsets, mask=sample_mask, other=0.0).to(tl.float32)
        sum_dbias += tl.sum(gain * dbias, axis=0)
        sum_dgain += tl.sum(gain * dgain, axis=0)
    tl.store(batch_sums_ptr + cols, sum_dbias, mask=col_mask)
    tl.store(batch_sums_ptr + C + cols, sum_dgain, mask=col_mask)


@triton.jit
def cbn_relu_upsample_backward_dx_nhwc_kernel(
    # pointers
    gz_ptr,
    x_ptr,
    gain_ptr,
    mean_ptr,
    rstd_ptr,
    batch_sums_ptr,
    dx_ptr,
    # sizes
    C,
    H,
    W,
    CHUNK,
    count,
    # strides of x (unit channel stride), gain (gz and dx are dense channels-last)
    stride_xn,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    # constexprs
    BLOCK_P: tl.constexpr,
    BLOCK_C: tl.constexpr,
):
    """dx = rstd·(gain·gz − (Σ_n gain·dbias + x̂·Σ_n gain·dgain)/M) over one pixel range; gz may alias dx."""
    n, cols, col_mask, begin, end = _program_range(C, H, W, CHUNK, BLOCK_C)
    sum_dbias = tl.load(batch_sums_ptr + cols, mask=col_mask, other=0.0)
    sum_dgain = tl.load(batch_sums_ptr + C + cols, mask=col_mask, other=0.0)
    mean = tl.load(mean_ptr + cols, mask=col_mask, other=0.0)
    rstd = tl.load(rstd_ptr + cols, mask=col_mask, other=0.0)
    gain = tl.load(gain_ptr + n * stride_gn + cols * stride_gc, mask=col_mask, other=0.0).to(tl.float32)
    x_base = x_ptr + n * stride_xn
    for start in range(begin, end, BLOCK_P):
        p = start + tl.arange(0, BLOCK_P)
        offsets, mask = _pixel_tile(p, W, stride_xh, stride_xw, cols, col_mask, end)
        x_hat = (tl.load(x_base + offsets, mask=mask, other=0.0).to(tl.float32) - mean[None, :]) * rstd[None, :]
        dense = n * (H * W * C) + (p * C)[:, None] + cols[None, :]
        gz = tl.load(gz_ptr + dense, mask=mask, other=0.0).to(tl.float32)
        dx = rstd[None, :] * (gain[None, :] * gz - (sum_dbias[None, :] + x_hat * sum_dgain[None, :]) / count)
        tl.store(dx_ptr + dense, dx.to(dx_ptr.dtype.element_ty), mask=mask)


class _Plan(NamedTuple):
    """How the launchers launch on one input shape: the pixel grid (N, cdiv(C, BLOCK_C), SPLIT), CHUNK pixels a
    program, the tile constexprs, the finalise kernels' grid and the backward finalise's BLOCK_S."""

    grid: tuple[int, int, int]
    chunk: int
    tiles: dict[str, int]  # spread into launches, never changed
    finalize_grid: tuple[int]
    block_s: int


@functools.cache  # launchers ask per call: no Triton host helpers on the launch path once a layer's shape is seen
def _plan(n: int, c: int, h: int, w: int) -> _Plan:
    """The launch plan for channels-last x of shape (N, C, H, W)."""
    block_p, block_c = tile_shape(c)
    split, chunk = pixel_split(n, c, h * w)
    grid = (n, triton.cdiv(c, block_c), split)
    tiles = {"BLOCK_P": block_p, "BLOCK_C": block_c}
    return _Plan(grid, chunk, tiles, (triton.cdiv(c, FINALIZE_BLOCK_C),), triton.next_power_of_2(split))


def _pixel_strides(t: torch.Tensor) -> tuple[int, int, int]:
    return t.stride(0), t.stride(2), t.stride(3)


def forward_given_stats(
    x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, scale: int
) -> torch.Tensor:
    """Channels-last (N, C, sH, sW) output from channels-last x and fp32 (C,) mean/rstd (launcher's checks done)."""
    n, c, h, w = x.shape
    out = torch.empty(n, c, h * scale, w * scale, device=x.device, dtype=x.dtype, memory_format=torch.channels_last)
    plan = _plan(n, c, h, w)
    on_device_of(cbn_relu_upsample_forward_nhwc_kernel, x, out)[plan.grid](
        x, gain, bias, out, mean, rstd, c, h, w, plan.chunk, *_pixel_strides(x), *gain.stride(), *bias.stride(),
        SCALE=scale, **plan.tiles, num_warps=NUM_WARPS,
    )  # fmt: skip
    return out


def forward_batch_stats(
    x: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    running_mean: torch.Tensor | None,
    running_var: torch.Tensor | None,
    momentum: float,
    eps: float,
    scale: int,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Training forward of channels-last x: (out, mean, rstd) as `cbn_relu_upsample.forward_batch_stats`."""
    n, c, h, w = x.shape
    plan = _plan(n, c, h, w)
    rows = n * plan.grid[2]
    fp32 = dict(device=x.device, dtype=torch.float32)
    sums, squares = torch.empty(rows, c, **fp32), torch.empty(rows, c, **fp32)
    mean, rstd = torch.empty(c, **fp32), torch.empty(c, **fp32)
    on_device_of(cbn_pixel_sums_nhwc_kernel, x, sums)[plan.grid](
        x, sums, squares, c, h, w, plan.chunk, *_pixel_strides(x), **plan.tiles, num_warps=NUM_WARPS
    )
    update = running_mean is not None and running_var is not None
    on_device_of(cbn_finalize_statistics_kernel, x, sums)[plan.finalize_grid](
        x, sums, squares, mean, rstd, running_mean if update else mean, running_var if update else rstd,
        rows, c, n * h * w, momentum, eps,
        UPDATE_RUNNING=update, BLOCK_R=FINALIZE_TILE // FINALIZE_BLOCK_C, BLOCK_C=FINALIZE_BLOCK_C,
        num_warps=FINALIZE_WARPS,
    )  # fmt: skip
    return forward_given_stats(x, mean, rstd, gain, bias, scale), mean, rstd


def backward(
    grad_out: torch.Tensor,
    x: torch.Tensor,
    mean: torch.Tensor,
    rstd: torch.Tensor,
    gain: torch.Tensor,
    bias: torch.Tensor,
    scale: int,
    batch_stats: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dx channels-last, dgain, dbias) from channels-last grad_out and x, as `cbn_relu_upsample.backward`."""
    n, c, h, w = x.shape
    plan = _plan(n, c, h, w)
    split = plan.grid[2]
    fp32 = dict(device=x.device, dtype=torch.float32)
    layout = dict(device=x.device, memory_format=torch.channels_last)
    dx = torch.empty(n, c, h, w, dtype=x.dtype, **layout)
    gz = gz_staging(dx, batch_stats)
    partial_dgain, partial_dbias = torch.empty(n * split, c, **fp32), torch.empty(n * split, c, **fp32)
    on_device_of(cbn_relu_upsample_backward_reduce_nhwc_kernel, grad_out, x, gz)[plan.grid](
        grad_out, x, gain, bias, mean, rstd, gz, partial_dgain, partial_dbias, c, h, w, plan.chunk,
        *_pixel_strides(grad_out), *_pixel_strides(x), *gain.stride(), *bias.stride(),
        SCALE=scale, BATCH_STATS=batch_stats, **plan.tiles, num_warps=NUM_WARPS,
    )  # fmt: skip
    dgain, dbias, batch_sums = torch.empty(n, c, **fp32), torch.empty(n, c, **fp32), torch.empty(2, c, **fp32)
    on_device_of(cbn_backward_finalize_kernel, partial_dgain, dgain)[plan.finalize_grid](
        partial_dgain, partial_dbias, gain, dgain, dbias, batch_sums, n, c, split, *gain.stride(),
        BLOCK_N=max(1, FINALIZE_TILE // (plan.block_s * FINALIZE_BLOCK_C)), BLOCK_S=plan.block_s,
        BLOCK_C=FINALIZE_BLOCK_C, num_warps=FINALIZE_WARPS,
    )  # fmt: skip
    if batch_stats:
        on_device_of(cbn_relu_upsample_backward_dx_nhwc_kernel, x, gz, dx)[plan.grid](
            gz, x, gain, mean, rstd, batch_sums, dx, c, h, w, plan.chunk, n * h * w, *_pixel_strides(x),
            *gain.stride(), **plan.tiles, num_warps=NUM_WARPS,
        )  # fmt: skip
    return dx, dgain.to(gain.dtype), dbias.to(bias.dtype)
