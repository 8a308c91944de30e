"""python -m bench.host_overhead: the host (Python + dispatch) cost of each fused op's Triton path, on any machine.

On a GPU the small cases of the op benches are launch-bound: their wall time is what the host spends before the
kernels run. This measures that part without a GPU: each op's forward + backward on the "triton" backend with
every kernel launch replaced by a no-op, at tiny CPU shapes (the checks, launch plans, allocations and the
autograd.Function stay; the kernels and Triton's own launcher do not), beside the same op on the eager ("torch")
backend at the same shapes, whose CPU time there is mostly its own dispatch. Median µs over `--rounds` rounds of
`--calls` calls.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import statistics
import time
from collections.abc import Callable, Iterator

import torch

from fastgan.ops import backend, cbn_relu_upsample, mobilenet_score, pixel_shuffle_prelu

KERNEL_MODULES = ("cbn_relu_upsample", "cbn_relu_upsample_nhwc", "mobilenet_score", "pixel_shuffle_prelu")


class _NoLaunch:
    """``kernel[grid](*args)`` that launches nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


@contextlib.contextmanager
def launches_stubbed() -> Iterator[None]:
    """Every fused-op kernel launch is a no-op while the block runs."""
    modules = [importlib.import_module(f"fastgan.kernels.{name}") for name in KERNEL_MODULES]
    originals = [module.on_device_of for module in modules]
    for module in modules:
        module.on_device_of = lambda kernel, *tensors: _NoLaunch()
    try:
        yield
    finally:
        for module, original in zip(modules, originals, strict=True):
            module.on_device_of = original


def _cases() -> dict[str, tuple[Callable, tuple[torch.Tensor, ...]]]:
    """name -> (op, inputs that take gradients); tiny shapes: the cost is per call."""
    cases = {}
    running = torch.zeros(8), torch.ones(8)  # (C,) mean and variance, updated in place by every call
    for layout, memory_format in (("NCHW", torch.contiguous_format), ("NHWC", torch.channels_last)):
        x = torch.randn(4, 8, 4, 4).contiguous(memory_format=memory_format)
        cases[f"cbn_relu_upsample {layout}"] = (
            lambda x, g, b: cbn_relu_upsample(x, g, b, *running),
            (x, torch.randn(4, 8), torch.randn(4, 8)),
        )
    cases["mobilenet_score"] = (mobilenet_score, (torch.randn(16, 10),))
    shuffled = torch.randn(2, 16, 8, 8), torch.rand(4)
    cases["pixel_shuffle_prelu"] = (lambda x, w: pixel_shuffle_prelu(x, w, 2), shuffled)
    return cases


def _microseconds(op: Callable, inputs: tuple[torch.Tensor, ...], calls: int, rounds: int) -> float:
    leaves = [t.detach().requires_grad_() for t in inputs]

    def step():
        for leaf in leaves:
            leaf.grad = None
        out = op(*leaves)
        out.backward(torch.ones_like(out))

    for _ in range(calls):
        step()
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(calls):
            step()
        times.append((time.perf_counter() - start) / calls)
    return statistics.median(times) * 1e6


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.host_overhead", description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="calls per timed round (≥ 1)")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds, the median reported (≥ 1)")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.rounds < 1:
        parser.error(f"--calls and --rounds must be at least 1, got {args.calls} and {args.rounds}")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        print("| op (forward + backward) | eager µs | fused host path µs (launches stubbed) |")
        print("|---|---:|---:|")
        for name, (op, inputs) in _cases().items():
            with backend("torch"):  # the op's eager path, its input checks included, as the bench and trainer run it
                eager_us = _microseconds(op, inputs, args.calls, args.rounds)
            with backend("triton"), launches_stubbed():
                fused_us = _microseconds(op, inputs, args.calls, args.rounds)
            print(f"| {name} | {eager_us:.0f} | {fused_us:.0f} |")
    finally:  # a caller's thread count (the test suite's) as it was
        torch.set_num_threads(threads)


if __name__ == "__main__":
    main()
