"""Evaluation arithmetic in true fp32, as the reference FID and Inception-score code computes its features."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


def tf32_switches() -> list[tuple[object, str, object, object]]:
    """(holder, attribute, value now, value for IEEE fp32) of every TF32 switch of this torch: the per-operator
    `fp32_precision` API of torch ≥ 2.9 (which refuses reads of the legacy flags once it is used), else the legacy
    `allow_tf32` flags."""
    conv, matmul = getattr(torch.backends.cudnn, "conv", None), torch.backends.cuda.matmul
    if conv is not None and hasattr(conv, "fp32_precision") and hasattr(matmul, "fp32_precision"):
        return [(holder, "fp32_precision", holder.fp32_precision, "ieee") for holder in (conv, matmul)]
    return [(holder, "allow_tf32", holder.allow_tf32, False) for holder in (torch.backends.cudnn, matmul)]


@contextlib.contextmanager
def exact_fp32(device_type: str) -> Iterator[None]:
    """Autocast off on `device_type`, and TF32 off for convolutions and matrix products (on by default for cuDNN
    convolutions on Ampere and newer, where it rounds their inputs to 10 mantissa bits); both restored after."""
    switches = tf32_switches()
    for holder, attribute, _, exact in switches:
        setattr(holder, attribute, exact)
    try:
        if torch.amp.is_autocast_available(device_type):
            with torch.autocast(device_type, enabled=False):
                yield
        else:
            yield
    finally:
        for holder, attribute, saved, _ in switches:
            setattr(holder, attribute, saved)
