"""Evaluation arithmetic in true fp32, as the reference FID and Inception-score code computes its features."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fastgan.ops.autocast import without_autocast

#: The per-operator float32 settings of torch ≥ 2.9 (`torch.backends.<backend>.<operator>.fp32_precision`).
_PER_OPERATOR = (("cuda", "matmul"), ("cudnn", "conv"), ("cudnn", "rnn"), ("mkldnn", "matmul"), ("mkldnn", "conv"))


@contextlib.contextmanager
def _ieee_fp32() -> Iterator[None]:
    """Every float32 matrix product and convolution in IEEE fp32 (no TF32 on CUDA/cuDNN, no bf16 passes in
    oneDNN), each per-operator setting restored after, whichever API the caller set TF32 with: torch ≥ 2.9 maps the
    legacy one (`torch.set_float32_matmul_precision`, `cudnn.allow_tf32`) onto these settings, while writing the
    legacy flags after the new API was used raises, or leaves a setting the new API made untouched. Before 2.9,
    through the legacy API."""
    if not hasattr(torch.backends.cudnn, "conv"):
        saved = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")
        try:
            with torch.backends.cudnn.flags(
                enabled=torch.backends.cudnn.enabled,
                benchmark=torch.backends.cudnn.benchmark,
                deterministic=torch.backends.cudnn.deterministic,
                allow_tf32=False,
            ):
                yield
        finally:
            torch.set_float32_matmul_precision(saved)
        return
    settings = [getattr(getattr(torch.backends, backend), operator) for backend, operator in _PER_OPERATOR]
    saved = [setting.fp32_precision for setting in settings]
    for setting in settings:
        setting.fp32_precision = "ieee"
    try:
        yield
    finally:
        for setting, value in zip(settings, saved, strict=True):
            setting.fp32_precision = value


@contextlib.contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off on `device_type`, and matrix products and convolutions in IEEE fp32 (whatever the caller set,
    e.g. `torch.set_float32_matmul_precision("high")`, `torch.backends.fp32_precision = "tf32"` or
    `torch.backends.cuda.matmul.fp32_precision = "tf32"`); everything restored after."""
    with _ieee_fp32(), without_autocast(device_type):
        yield
