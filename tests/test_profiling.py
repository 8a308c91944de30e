"""Profiling: phases work on torch builds without NVTX (CPU-only wheels, e.g. macOS), where its calls raise; the step
profiler skips warm-up iterations and writes its trace atomically."""

import dataclasses
import json

import pytest
import torch

from fastgan import profiling
from fastgan.train.config import Config
from fastgan.train.core import profiled_after
from fastgan.train.cuda_graphs import WARMUP_CALLS


def test_phase_without_nvtx_still_records_the_range(monkeypatch):
    def missing(name):
        raise RuntimeError("NVTX functions not installed. Are you sure you have a CUDA build?")

    monkeypatch.setattr(profiling, "NVTX_AVAILABLE", False)
    monkeypatch.setattr(torch.cuda.nvtx, "range", missing)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as trace:
        with profiling.phase("d_step"):
            torch.ones(2).sum()
    assert "fastgan/d_step" in {event.name for event in trace.events()}
    monkeypatch.setattr(profiling, "NVTX_AVAILABLE", True)
    with pytest.raises(RuntimeError, match="NVTX"), profiling.phase("d_step"):
        pass  # with NVTX claimed present, the stand-in's error shows the range really is asked for


def _profiled_loop(profiler: profiling.StepProfiler, iterations: int) -> None:
    with profiler:
        for _ in range(iterations):
            with profiling.phase("iteration"):
                torch.ones(8).sum()
            profiler.step()


def test_the_profiler_skips_warm_up_iterations_and_names_the_trace_by_the_last_traced_one(tmp_path):
    """A CUDA-graph run's first iterations are eager warm-ups and the capture: `skip` leaves them out of the trace."""
    profiler = profiling.StepProfiler(tmp_path, steps=2, device=torch.device("cpu"), first_step=10, skip=3)
    _profiled_loop(profiler, 8)
    assert profiler.trace_path == tmp_path / "profile" / "trace_step16.json"  # 10 done, 3 skipped, 1 warm-up, 2
    names = [event.get("name") for event in json.loads(profiler.trace_path.read_text())["traceEvents"]]
    assert names.count("fastgan/iteration") == 2


def test_an_interrupted_trace_export_leaves_no_partial_file(tmp_path, monkeypatch):
    def export(self, path):
        with open(path, "w") as file:
            file.write('{"traceEvents": [')
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.profiler.profile, "export_chrome_trace", export)
    with pytest.raises(KeyboardInterrupt):
        _profiled_loop(profiling.StepProfiler(tmp_path, steps=1, device=torch.device("cpu")), 3)
    assert list((tmp_path / "profile").iterdir()) == []


def test_graph_runs_are_profiled_after_their_warm_up_and_capture():
    train = Config().train
    assert profiled_after(train) == 0
    assert profiled_after(dataclasses.replace(train, cuda_graphs=True)) == WARMUP_CALLS + 1
    assert profiled_after(dataclasses.replace(train, compile="reduce-overhead")) == 2
    assert profiled_after(dataclasses.replace(train, compile="default")) == 0
