"""What every benchmark shares: the device, the providers, the timing method and the measurements in extra_info."""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable, Iterable
from typing import Any

import pytest
import torch
import triton

from fastgan.ops import backend, fused_backend_for

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
ON_CUDA = DEVICE.type == "cuda"
#: Activation dtype: bf16 as training runs on CUDA; fp32 on a CPU, where bf16 arithmetic is emulated and slow.
DTYPE = torch.bfloat16 if ON_CUDA else torch.float32
#: Batch of the HRGAN block shapes: the paper's 64 on CUDA, 16 on a CPU so the whole suite runs in minutes.
BATCH = 64 if ON_CUDA else 16
#: provider -> `fastgan.ops` backend. "fused" is what ``--fused`` selects here: on a CPU the fused torch arithmetic
#: (the Triton interpreter is a correctness tool, not timed by default), or the backend $FASTGAN_BENCH_FUSED names (the
#: test suite's smoke run: "fused-torch", whose results need no compiling; an unknown name fails its first case).
PROVIDERS = {"eager": "torch", "fused": os.environ.get("FASTGAN_BENCH_FUSED") or fused_backend_for(DEVICE)}
WARMUP_ROUNDS = 5 if ON_CUDA else 2
#: Timed rounds of a case: as many as fit in about `SECONDS_PER_CASE` at the pace of its last warm-up call, within
#: [MIN_ROUNDS, MAX_ROUNDS]. On a CPU (±20 % from round to round on a shared 2-core machine) cheap cases afford a
#: steadier median; on a GPU an expensive case (a training iteration, a 4K frame) does not eat a lent machine's
#: minutes.
MIN_ROUNDS, MAX_ROUNDS, SECONDS_PER_CASE = (10, 50, 2.0) if ON_CUDA else (9, 60, 4.0)
if os.environ.get("FASTGAN_BENCH_ONE_ROUND"):  # the test suite's run of the smoke cases: measure and report once
    WARMUP_ROUNDS, MIN_ROUNDS, MAX_ROUNDS = 1, 1, 1

#: Peak DRAM bandwidth (GB/s) of GPUs we report against, by a substring of the device name; the first key found
#: in the name wins, so the specific variants come before their family.
PEAK_BANDWIDTH_GBPS = {
    "GH200 480GB": 4000,  # the 96 GB HBM3 part; the 144 GB HBM3e one below
    "GH200": 4900,
    "H200": 4800,
    "H100 NVL": 3900,
    "H100 PCIe": 2000,
    "H100": 3350,
    "A100-SXM4-40GB": 1555,
    "A100-PCIE-40GB": 1555,
    "A100 80GB PCIe": 1935,
    "A100": 2039,
    "L40S": 864,
}


def device_name() -> str:
    """The GPU's name, or the CPU model with its core count."""
    if ON_CUDA:
        return torch.cuda.get_device_name(DEVICE)
    model = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as cpuinfo:
            model = next((line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name")), model)
    return f"{model} ×{os.cpu_count()} cores"


def peak_bandwidth_gbps() -> float | None:
    """The device's peak memory bandwidth in GB/s when known (CUDA only)."""
    if not ON_CUDA:
        return None
    name = device_name()
    return next((peak for key, peak in PEAK_BANDWIDTH_GBPS.items() if key in name), None)


def environment(dtype: torch.dtype = DTYPE) -> dict[str, Any]:
    """The extra_info every result carries: device, versions, dtype, providers."""
    return {
        "device": device_name(),
        "device_type": DEVICE.type,
        "torch": torch.__version__,
        "triton": triton.__version__,
        "dtype": str(dtype).removeprefix("torch."),
        "fused_backend": PROVIDERS["fused"],
    }


def _synchronized(fn: Callable[..., Any]) -> Callable[..., Any]:
    if not ON_CUDA:
        return fn

    def run(*args, **kwargs):
        result = fn(*args, **kwargs)
        torch.cuda.synchronize(DEVICE)
        return result

    return run


def _warm_up(target: Callable[..., Any], setup: Callable[[], tuple] | None, budget: float) -> int:
    """Make the `WARMUP_ROUNDS` warm-up calls (synchronised on CUDA: CUDA graphs capture and replay within them),
    the last one timed with its setup; return how many rounds fit in `budget` seconds at that pace, within
    [`MIN_ROUNDS`, `MAX_ROUNDS`]."""
    target, setup = _synchronized(target), setup and _synchronized(setup)
    for _ in range(WARMUP_ROUNDS):
        start = time.perf_counter()
        target(*(setup() if setup else ()))
        seconds = max(time.perf_counter() - start, 1e-6)
    return min(MAX_ROUNDS, max(MIN_ROUNDS, int(budget / seconds)))


def run_timed(
    benchmark,
    target: Callable[..., Any],
    setup: Callable[[], tuple] | None = None,
    seconds_per_case: float = SECONDS_PER_CASE,
) -> float | None:
    """Time `target` with `benchmark.pedantic` (warm-up rounds first, CUDA synchronised); returns the median seconds.

    `setup`, when given, runs untimed before each round and returns the positional arguments of `target`. Every
    case makes `WARMUP_ROUNDS` untimed calls first, the last of which sizes the rounds to fill about
    `seconds_per_case` (`_warm_up`). Returns None when benchmarking is disabled (``--benchmark-disable``): on CUDA
    the warm-up calls still run, so a smoke case captures and replays its CUDA graphs, and the target runs once more.
    """
    rounds = _warm_up(target, setup, seconds_per_case) if ON_CUDA or not benchmark.disabled else 1
    wrapped_setup = None if setup is None else _synchronized(lambda: (setup(), {}))
    benchmark.pedantic(_synchronized(target), setup=wrapped_setup, rounds=rounds, warmup_rounds=0, iterations=1)
    return None if benchmark.stats is None else benchmark.stats.stats.median


#: Bytes written before each timed round of an op case on CUDA: more than any GPU's L2 (the H200's is 60 MB), so
#: small cases read their inputs from DRAM as in training, not from a cache their previous round warmed.
L2_FLUSH_BYTES = 256 << 20


def with_cold_cache(setup: Callable[[], tuple] | None) -> Callable[[], tuple] | None:
    """`setup` followed, on CUDA, by overwriting `L2_FLUSH_BYTES` of device memory (untimed, as triton's do_bench
    does); unchanged on a CPU."""
    if not ON_CUDA:
        return setup
    flush = torch.empty(L2_FLUSH_BYTES, dtype=torch.int8, device=DEVICE)

    def cold_setup() -> tuple:
        arguments = setup() if setup else ()
        flush.zero_()
        return arguments

    return cold_setup


def run_interleaved(
    benchmark, steps: dict[str, Callable[[], Any]], seconds_per_case: float = 3 * SECONDS_PER_CASE
) -> tuple[float | None, dict[str, float]]:
    """Time `steps` alternated in one case, their order swapped every round, so that a shared machine's drift
    between separate cases cannot make up their ratio. Returns the median seconds of one round of all steps
    (None with ``--benchmark-disable``) and each step's median milliseconds over the timed rounds."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    order = list(steps)

    def one_of_each():
        for name in order:
            start = time.perf_counter()
            steps[name]()
            if ON_CUDA:
                torch.cuda.synchronize(DEVICE)
            times[name].append(time.perf_counter() - start)
        order.reverse()

    seconds = run_timed(benchmark, one_of_each, seconds_per_case=seconds_per_case)
    if seconds is None:
        return None, {}
    timed = len(benchmark.stats.stats.data)
    return seconds, {name: round(1e3 * statistics.median(spent[-timed:]), 3) for name, spent in times.items()}


def device_seconds(
    target: Callable[..., Any], setup: Callable[[], tuple] | None = None, rounds: int = 10
) -> float | None:
    """CUDA: the GPU time of one `target(*setup())` — the kernels' durations summed by torch.profiler, so host
    launch cost and idle gaps are left out; None on a CPU. Each round is profiled alone, after its `setup` (for op
    cases `with_cold_cache`'s, so the kernels read from DRAM as in the timed rounds, and the flush is not counted)."""
    if not ON_CUDA:
        return None
    busy_us = 0.0
    for _ in range(rounds):
        arguments = setup() if setup else ()
        torch.cuda.synchronize(DEVICE)
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as profile:
            target(*arguments)
            torch.cuda.synchronize(DEVICE)
        busy_us += sum(event.self_device_time_total for event in profile.key_averages())
    return busy_us / rounds / 1e6


def saved_activation_bytes(forward: Callable[[], Any], parameters: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the distinct storages autograd keeps for backward while `forward()` runs (saved-tensor hooks),
    leaving out `parameters` (weights are kept either way; they are not activations)."""
    excluded = {p.untyped_storage().data_ptr() for p in parameters}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward()
    return sum(storages.values())


def peak_allocated_bytes(step: Callable[[], Any]) -> int | None:
    """CUDA: the peak memory allocated above the current level while `step()` runs; None on a CPU."""
    if not ON_CUDA:
        return None
    torch.cuda.synchronize(DEVICE)
    base = torch.cuda.memory_allocated(DEVICE)
    torch.cuda.reset_peak_memory_stats(DEVICE)
    step()
    torch.cuda.synchronize(DEVICE)
    return torch.cuda.max_memory_allocated(DEVICE) - base


def record(
    benchmark,
    info: dict[str, Any],
    seconds: float | None,
    traffic_bytes: int | None = None,
    kernel_seconds: float | None = None,
) -> None:
    """Store `info` plus the environment, and on CUDA the achieved bandwidth, in the result's extra_info.

    `kernel_seconds`, when measured (`device_seconds`), is the GPU's busy time (``device_ms``); its bandwidth is
    stored beside the wall-time one (``device_achieved_gbps``, ``device_fraction_of_peak``).
    """
    benchmark.extra_info.update(environment())
    benchmark.extra_info.update(info)
    if kernel_seconds:
        benchmark.extra_info["device_ms"] = round(kernel_seconds * 1e3, 4)
    elif kernel_seconds == 0:
        warnings.warn("torch.profiler recorded no kernel (CUPTI unavailable?): no GPU-busy time", stacklevel=2)
    if traffic_bytes is None:
        return
    benchmark.extra_info["traffic_bytes"] = traffic_bytes
    peak = peak_bandwidth_gbps()
    for prefix, spent in (("", seconds if ON_CUDA else None), ("device_", kernel_seconds)):
        if spent:
            achieved = traffic_bytes / spent / 1e9
            benchmark.extra_info[f"{prefix}achieved_gbps"] = round(achieved, 1)
            if peak:
                benchmark.extra_info["peak_gbps"] = peak
                benchmark.extra_info[f"{prefix}fraction_of_peak"] = round(achieved / peak, 3)


#: The providers of an op case: each timed alone, and both alternated in one case (forward + backward only).
OP_PROVIDERS = ["eager", "fused", "interleaved"]


def op_case(
    benchmark,
    provider: str,
    mode: str,
    make_inputs: Callable[[], tuple[torch.Tensor, ...]],
    op: Callable[..., torch.Tensor],
    info: dict[str, Any],
    traffic: dict[str, Any] | None,
) -> None:
    """Benchmark one op: `op(*inputs)` under `provider`'s backend, in mode forward / backward / full.

    `make_inputs()` returns fresh leaf tensors (those needing gradients already require them); the output's
    gradient is a fixed random tensor, and the backward returns the leaves' gradients (`torch.autograd.grad`)
    rather than accumulating them into `.grad`, an extra elementwise pass of equal cost for both providers that
    is not the op's. `traffic` is the op's analytic {"forward": Traffic, "backward": Traffic}, or None for an op
    whose cost is arithmetic (a convolution), not bytes. Provider "interleaved" (mode "full" only; others skip)
    alternates the eager and the fused forward + backward on the same inputs (`run_interleaved`: a shared
    machine's drift between the separate cases cannot make up their ratio) and records their medians.
    """
    if provider == "interleaved" and mode != "full":
        pytest.skip("interleaved cases time forward + backward only")
    inputs = make_inputs()
    leaves = [t for t in inputs if t.requires_grad]
    with backend(PROVIDERS["eager" if provider == "interleaved" else provider]):
        probe = op(*inputs)
    grad = torch.randn_like(probe, dtype=probe.dtype) if probe.dim() else torch.ones_like(probe)

    def forward(role: str = provider):
        with backend(PROVIDERS[role]):
            return op(*inputs)

    def backward(out):
        return torch.autograd.grad(out, leaves, grad)

    def full(role: str = provider):
        return backward(forward(role))

    if provider == "interleaved":
        steps = {role: functools.partial(full, role) for role in ("eager", "fused")}
        seconds, medians = run_interleaved(benchmark, steps)
        info = info | {"provider": provider, "mode": mode} | {f"{role}_ms": ms for role, ms in medians.items()}
        record(benchmark, info, seconds)
        return
    target, setup = {
        "forward": (forward, None),
        "backward": (backward, lambda: (forward(),)),
        "full": (full, None),
    }[mode]
    cold_setup = with_cold_cache(setup)
    seconds = run_timed(benchmark, target, cold_setup)
    passes = {"forward": ["forward"], "backward": ["backward"], "full": ["forward", "backward"]}[mode]
    # the fused model counts the Triton kernels' bytes: not what the torch arithmetic of a CPU's fused provider moves
    kind = {"eager": "eager", "fused": "fused" if PROVIDERS["fused"] == "triton" else None}[provider]
    bytes_moved = None if traffic is None or kind is None else sum(getattr(traffic[p], kind) for p in passes)
    info = info | {"provider": provider, "mode": mode, "saved_bytes": saved_activation_bytes(forward)}
    peak = peak_allocated_bytes(full)
    if peak is not None:
        info["peak_allocated_bytes"] = peak
    if traffic is not None:
        info["minimum_traffic_bytes"] = sum(traffic[p].minimum for p in passes)
    kernels = None if seconds is None else device_seconds(target, cold_setup)
    record(benchmark, info, seconds, bytes_moved, kernels)
