"""Evaluation arithmetic in true fp32, as the reference FID and Inception-score code computes its features."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from fastgan.ops.autocast import without_autocast

#: The per-operator float32 settings of torch ≥ 2.9 (`torch.backends.<backend>.<operator>.fp32_precision`).
PER_OPERATOR = (
    ("cuda", "matmul"),
    ("cudnn", "conv"),
    ("cudnn", "rnn"),
    ("mkldnn", "matmul"),
    ("mkldnn", "conv"),
    ("mkldnn", "rnn"),
)


def _per_operator_api_in_use() -> bool:
    """Whether the caller set float32 precision through torch ≥ 2.9's per-operator API: the legacy reads raise, a
    backend or the whole of torch has a setting of its own, or an operator says what the legacy API never writes
    there."""
    try:
        torch.get_float32_matmul_precision()
        torch.backends.cudnn.allow_tf32  # noqa: B018 (a read that raises after a mix of the two APIs)
    except RuntimeError:
        return True
    levels = (torch.backends, torch.backends.cudnn, torch.backends.mkldnn)
    cudnn = (torch.backends.cudnn.conv, torch.backends.cudnn.rnn)  # the legacy API writes "tf32" or "none" there
    onednn = (torch.backends.mkldnn.conv, torch.backends.mkldnn.rnn)  # and nothing there
    return (
        any(level.fp32_precision != "none" for level in levels)
        or any(operator.fp32_precision not in ("none", "tf32") for operator in cudnn)
        or any(operator.fp32_precision != "none" for operator in onednn)
    )


@contextlib.contextmanager
def _legacy_ieee_fp32() -> Iterator[None]:
    """Matrix products at "highest" precision and cuDNN's TF32 off through the legacy API, both restored after."""
    saved = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
    torch.set_float32_matmul_precision("highest")
    torch.backends.cudnn.allow_tf32 = False  # alone: cudnn.flags() would reset its other settings to defaults inside
    try:
        yield
    finally:
        torch.set_float32_matmul_precision(saved[0])
        torch.backends.cudnn.allow_tf32 = saved[1]


@contextlib.contextmanager
def _ieee_fp32() -> Iterator[None]:
    """Every float32 matrix product and convolution in IEEE fp32 (no TF32 on CUDA/cuDNN, no bf16 passes in oneDNN),
    the caller's settings restored after, through the API the caller used: the legacy one (whose flags TorchInductor
    and others read, which raises once a per-operator setting says "ieee"), or the per-operator one (which the
    legacy flags no longer reach: with `torch.backends.fp32_precision = "tf32"`, `cudnn.allow_tf32 = False` leaves
    convolutions in TF32)."""
    if not hasattr(torch.backends.cudnn, "conv"):  # torch < 2.9: the legacy API only
        with _legacy_ieee_fp32():
            yield
        return
    settings = [getattr(getattr(torch.backends, backend), operator) for backend, operator in PER_OPERATOR]
    saved = [setting.fp32_precision for setting in settings]
    if not _per_operator_api_in_use():
        try:
            with _legacy_ieee_fp32():
                yield
        finally:  # exactly as they were: the legacy setters write "ieee" where "none" stood
            for setting, value in zip(settings, saved, strict=True):
                setting.fp32_precision = value
        return
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
