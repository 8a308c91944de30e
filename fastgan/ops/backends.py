"""Which implementation the fused ops run: chosen explicitly, never by an import-time side effect.

- ``"torch"``: the eager references (`<op>_ref`), plain torch autograd. The default.
- ``"fused-torch"``: the fused autograd Functions with torch arithmetic inside — the memory-saving backward
  without Triton (the MobileNet score instead computes its gradient with the score and keeps that), with no
  compile latency (what the tests check the Functions with).
- ``"fused-compiled"``: the same with the arithmetic compiled by `torch.compile` (dynamic shapes, compiled on
  first use, ~20 s per op on two cores): what ``--fused`` means on a machine without a GPU when a C++ compiler
  is available for TorchInductor.
- ``"triton"``: the fused autograd Functions launching the Triton kernels of `fastgan.kernels`:
  compiled on CUDA tensors, run by Triton's interpreter on CPU tensors (correct, but far too slow to train).

Inside a model compiled by `torch.compile` (``--compile``) every backend hands TorchInductor the ops' reference
arithmetic to fuse with the rest of the graph (`traced_by_compile`); the fused backends add what Inductor does not
do itself: the convolution by phases after up-sampling (`fastgan.ops.cbn_relu_upsample_conv`) and the strided
pooled convolution (`fastgan.ops.conv_avgpool`).
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import importlib
import os
import shutil
from collections.abc import Callable, Iterator
from types import ModuleType

import torch

BACKENDS = ("torch", "fused-torch", "fused-compiled", "triton")
_process_backend = "torch"
#: the innermost `backend(...)` block's choice, per thread and asyncio task (None outside any block)
_scoped_backend: contextvars.ContextVar[str | None] = contextvars.ContextVar("fastgan_ops_backend", default=None)


def _check(name: str) -> str:
    if name not in BACKENDS:
        raise ValueError(f"unknown ops backend {name!r}; choose one of {', '.join(BACKENDS)}")
    return name


def current_backend() -> str:
    """The backend the fused ops use now: the innermost enclosing `backend(...)` block's, else the process's."""
    return _scoped_backend.get() or _process_backend


def set_backend(name: str) -> None:
    """Select the ops backend for the whole process: every thread outside a `backend(...)` block."""
    global _process_backend
    _process_backend = _check(name)


@contextlib.contextmanager
def backend(name: str) -> Iterator[str]:
    """Run the enclosed code with the ops backend `name`, restoring the previous one afterwards. The choice holds in
    this thread (or asyncio task) alone: a server's other threads keep theirs while one benchmarks another."""
    token = _scoped_backend.set(_check(name))
    try:
        yield name
    finally:
        _scoped_backend.reset(token)


def traced_by_compile() -> bool:
    """Whether torch.compile is tracing the code that calls an op (a compiled model, not the "fused-compiled"
    kernels, which are compiled below the op). The op then returns its reference arithmetic, which TorchInductor
    fuses with its neighbours into its own kernels on any device, instead of an autograd Function whose kernels
    would break the graph."""
    return torch.compiler.is_compiling()


def cached_constant(build: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
    """`build` memoised by its (hashable) arguments, the device among them, for constant matrices the fused ops
    multiply by: a CUDA graph's warm-up calls fill the cache before the capture, and each tensor is made outside
    inference mode, so one first built during inference still serves autograd later."""

    @functools.cache
    def cached(*args) -> torch.Tensor:
        with torch.inference_mode(False):
            return build(*args)

    return cached


def fused_backend_for(device: torch.device) -> str:
    """What ``--fused`` selects on `device`: Triton kernels on CUDA; elsewhere the fused torch arithmetic, compiled
    by TorchInductor when a C++ compiler is on the PATH."""
    if torch.device(device).type == "cuda":
        return "triton"
    return "fused-compiled" if cpu_compiler_available() else "fused-torch"


def cpu_compiler_available() -> bool:
    """Whether TorchInductor can build CPU code here: a C++ compiler ($CXX, g++ or c++) on the PATH."""
    return bool(shutil.which(os.environ.get("CXX", "g++")) or shutil.which("c++"))


@functools.cache
def _compiled(torch_kernels: type) -> type:
    """A subclass of `torch_kernels` whose static methods are compiled by `torch.compile` (dynamic shapes), built
    once: all of them, or those its ``COMPILED`` names (the others stay torch arithmetic, where ATen's kernels are
    faster). Class methods are inherited, so one calling ``cls.<method>`` reaches the compiled method."""
    chosen = getattr(torch_kernels, "COMPILED", None)
    static = {name for name, member in vars(torch_kernels).items() if isinstance(member, staticmethod)}
    if chosen is not None and not static.issuperset(chosen):
        raise TypeError(f"{torch_kernels.__name__}.COMPILED names {sorted(set(chosen) - static)}: not static methods")
    methods = {
        name: staticmethod(_with_stable_guards(torch.compile(member.__func__, dynamic=True)))
        for name, member in vars(torch_kernels).items()
        if isinstance(member, staticmethod) and (chosen is None or name in chosen)
    }
    return type(f"Compiled{torch_kernels.__name__}", (torch_kernels,), methods)


def _with_stable_guards(compiled: Callable) -> Callable:
    """`compiled` called with its tensor arguments detached, and broadcast ones (a zero stride) materialised.

    The kernels run inside autograd Functions, below autograd, so neither changes a result; both remove a guard
    TorchDynamo would otherwise recompile on: `requires_grad` (the D step calls G without gradients, the G step
    with), and a zero stride, which it specialises (HRGAN's unconditional output BN expands one gain and bias to
    (N, C) where the class-conditional ones are (N, C) rows). Each recompile costs seconds of TorchInductor on a
    CPU, and after `torch._dynamo.config.recompile_limit` of them the function silently runs uncompiled.
    """

    @functools.wraps(compiled)
    def call(*args):
        return compiled(*(_guard_stable(a) if isinstance(a, torch.Tensor) else a for a in args))

    return call


def _guard_stable(tensor: torch.Tensor) -> torch.Tensor:
    tensor = tensor.detach()
    return tensor.contiguous() if 0 in tensor.stride() and tensor.numel() > 1 else tensor


def kernels_for(name: str, op: str, torch_kernels: type) -> ModuleType | type:
    """What a fused op's autograd Function calls: the launchers of `fastgan.kernels.<op>` for "triton" (imported
    only then: it needs Triton); `torch_kernels`, the op's torch arithmetic (the launchers' contract, or its
    own where its Function says so), for "fused-torch"; and that compiled for "fused-compiled"."""
    if name == "triton":
        return importlib.import_module(f"fastgan.kernels.{op}")
    return _compiled(torch_kernels) if name == "fused-compiled" else torch_kernels
