"""Ahead-of-time compilation of the kernels for real GPUs (no GPU needed) and what ptxas says about them."""

from __future__ import annotations

import collections
import dataclasses
import importlib
import os
import re
import subprocess
import tempfile

import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
from triton.runtime.jit import JITFunction

#: The modules of `fastgan.kernels` exposing ``aot_builds() -> list[KernelBuild]``, one per op
#: (`cbn_relu_upsample.aot_builds` also builds the channels-last kernels of `cbn_relu_upsample_nhwc`).
KERNEL_MODULES = ("cbn_relu_upsample", "pixel_shuffle_prelu", "mobilenet_score")
#: Compute capabilities every kernel must compile for: A100 (sm_80) and H100 (sm_90).
CAPABILITIES = (80, 90)


@dataclasses.dataclass(frozen=True)
class KernelBuild:
    """One specialisation of a kernel as its launcher uses it.

    Attributes:
        kernel: the ``@triton.jit`` function.
        signature: argument name -> Triton type (``"*bf16"``, ``"i32"``, ``"fp32"``, ``"constexpr"``).
        constexprs: values of the constexpr arguments.
        label: what distinguishes this build in reports, e.g. ``"bf16 scale=2"``.
        num_warps: as the launcher passes it.
        multiples_of_16: integer arguments specialised as multiples of 16, as the JIT does when they are
            (e.g. plane strides of 16×16 and larger feature maps).
    """

    kernel: JITFunction
    signature: dict[str, str]
    constexprs: dict[str, object]
    label: str
    num_warps: int = 4
    multiples_of_16: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.kernel.__name__


def compile_build(build: KernelBuild, capability: int) -> triton.compiler.CompiledKernel:
    """Compile `build` to PTX and cubin for `capability` (80, 90, ...) on a machine without a GPU.

    Pointer arguments are specialised as 16-byte aligned, as the JIT does for freshly allocated tensors, and the
    integers named in `build.multiples_of_16` as multiples of 16.
    """
    aligned = {
        (i,): [["tt.divisibility", 16]]
        for i, (name, ty) in enumerate(build.signature.items())
        if ty.startswith("*") or name in build.multiples_of_16
    }
    source = ASTSource(fn=build.kernel, signature=build.signature, constexprs=build.constexprs, attrs=aligned)
    return triton.compile(source, target=GPUTarget("cuda", capability, 32), options={"num_warps": build.num_warps})


@dataclasses.dataclass(frozen=True)
class ResourceUsage:
    """Per-thread resources ptxas reports, and the global memory instructions of the PTX by width."""

    registers: int
    spill_store_bytes: int
    spill_load_bytes: int
    global_loads: dict[str, int]
    global_stores: dict[str, int]


def _ptxas() -> str:
    return os.path.join(os.path.dirname(triton.__file__), "backends", "nvidia", "bin", "ptxas-blackwell")


def _memory_widths(ptx: str, op: str) -> dict[str, int]:
    """Count ``ld.global``/``st.global`` instructions by access width, e.g. ``{"v4.b32": 2, "b16": 1}``."""
    pattern = re.compile(rf"\b{op}\.global(?:\.[a-z_]+)*?\.((?:v[248]\.)?b(?:8|16|32|64|128))\b")
    return dict(collections.Counter(pattern.findall(ptx)))


def resource_usage(compiled: triton.compiler.CompiledKernel, capability: int) -> ResourceUsage:
    """Run ``ptxas-blackwell -v`` on the PTX of `compiled` and parse registers and spills."""
    ptx = compiled.asm["ptx"]
    arch = f"sm_{capability}a" if capability >= 90 else f"sm_{capability}"
    with tempfile.TemporaryDirectory() as tmp:
        source = os.path.join(tmp, "kernel.ptx")
        with open(source, "w") as handle:
            handle.write(ptx)
        result = subprocess.run(
            [_ptxas(), "-v", f"--gpu-name={arch}", source, "-o", os.path.join(tmp, "kernel.cubin")],
            capture_output=True,
            text=True,
            check=True,
        )
    log = result.stderr + result.stdout
    registers = re.search(r"Used (\d+) registers", log)
    spills = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", log)
    if registers is None or spills is None:
        raise RuntimeError(f"could not parse ptxas output:\n{log}")
    return ResourceUsage(
        registers=int(registers.group(1)),
        spill_store_bytes=int(spills.group(1)),
        spill_load_bytes=int(spills.group(2)),
        global_loads=_memory_widths(ptx, "ld"),
        global_stores=_memory_widths(ptx, "st"),
    )


def all_builds() -> list[KernelBuild]:
    """Every specialisation of every kernel in `fastgan.kernels`, as the launchers use them."""
    return [
        build
        for module in KERNEL_MODULES
        for build in importlib.import_module(f"fastgan.kernels.{module}").aot_builds()
    ]
