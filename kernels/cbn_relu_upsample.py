"""Triton kernels for conditional batch-norm → ReLU → nearest up-sampling, forward and backward.

Maths (per sample n, channel c; M = N·H·W elements per channel; S the up-sampling factor):

    mean_c, var_c = batch statistics of x[:, c] (training) or the running ones (eval); rstd_c = 1/sqrt(var_c + eps)
    x̂ = (x − mean_c)·rstd_c,   z = gain_nc·x̂ + bias_nc,   y = relu(z),   out = y repeated over S×S blocks

Backward, with g = ∂L/∂out summed over each S×S block and gz = g·[not z ≤ 0] (torch's ReLU: a NaN z gives NaN forward
and passes g backward, so a NaN reaches the loss rather than vanishing into a zero):

    dbias_nc = Σ_hw gz,   dgain_nc = Σ_hw gz·x̂
    training: dx = rstd_c·(gain_nc·gz − (Σ_n gain_nc·dbias_nc + x̂·Σ_n gain_nc·dgain_nc) / M)
    eval:     dx = gain_nc·rstd_c·gz

Every reduction and every elementwise step runs in fp32; outputs are stored in the input's dtype, and so is gz
between the two training-backward kernels (staged in dx's buffer; in fp32 for fp16, whose range it can exceed).
Statistics use sums shifted by a pivot (x[0, c, 0, 0]) so that a large mean does not cancel the variance away.

Launch plan (every grid is one program per (n, c) plane, looping over the plane in blocks; the up-sampling kernels
walk [rows, columns] tiles, so no index needs a run-time division):
    training forward: plane partial sums → normalise/activate/up-sample (also finalises the statistics and
                      updates the running buffers); eval forward: the second kernel alone
    backward:         block-sum + masked reductions (writes gz, or dx directly in eval) → dx (training only)
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from fastgan.kernels import cbn_relu_upsample_nhwc as nhwc_kernels
from fastgan.kernels.aot import KernelBuild
from fastgan.kernels.launch import element_type, on_device_of, with_int32_offsets

BLOCK = 1024
NUM_WARPS = 4


@triton.jit
def cbn_plane_sums_kernel(
    # pointers
    x_ptr,
    sums_ptr,
    squares_ptr,
    # sizes
    C,
    H,
    W,
    # strides of x
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    # constexprs
    X_DENSE: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """sums[n, c] = Σ_hw (x − pivot_c), squares[n, c] = Σ_hw (x − pivot_c)², fp32; pivot_c = x[0, c, 0, 0]."""
    plane = tl.program_id(0).to(tl.int64)
    n = plane // C
    c = plane % C
    pivot = tl.load(x_ptr + c * stride_xc).to(tl.float32)
    base = x_ptr + n * stride_xn + c * stride_xc
    total = tl.zeros([BLOCK], dtype=tl.float32)
    total_sq = tl.zeros([BLOCK], dtype=tl.float32)
    for start in range(0, H * W, BLOCK):
        i = start + tl.arange(0, BLOCK)
        mask = i < H * W
        if X_DENSE:  # row-major plane: offsets are i itself, so loads vectorise
            offsets = i
        else:
            offsets = (i // W) * stride_xh + (i % W) * stride_xw
        v = tl.load(base + offsets, mask=mask, other=0.0).to(tl.float32)
        v = tl.where(mask, v - pivot, 0.0)
        total += v
        total_sq += v * v
    tl.store(sums_ptr + plane, tl.sum(total, axis=0))
    tl.store(squares_ptr + plane, tl.sum(total_sq, axis=0))


@triton.jit
def _store_upsampled(
    out_base, y, rows, w0, cols, mask, H, W, SCALE: tl.constexpr, WIDEN_STEPS: tl.constexpr, BLOCK_W: tl.constexpr
):
    """Store y [BLOCK_H, BLOCK_W] (x's rows, columns w0 + [0, BLOCK_W)) as SCALE×SCALE blocks of the row-major
    (SCALE·H, SCALE·W) plane at out_base.

    WIDEN_STEPS = log2(SCALE) for powers of two: each row is widened by interleaving it with itself, so every
    store is a contiguous run of SCALE·BLOCK_W; −1 for other scales: SCALE² strided stores.
    """
    out_w = W * SCALE
    if WIDEN_STEPS >= 0:
        wide = y
        for _ in tl.static_range(WIDEN_STEPS):
            wide = tl.interleave(wide, wide)
        out_cols = w0 * SCALE + tl.arange(0, BLOCK_W * SCALE)
        wide_mask = (rows < H)[:, None] & (out_cols < out_w)[None, :]
        for dh in tl.static_range(SCALE):
            tl.store(out_base + (rows * SCALE + dh)[:, None] * out_w + out_cols[None, :], wide, mask=wide_mask)
    else:
        for dh in tl.static_range(SCALE):
            for dw in tl.static_range(SCALE):
                offsets = (rows * SCALE + dh)[:, None] * out_w + (cols * SCALE + dw)[None, :]
                tl.store(out_base + offsets, y, mask=mask)


@triton.jit
def _block_sums(
    grad_base,
    rows,
    w0,
    cols,
    mask,
    H,
    W,
    stride_dh,
    stride_dw,
    SCALE: tl.constexpr,
    WIDEN_STEPS: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """fp32 [BLOCK_H, BLOCK_W]: each SCALE×SCALE block of the up-sampled gradient at grad_base summed, for x's rows
    and columns w0 + [0, BLOCK_W) — the adjoint of `_store_upsampled` (contiguous row loads, then pairwise sums
    of neighbours WIDEN_STEPS times, for powers of two; SCALE² strided loads otherwise)."""
    if WIDEN_STEPS >= 0:
        out_cols = w0 * SCALE + tl.arange(0, BLOCK_W * SCALE)
        wide_mask = (rows < H)[:, None] & (out_cols < W * SCALE)[None, :]
        wide = tl.zeros([rows.shape[0], BLOCK_W * SCALE], dtype=tl.float32)
        for dh in tl.static_range(SCALE):
            offsets = (rows * SCALE + dh)[:, None] * stride_dh + out_cols[None, :] * stride_dw
            wide += tl.load(grad_base + offsets, mask=wide_mask, other=0.0).to(tl.float32)
        for _ in tl.static_range(WIDEN_STEPS):
            left, right = tl.split(tl.reshape(wide, [wide.shape[0], wide.shape[1] // 2, 2]))
            wide = left + right
        return wide
    else:
        g = tl.zeros([rows.shape[0], BLOCK_W], dtype=tl.float32)
        for dh in tl.static_range(SCALE):
            for dw in tl.static_range(SCALE):
                offsets = (rows * SCALE + dh)[:, None] * stride_dh + (cols * SCALE + dw)[None, :] * stride_dw
                g += tl.load(grad_base + offsets, mask=mask, other=0.0).to(tl.float32)
        return g


@triton.jit
def cbn_relu_upsample_forward_kernel(
    # pointers
    x_ptr,
    gain_ptr,
    bias_ptr,
    out_ptr,
    mean_ptr,
    rstd_ptr,
    sums_ptr,
    squares_ptr,
    running_mean_ptr,
    running_var_ptr,
    # sizes
    N,
    C,
    H,
    W,
    # strides of x, gain, bias (out is contiguous)
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    stride_bn,
    stride_bc,
    # scalars
    momentum,
    eps,
    # constexprs
    SCALE: tl.constexpr,
    WIDEN_STEPS: tl.constexpr,
    BATCH_STATS: tl.constexpr,
    UPDATE_RUNNING: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """out[n, c] = relu(gain_nc·(x − mean_c)·rstd_c + bias_nc), up-sampled ×SCALE; one program per plane, walked in
    [BLOCK_H, BLOCK_W] tiles of x (see `_store_upsampled` for WIDEN_STEPS).

    BATCH_STATS: finalise mean/rstd from the plane sums (and the pivot), store them to mean_ptr/rstd_ptr (program
    n = 0 of each channel) and, with UPDATE_RUNNING, blend them into the running buffers like F.batch_norm
    (unbiased variance). Otherwise mean/rstd are read from mean_ptr/rstd_ptr.
    """
    plane = tl.program_id(0).to(tl.int64)
    n = plane // C
    c = plane % C
    if BATCH_STATS:
        count = tl.cast(N, tl.int64) * H * W  # may pass 2³¹ (N, H, W are i32)
        samples = tl.arange(0, BLOCK_N)
        total = tl.sum(tl.load(sums_ptr + samples * C + c, mask=samples < N, other=0.0), axis=0)
        total_sq = tl.sum(tl.load(squares_ptr + samples * C + c, mask=samples < N, other=0.0), axis=0)
        shifted_mean = total / count
        var = tl.maximum(total_sq / count - shifted_mean * shifted_mean, 0.0, propagate_nan=tl.PropagateNan.ALL)
        mean = tl.load(x_ptr + c * stride_xc).to(tl.float32) + shifted_mean
        rstd = 1.0 / tl.sqrt(var + eps)
        first = n == 0
        tl.store(mean_ptr + c, mean, mask=first)
        tl.store(rstd_ptr + c, rstd, mask=first)
        if UPDATE_RUNNING:
            unbiased = var * count / tl.maximum(count - 1, 1)
            old_mean = tl.load(running_mean_ptr + c)
            old_var = tl.load(running_var_ptr + c)
            tl.store(running_mean_ptr + c, (1.0 - momentum) * old_mean + momentum * mean, mask=first)
            tl.store(running_var_ptr + c, (1.0 - momentum) * old_var + momentum * unbiased, mask=first)
    else:
        mean = tl.load(mean_ptr + c)
        rstd = tl.load(rstd_ptr + c)
    multiplier = tl.load(gain_ptr + n * stride_gn + c * stride_gc).to(tl.float32) * rstd
    offset = tl.load(bias_ptr + n * stride_bn + c * stride_bc).to(tl.float32) - mean * multiplier
    x_base = x_ptr + n * stride_xn + c * stride_xc
    out_base = out_ptr + plane * (H * W * SCALE * SCALE)
    for h0 in range(0, H, BLOCK_H):
        rows = h0 + tl.arange(0, BLOCK_H)
        for w0 in range(0, W, BLOCK_W):
            cols = w0 + tl.arange(0, BLOCK_W)
            mask = (rows < H)[:, None] & (cols < W)[None, :]
            offsets = rows[:, None] * stride_xh + cols[None, :] * stride_xw
            v = tl.load(x_base + offsets, mask=mask, other=0.0).to(tl.float32)
            z = v * multiplier + offset
            y = tl.maximum(z, 0.0, propagate_nan=tl.PropagateNan.ALL).to(out_ptr.dtype.element_ty)  # NaN stays
            _store_upsampled(out_base, y, rows, w0, cols, mask, H, W, SCALE, WIDEN_STEPS, BLOCK_W)


@triton.jit
def cbn_relu_upsample_backward_reduce_kernel(
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
    # strides of grad (N, C, SH, SW), x, gain, bias (dest is contiguous)
    stride_dn,
    stride_dc,
    stride_dh,
    stride_dw,
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    stride_bn,
    stride_bc,
    # constexprs
    SCALE: tl.constexpr,
    WIDEN_STEPS: tl.constexpr,
    BATCH_STATS: tl.constexpr,
    BLOCK_H: tl.constexpr,
    BLOCK_W: tl.constexpr,
):
    """Sum each SCALE×SCALE block of grad, mask by z > 0 (z recomputed from x), reduce dgain/dbias per plane;
    [BLOCK_H, BLOCK_W] tiles of x (WIDEN_STEPS as in `_store_upsampled`).

    dest (dense planes) receives gz with BATCH_STATS (see `cbn_relu_upsample_nhwc.gz_staging`) — the dx kernel
    finishes it — or dx = gain·rstd·gz.
    """
    plane = tl.program_id(0).to(tl.int64)
    n = plane // C
    c = plane % C
    mean = tl.load(mean_ptr + c)
    rstd = tl.load(rstd_ptr + c)
    gain = tl.load(gain_ptr + n * stride_gn + c * stride_gc).to(tl.float32)
    multiplier = gain * rstd  # z = x·multiplier + offset exactly as the forward computes it, so the masks agree
    offset = tl.load(bias_ptr + n * stride_bn + c * stride_bc).to(tl.float32) - mean * multiplier
    x_base = x_ptr + n * stride_xn + c * stride_xc
    grad_base = grad_ptr + n * stride_dn + c * stride_dc
    dest_base = dest_ptr + plane * H * W
    acc_dbias = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    acc_dgain = tl.zeros([BLOCK_H, BLOCK_W], dtype=tl.float32)
    for h0 in range(0, H, BLOCK_H):
        rows = h0 + tl.arange(0, BLOCK_H)
        for w0 in range(0, W, BLOCK_W):
            cols = w0 + tl.arange(0, BLOCK_W)
            mask = (rows < H)[:, None] & (cols < W)[None, :]
            g = _block_sums(grad_base, rows, w0, cols, mask, H, W, stride_dh, stride_dw, SCALE, WIDEN_STEPS, BLOCK_W)
            x_offsets = rows[:, None] * stride_xh + cols[None, :] * stride_xw
            v = tl.load(x_base + x_offsets, mask=mask, other=0.0).to(tl.float32)
            gz = tl.where(v * multiplier + offset <= 0.0, 0.0, g)  # torch's ReLU mask: NaN passes g
            acc_dbias += gz
            acc_dgain += gz * ((v - mean) * rstd)
            dest = gz if BATCH_STATS else gz * multiplier
            dest_offsets = rows[:, None] * W + cols[None, :]
            tl.store(dest_base + dest_offsets, dest.to(dest_ptr.dtype.element_ty), mask=mask)
    tl.store(dgain_ptr + plane, tl.sum(tl.sum(acc_dgain, axis=1), axis=0))
    tl.store(dbias_ptr + plane, tl.sum(tl.sum(acc_dbias, axis=1), axis=0))


@triton.jit
def cbn_relu_upsample_backward_dx_kernel(
    # pointers
    gz_ptr,
    x_ptr,
    gain_ptr,
    mean_ptr,
    rstd_ptr,
    dgain_ptr,
    dbias_ptr,
    dx_ptr,
    # sizes
    N,
    C,
    H,
    W,
    # strides of x, gain (gz, dgain, dbias and dx are contiguous)
    stride_xn,
    stride_xc,
    stride_xh,
    stride_xw,
    stride_gn,
    stride_gc,
    # constexprs
    X_DENSE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK: tl.constexpr,
):
    """dx = rstd·(gain·gz − (Σ_n gain·dbias + x̂·Σ_n gain·dgain)/M) for one plane; gz (dense planes) may alias
    dx."""
    plane = tl.program_id(0).to(tl.int64)
    n = plane // C
    c = plane % C
    rows = tl.arange(0, BLOCK_N)
    column_gain = tl.load(gain_ptr + rows * stride_gn + c * stride_gc, mask=rows < N, other=0.0).to(tl.float32)
    sum_dbias = tl.sum(column_gain * tl.load(dbias_ptr + rows * C + c, mask=rows < N, other=0.0), axis=0)
    sum_dgain = tl.sum(column_gain * tl.load(dgain_ptr + rows * C + c, mask=rows < N, other=0.0), axis=0)
    count = tl.cast(N, tl.int64) * H * W  # may pass 2³¹ (N, H, W are i32)
    mean = tl.load(mean_ptr + c)
    rstd = tl.load(rstd_ptr + c)
    gain = tl.load(gain_ptr + n * stride_gn + c * stride_gc).to(tl.float32)
    x_base = x_ptr + n * stride_xn + c * stride_xc
    for start in range(0, H * W, BLOCK):
        i = start + tl.arange(0, BLOCK)
        mask = i < H * W
        if X_DENSE:
            x_offsets = i
        else:
            x_offsets = (i // W) * stride_xh + (i % W) * stride_xw
        x_hat = (tl.load(x_base + x_offsets, mask=mask, other=0.0).to(tl.float32) - mean) * rstd
        gz = tl.load(gz_ptr + plane * H * W + i, mask=mask, other=0.0).to(tl.float32)
        dx = rstd * (gain * gz - (sum_dbias + x_hat * sum_dgain) / count)
        tl.store(dx_ptr + plane * H * W + i, dx.to(dx_ptr.dtype.element_ty), mask=mask)


@functools.cache  # these plans are asked for per launch: no Triton host helpers once a shape is seen
def _block(elements: int) -> int:
    return min(BLOCK, triton.next_power_of_2(max(elements, 16)))


@functools.cache
def _batch_block(batch: int) -> int:
    """BLOCK_N of the kernels that walk the batch's per-sample sums: the batch rounded up to a power of two."""
    return triton.next_power_of_2(batch)


@functools.cache  # the dict is only spread into launches, never changed
def _tiles(h: int, w: int, scale: int) -> dict[str, int]:
    """Constexprs of the 2-D plane kernels: [BLOCK_H, BLOCK_W] tiles of x, whole rows where they fit, of at most
    BLOCK elements and at most 2·BLOCK once widened ×scale (so ×4 and ×8 do not spill), and WIDEN_STEPS (log2 of
    a power-of-two `scale`, else −1; see `_store_upsampled`)."""
    elements = min(BLOCK, 2 * BLOCK // triton.next_power_of_2(scale))
    block_w = min(elements, triton.next_power_of_2(w))
    block_h = min(triton.next_power_of_2(h), max(1, elements // block_w))
    widen = scale.bit_length() - 1 if scale & (scale - 1) == 0 else -1
    return {"SCALE": scale, "WIDEN_STEPS": widen, "BLOCK_H": block_h, "BLOCK_W": block_w}


def _dense_planes(x: torch.Tensor) -> bool:
    """Whether each (n, c) plane of x is row-major and gap-free, so plane offsets are plain indices."""
    return x.stride(3) == 1 and x.stride(2) == x.shape[3]


def _check(x: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, scale: int) -> None:
    if x.dim() != 4 or gain.shape != x.shape[:2] or bias.shape != x.shape[:2]:
        raise ValueError(
            f"cbn_relu_upsample kernels expect x (N, C, H, W) and gain, bias (N, C); got x {tuple(x.shape)}, "
            f"gain {tuple(gain.shape)}, bias {tuple(bias.shape)}"
        )
    if scale * scale * x.shape[2] * x.shape[3] >= 2**31:
        raise ValueError(
            f"cbn_relu_upsample (triton): a {x.shape[2]}×{x.shape[3]} plane upscaled ×{scale} has 2³¹ or more "
            "pixels, beyond the kernels' 32-bit in-plane offsets; process it in tiles"
        )
    for name, tensor in (("x", x), ("gain", gain), ("bias", bias)):
        element_type(tensor.dtype)  # raises for dtypes the kernels do not take
        if tensor.device != x.device:
            raise ValueError(f"cbn_relu_upsample: {name} is on {tensor.device} but x is on {x.device}; move it")


def _fp32_buffer(tensor: torch.Tensor | None, name: str, x: torch.Tensor) -> None:
    channels = x.shape[1]
    if tensor is None:
        return
    if tensor.dtype != torch.float32 or tensor.shape != (channels,) or tensor.stride() != (1,):
        raise ValueError(f"cbn_relu_upsample: {name} must be a contiguous fp32 ({channels},) tensor")
    if tensor.device != x.device:
        raise ValueError(f"cbn_relu_upsample: {name} is on {tensor.device} but x is on {x.device}; move it")


def _plane_addressable(t: torch.Tensor) -> torch.Tensor:
    return with_int32_offsets(t, {2: t.shape[2], 3: t.shape[3]})


def _takes_nhwc(x: torch.Tensor, scale: int) -> bool:
    """Whether the channels-last kernels (`fastgan.kernels.cbn_relu_upsample_nhwc`) take x: unit channel stride,
    more than one channel and pixel, and a sample of x and of the up-sampled output addressable in int32."""
    n, c, h, w = x.shape
    span = (c - 1) + (h - 1) * x.stride(2) + (w - 1) * x.stride(3)
    return c > 1 and h * w > 1 and x.stride(1) == 1 and span < 2**31 and scale * scale * h * w * c < 2**31


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
    """Training forward: (out (N, C, sH, sW), mean (C,) fp32, rstd (C,) fp32); running buffers updated in place.

    Channels-last x goes to the NHWC kernels and gives channels-last out; any other layout the plane kernels.
    """
    _check(x, gain, bias, scale)
    for name, buffer in (("running_mean", running_mean), ("running_var", running_var)):
        _fp32_buffer(buffer, name, x)
    if _takes_nhwc(x, scale):
        return nhwc_kernels.forward_batch_stats(x, gain, bias, running_mean, running_var, momentum, eps, scale)
    x = _plane_addressable(x)
    n, c, h, w = x.shape
    fp32 = dict(device=x.device, dtype=torch.float32)
    sums, squares = torch.empty(n, c, **fp32), torch.empty(n, c, **fp32)
    mean, rstd = torch.empty(c, **fp32), torch.empty(c, **fp32)
    out = torch.empty(n, c, h * scale, w * scale, device=x.device, dtype=x.dtype)
    on_device_of(cbn_plane_sums_kernel, x, sums)[(n * c,)](
        x, sums, squares, c, h, w, *x.stride(), X_DENSE=_dense_planes(x), BLOCK=_block(h * w), num_warps=NUM_WARPS
    )
    update = running_mean is not None and running_var is not None
    on_device_of(cbn_relu_upsample_forward_kernel, x, out)[(n * c,)](
        x,
        gain,
        bias,
        out,
        mean,
        rstd,
        sums,
        squares,
        running_mean if update else mean,
        running_var if update else rstd,
        n,
        c,
        h,
        w,
        *x.stride(),
        *gain.stride(),
        *bias.stride(),
        momentum,
        eps,
        BATCH_STATS=True,
        UPDATE_RUNNING=update,
        BLOCK_N=_batch_block(n),
        **_tiles(h, w, scale),
        num_warps=NUM_WARPS,
    )
    return out, mean, rstd


def forward_given_stats(
    x: torch.Tensor, mean: torch.Tensor, rstd: torch.Tensor, gain: torch.Tensor, bias: torch.Tensor, scale: int
) -> torch.Tensor:
    """Forward with known fp32 (C,) mean and rstd (eval mode, or recomputation in backward): (N, C, sH, sW),
    channels-last when x is."""
    _check(x, gain, bias, scale)
    _fp32_buffer(mean, "mean", x)
    _fp32_buffer(rstd, "rstd", x)
    if _takes_nhwc(x, scale):
        return nhwc_kernels.forward_given_stats(x, mean, rstd, gain, bias, scale)
    x = _plane_addressable(x)
    n, c, h, w = x.shape
    out = torch.empty(n, c, h * scale, w * scale, device=x.device, dtype=x.dtype)
    on_device_of(cbn_relu_upsample_forward_kernel, x, out)[(n * c,)](
        x,
        gain,
        bias,
        out,
        mean,
        rstd,
        mean,
        rstd,
        mean,
        rstd,
        n,
        c,
        h,
        w,
        *x.stride(),
        *gain.stride(),
        *bias.stride(),
        0.0,
        0.0,
        BATCH_STATS=False,
        UPDATE_RUNNING=False,
        BLOCK_N=1,  # unused without batch statistics: one build for every batch size
        **_tiles(h, w, scale),
        num_warps=NUM_WARPS,
    )
    return out


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
    """(dx (N, C, H, W) in x's dtype, dgain (N, C) and dbias (N, C) in gain's/bias's dtypes) from one pass over
    the up-sampled gradient `grad_out` (N, C, sH, sW); `batch_stats` says whether mean/rstd were batch statistics.
    Channels-last x goes to the NHWC kernels (grad_out brought to channels-last) and gives channels-last dx."""
    _check(x, gain, bias, scale)
    n, c, h, w = x.shape
    if grad_out.shape != (n, c, h * scale, w * scale) or grad_out.dtype != x.dtype:
        raise ValueError(
            f"cbn_relu_upsample backward: grad_out must be {(n, c, h * scale, w * scale)} in {x.dtype}, "
            f"got {tuple(grad_out.shape)} in {grad_out.dtype}"
        )
    if _takes_nhwc(x, scale):
        if not _takes_nhwc(grad_out, 1):
            grad_out = grad_out.contiguous(memory_format=torch.channels_last)
        return nhwc_kernels.backward(grad_out, x, mean, rstd, gain, bias, scale, batch_stats)
    x, grad_out = _plane_addressable(x), _plane_addressable(grad_out)
    fp32 = dict(device=x.device, dtype=torch.float32)
    dgain, dbias = torch.empty(n, c, **fp32), torch.empty(n, c, **fp32)
    dx = torch.empty(n, c, h, w, device=x.device, dtype=x.dtype)
    gz = nhwc_kernels.gz_staging(dx, batch_stats)
    on_device_of(cbn_relu_upsample_backward_reduce_kernel, grad_out, x, gz)[(n * c,)](
        grad_out,
        x,
        gain,
        bias,
        mean,
        rstd,
        gz,
        dgain,
        dbias,
        c,
        h,
        w,
        *grad_out.stride(),
        *x.stride(),
        *gain.stride(),
        *bias.stride(),
        BATCH_STATS=batch_stats,
        **_tiles(h, w, scale),
        num_warps=NUM_WARPS,
    )
    if batch_stats:
        on_device_of(cbn_relu_upsample_backward_dx_kernel, x, gz, dx)[(n * c,)](
            gz,
            x,
            gain,
            mean,
            rstd,
            dgain,
            dbias,
            dx,
            n,
            c,
            h,
            w,
            *x.stride(),
            *gain.stride(),
            X_DENSE=_dense_planes(x),
            BLOCK_N=_batch_block(n),
            BLOCK=_block(h * w),
            num_warps=NUM_WARPS,
        )
    return dx, dgain.to(gain.dtype), dbias.to(bias.dtype)


#: Innermost strides of contiguous NCHW activations and (N, C) gain/bias: 1, which the JIT makes constants.
UNIT_STRIDES = ("stride_xw", "stride_dw", "stride_gc", "stride_bc")
#: Sizes and strides that are multiples of 16 for feature maps of 16×16 and more (the JIT specialises on it).
MULTIPLES_OF_16 = ("W", "stride_xn", "stride_xc", "stride_xh", "stride_dn", "stride_dc", "stride_dh")
#: The same for dense channels-last activations with a multiple of 16 channels: only gain/bias have unit strides
#: (the channel stride is implicit), and C and every pixel stride are multiples of 16.
NHWC_UNIT_STRIDES = ("stride_gc", "stride_bc")
NHWC_MULTIPLES_OF_16 = ("C", "stride_xn", "stride_xh", "stride_xw", "stride_dn", "stride_dh", "stride_dw")
_ACTIVATION_POINTERS = ("x_ptr", "out_ptr", "grad_ptr", "dx_ptr")
#: gz as the backward-reduce kernels store it (`dest_ptr`) and the dx kernels read it back (`gz_ptr`).
_STAGING_POINTERS = ("dest_ptr", "gz_ptr")


def _build(
    kernel,
    ty: str,
    label: str,
    constexprs: dict,
    dense: bool = True,
    dest: str = "fp32",
    nhwc: bool = False,
    num_warps: int = NUM_WARPS,
) -> KernelBuild:
    """`kernel` as a launcher specialises it: activations in `ty`, statistics fp32, gain/bias fp32, staged gz
    (`dest_ptr`, `gz_ptr`) in `dest`; with `dense` the unit strides of contiguous tensors (NCHW, or channels-last
    with `nhwc`) become constants and sizes multiples of 16."""
    unit_strides = NHWC_UNIT_STRIDES if nhwc else UNIT_STRIDES
    signature, constexprs = {}, dict(constexprs)
    for param in kernel.params:
        name = param.name
        if param.is_constexpr:
            signature[name] = "constexpr"
        elif name.endswith("_ptr"):
            signature[name] = (
                f"*{dest}" if name in _STAGING_POINTERS else f"*{ty}" if name in _ACTIVATION_POINTERS else "*fp32"
            )
        elif name in ("momentum", "eps"):
            signature[name] = "fp32"
        elif dense and name in unit_strides:
            signature[name], constexprs[name] = "constexpr", 1
        else:
            signature[name] = "i32"
    if "X_DENSE" in signature:
        constexprs["X_DENSE"] = dense
    layout = " nhwc" if nhwc else "" if dense else " strided"
    multiples = (NHWC_MULTIPLES_OF_16 if nhwc else MULTIPLES_OF_16) if dense else ()
    return KernelBuild(kernel, signature, constexprs, f"{ty}{layout} {label}".strip(), num_warps, multiples)


def _gz_type(ty: str, batch_stats: bool) -> str:
    """The type the backward-reduce kernels store into dest for `ty` activations, as `gz_staging` allocates it."""
    return "fp32" if batch_stats and ty == "fp16" else ty


def aot_builds() -> list[KernelBuild]:
    """Each kernel as the launchers specialise it, for fp32/fp16/bf16 activations (fp32 gain/bias, BLOCK 1024,
    64×64 planes), dense NCHW planes, plus strided builds of the plane kernels in fp16 and the strided-store
    ×3 up-sampling in bf16; the NHWC kernels for dense channels-last
    activations of 64 or more channels (BLOCK_P × BLOCK_C = 16 × 64; the backward finalise at SPLIT = 16, as for
    HRGAN-128's batch of 64)."""
    builds = []
    for ty, dense in (("fp32", True), ("fp16", True), ("bf16", True), ("fp16", False)):
        builds.append(_build(cbn_plane_sums_kernel, ty, "", {"BLOCK": BLOCK}, dense))
        scales = ((2, True), (1, True), (2, False)) + (((3, True),) if ty == "bf16" else ())
        for scale, batch in scales:
            stats = f"scale={scale} {'batch' if batch else 'given'} stats"
            tiles = _tiles(64, 64, scale) | {"BATCH_STATS": batch}  # HRGAN-128's 64×64 planes
            forward = {"UPDATE_RUNNING": batch, "BLOCK_N": 64 if batch else 1}
            builds.append(_build(cbn_relu_upsample_forward_kernel, ty, stats, forward | tiles, dense))
            kernel = cbn_relu_upsample_backward_reduce_kernel
            builds.append(_build(kernel, ty, stats, tiles, dense, _gz_type(ty, batch)))
        dx = {"BLOCK_N": 64, "BLOCK": BLOCK}
        builds.append(_build(cbn_relu_upsample_backward_dx_kernel, ty, "", dx, dense, _gz_type(ty, True)))
    block_p, block_c = nhwc_kernels.tile_shape(64)
    tiles = {"BLOCK_P": block_p, "BLOCK_C": block_c}
    for ty in ("fp32", "fp16", "bf16"):
        builds.append(_build(nhwc_kernels.cbn_pixel_sums_nhwc_kernel, ty, "", tiles, nhwc=True))
        fin_c = nhwc_kernels.FINALIZE_BLOCK_C
        finalize = {"UPDATE_RUNNING": True, "BLOCK_R": nhwc_kernels.FINALIZE_TILE // fin_c, "BLOCK_C": fin_c}
        finalize_warps = nhwc_kernels.FINALIZE_WARPS
        kernel = nhwc_kernels.cbn_finalize_statistics_kernel
        builds.append(_build(kernel, ty, "", finalize, nhwc=True, num_warps=finalize_warps))
        for scale in (2, 1):
            kernel = nhwc_kernels.cbn_relu_upsample_forward_nhwc_kernel
            builds.append(_build(kernel, ty, f"scale={scale}", {"SCALE": scale} | tiles, nhwc=True))
        for scale, batch in ((2, True), (1, True), (2, False)):
            stats = f"scale={scale} {'batch' if batch else 'given'} stats"
            reduce = {"SCALE": scale, "BATCH_STATS": batch} | tiles
            kernel = nhwc_kernels.cbn_relu_upsample_backward_reduce_nhwc_kernel
            builds.append(_build(kernel, ty, stats, reduce, dest=_gz_type(ty, batch), nhwc=True))
        finish = {"BLOCK_N": nhwc_kernels.FINALIZE_TILE // (16 * fin_c), "BLOCK_S": 16, "BLOCK_C": fin_c}
        kernel = nhwc_kernels.cbn_backward_finalize_kernel
        builds.append(_build(kernel, ty, "split=16", finish, nhwc=True, num_warps=finalize_warps))
        kernel = nhwc_kernels.cbn_relu_upsample_backward_dx_nhwc_kernel
        builds.append(_build(kernel, ty, "", tiles, dest=_gz_type(ty, True), nhwc=True))
    return builds
