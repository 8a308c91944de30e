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
    forward:  TWO launches, no atomics. The partials kernel, a grid of P programs over groups of row blocks
              (about ROWS_PER_PROGRAM rows a program, as the backward), stores each row's (m, z) and per program
              i one vector and one scalar: columns[i, k] = Σ_b p_bk over its rows where that is positive, else
              max_b log p_bk (negative then), and plogp[i] = Σ_b Σ_k p_bk · log p_bk (Σ_k A_k needs no per-column
              split). With whole rows in a tile (K ≤ TILE) each tile is read once; wider rows (K > TILE) take two
              passes within a program: online (m, z) over K blocks, then K blocks outer × its row blocks inner.
              The finalize kernel, one program, reduces the partials over programs in a fixed order per K block
              (C_k = Σ_i max(columns[i, k], 0); where C_k = 0, max_i columns[i, k] = max_b log p_bk), stores
              log q and the score = exp((Σ_i plogp[i] − Σ_k C_k · log q_k) / B).
    backward: ONE launch, a grid over the row groups (about ROWS_PER_PROGRAM rows each).
              With whole rows each tile is read once (KL_b over the tile, then dlogits); wider rows take a KL
              pass and a dlogits pass.
Saved for backward: the logits, row_stats (2, B) = (m, z), log q (K,) and the score — no (B, K) intermediates.
"""

from __future__ import annotations

import functools
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
#: Rows each partials and backward program handles (in BLOCK_B steps): fewer programs store fewer forward partials
#: (P · (K + 1) fp32) and re-read log q less often in the backward; more spread the rows over more SMs.
ROWS_PER_PROGRAM = 16
#: Most programs of the forward's partials kernel: the finalise kernel, one program, reads all their partials.
MAX_FORWARD_PROGRAMS = 128
#: Share of the logits' bytes the forward's partials (P · (K + 1) fp32, written then read back) may add to its
#: traffic: more partials programs spread the rows over more SMs, but issue 3 holds each fused forward within 10 %
#: of the minimum bytes (e.g. (128, 1000) logits: 2 programs in bf16, 5 in fp32).
PARTIALS_BUDGET = 0.08
NUM_WARPS = 8


@triton.jit
def _accumulate_columns(acc_p, acc_plogp, acc_max, p, log_p, mask):
    """The running per-element Σ p, Σ p·log p and max log p of [BLOCK_B, BLOCK_K] tiles (p is 0 where masked).

    0·log 0 counts 0: a class with a −inf logit (log p = −inf) adds nothing, as it would not exist. A NaN p (a NaN
    or +inf logit in its row) reaches Σ p·log p and so the score, as in eager; `max` reductions would drop it.
    """
    acc_p += p
    acc_plogp += tl.where(p == 0.0, 0.0, p * log_p)
    acc_max = tl.maximum(acc_max, tl.where(mask, log_p, float("-inf")))
    return acc_p, acc_plogp, acc_max


@triton.jit
def _column_partial(acc_p, acc_max):
    """(BLOCK_K,) Σ_b p_bk over the accumulated rows where positive, else max_b log p_bk (negative then: every p_bk
    underflowed to 0), so that one vector carries both the column sum and the fallback of log q."""
    column_p = tl.sum(acc_p, axis=0)
    return tl.where(column_p > 0.0, column_p, tl.max(acc_max, axis=0))


@triton.jit
def _load_rows(logits_ptr, rows, cols, col_mask, B, stride_lb, ROW_ALIGN: tl.constexpr):
    """The [BLOCK_B, BLOCK_K] tile of logits at `rows` × `cols` in their dtype, −inf where masked (rows ≥ B too)."""
    offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
    mask = (rows < B)[:, None] & col_mask[None, :]
    return tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))


@triton.jit
def mobilenet_score_partials_kernel(
    # pointers
    logits_ptr,
    row_stats_ptr,
    columns_ptr,
    plogp_ptr,
    # sizes
    B,
    K,
    # strides of logits (unit stride along K)
    stride_lb,
    # constexprs
    BLOCK_B: tl.constexpr,
    BLOCK_K: tl.constexpr,
    WHOLE_ROWS: tl.constexpr,
    ROW_ALIGN: tl.constexpr,
):
    """Program i of P takes row blocks i, i + P, ...: stores their (m, z) in row_stats (2, B), the column partials
    columns[i, k] (P, K) = Σ_b p_bk if positive, else max_b log p_bk, and plogp[i] (P,) = Σ_b Σ_k p_bk·log p_bk.

    WHOLE_ROWS (K ≤ BLOCK_K): each tile is read once. Otherwise pass 1 stores (m, z) over K blocks, pass 2 reads
    it back (after a barrier) for K blocks outer × the program's row blocks inner. ROW_ALIGN divides stride_lb and
    K, so that masked rows of logits are loaded (and column partials stored) in vectors of ROW_ALIGN elements.
    """
    k_bound = tl.multiple_of(tl.full([BLOCK_K], K, tl.int32), ROW_ALIGN)  # K, known divisible by ROW_ALIGN
    pid = tl.program_id(0).to(tl.int64)
    programs = tl.num_programs(0).to(tl.int64)
    columns_row = columns_ptr + tl.multiple_of(pid * K, ROW_ALIGN)
    row_range = tl.arange(0, BLOCK_B)
    col_range = tl.arange(0, BLOCK_K)
    plogp = tl.zeros([BLOCK_K], dtype=tl.float32)  # per-column Σ_b p·log p
    if WHOLE_ROWS:
        cols = col_range
        col_mask = cols < k_bound
        acc_p = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
        acc_plogp = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
        acc_max = tl.full([BLOCK_B, BLOCK_K], float("-inf"), dtype=tl.float32)
        step = programs * BLOCK_B
        upcoming = _load_rows(
            logits_ptr, pid * BLOCK_B + row_range.to(tl.int64), cols, col_mask, B, stride_lb, ROW_ALIGN
        )
        for b0 in range(pid * BLOCK_B, B, step):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            mask = row_mask[:, None] & col_mask[None, :]
            x = tl.where(row_mask[:, None], upcoming.to(tl.float32), 0.0)  # rows past B: zeros, never -inf − -inf
            # the next row block's load is issued before this one's arithmetic, so its latency is hidden
            upcoming = _load_rows(logits_ptr, rows + step, cols, col_mask, B, stride_lb, ROW_ALIGN)
            m = tl.max(x, axis=1)
            shifted = x - m[:, None]
            e = tl.exp(shifted)
            s = tl.sum(e, axis=1)
            z = tl.log(s)
            tl.store(row_stats_ptr + rows, m, mask=row_mask)
            tl.store(row_stats_ptr + B + rows, z, mask=row_mask)
            p = tl.where(mask, e * (1.0 / s)[:, None], 0.0)
            acc_p, acc_plogp, acc_max = _accumulate_columns(acc_p, acc_plogp, acc_max, p, shifted - z[:, None], mask)
        tl.store(columns_row + cols, _column_partial(acc_p, acc_max), mask=col_mask)
        plogp += tl.sum(acc_plogp, axis=0)
    else:
        # pass 1: online row log-sum-exp over K blocks
        for b0 in range(pid * BLOCK_B, B, programs * BLOCK_B):
            rows = b0 + row_range.to(tl.int64)
            row_mask = rows < B
            offsets = tl.multiple_of(rows * stride_lb, ROW_ALIGN)
            m = tl.full([BLOCK_B], float("-inf"), dtype=tl.float32)
            s = tl.zeros([BLOCK_B], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + col_range  # int32 (K < 2³¹): int64 column indices lose their contiguity (scalar loads)
                mask = row_mask[:, None] & (cols < k_bound)[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                x = tl.where(row_mask[:, None], x.to(tl.float32), 0.0)
                m_new = tl.maximum(m, tl.max(x, axis=1))
                m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # all −inf so far: no −inf − (−inf) = NaN
                s = s * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
                m = m_new
            tl.store(row_stats_ptr + rows, m, mask=row_mask)
            tl.store(row_stats_ptr + B + rows, tl.log(s), mask=row_mask)
        tl.debug_barrier()  # pass 2 reads row_stats written by other threads of this program
        # pass 2: column partials, K blocks outer
        for k0 in range(0, K, BLOCK_K):
            cols = k0 + col_range
            col_mask = cols < k_bound
            acc_p = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
            acc_plogp = tl.zeros([BLOCK_B, BLOCK_K], dtype=tl.float32)
            acc_max = tl.full([BLOCK_B, BLOCK_K], float("-inf"), dtype=tl.float32)
            for b0 in range(pid * BLOCK_B, B, programs * BLOCK_B):
                rows = b0 + row_range.to(tl.int64)
                row_mask = rows < B
                mask = row_mask[:, None] & col_mask[None, :]
                x = _load_rows(logits_ptr, rows, cols, col_mask, B, stride_lb, ROW_ALIGN)
                m = tl.load(row_stats_ptr + rows, mask=row_mask, other=0.0)
                z = tl.load(row_stats_ptr + B + rows, mask=row_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                p = tl.where(mask, tl.exp(log_p), 0.0)
                acc_p, acc_plogp, acc_max = _accumulate_columns(acc_p, acc_plogp, acc_max, p, log_p, mask)
            tl.store(columns_row + cols, _column_partial(acc_p, acc_max), mask=col_mask)
            plogp += tl.sum(acc_plogp, axis=0)
    tl.store(plogp_ptr + pid, tl.sum(plogp, axis=0))


@triton.jit
def mobilenet_score_finalize_kernel(
    # pointers
    columns_ptr,
    plogp_ptr,
    score_ptr,
    log_marginal_ptr,
    # sizes
    P,
    K,
    # scalars
    inv_batch,
    log_batch,
    # constexprs
    BLOCK_P: tl.constexpr,
    BLOCK_K: tl.constexpr,
    ALIGN: tl.constexpr,
):
    """log q_k = log(C_k / B) (max_b log p_bk − log B where C_k = 0) stored (K,), and score = exp((Σ_i plogp_i −
    Σ_k C_k·log q_k) / B) stored (), from the column partials (P, K) and plogp (P,) of P programs; grid (1,).

    Per K block the partials are reduced over programs in a fixed order ([BLOCK_P, BLOCK_K] tiles over program
    blocks, then a tree over BLOCK_P): deterministic. ALIGN divides K (vector loads of the partials' rows).
    """
    k_bound = tl.multiple_of(tl.full([BLOCK_K], K, tl.int32), ALIGN)  # K, known divisible by ALIGN
    part_range = tl.arange(0, BLOCK_P)
    col_range = tl.arange(0, BLOCK_K)
    plogp = tl.zeros([BLOCK_P], dtype=tl.float32)
    for p0 in range(0, P, BLOCK_P):
        parts = p0 + part_range
        plogp += tl.load(plogp_ptr + parts, mask=parts < P, other=0.0)
    cross = tl.zeros([BLOCK_K], dtype=tl.float32)  # per-column C_k · log q_k
    for k0 in range(0, K, BLOCK_K):
        cols = k0 + col_range
        col_mask = cols < k_bound
        acc_p = tl.zeros([BLOCK_P, BLOCK_K], dtype=tl.float32)
        acc_max = tl.full([BLOCK_P, BLOCK_K], float("-inf"), dtype=tl.float32)
        for p0 in range(0, P, BLOCK_P):
            parts = p0 + part_range.to(tl.int64)
            mask = (parts < P)[:, None] & col_mask[None, :]
            offsets = tl.multiple_of(parts * K, ALIGN)
            partial = tl.load(columns_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
            acc_p += tl.maximum(partial, 0.0)  # a program's Σ p where positive; its max log p (≤ 0) counts 0
            acc_max = tl.maximum(acc_max, partial)  # every program's partial ≤ 0 where C_k = 0: max_b log p_bk
        column_p = tl.sum(acc_p, axis=0)
        positive = column_p > 0.0
        log_q = tl.where(positive, tl.log(tl.where(positive, column_p, 1.0)), tl.max(acc_max, axis=0)) - log_batch
        tl.store(log_marginal_ptr + cols, log_q, mask=col_mask)
        cross += column_p * tl.where(positive, log_q, 0.0)
    tl.store(score_ptr, tl.exp((tl.sum(plogp, axis=0) - tl.sum(cross, axis=0)) * inv_batch))


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
    """dlogits_bj = grad · S/B · p_bj · (log p_bj − log q_j − KL_b), 0 where p_bj = 0 (a −inf logit: 0·log 0 counts
    0 in KL_b too); program i takes row blocks i, i + P, ...

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
            d = tl.where(p > 0.0, log_p - log_q[None, :], 0.0)  # 0·log 0 counts 0, as in the forward
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
                cols = k0 + col_range  # int32 (K < 2³¹): int64 column indices lose their contiguity (scalar loads)
                col_mask = cols < k_bound
                mask = row_mask[:, None] & col_mask[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                log_q = tl.load(log_marginal_ptr + cols, mask=col_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                p = tl.exp(log_p)  # 0 wherever masked
                acc_kl += p * tl.where(p > 0.0, log_p - log_q[None, :], 0.0)
            kl = tl.sum(acc_kl, axis=1)
            for k0 in range(0, K, BLOCK_K):
                cols = k0 + col_range  # int32 (K < 2³¹): int64 column indices lose their contiguity (scalar loads)
                col_mask = cols < k_bound
                mask = row_mask[:, None] & col_mask[None, :]
                x = tl.load(logits_ptr + offsets[:, None] + cols[None, :], mask=mask, other=float("-inf"))
                log_q = tl.load(log_marginal_ptr + cols, mask=col_mask, other=0.0)
                log_p = (x.to(tl.float32) - m[:, None]) - z[:, None]
                p = tl.exp(log_p)
                d = tl.where(p > 0.0, log_p - log_q[None, :], 0.0)
                dl = coefficient * p * (d - kl[:, None])
                tl.store(
                    dlogits_ptr + out_offsets[:, None] + cols[None, :], dl.to(dlogits_ptr.dtype.element_ty), mask=mask
                )


@functools.cache  # asked per launch: no Triton host helpers once a shape is seen
def _blocks(classes: int, tile: int) -> tuple[int, int, bool]:
    """(BLOCK_B, BLOCK_K, WHOLE_ROWS) for `classes` columns; independent of the batch size (one compile per K)."""
    block_k = triton.next_power_of_2(classes)
    if block_k <= tile:
        return max(1, tile // block_k), block_k, True
    return SPLIT_ROWS, max(1, tile // SPLIT_ROWS), False


@functools.cache
def _row_align(element_size: int, *strides: int) -> int:
    """The largest power of two ≤ one 16-byte vector (in elements) dividing every row stride and K."""
    align = 16 // element_size
    while align > 1 and any(stride % align for stride in strides):
        align //= 2
    return align


@functools.cache
def _programs(batch: int, block_b: int) -> int:
    """Row groups of the backward kernel (and the most the forward's partials kernel takes): about
    ROWS_PER_PROGRAM rows each, at least one row block."""
    return min(triton.cdiv(batch, block_b), max(1, triton.cdiv(batch, ROWS_PER_PROGRAM)))


@functools.cache
def _forward_programs(batch: int, classes: int, block_b: int, element_size: int) -> int:
    """Programs of the partials kernel: the backward's row groups, fewer where their partials would add more than
    PARTIALS_BUDGET of the logits' bytes (or exceed MAX_FORWARD_PROGRAMS); at least one."""
    partials = 2 * (classes + 1) * 4  # one program's column partials and plogp, written and read back
    affordable = int(PARTIALS_BUDGET * batch * classes * element_size) // partials
    return max(1, min(_programs(batch, block_b), affordable, MAX_FORWARD_PROGRAMS))


def launch_plan(batch: int, classes: int, element_size: int = 4, tile: int = TILE) -> dict[str, int | bool]:
    """The tiles and grids the launchers use for (batch, classes) logits of `element_size` bytes (also what
    `traffic` counts)."""
    block_b, block_k, whole = _blocks(classes, tile)
    return {
        "block_b": block_b,
        "block_k": block_k,
        "whole_rows": whole,
        "row_blocks": triton.cdiv(batch, block_b),
        "k_blocks": triton.cdiv(classes, block_k),
        "forward_programs": _forward_programs(batch, classes, block_b, element_size),
        "backward_programs": _programs(batch, block_b),
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


def forward(
    logits: torch.Tensor, *, tile: int = TILE, programs: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Two launches: (score () fp32, row_stats (2, B) fp32, log_marginal (K,) fp32) from (B, K) fp32/fp16/bf16
    logits; row_stats = (row max m, log Σ exp(l − m)), so that row_stats.sum(0) is the row log-sum-exp.

    `tile` bounds BLOCK_B · BLOCK_K (a power of two; smaller values force the two-pass path) and `programs` sets
    the partials kernel's grid (at most one per row block) instead of `launch_plan`'s choice: both for tests.
    """
    _check_logits(logits, "forward")
    batch, classes = logits.shape
    block_b, block_k, whole = _blocks(classes, tile)
    if programs is None:
        programs = _forward_programs(batch, classes, block_b, logits.element_size())
    else:
        programs = max(1, min(programs, triton.cdiv(batch, block_b)))
    fp32 = dict(device=logits.device, dtype=torch.float32)
    score, row_stats = torch.empty((), **fp32), torch.empty(2, batch, **fp32)
    log_marginal = torch.empty(classes, **fp32)
    columns, plogp = torch.empty(programs, classes, **fp32), torch.empty(programs, **fp32)
    stride_lb = logits.stride(0) if batch > 1 else classes
    on_device_of(mobilenet_score_partials_kernel, logits, row_stats)[(programs,)](
        logits,
        row_stats,
        columns,
        plogp,
        batch,
        classes,
        stride_lb,
        BLOCK_B=block_b,
        BLOCK_K=block_k,
        WHOLE_ROWS=whole,
        ROW_ALIGN=_row_align(logits.element_size(), stride_lb, classes),
        num_warps=NUM_WARPS,
    )
    on_device_of(mobilenet_score_finalize_kernel, columns, score)[(1,)](
        columns,
        plogp,
        score,
        log_marginal,
        programs,
        classes,
        1.0 / batch,
        math.log(batch),
        BLOCK_P=block_b,
        BLOCK_K=block_k,
        ALIGN=_row_align(4, classes),
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
    programs = _programs(batch, block_b)
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
#: Batch of the specialisations `aot_builds` compiles (a multiple of 16, as the JIT sees it).
AOT_BATCH = 128


def _finalize_build(size: int, classes: int, block_b: int, block_k: int, label: str) -> KernelBuild:
    """The finalize kernel as `forward` launches it for (AOT_BATCH, classes) logits of `size`-byte elements (the
    kernel reads only fp32 partials; the element size sets how many there are). P = 1 is a constant to the JIT."""
    programs = _forward_programs(AOT_BATCH, classes, block_b, size)
    constexprs = {"BLOCK_P": block_b, "BLOCK_K": block_k, "ALIGN": _row_align(4, classes)}
    signature = {"columns_ptr": "*fp32", "plogp_ptr": "*fp32", "score_ptr": "*fp32", "log_marginal_ptr": "*fp32"}
    signature |= {"P": "i32", "K": "i32", "inv_batch": "fp32", "log_batch": "fp32"}
    if programs == 1:
        signature["P"], constexprs["P"] = "constexpr", 1
    signature |= {name: "constexpr" for name in ("BLOCK_P", "BLOCK_K", "ALIGN")}
    return KernelBuild(mobilenet_score_finalize_kernel, signature, constexprs, label, NUM_WARPS)


def aot_builds() -> list[KernelBuild]:
    """The three kernels as the launchers specialise them for contiguous fp32/fp16/bf16 (AOT_BATCH, K) logits, K in
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
            label = f"{ty} B={AOT_BATCH} K={classes}"
            builds.append(
                KernelBuild(
                    mobilenet_score_partials_kernel,
                    {"logits_ptr": f"*{ty}", "row_stats_ptr": "*fp32", "columns_ptr": "*fp32", "plogp_ptr": "*fp32"}
                    | {"B": "i32", "K": "i32", "stride_lb": "i32"}
                    | flags,
                    constexprs,
                    label,
                    NUM_WARPS,
                    multiples_of_16=("B",),
                )
            )
            builds.append(_finalize_build(size, classes, block_b, block_k, label))
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
                    label,
                    NUM_WARPS,
                    multiples_of_16=("B",),
                )
            )
    return builds
