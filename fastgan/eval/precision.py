"""Evaluation arithmetic in true fp32, as the reference FID and Inception-score code computes its features."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fastgan.ops.autocast import without_autocast


@contextlib.contextmanager
def _cudnn_without_tf32() -> Iterator[None]:
    """cuDNN's TF32 off (PyTorch's default for fp32 convolutions on Ampere and newer), its other settings kept.

    Through the legacy flags (`torch.backends.cudnn.flags`), or, when the caller has set TF32 through torch ≥ 2.9's
    per-operator API (which makes legacy reads raise), through that API.
    """
    cudnn = torch.backends.cudnn
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(
                cudnn.flags(
                    enabled=cudnn.enabled,
                    benchmark=cudnn.benchmark,
                    benchmark_limit=cudnn.benchmark_limit,
                    deterministic=cudnn.deterministic,
                    allow_tf32=False,
                )
            )
        except RuntimeError:  # "... a mix of the legacy and new APIs to set the TF32 flags"
            saved = cudnn.conv.fp32_precision, cudnn.rnn.fp32_precision
            cudnn.conv.fp32_precision = cudnn.rnn.fp32_precision = "ieee"
            stack.callback(setattr, cudnn.rnn, "fp32_precision", saved[1])
            stack.callback(setattr, cudnn.conv, "fp32_precision", saved[0])
        yield


@contextlib.contextmanager
def _matmul_without_tf32() -> Iterator[None]:
    """Matrix products in true fp32 (no TF32, no bf16 passes) on CUDA and on the CPU, the caller's setting restored:
    the legacy `torch.set_float32_matmul_precision`, or, when the caller has set the per-backend API (which makes
    legacy reads raise), the per-backend values."""
    try:
        saved = torch.get_float32_matmul_precision()
    except RuntimeError:  # "... checking the matmul precision without a specific backend name ..."
        backends = torch.backends.cuda.matmul, torch.backends.mkldnn.matmul
        values = [backend.fp32_precision for backend in backends]
        for backend in backends:
            backend.fp32_precision = "ieee"
        try:
            yield
        finally:
            for backend, value in zip(backends, values, strict=True):
                backend.fp32_precision = value
        return
    torch.set_float32_matmul_precision("highest")
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved)


@contextlib.contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off on `device_type`, TF32 off for cuDNN convolutions and for matrix products (whatever the caller set,
    e.g. `torch.set_float32_matmul_precision("high")` or `torch.backends.cuda.matmul.fp32_precision = "tf32"`);
    everything restored after."""
    with contextlib.ExitStack() as stack:
        stack.enter_context(_matmul_without_tf32())
        stack.enter_context(_cudnn_without_tf32())
        stack.enter_context(without_autocast(device_type))
        yield
