"""Triton kernels for the MobileNet score (HRGAN Eq. 5), forward and backward.

Maths, for logits l (B, K), row b, class k:

    m_b     = max_k l_bk,   z_b = log Σ_k exp(l_bk − m_b)      row statistics (lse_b = m_b + z_b)
    log p_bk = (l_bk − m_b) − z_b,   p_bk = exp(log p_bk)       p(y|x)
    C_k     = Σ_b p_bk,   log q_k = log(C_k / B)      p(y), the batch marginal
    A_k     = Σ_b p_bk · log p_bk
    KL_b    = Σ_k p_bk (log p_bk − log q_k),   Σ_b KL_b = Σ_k (A_k − C_k · log q_k)
    S       = exp(Σ_b KL_b / B)

Backward: ∂(Σ_b KL_b)/∂p_bk = log p_bk − log q_k (the +1 of ∂(p log p) cancels the −1 of ∂(−B q log q)), and
through the softmax:

    ∂S/∂l_bj = S/B · p_bj · (log p_bj − log q_j − KL_b)

Every step runs in fp32 (logits are converted on load); dlogits are stored in the logits' dtype. A class that no
row gives a representable probability (C_k underflows to 0) gets log q_k = max_b log p_bk − log B instead of −inf:
it contributes 0 to the score and to the gradient either way, and the saved log q stays finite (like the eager
logsumexp form). The row log-sum-exp is kept as (m_b, z_b) rather than one fp32 lse_b: lse_b rounds at
eps·|lse_b|, and for logits of magnitude ~100 that shift of every log p_bk moves dlogits by ~10× eager's error.

Launch plan (tiles of at most TILE = 4096 fp32 elements, e.g. 4 × 1024 for K = 1000 or 256 × 16 for K = 10):
    forward:  ONE single-program launch. With whole rows in a tile (K ≤ TILE) the logits are read once: each
              row-block tile gives (m, z) (stored), p, and the per-column accumulators of p, p·log p and
              max log p; the column sums then give log q (stored) and the score. Wider rows (K > TILE) take two
              passes: online (m, z) over K blocks, then K blocks outer × row blocks inner for the column sums.
    backward: ONE launch, a grid over groups of row blocks (about 16 rows per program). With whole rows each
              tile is read once (KL_b over the tile, then dlogits); wider rows take a KL pass and a dlogits pass.
Saved for backward: the logits, row_stats (2, B) = (m, z), log q (K,) and the score — no (B, K) intermediates.
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl

from fastgan.kernels.aot import KernelBuild
from fastgan.kernels.launch import element_type, on_device_of

#: Elements of one [BLOCK_B, BLOCK_K] tile: 16 fp32 registers a thread per live tile at NUM_WARPS = 8.
TILE = 4096
#: Rows of a tile when a row does not fit in one (K > TILE).
SPLIT_ROWS = 4
#: Rows each backward program handles (in BLOCK_B steps): fewer programs re-read log q less often.
ROWS_PER_PROGRAM = 16
NUM_WARPS = 8


@triton.jit
def mobilenet_score_forward_kernel(
    # pointers
    logits_ptr,
    score_ptr,
    row_stats_ptr,
    log_marginal_ptr,
    # sizes
    B,
    K,
    # strides of logits (unit stride along K)
    stride_lb,
    # scalars
    inv_batch,
    log_batch,
    # constexprs
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    WHOLE_ROWS: tl.constexpr,
    ROW_ALIGN: tl.constexpr,
):
    """score = exp(Σ_k (A_k − C_k·log q_k) / B); row_stats = (m (B,), z (B,)) and log q_k stored; grid (1,).

    WHOLE_ROWS (K ≤ BLOCK_K): one pass over row blocks. Otherwise pass 1 stores (m, z) over K blocks, pass 2 reads
    it back (after a barrier) for K blocks outer × row blocks inner. ROW_ALIGN divides stride_lb and K, so that
    masked rows of logits are loaded in vectors of ROW_ALIGN elements.
    """
    k_bound = tl.multiple_of(tl.full([BLOCK_K], K, tl.int32), ROW_ALIGN)  # K, known divisible by ROW_ALIGN
    row_range = tl.arange(0, BLOCK_B)
    col_range = tl.arange(0, BLOCK_K)
    total = tl.zeros([BLOCK_K], dtype=tl.float32)  # per-column Σ_b KL contributions
    if WHOLE_ROWS:
        cols = col_range
        col_mask = cols < k_bound
        acc_p = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
        acc_plogp = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
        acc_max = tl.full([BLOCK_B, BLOCK_K], float("-inf"), dtype=tl.float32)
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            mask = row_mask[:, None] & col_mask[None, :]
            offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
            x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
            x = tl.where(row_mask[:, None], x.to(tl.float32), 0.0)  # rows past B: zeros, never -inf − -inf
            m = tl.max(x, axis=1)
            shifted = x - m[:, None]
            e = tl.exp(shifted)
            s = tl.sum(e, axis=1)
            z = tl.log(s)
            tl.store(row_stats_ptr + rows, m, mask=row_mask)
            tl.store(row_stats_ptr + B + rows, z, mask=row_mask)
            log_p = shifted - z[:, None]
            p = tl.where(mask, e * (1.0 / s)[:, None], 0.0)
            acc_p += p
            acc_plogp += p * tl.where(mask, log_p, 0.0)
            acc_max = tl.maximum(acc_max, tl.where(mask, log_p, float("-inf")))
        column_p = tl.sum(acc_p, axis=0)
        column_plogp = tl.sum(acc_plogp, axis=0)
        column_max = tl.max(acc_max, axis=0)
        positive = column_p > 0.0
        log_q = tl.where(positive, tl.log(tl.where(positive, column_p, 1.0)), column_max) - log_batch
        tl.store(log_marginal_ptr + cols, log_q, mask=col_mask)
        total += tl.where(positive, column_plogp - column_p * tl.where(positive, log_q, 0.0), 0.0)
    else:
        # pass 1: online row log-sum-exp over K blocks
        for b0 in range(0, B, BLOCK_B):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
            m = tl.full([BLOCK_B], float("-inf"), dtype=tl.float32)
            s = tl.zeros([BLOCK_B], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + col_range.to(tl.int64)
                mask = row_mask[:, None] & (cols < k_bound)[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                x = tl.where(row_mask[:, None], x.to(tl.float32), 0.0)
                m_new = tl.maximum(m, tl.max(x, axis=1))
                s = s * tl.exp(m - m_new) + tl.sum(tl.exp(x - m_new[:, None]), axis=1)
                m = m_new
            tl.store(row_stats_ptr + rows, m, mask=row_mask)
            tl.store(row_stats_ptr + B + rows, tl.log(s), mask=row_mask)
        tl.debug_barrier()  # pass 2 reads row_stats written by other threads of this program
        # pass 2: column sums, K blocks outer
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + col_range.to(tl.int64)
            col_mask = cols < k_bound
            acc_p = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
            acc_plogp = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
            acc_max = tl.full([BLOCK_B, BLOCK_K], float("-inf"), dtype=tl.float32)
            for b0 in range(0, B, BLOCK_B):
                rows = b0 + row_range.to(tl.int64)
                row_mask = rows < B
                mask = row_mask[:, None] & col_mask[None, :]
                offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                m = tl.load(row_stats_ptr + rows, mask=row_mask, other=0.0)
                z = tl.load(row_stats_ptr + B + rows, mask=row_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                p = tl.where(mask, tl.exp(log_p), 0.0)
                acc_p += p
                acc_plogp += p * tl.where(mask, log_p, 0.0)
                acc_max = tl.maximum(acc_max, tl.where(mask, log_p, float("-inf")))
            column_p = tl.sum(acc_p, axis=0)
            column_plogp = tl.sum(acc_plogp, axis=0)
            column_max = tl.max(acc_max, axis=0)
            positive = column_p > 0.0
            log_q = tl.where(positive, tl.log(tl.where(positive, column_p, 1.0)), column_max) - log_batch
            tl.store(log_marginal_ptr + cols, log_q, mask=col_mask)
            total += tl.where(positive, column_plogp - column_p * tl.where(positive, log_q, 0.0), 0.0)
    tl.store(score_ptr, tl.exp(tl.sum(total, axis=0) * inv_batch))


@triton.jit
def mobilenet_score_backward_kernel(
    # pointers
    logits_ptr,
    row_stats_ptr,
    log_marginal_ptr,
    score_ptr,
    grad_ptr,
    dlogits_ptr,
    # sizes
    B,
    K,
    # strides of logits and dlogits (unit stride along K)
    stride_lb,
    stride_db,
    # scalars
    inv_batch,
    # constexprs
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    WHOLE_ROWS: tl.constexpr,
    ROW_ALIGN: tl.constexpr,
):
    """dlogits_bj = grad · S/B · p_bj · (log p_bj − log q_j − KL_b); program i takes row blocks i, i + P, ...

    WHOLE_ROWS (K ≤ BLOCK_K): log q is loaded once a program, each tile read once. Otherwise a KL_b pass and a
    dlogits pass over K blocks. ROW_ALIGN divides stride_lb, stride_db and K (vector loads and stores).
    """
    k_bound = tl.multiple_of(tl.full([BLOCK_K], K, tl.int32), ROW_ALIGN)  # K, known divisible by ROW_ALIGN
    pid = tl.program_id(0).to(tl.int64)
    programs = tl.num_programs(0).to(tl.int64)
    coefficient = tl.load(grad_ptr) * tl.load(score_ptr) * inv_batch  # grad · S / B
    row_range = tl.arange(0, BLOCK_B)
    col_range = tl.arange(0, BLOCK_K)
    if WHOLE_ROWS:
        cols = col_range
        col_mask = cols < k_bound
        log_q = tl.load(log_marginal_ptr + cols, mask=col_mask, other=0.0)
        for b0 in range(pid * BLOCK_B, B, programs * BLOCK_B):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            mask = row_mask[:, None] & col_mask[None, :]
            offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
            x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
            m = tl.load(row_stats_ptr + rows, mask=row_mask, other=0.0)
            z = tl.load(row_stats_ptr + B + rows, mask=row_mask, other=0.0)
            log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
            p = tl.exp(log_p)  # 0 wherever masked
            d = tl.where(mask, log_p - log_q[None, :], 0.0)
            kl = tl.sum(p * d, axis=1)
            dl = coefficient * p * (d - kl[:, None])
            out_offsets = tl.multiple_of(rows * stride_db, ROW_ALIGN)
            tl.store(dlogits_ptr + out_offsets[:, None] + cols[None, :], dl.to(dlogits_ptr.dtype.element_ty), mask=mask)
    else:
        for b0 in range(pid * BLOCK_B, B, programs * BLOCK_B):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
            out_offsets = tl.multiple_of(rows * stride_db, ROW_ALIGN)
            m = tl.load(row_stats_ptr + rows, mask=row_mask, other=0.0)
            z = tl.load(row_stats_ptr + B + rows, mask=row_mask, other=0.0)
            acc_kl = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + col_range.to(tl.int64)
                col_mask = cols < k_bound
                mask = row_mask[:, None] & col_mask[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                log_q = tl.load(log_marginal_ptr + cols, mask=col_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                acc_kl += tl.exp(log_p) * tl.where(mask, log_p - log_q[None, :], 0.0)
            kl = tl.sum(acc_kl, axis=1)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + col_range.to(tl.int64)
                col_mask = cols < k_bound
                mask = row_mask[:, None] & col_mask[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                log_q = tl.load(log_marginal_ptr + cols, mask=col_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                p = tl.exp(log_p)
                d = tl.where(mask, log_p - log_q[None, :], 0.0)
                dl = coefficient * p * (d - kl[:, None])
                tl.store(
                    dlogits_ptr + out_offsets[:, None] + cols[None, :], dl.to(dlogits_ptr.dtype.element_ty), mask=mask
                )


def _blocks(classes: int, tile: int) -> tuple[int, int, bool]:
    """(BLOCK_B, BLOCK_K, WHOLE_ROWS) for `classes` columns; independent of the batch size (one compile per K)."""
    block_k = triton.next_power_of_2(classes)
    if block_k <= tile:
        return max(1, tile // block_k), block_k, True
    return SPLIT_ROWS, max(1, tile // SPLIT_ROWS), False


def _row_align(element_size: int, *strides: int) -> int:
    """The largest power of two ≤ one 16-byte vector (in elements) dividing every row stride and K."""
    align = 16 // element_size
    while align > 1 and any(stride % align for stride in strides):
        align //= 2
    return align


def _backward_programs(batch: int, block_b: int) -> int:
    return min(triton.cdiv(batch, block_b), max(1, triton.cdiv(batch, ROWS_PER_PROGRAM)))


def launch_plan(batch: int, classes: int, tile: int = TILE) -> dict[str, int | bool]:
    """The tiles and grids the launchers use for (batch, classes) logits (also what `traffic` counts)."""
    block_b, block_k, whole = _blocks(classes, tile)
    return {
        "block_b": block_b,
        "block_k": block_k,
        "whole_rows": whole,
        "row_blocks": triton.cdiv(batch, block_b),
        "k_blocks": triton.cdiv(classes, block_k),
        "forward_programs": 1,
        "backward_programs": _backward_programs(batch, block_b),
    }


def _check_logits(logits: torch.Tensor, what: str) -> None:
    if logits.dim() != 2 or logits.shape[0] < 1 or logits.shape[1] < 2:
        raise ValueError(f"mobilenet_score {what}: logits must be (B >= 1, K >= 2), got {tuple(logits.shape)}")
    if logits.dtype not in (torch.float32, torch.float16, torch.bfloat16):
        raise ValueError(
            f"mobilenet_score {what}: the kernels take fp32, fp16 or bf16 logits, got {logits.dtype}; "
            "use fastgan.ops.mobilenet_score (it routes fp64 to the eager reference) or convert the logits"
        )
    if logits.stride(1) != 1:
        raise ValueError(
            f"mobilenet_score {what}: logits need unit stride along K, got strides {logits.stride()}; "
            "pass logits.contiguous()"
        )


def _check_fp32(tensor: torch.Tensor, name: str, shape: tuple[int, ...], device: torch.device) -> None:
    if tensor.shape != shape or tensor.dtype != torch.float32 or not tensor.is_contiguous():
        raise ValueError(
            f"mobilenet_score backward: {name} must be a contiguous fp32 tensor of shape {shape} (as the forward "
            f"returned it), got {tuple(tensor.shape)} {tensor.dtype}"
        )
    if tensor.device != device:
        raise ValueError(f"mobilenet_score backward: {name} is on {tensor.device} but logits are on {device}; move it")


def forward(logits: torch.Tensor, *, tile: int = TILE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One launch: (score () fp32, row_stats (2, B) fp32, log_marginal (K,) fp32) from (B, K) fp32/fp16/bf16
    logits; row_stats = (row max m, log Σ exp(l − m)), so that row_stats.sum(0) is the row log-sum-exp.

    `tile` bounds BLOCK_B · BLOCK_K (a power of two; smaller values force the two-pass path, for tests).
    """
    _check_logits(logits, "forward")
    batch, classes = logits.shape
    block_b, block_k, whole = _blocks(classes, tile)
    fp32 = dict(device=logits.device, dtype=torch.float32)
    score, row_stats = torch.empty((), **fp32), torch.empty(2, batch, **fp32)
    log_marginal = torch.empty(classes, **fp32)
    stride_lb = logits.stride(0) if batch > 1 else classes
    on_device_of(mobilenet_score_forward_kernel, logits, score)[(1,)](
        logits,
        score,
        row_stats,
        log_marginal,
        batch,
        classes,
        stride_lb,
        1.0 / batch,
        math.log(batch),
        BLOCK_B=block_b,
        BLOCK_K=block_k,
        WHOLE_ROWS=whole,
        ROW_ALIGN=_row_align(logits.element_size(), stride_lb, classes),
        num_warps=NUM_WARPS,
    )
    return score, row_stats, log_marginal


def backward(
    grad_score: torch.Tensor,
    logits: torch.Tensor,
    row_stats: torch.Tensor,
    log_marginal: torch.Tensor,
    score: torch.Tensor,
    *,
    tile: int = TILE,
) -> torch.Tensor:
    """One launch: dlogits (B, K) in the logits' dtype from grad_score () and what `forward` returned."""
    _check_logits(logits, "backward")
    batch, classes = logits.shape
    device = logits.device
    _check_fp32(row_stats, "row_stats", (2, batch), device)
    _check_fp32(log_marginal, "log_marginal", (classes,), device)
    _check_fp32(score, "score", (), device)
    if grad_score.numel() != 1 or grad_score.device != device:
        raise ValueError(
            f"mobilenet_score backward: grad_score must be one element on {device}, "
            f"got {tuple(grad_score.shape)} on {grad_score.device}"
        )
    grad = grad_score.reshape(()).to(torch.float32).contiguous()
    block_b, block_k, whole = _blocks(classes, tile)
    dlogits = torch.empty(batch, classes, device=device, dtype=logits.dtype)
    stride_lb = logits.stride(0) if batch > 1 else classes
    programs = _backward_programs(batch, block_b)
    on_device_of(mobilenet_score_backward_kernel, logits, dlogits)[(programs,)](
        logits,
        row_stats,
        log_marginal,
        score,
        grad,
        dlogits,
        batch,
        classes,
        stride_lb,
        dlogits.stride(0),
        1.0 / batch,
        BLOCK_B=block_b,
        BLOCK_K=block_k,
        WHOLE_ROWS=whole,
        ROW_ALIGN=_row_align(logits.element_size(), stride_lb, dlogits.stride(0), classes),
        num_warps=NUM_WARPS,
    )
    return dlogits


#: Classes of the specialisations `aot_builds` compiles: ImageNet-1k, CIFAR-10, ImageNet-21k (two-pass rows).
AOT_CLASSES = (1000, 10, 21843)


def aot_builds() -> list[KernelBuild]:
    """Both kernels as the launchers specialise them for contiguous fp32/fp16/bf16 (128, K) logits, K in
    AOT_CLASSES: the JIT sees B = 128 as a multiple of 16 (K and the row strides are not)."""
    builds = []
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        ty = element_type(dtype)
        size = torch.empty((), dtype=dtype).element_size()
        for classes in AOT_CLASSES:
            block_b, block_k, whole = _blocks(classes, TILE)
            align = _row_align(size, classes)
            constexprs = {"BLOCK_B": block_b, "BLOCK_K": block_k, "WHOLE_ROWS": whole, "ROW_ALIGN": align}
            flags = {name: "constexpr" for name in constexprs}
            builds.append(
                KernelBuild(
                    mobilenet_score_forward_kernel,
                    {
                        "logits_ptr": f"*{ty}",
                        "score_ptr": "*fp32",
                        "row_stats_ptr": "*fp32",
                        "log_marginal_ptr": "*fp32",
                    }
                    | {"B": "i32", "K": "i32", "stride_lb": "i32", "inv_batch": "fp32", "log_batch": "fp32"}
                    | flags,
                    constexprs,
                    f"{ty} B=128 K={classes}",
                    NUM_WARPS,
                    multiples_of_16=("B",),
                )
            )
            builds.append(
                KernelBuild(
                    mobilenet_score_backward_kernel,
                    {
                        "logits_ptr": f"*{ty}",
                        "row_stats_ptr": "*fp32",
                        "log_marginal_ptr": "*fp32",
                        "score_ptr": "*fp32",
                    }
                    | {"grad_ptr": "*fp32", "dlogits_ptr": f"*{ty}"}
                    | {"B": "i32", "K": "i32", "stride_lb": "i32", "stride_db": "i32", "inv_batch": "fp32"}
                    | flags,
                    constexprs,
                    f"{ty} B=128 K={classes}",
                    NUM_WARPS,
                    multiples_of_16=("B",),
                )
            )
    return builds
