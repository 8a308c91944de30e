"""Device memory for the TensorRT runtime, behind one small interface (`DeviceBuffers`) with three back-ends:

- ``"torch"``: torch CUDA tensors in and out (no copy when an input already lives on the GPU; outputs stay on
  the GPU);
- ``"cuda-python"``: numpy in and out through `cuda.bindings.runtime` (cudaMalloc, cudaMemcpyAsync on a private
  stream), for deployments that do not ship torch;
- ``"pycuda"``: numpy in and out through pycuda, for deployments already built on it.

Every back-end imports its library in its constructor, so this module imports anywhere. TensorRT tensor types map
to dtype names shared by numpy and torch (`DTYPE_NAMES`); numpy has no bfloat16, so bf16 engines need "torch".
TensorRT binds an engine and its execution context to the CUDA device current when they are made, so the runtime
does that, and every run, inside the back-end's `active` scope, which makes its device (or pycuda context) current
and restores the previous one afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: TensorRT's alignment for tensor addresses (bytes); the torch back-end copies inputs that start off it.
ADDRESS_ALIGNMENT = 256
#: TensorRT DataType name → the dtype name numpy and torch share (``np.dtype(n)``, ``getattr(torch, n)``).
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


def dtype_name(trt_dtype: Any) -> str:
    """The dtype name (a `DTYPE_NAMES` value) of a ``tensorrt.DataType``.

    Raises:
        TypeError: a TensorRT type with no numpy/torch counterpart here (FP8, INT4, FP4, ...).
    """
    name = trt_dtype.name
    if name not in DTYPE_NAMES:
        raise TypeError(
            f"engine tensors of TensorRT type {name} cannot be fed or read here (supported: "
            f"{', '.join(DTYPE_NAMES)}); keep such types inside the network, behind Q/DQ or Cast nodes"
        )
    return DTYPE_NAMES[name]


def array_dtype_name(array: Any) -> str:
    """The dtype name of a numpy array or torch tensor, e.g. ``"float16"``."""
    return str(array.dtype).removeprefix("torch.")


def numpy_dtype(name: str) -> np.dtype:
    """numpy's dtype for a dtype name.

    Raises:
        TypeError: ``"bfloat16"``, which numpy lacks.
    """
    if name == "bfloat16":
        raise TypeError("numpy has no bfloat16: run bf16 engines with buffers='torch' (torch CUDA tensors)")
    return np.dtype(name)


def _nbytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape, dtype=np.int64)) * numpy_dtype(dtype).itemsize


@dataclass
class DeviceArray:
    """A C-contiguous array in device memory.

    Attributes:
        ptr: device address (what ``IExecutionContext.set_tensor_address`` takes).
        shape: its shape.
        dtype: a `DTYPE_NAMES` value.
        owner: what keeps the memory (and, for uploads, the host source until the copy ran) alive.
    """

    ptr: int
    shape: tuple[int, ...]
    dtype: str
    owner: Any


class DeviceBuffers(Protocol):
    """What the TensorRT runtime needs from a device memory back-end. `upload`, `empty`, `download` and
    `synchronize` are called inside `active()` (pycuda has no current context outside it; cuda-python would
    allocate on whatever device the thread has current); `close` enters it itself."""

    @property
    def stream(self) -> int:
        """The CUDA stream handle copies and ``execute_async_v3`` run on."""
        ...

    def active(self) -> AbstractContextManager[None]:
        """A scope in which this back-end's device (and context) is current."""
        ...

    def upload(self, array: Any) -> DeviceArray:
        """Host (or, for torch, device) array → contiguous device array, queued on `stream`."""
        ...

    def empty(self, shape: tuple[int, ...], dtype: str) -> DeviceArray:
        """Uninitialised device array."""
        ...

    def download(self, array: DeviceArray) -> Any:
        """Device array → the back-end's array type, complete when returned."""
        ...

    def synchronize(self) -> None:
        """Wait for all work queued on `stream`."""
        ...

    def close(self) -> None:
        """Wait for the stream and release it if this back-end created it (idempotent)."""
        ...


class TorchBuffers:
    """torch CUDA tensors; outputs are returned as CUDA tensors.

    The engine runs on a private stream (TensorRT synchronises the whole device around the default stream), which
    waits for torch's current stream before each run, so inputs the caller just computed are complete.

    Args:
        device: CUDA device index.

    Raises:
        RuntimeError: torch is missing or sees no CUDA device.
    """

    def __init__(self, device: int = 0):
        try:
            import torch
        except ImportError as error:
            raise RuntimeError("buffers='torch' needs torch; without it use buffers='cuda-python'") from error
        if not torch.cuda.is_available():
            raise RuntimeError(
                "torch sees no CUDA device (no NVIDIA GPU or driver, or a CPU-only torch build): buffers='torch' "
                "needs one"
            )
        self._torch, self._device = torch, torch.device("cuda", device)
        self._stream = torch.cuda.Stream(self._device)

    @property
    def stream(self) -> int:
        return self._stream.cuda_stream

    def active(self) -> AbstractContextManager[None]:
        return self._torch.cuda.device(self._device)

    def upload(self, array: Any) -> DeviceArray:
        """A torch tensor (or numpy array) on this device, made contiguous (no copy if it already is and starts on
        TensorRT's address alignment), with the engine's stream ordered after its producer."""
        tensor = self._torch.as_tensor(array, device=self._device).contiguous()
        if tensor.data_ptr() % ADDRESS_ALIGNMENT:  # a view into a batch, e.g. batch[1:3]
            tensor = tensor.clone()
        self._stream.wait_stream(self._torch.cuda.current_stream(self._device))
        return DeviceArray(tensor.data_ptr(), tuple(tensor.shape), array_dtype_name(tensor), tensor)

    def empty(self, shape: tuple[int, ...], dtype: str) -> DeviceArray:
        tensor = self._torch.empty(shape, dtype=getattr(self._torch, dtype), device=self._device)
        return DeviceArray(tensor.data_ptr(), tuple(shape), dtype, tensor)

    def download(self, array: DeviceArray) -> Any:
        """The output tensor itself, on the GPU (complete once `synchronize` returned)."""
        return array.owner

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        """Wait for the engine's stream; torch owns the memory and the stream."""
        self.synchronize()


class _CudaMalloc:
    """A cudaMalloc'd block, freed when the last DeviceArray holding it goes away."""

    def __init__(self, runtime: Any, pointer: int):
        self._runtime, self.pointer, self.host = runtime, pointer, None

    def __del__(self) -> None:
        self._runtime.cudaFree(self.pointer)


class CudaPythonBuffers:
    """numpy host arrays and cudaMalloc'd device memory on a private stream, through cuda-python (no torch).

    Args:
        device: CUDA device index.

    Raises:
        RuntimeError: cuda-python is missing, or a CUDA call fails (the message names the call and its error).
    """

    def __init__(self, device: int = 0):
        try:
            from cuda.bindings import runtime
        except ImportError as error:
            raise RuntimeError("buffers='cuda-python' needs cuda-python: pip install cuda-python") from error
        self._runtime, self._device = runtime, device
        with self.active():
            self._stream_handle = self._check("cudaStreamCreate", runtime.cudaStreamCreate())

    def _check(self, call: str, result: tuple) -> Any:
        """`result`'s value after its cudaError_t, which must be cudaSuccess."""
        error, *values = result
        if error != self._runtime.cudaError_t.cudaSuccess:
            raise RuntimeError(f"{call} failed: {error.name} (is an NVIDIA GPU and driver present?)")
        return values[0] if values else None

    @property
    def stream(self) -> int:
        return int(self._stream_handle)

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """This device current for the calling thread (cudaSetDevice), the previous one again afterwards."""
        previous = self._check("cudaGetDevice", self._runtime.cudaGetDevice())
        self._check("cudaSetDevice", self._runtime.cudaSetDevice(self._device))
        try:
            yield
        finally:
            self._check("cudaSetDevice", self._runtime.cudaSetDevice(previous))

    def _allocate(self, shape: tuple[int, ...], dtype: str) -> DeviceArray:
        pointer = int(self._check("cudaMalloc", self._runtime.cudaMalloc(max(_nbytes(shape, dtype), 1))))
        return DeviceArray(pointer, tuple(shape), dtype, _CudaMalloc(self._runtime, pointer))

    def upload(self, array: Any) -> DeviceArray:
        """A numpy array (or anything `np.ascontiguousarray` takes) copied to the device on `stream`."""
        host = np.ascontiguousarray(array)
        device = self._allocate(host.shape, host.dtype.name)
        kind = self._runtime.cudaMemcpyKind.cudaMemcpyHostToDevice
        copy = self._runtime.cudaMemcpyAsync(device.ptr, host.ctypes.data, host.nbytes, kind, self._stream_handle)
        self._check("cudaMemcpyAsync (host to device)", copy)
        device.owner.host = host  # the source must outlive the queued copy
        return device

    def empty(self, shape: tuple[int, ...], dtype: str) -> DeviceArray:
        return self._allocate(shape, dtype)

    def download(self, array: DeviceArray) -> np.ndarray:
        """A new numpy array with the device array's contents, after the stream's queued work."""
        host = np.empty(array.shape, numpy_dtype(array.dtype))
        kind = self._runtime.cudaMemcpyKind.cudaMemcpyDeviceToHost
        copy = self._runtime.cudaMemcpyAsync(host.ctypes.data, array.ptr, host.nbytes, kind, self._stream_handle)
        self._check("cudaMemcpyAsync (device to host)", copy)
        self.synchronize()
        return host

    def synchronize(self) -> None:
        self._check("cudaStreamSynchronize", self._runtime.cudaStreamSynchronize(self._stream_handle))

    def close(self) -> None:
        """Wait for the stream, then destroy it."""
        if self._stream_handle is not None:
            with self.active():
                self.synchronize()
                self._check("cudaStreamDestroy", self._runtime.cudaStreamDestroy(self._stream_handle))
            self._stream_handle = None


class PyCudaBuffers:
    """numpy host arrays and pycuda device allocations on a pycuda stream, in the device's primary context (the one
    TensorRT and the CUDA runtime use). The context is current only inside `active` (pycuda aborts the process at
    exit if a context it pushed is still on the stack).

    Args:
        device: CUDA device index.

    Raises:
        RuntimeError: pycuda is missing.
    """

    def __init__(self, device: int = 0):
        try:
            import pycuda.driver as cuda
        except ImportError as error:
            raise RuntimeError(
                "buffers='pycuda' needs pycuda: pip install pycuda (it builds against the CUDA toolkit and the "
                "driver's libcuda); buffers='cuda-python' needs neither"
            ) from error
        cuda.init()
        self._cuda = cuda
        self._context = cuda.Device(device).retain_primary_context()
        with self.active():
            self._stream = cuda.Stream()

    @property
    def stream(self) -> int:
        return self._stream.handle

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        """The primary context pushed for the enclosed work, popped afterwards."""
        self._context.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def upload(self, array: Any) -> DeviceArray:
        """A numpy array (or anything `np.ascontiguousarray` takes) copied to the device on `stream`."""
        host = np.ascontiguousarray(array)
        allocation = self._cuda.mem_alloc(max(host.nbytes, 1))
        self._cuda.memcpy_htod_async(allocation, host, self._stream)
        return DeviceArray(int(allocation), host.shape, host.dtype.name, (allocation, host))

    def empty(self, shape: tuple[int, ...], dtype: str) -> DeviceArray:
        allocation = self._cuda.mem_alloc(max(_nbytes(shape, dtype), 1))
        return DeviceArray(int(allocation), tuple(shape), dtype, (allocation, None))

    def download(self, array: DeviceArray) -> np.ndarray:
        """A new numpy array with the device array's contents, after the stream's queued work."""
        host = np.empty(array.shape, numpy_dtype(array.dtype))
        self._cuda.memcpy_dtoh_async(host, array.owner[0], self._stream)
        self.synchronize()
        return host

    def synchronize(self) -> None:
        self._stream.synchronize()

    def close(self) -> None:
        """Wait for the stream (idempotent; the primary context stays with the device)."""
        if self._stream is not None:
            with self.active():
                self.synchronize()
            self._stream = None


BUFFERS = {"torch": TorchBuffers, "cuda-python": CudaPythonBuffers, "pycuda": PyCudaBuffers}


def make_buffers(kind: str, device: int = 0) -> DeviceBuffers:
    """The device buffer back-end called `kind` on CUDA device `device`.

    Args:
        kind: "torch", "cuda-python" or "pycuda".
        device: CUDA device index.

    Raises:
        ValueError: an unknown kind (the message lists the known ones).
        RuntimeError: the back-end's library is missing or sees no GPU.
    """
    if kind not in BUFFERS:
        raise ValueError(f"unknown buffer back-end {kind!r}; choose one of {', '.join(BUFFERS)}")
    return BUFFERS[kind](device)
