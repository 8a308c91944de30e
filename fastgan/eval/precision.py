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
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off on `device_type`, TF32 off for cuDNN convolutions and for matrix products (whatever the caller set,
    e.g. `torch.set_float32_matmul_precision("high")`); everything restored after."""
    matmul = torch.get_float32_matmul_precision()
    torch.set_float32_matmul_precision("highest")
    try:
        with contextlib.ExitStack() as stack:
            stack.enter_context(_cudnn_without_tf32())
            stack.enter_context(without_autocast(device_type))
            yield
    finally:
        torch.set_float32_matmul_precision(matmul)
