"""The fused ops' view of autocast: the dtype it would convolve in, and a context that turns it off on any device
type (a no-op where autocast does not exist, e.g. the meta device the activation-memory measurements run on)."""

from __future__ import annotations

import contextlib

import torch


def autocast_dtype(device_type: str, default: torch.dtype) -> torch.dtype:
    """The dtype autocast would run a convolution in on `device_type`, or `default` outside autocast; float64
    operands `default` stays, as autocast leaves them."""
    if default == torch.float64:
        return default
    if torch.amp.is_autocast_available(device_type) and torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return default


def without_autocast(device_type: str) -> contextlib.AbstractContextManager:
    """Autocast off on `device_type` for the block's duration; nothing on device types autocast does not know."""
    if torch.amp.is_autocast_available(device_type):
        return torch.autocast(device_type, enabled=False)
    return contextlib.nullcontext()
