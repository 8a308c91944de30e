"""Profiling: named phases for Nsight Systems and torch.profiler, and a Chrome trace of a few training steps.

Every phase opens an NVTX push/pop range and a `torch.profiler.record_function` of the same name,
`fastgan/<phase>`, so the phases of an iteration show on Nsight Systems' timeline and in torch.profiler
traces. Without a profiler attached both are near-free (no-ops on a CPU-only machine).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity

from fastgan.atomic import atomic_path

log = logging.getLogger(__name__)

RANGE_PREFIX = "fastgan/"
#: Whether this torch build has NVTX (CPU-only builds, e.g. macOS wheels, raise "NVTX functions not installed").
NVTX_AVAILABLE = hasattr(torch._C, "_nvtx")


@contextlib.contextmanager
def phase(name: str) -> Iterator[None]:
    """Mark a phase `fastgan/<name>` as an NVTX range (where torch has NVTX) and a torch.profiler range; also usable
    as a decorator."""
    full_name = RANGE_PREFIX + name
    nvtx = torch.cuda.nvtx.range(full_name) if NVTX_AVAILABLE else contextlib.nullcontext()
    with nvtx, torch.profiler.record_function(full_name):
        yield


class StepProfiler:
    """Records `steps` iterations with torch.profiler (CPU, plus CUDA on a CUDA device) to a Chrome trace.

    Use as a context manager around the training loop and call `step()` after each iteration. The first `skip`
    iterations run unprofiled (a CUDA-graph run's eager warm-ups and capture), the next is the profiler's warm-up,
    the next `steps` are recorded; the trace is written (atomically) to
    `run_dir/profile/trace_step<N>.json`, N being the last recorded iteration, and the profiler is then
    stopped so that training continues without it. With `steps == 0` everything is a no-op.

    Args:
        run_dir: the run directory.
        steps: iterations to record (0 disables profiling).
        device: the training device.
        first_step: iterations the run had done before this loop (its checkpoint step when resumed).
        skip: iterations before the profiler's warm-up.
    """

    def __init__(self, run_dir: str | Path, steps: int, device: torch.device, first_step: int = 0, skip: int = 0):
        self.trace_dir = Path(run_dir) / "profile"
        self.steps, self.first_step, self.skip = steps, first_step, skip
        self.trace_path: Path | None = None
        self._profile: torch.profiler.profile | None = None
        if steps > 0:
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
            self._profile = torch.profiler.profile(
                activities=activities,
                schedule=torch.profiler.schedule(wait=skip, warmup=1, active=steps, repeat=1),
                record_shapes=True,
                on_trace_ready=self._export,
            )

    def _export(self, prof: torch.profiler.profile) -> None:
        if prof.step_num < self.skip + 2:  # stopped before any recorded iteration
            return
        last = self.first_step + prof.step_num
        path = self.trace_dir / f"trace_step{last}.json"
        with atomic_path(path, keep_suffix=True) as partial:  # an interrupted export leaves no truncated trace
            prof.export_chrome_trace(str(partial))
        self.trace_path = path
        first = self.first_step + self.skip + 2
        log.info("profile: Chrome trace of iterations %d-%d written to %s", first, last, path)

    def __enter__(self) -> StepProfiler:
        if self._profile is not None:
            self._profile.start()
        return self

    def step(self) -> None:
        """Mark the end of an iteration; stops the profiler once its trace is written."""
        if self._profile is None:
            return
        self._profile.step()
        if self.trace_path is not None:
            self._close()

    def __exit__(self, *exc_info) -> None:
        if self._profile is None:
            return
        self._close()  # a run that ends early exports the iterations recorded so far
        if self.trace_path is None:
            log.warning("profile: no trace written; the run ended before any iteration after the warm-up ones")

    def _close(self) -> None:
        profile, self._profile = self._profile, None
        profile.__exit__(None, None, None)
