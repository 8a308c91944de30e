"""The launchers' host path: once a shape has been seen, no Triton host helper (`triton.cdiv`, `next_power_of_2`,
each a few µs of Python) runs per launch, so small GPU cases are not slowed by launch planning."""

import pytest
import torch
import triton

from bench.host_overhead import launches_stubbed
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
