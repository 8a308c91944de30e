"""Which NVIDIA GPU this process sees, without torch (cuda-python's runtime bindings): engines are keyed by it."""

from __future__ import annotations

import re
from dataclasses import dataclass


class NoCudaDeviceError(RuntimeError):
    pass


@dataclass(frozen=True)
class GpuInfo:
    name: str
    compute_capability: tuple[int, int]
    total_memory_bytes: int

    @property
    def tag(self) -> str:
        """Filesystem-safe name and architecture, e.g. ``NVIDIA-H100-80GB-HBM3-sm90``."""
        major, minor = self.compute_capability
        return f"{re.sub(r'[^A-Za-z0-9]+', '-', self.name).strip('-')}-sm{major}{minor}"


def _runtime():
    try:
        from cuda.bindings import runtime
    except ImportError as error:
        raise NoCudaDeviceError(
            "cuda-python is not installed: pip install cuda-python (TensorRT paths need it)"
        ) from error
    return runtime


def current_gpu(device: int = 0) -> GpuInfo:
    """Name, compute capability and memory of CUDA device `device`.

    Raises:
        NoCudaDeviceError: no driver or no GPU is visible (TensorRT engines, the CUDA buffers and the CUDA
            benchmarks need one; the torch-CPU and onnxruntime paths do not).
    """
    runtime = _runtime()
    error, count = runtime.cudaGetDeviceCount()
    if error != runtime.cudaError_t.cudaSuccess or count == 0:
        raise NoCudaDeviceError(
            f"no NVIDIA GPU is visible ({error.name if error else 'no devices'}): TensorRT engines need one; "
            "use --backend torch or onnxruntime on this machine"
        )
    if not 0 <= device < count:
        raise NoCudaDeviceError(f"CUDA device {device} does not exist; this machine has {count}")
    error, properties = runtime.cudaGetDeviceProperties(device)
    if error != runtime.cudaError_t.cudaSuccess:
        raise NoCudaDeviceError(f"cannot query CUDA device {device}: {error.name}")
    name = properties.name.split(b"\0", 1)[0].decode() if isinstance(properties.name, bytes) else str(properties.name)
    return GpuInfo(name, (properties.major, properties.minor), int(properties.totalGlobalMem))


def cuda_available() -> bool:
    try:
        current_gpu()
    except NoCudaDeviceError:
        return False
    return True
