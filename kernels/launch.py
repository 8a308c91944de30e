"""Launching a Triton kernel on the tensors' device: compiled on CUDA, interpreted on the CPU."""

from __future__ import annotations

import functools

import torch
from triton.runtime.interpreter import InterpretedFunction
from triton.runtime.jit import JITFunction


@functools.cache
def _interpreted(kernel: JITFunction) -> InterpretedFunction:
    return InterpretedFunction(kernel.fn)


def on_device_of(kernel: JITFunction, *tensors: torch.Tensor) -> JITFunction | InterpretedFunction:
    """`kernel` ready to launch (``kernel[grid](...)``) on the device all `tensors` live on.

    CUDA tensors get the compiled kernel; CPU tensors get Triton's interpreter (how the kernels are tested
    without a GPU: exact semantics, but one Python-level pass per program, so keep grids small).

    Raises:
        ValueError: the tensors are on different devices, or on a device Triton cannot target.
    """
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"{kernel.__name__}: all tensors must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type == "cuda":
        return kernel
    if device.type == "cpu":
        return _interpreted(kernel)
    raise ValueError(f"{kernel.__name__}: Triton kernels run on CUDA (or interpreted on CPU), not on {device}")


def element_type(dtype: torch.dtype) -> str:
    """Triton's name for a torch floating dtype: ``torch.bfloat16`` -> ``"bf16"``."""
    names = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}
    if dtype not in names:
        raise ValueError(f"Triton kernels here take fp32, fp16 or bf16 tensors, got {dtype}")
    return names[dtype]
