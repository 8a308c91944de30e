"""Launching a Triton kernel on the tensors' device: compiled on CUDA, interpreted on the CPU."""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator

import torch
from triton.runtime.interpreter import InterpretedFunction, _patch_lang
from triton.runtime.jit import JITFunction


@functools.cache
def _interpreted_python(fn: Callable) -> InterpretedFunction:
    return InterpretedFunction(fn)


def _interpreted(function: JITFunction) -> InterpretedFunction:
    """The interpreted twin of a jit'd function, cached by its Python function (JITFunction's hash compiles)."""
    return _interpreted_python(function.fn)


def _interpreted_device_call(function: JITFunction, *args, **kwargs):
    """A call from interpreted code to a jit'd function (e.g. `tl.zeros`, `tl.sum`), interpreted in turn."""
    scope = _patch_lang(function.fn)
    try:
        return _interpreted(function).rewrite()(*args, **kwargs)
    finally:
        scope.restore()


@contextlib.contextmanager
def _device_calls_interpreted() -> Iterator[None]:
    """Interpret jit'd device functions while an interpreted kernel runs.

    Triton decides at decoration time whether `@triton.jit` builds a compiled or an interpreted function, so
    in a process that was not started with ``TRITON_INTERPRET=1`` (the normal case: the same process compiles
    for CUDA tensors) `triton.language`'s own jit'd helpers are compiled-only; this routes their calls from
    interpreted code through the interpreter, restoring everything afterwards.

    It patches `JITFunction.__call__` for the process while the kernel runs (not thread-safe: interpret from
    one thread) and uses the interpreter's private `_patch_lang`, as in triton 3.8 (tested with 3.8.0).
    """
    compiled_call = JITFunction.__call__
    JITFunction.__call__ = _interpreted_device_call
    try:
        yield
    finally:
        JITFunction.__call__ = compiled_call


class _InterpretedKernel:
    """``kernel[grid](*args)`` run by Triton's interpreter on CPU tensors."""

    def __init__(self, kernel: JITFunction):
        self._function = _interpreted(kernel)

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def launch(*args, **kwargs) -> None:
            with _device_calls_interpreted():
                self._function[grid](*args, **kwargs)

        return launch


class _OnAnotherGPU:
    """``kernel[grid](*args)`` launched with `device` made the current CUDA device for the launch."""

    def __init__(self, kernel: JITFunction, device: torch.device):
        self._kernel, self._device = kernel, device

    def __getitem__(self, grid: tuple[int, ...]) -> Callable[..., None]:
        def launch(*args, **kwargs) -> None:
            with torch.cuda.device(self._device):
                self._kernel[grid](*args, **kwargs)

        return launch


def on_device_of(kernel: JITFunction, *tensors: torch.Tensor) -> JITFunction | _OnAnotherGPU | _InterpretedKernel:
    """`kernel` ready to launch (``kernel[grid](...)``) on the device all `tensors` live on.

    CUDA tensors get the compiled kernel, launched on their GPU's current stream: Triton launches on the current
    device, so tensors on another GPU (``train.device=cuda:1``) make theirs current for the launch. CPU tensors
    get Triton's interpreter (how the kernels are tested without a GPU: exact semantics, but one Python-level
    pass per program, so keep grids small).

    Raises:
        ValueError: the tensors are on different devices, or on a device Triton cannot target.
    """
    devices = {t.device for t in tensors}
    if len(devices) != 1:
        raise ValueError(f"{kernel.__name__}: all tensors must be on one device, got {sorted(map(str, devices))}")
    device = devices.pop()
    if device.type == "cuda":
        return kernel if device.index == torch.cuda.current_device() else _OnAnotherGPU(kernel, device)
    if device.type == "cpu":
        return _InterpretedKernel(kernel)
    raise ValueError(f"{kernel.__name__}: Triton kernels run on CUDA (or interpreted on CPU), not on {device}")


#: Triton's names of the torch dtypes the kernels take.
_ELEMENT_TYPES = {torch.float32: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def element_type(dtype: torch.dtype) -> str:
    """Triton's name for a torch floating dtype: ``torch.bfloat16`` -> ``"bf16"``."""
    if dtype not in _ELEMENT_TYPES:
        raise ValueError(f"Triton kernels here take fp32, fp16 or bf16 tensors, got {dtype}")
    return _ELEMENT_TYPES[dtype]


def with_int32_offsets(tensor: torch.Tensor, extents: dict[int, int]) -> torch.Tensor:
    """`tensor`, or a contiguous copy when a kernel's in-plane offsets would overflow int32.

    Kernels address a plane from an int64 base with int32 offsets Σ index_d · stride_d over the dims in
    `extents` ({dim: how many indices the kernel spans along it}); unusual permuted views of large tensors can
    exceed 2³¹, and those get copied. A contiguous tensor of fewer than 2³¹ elements returns at once (its span is
    below its size): this runs on every launch.
    """
    if tensor.numel() < 2**31 and tensor.is_contiguous():
        return tensor
    span = sum((extent - 1) * tensor.stride(dim) for dim, extent in extents.items())
    return tensor if span < 2**31 else tensor.contiguous()
