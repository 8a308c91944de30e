"""The launchers' host path: once a shape has been seen, no Triton host helper (`triton.cdiv`, `next_power_of_2`,
each a few µs of Python) runs per launch, so small GPU cases are not slowed by launch planning; and a launch goes
to the GPU its tensors live on."""

import contextlib
from types import SimpleNamespace

import pytest
import torch
import triton

from bench.host_overhead import launches_stubbed
from fastgan.kernels import launch
from fastgan.ops import backend, cbn_relu_upsample, mobilenet_score, pixel_shuffle_prelu


@pytest.fixture
def counted_helpers(monkeypatch):
    """Calls of Triton's host helpers counted."""
    calls = {"n": 0}
    for helper in ("cdiv", "next_power_of_2"):
        original = getattr(triton, helper)

        def counted(*args, _original=original):
            calls["n"] += 1
            return _original(*args)

        monkeypatch.setattr(triton, helper, counted)
    return calls


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_a_seen_shape_launches_without_triton_host_helpers(counted_helpers, memory_format):
    x = torch.randn(3, 8, 5, 6).contiguous(memory_format=memory_format).requires_grad_()
    gain, bias = torch.randn(3, 8, requires_grad=True), torch.randn(3, 8, requires_grad=True)
    logits = torch.randn(5, 7, requires_grad=True)
    shuffled, slope = torch.randn(2, 12, 4, 5, requires_grad=True), torch.rand(3, requires_grad=True)

    def every_op():
        out = cbn_relu_upsample(x, gain, bias, torch.zeros(8), torch.ones(8))
        out.backward(torch.ones_like(out))
        mobilenet_score(logits).backward()
        out = pixel_shuffle_prelu(shuffled, slope, 2)
        out.backward(torch.ones_like(out))

    with backend("triton"), launches_stubbed():
        every_op()  # plans the shapes
        counted_helpers["n"] = 0
        every_op()
    assert counted_helpers["n"] == 0


class _RecordedKernel:
    """A stand-in for a jit'd kernel: ``kernel[grid](*args)`` records the CUDA device current at the launch."""

    __name__ = "recorded_kernel"

    def __init__(self, current):
        self.current, self.launched_on = current, []

    def __getitem__(self, grid):
        return lambda *args: self.launched_on.append(self.current["device"])


@pytest.mark.parametrize("index", [0, 1])
def test_a_launch_makes_its_tensors_gpu_current(monkeypatch, index):
    """Triton launches on the current CUDA device: tensors on cuda:1 while cuda:0 is current (`train.device=cuda:1`)
    have cuda:1 made current for their launch, and only for it (no GPU needed: the device calls are recorded)."""
    current = {"device": 0}

    @contextlib.contextmanager
    def cuda_device(device):
        previous, current["device"] = current["device"], torch.device(device).index
        try:
            yield
        finally:
            current["device"] = previous

    monkeypatch.setattr(torch.cuda, "current_device", lambda: current["device"])
    monkeypatch.setattr(torch.cuda, "device", cuda_device)
    kernel = _RecordedKernel(current)
    tensors = [SimpleNamespace(device=torch.device("cuda", index)) for _ in range(2)]
    launch.on_device_of(kernel, *tensors)[(1,)]("args")
    assert kernel.launched_on == [index] and current["device"] == 0


def test_int32_offsets_copy_only_views_whose_span_overflows():
    """Contiguous tensors and views within int32 are used as they are; a permuted view whose in-plane span reaches
    2³¹ is copied to a contiguous one (meta tensors: no memory)."""
    contiguous = torch.empty(2, 3, 4, 5)
    assert launch.with_int32_offsets(contiguous, {2: 4, 3: 5}) is contiguous
    small_view = contiguous.permute(0, 1, 3, 2)
    assert launch.with_int32_offsets(small_view, {2: 5, 3: 4}) is small_view
    wide = torch.empty(2, 2**16, 2**16, device="meta").transpose(1, 2)  # (2, 2¹⁶, 2¹⁶), row stride 1, column 2¹⁶
    copied = launch.with_int32_offsets(wide, {1: 2**16, 2: 2**16})
    assert copied is not wide and copied.is_contiguous()
