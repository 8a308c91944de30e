"""One training update replayed from a CUDA graph: the whole forward, backward and optimiser step of a network
pair issued by the GPU itself, so an update costs its kernels' time rather than the host's launch time.

The update must be capturable: device work only (no `.item()`, no host→device copies of pageable memory, no
data-dependent Python branches) and an optimiser built with ``capturable=True``. Its tensor inputs (on the CPU or
the device) are copied into static device buffers before each replay, so the update must accept device tensors
where it was given CPU ones; its outputs are static too — read (or clone) them before the next call.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Update = Callable[..., dict[str, torch.Tensor]]


#: Eager calls of an update before its capture (PyTorch recommends a few).
WARMUP_CALLS = 3


class GraphedUpdate:
    """`update(*inputs) -> {name: tensor}` run eagerly for `warmup_calls` calls, captured on the next, replayed after.

    The warm-up calls run on a side stream, as CUDA-graph capture requires (lazy cuDNN/cuBLAS set-up and the
    optimiser's state allocation happen there, outside the graph: with no warm-up, Adam's zero-initialised moments
    would be recorded and reset by every replay). Every call performs exactly one update: the capturing call
    replays the graph it just recorded. Inputs must keep their shapes and dtypes from call to call (a signature
    that changes after capture is an error; build a new `GraphedUpdate` for new shapes); the static copies keep the
    capturing call's memory layout, so the captured kernels are those the warm-up ran. The returned tensors are the
    graph's static outputs: read them before the next call.

    Args:
        update: the capturable update; takes tensors, returns a dict of scalar (or small) tensors.
        device: the CUDA device the update runs on (any index: work is issued on that device's streams).
        warmup_calls: eager calls before capture, at least one (PyTorch recommends a few).
    """

    def __init__(self, update: Update, device: torch.device, warmup_calls: int = WARMUP_CALLS):
        device = torch.device(device)
        if device.type != "cuda":
            raise ValueError(f"CUDA graphs need a CUDA device, got {device}; set train.cuda_graphs=false")
        if warmup_calls < 1:
            raise ValueError(
                f"warmup_calls must be >= 1 (optimiser state must exist before capture), got {warmup_calls}"
            )
        self.update, self.device, self.warmup_calls = update, device, warmup_calls
        self.calls = 0
        self._side = torch.cuda.Stream(device)  # warm-up and capture stream
        self._graph: torch.cuda.CUDAGraph | None = None
        self._inputs: list[torch.Tensor] = []
        self._outputs: dict[str, torch.Tensor] = {}

    @property
    def captured(self) -> bool:
        return self._graph is not None

    def __call__(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        self.calls += 1
        with torch.cuda.device(self.device):
            if self._graph is None and self.calls <= self.warmup_calls:
                return self._on_side_stream(*inputs)
            if self._graph is None:
                self._capture(inputs)
            self._load(inputs)
            self._graph.replay()
            return self._outputs

    def _on_side_stream(self, *inputs: torch.Tensor) -> dict[str, torch.Tensor]:
        main = torch.cuda.current_stream(self.device)
        self._side.wait_stream(main)
        with torch.cuda.stream(self._side):
            outputs = self.update(*inputs)
        main.wait_stream(self._side)
        for output in outputs.values():
            output.record_stream(main)  # made on the side stream, used (and freed) on the main one
        return outputs

    def _capture(self, inputs: tuple[torch.Tensor, ...]) -> None:
        """Record the update over static device copies of `inputs` (filled by `_load` before each replay)."""
        self._inputs = [torch.empty_like(t, device=self.device) for t in inputs]
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        # thread-local: only this thread's unsafe CUDA calls break the capture, not a data pipeline's (DALI's
        # prefetch threads keep running); autograd's device threads launch into the capturing stream either way
        with torch.cuda.graph(graph, stream=self._side, capture_error_mode="thread_local"):
            self._outputs = self.update(*self._inputs)
        self._graph = graph

    def _load(self, inputs: tuple[torch.Tensor, ...]) -> None:
        signature = [(tuple(t.shape), t.dtype) for t in inputs]
        expected = [(tuple(t.shape), t.dtype) for t in self._inputs]
        if signature != expected:
            raise ValueError(
                f"a CUDA-graphed update was captured for inputs {expected}, got {signature}; "
                "inputs must keep their shapes and dtypes (set train.cuda_graphs=false for varying batches)"
            )
        for static, value in zip(self._inputs, inputs, strict=True):
            static.copy_(value, non_blocking=True)
