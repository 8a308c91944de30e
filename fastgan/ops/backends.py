"""Which implementation the fused ops run: chosen explicitly, never by an import-time side effect.

- ``"torch"``: the eager references (`<op>_ref`), plain torch autograd. The default.
- ``"fused-torch"``: the fused autograd Functions with torch arithmetic inside — the memory-saving
  backward without Triton; what ``--fused`` means on a machine without a GPU.
- ``"triton"``: the fused autograd Functions launching the Triton kernels of `fastgan.kernels`:
  compiled on CUDA tensors, run by Triton's interpreter on CPU tensors (correct, but far too slow to train).
"""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Iterator
from types import ModuleType

import torch

BACKENDS = ("torch", "fused-torch", "triton")
_current = "torch"


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ops backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def current_backend() -> str:
    """The backend the fused ops use now."""
    return _current


def set_backend(name: str) -> None:
    """Select the ops backend for the whole process."""
    global _current
    _current = _check(name)


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    """Run the enclosed code with the ops backend `name`, restoring the previous one afterwards."""
    global _current
    previous, _current = _current, _check(name)
    try:
        yield name
    finally:
        _current = previous


def fused_backend_for(device: torch.device) -> str:
    """What ``--fused`` selects on `device`: compiled Triton kernels on CUDA, fused torch arithmetic elsewhere."""
    return "triton" if torch.device(device).type == "cuda" else "fused-torch"


def kernels_for(name: str, op: str, torch_kernels: type) -> ModuleType | type:
    """What a fused op's autograd Function calls: the launchers of `fastgan.kernels.<op>` for "triton" (imported
    only then: it needs Triton), else `torch_kernels`, the same contract in torch arithmetic ("fused-torch")."""
    return importlib.import_module(f"fastgan.kernels.{op}") if name == "triton" else torch_kernels
