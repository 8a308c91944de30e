"""Which NVIDIA GPU this process sees, asked of the CUDA runtime through cuda-python (no torch).

TensorRT engines only run on the GPU model that built them, so the engine cache keys them by `GpuInfo`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

#: What needs a GPU, and what runs without one: said by every "no GPU" error.
_NEEDS_GPU = (
    "TensorRT engines (python -m fastgan.export trt, --backend tensorrt) and the CUDA device buffers need one; "
    "use --backend torch or onnxruntime on this machine"
)


class NoCudaDeviceError(RuntimeError):
    """No usable NVIDIA GPU: cuda-python is missing, no driver is loaded, or the device index does not exist."""


@dataclass(frozen=True)
class GpuInfo:
    """Identity of one CUDA device, as far as a TensorRT engine cares.

    Attributes:
        name: the device name the driver reports, e.g. ``"NVIDIA H100 80GB HBM3"``.
        compute_capability: (major, minor), e.g. ``(9, 0)`` for sm_90.

    Not the memory size: ECC or a driver can change what is reported, while the engine stays valid.
    """

    name: str
    compute_capability: tuple[int, int]

    @property
    def arch(self) -> str:
        """The SM architecture, e.g. ``"sm_90"``."""
        major, minor = self.compute_capability
        return f"sm_{major}{minor}"

    @property
    def tag(self) -> str:
        """Filesystem-safe name and architecture, e.g. ``"NVIDIA-H100-80GB-HBM3-sm90"``."""
        major, minor = self.compute_capability
        return f"{re.sub(r'[^A-Za-z0-9]+', '-', self.name).strip('-')}-sm{major}{minor}"


def _cuda_runtime():
    try:
        from cuda.bindings import runtime
    except ImportError as error:
        raise NoCudaDeviceError(
            f"cuda-python is not installed, so no GPU can be queried: pip install cuda-python. {_NEEDS_GPU}"
        ) from error
    return runtime


def current_gpu(device: int = 0) -> GpuInfo:
    """Name, compute capability and memory of CUDA device `device`.

    Args:
        device: CUDA device index (as in ``CUDA_VISIBLE_DEVICES`` order).

    Returns:
        The device's `GpuInfo`.

    Raises:
        NoCudaDeviceError: cuda-python is missing, no NVIDIA driver or GPU is visible, or `device` does not exist.
    """
    runtime = _cuda_runtime()
    success = runtime.cudaError_t.cudaSuccess
    error, count = runtime.cudaGetDeviceCount()
    if error != success:
        raise NoCudaDeviceError(f"no NVIDIA GPU or driver is visible (CUDA runtime: {error.name}). {_NEEDS_GPU}")
    if count == 0:
        raise NoCudaDeviceError(f"the NVIDIA driver is loaded but sees no GPU. {_NEEDS_GPU}")
    if not 0 <= device < count:
        raise NoCudaDeviceError(f"CUDA device {device} does not exist: this machine has {count} (0 to {count - 1})")
    error, properties = runtime.cudaGetDeviceProperties(device)
    if error != success:
        raise NoCudaDeviceError(f"cannot query CUDA device {device}: {error.name}")
    name = properties.name
    if isinstance(name, bytes):
        name = name.split(b"\0", 1)[0].decode(errors="replace")
    return GpuInfo(name, (int(properties.major), int(properties.minor)))


def cuda_available(device: int = 0) -> bool:
    """Whether `current_gpu(device)` would succeed (cuda-python installed, driver loaded, device present)."""
    try:
        current_gpu(device)
    except NoCudaDeviceError:
        return False
    return True
