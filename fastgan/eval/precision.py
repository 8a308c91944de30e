"""Evaluation arithmetic in true fp32, as the reference FID and Inception-score code computes its features."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off on `device_type`, and cuDNN's TF32 off (PyTorch's default for fp32 convolutions on Ampere and
    newer, which rounds their inputs to 10 mantissa bits); cuDNN's other settings kept, everything restored after.
    Matrix products already default to full fp32."""
    cudnn = torch.backends.cudnn
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            cudnn.flags(
                enabled=cudnn.enabled,
                benchmark=cudnn.benchmark,
                benchmark_limit=cudnn.benchmark_limit,
                deterministic=cudnn.deterministic,
                allow_tf32=False,
            )
        )
        if torch.amp.is_autocast_available(device_type):
            stack.enter_context(torch.autocast(device_type, enabled=False))
        yield
