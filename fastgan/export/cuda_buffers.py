"""Device memory for the TensorRT runtime, behind one small interface with three back-ends:

- ``"torch"``: torch CUDA tensors in and out (no copy when the input already lives on the GPU);
- ``"cuda-python"``: numpy in and out through `cuda.bindings.runtime`, for deployments that do not ship torch
  (what TensorRT's own samples use);
- ``"pycuda"``: the same through pycuda, for deployments already built on it.

Every back-end imports its library lazily, so this module imports anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: TensorRT DataType name → numpy dtype name (bfloat16 has no numpy dtype: torch buffers only).
DTYPE_NAMES = {
    "FLOAT": "float32",
    "HALF": "float16",
    "BF16": "bfloat16",
    "INT64": "int64",
    "INT32": "int32",
    "INT8": "int8",
    "UINT8": "uint8",
    "BOOL": "bool",
}


@dataclass
class DeviceArray:
    ptr: int
    shape: tuple[int, ...]
    dtype: str  # a DTYPE_NAMES value
    handle: Any  # what keeps the memory alive: a torch tensor, a device allocation


class DeviceBuffers(Protocol):
    stream: int

    def upload(self, array: Any) -> DeviceArray: ...

    def empty(self, shape: tuple[int, ...], dtype: str) -> DeviceArray: ...

    def download(self, array: DeviceArray) -> Any: ...

    def synchronize(self) -> None: ...


class TorchBuffers:
    """torch CUDA tensors on torch's current stream."""

    def __init__(self, device: int = 0):
        import torch

        if not torch.cuda.is_available():
            raise RuntimeError("torch sees no CUDA device; TensorRT buffers need one")
        self.torch, self.device = torch, torch.device("cuda", device)
        self.stream = torch.cuda.current_stream(self.device).cuda_stream

    def upload(self, array) -> DeviceArray:
        tensor = self.torch.as_tensor(array).to(self.device).contiguous()
        return DeviceArray(tensor.data_ptr(), tuple(tensor.shape), str(tensor.dtype).removeprefix("torch."), tensor)

    def empty(self, shape, dtype) -> DeviceArray:
        tensor = self.torch.empty(shape, dtype=getattr(self.torch, dtype), device=self.device)
        return DeviceArray(tensor.data_ptr(), tuple(shape), dtype, tensor)

    def download(self, array: DeviceArray):
        return array.handle

    def synchronize(self) -> None:
        self.torch.cuda.current_stream(self.device).synchronize()


def _numpy_dtype(dtype: str) -> np.dtype:
    if dtype == "bfloat16":
        raise ValueError("numpy has no bfloat16: run bf16 engines with buffers='torch'")
    return np.dtype(dtype)


class CudaPythonBuffers:
    """numpy host arrays and cudaMalloc'd device memory on a private stream (cuda-python, no torch)."""

    def __init__(self, device: int = 0):
        from cuda.bindings import runtime

        self.runtime = runtime
        self._check(runtime.cudaSetDevice(device))
        self.stream = int(self._check(runtime.cudaStreamCreate()))

    def _check(self, result):
        error, *values = result if isinstance(result, tuple) else (result,)
        if error != self.runtime.cudaError_t.cudaSuccess:
            raise RuntimeError(f"CUDA call failed: {error.name}")
        return values[0] if len(values) == 1 else values

    def _allocate(self, shape, dtype: str) -> DeviceArray:
        size = int(np.prod(shape)) * _numpy_dtype(dtype).itemsize
        pointer = int(self._check(self.runtime.cudaMalloc(max(size, 1))))
        return DeviceArray(pointer, tuple(shape), dtype, _Allocation(self.runtime, pointer))

    def upload(self, array) -> DeviceArray:
        host = np.ascontiguousarray(array)
        device = self._allocate(host.shape, host.dtype.name)
        kind = self.runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        self._check(self.runtime.cudaMemcpyAsync(device.ptr, host.ctypes.data, host.nbytes, kind, self.stream))
        device.handle.host = host  # keep the source alive until the copy has run
        return device

    def empty(self, shape, dtype) -> DeviceArray:
        return self._allocate(shape, dtype)

    def download(self, array: DeviceArray) -> np.ndarray:
        host = np.empty(array.shape, _numpy_dtype(array.dtype))
        kind = self.runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        self._check(self.runtime.cudaMemcpyAsync(host.ctypes.data, array.ptr, host.nbytes, kind, self.stream))
        self.synchronize()
        return host

    def synchronize(self) -> None:
        self._check(self.runtime.cudaStreamSynchronize(self.stream))


class _Allocation:
    """Frees a cudaMalloc'd block when the DeviceArray holding it goes away."""

    def __init__(self, runtime, pointer: int):
        self.runtime, self.pointer, self.host = runtime, pointer, None

    def __del__(self):
        self.runtime.cudaFree(self.pointer)


class PyCudaBuffers:
    """numpy host arrays and pycuda device allocations on a pycuda stream."""

    def __init__(self, device: int = 0):
        import pycuda.driver as cuda

        cuda.init()
        self.cuda = cuda
        self.context = cuda.Device(device).retain_primary_context()
        self.context.push()
        self._stream = cuda.Stream()
        self.stream = self._stream.handle

    def upload(self, array) -> DeviceArray:
        host = np.ascontiguousarray(array)
        allocation = self.cuda.mem_alloc(max(host.nbytes, 1))
        self.cuda.memcpy_htod_async(allocation, host, self._stream)
        return DeviceArray(int(allocation), host.shape, host.dtype.name, (allocation, host))

    def empty(self, shape, dtype) -> DeviceArray:
        allocation = self.cuda.mem_alloc(max(int(np.prod(shape)) * _numpy_dtype(dtype).itemsize, 1))
        return DeviceArray(int(allocation), tuple(shape), dtype, (allocation, None))

    def download(self, array: DeviceArray) -> np.ndarray:
        host = np.empty(array.shape, _numpy_dtype(array.dtype))
        self.cuda.memcpy_dtoh_async(host, array.handle[0], self._stream)
        self.synchronize()
        return host

    def synchronize(self) -> None:
        self._stream.synchronize()


BUFFERS = {"torch": TorchBuffers, "cuda-python": CudaPythonBuffers, "pycuda": PyCudaBuffers}


def make_buffers(kind: str, device: int = 0) -> DeviceBuffers:
    if kind not in BUFFERS:
        raise ValueError(f"unknown buffer back-end {kind!r}; choose one of {', '.join(BUFFERS)}")
    return BUFFERS[kind](device)
