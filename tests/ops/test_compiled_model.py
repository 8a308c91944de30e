"""The fused ops inside a model compiled by torch.compile (``--compile``): one graph without breaks on every
backend, the reference arithmetic for TorchInductor to fuse, and the conv variant convolving by phases.

Traced with the "aot_eager" backend (Dynamo and AOTAutograd, no code generation: seconds, not minutes); the trainer
tests compile with TorchInductor itself."""

import sys

import pytest
import torch

from fastgan.models.hrgan import Generator
from fastgan.ops import (
    BACKENDS,
    backend,
    cbn_relu_upsample,
    cbn_relu_upsample_conv,
    mobilenet_score,
    pixel_shuffle_prelu,
)
from fastgan.ops.upsample_conv import upsample_conv

CBN_MODULE = sys.modules["fastgan.ops.cbn_relu_upsample"]  # the module: the package exports the function
FUSED = [name for name in BACKENDS if name != "torch"]


def _compiled(fn):
    torch._dynamo.reset()
    return torch.compile(fn, backend="aot_eager", fullgraph=True)  # fullgraph: a graph break raises


def _leaves(*tensors):
    return [t.detach().clone().requires_grad_(t.is_floating_point()) for t in tensors]


def _run(fn, inputs, name):
    """fn's output and the gradients of its floating-point inputs under backend `name`."""
    leaves = _leaves(*inputs)
    with backend(name):
        out = fn(*leaves)
    out.double().mul(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
    return [out, *(leaf.grad for leaf in leaves if leaf.requires_grad)]


def _conv_inputs(size, memory_format):
    generator = torch.Generator().manual_seed(0)
    x = (torch.randn(4, 6, size, size, generator=generator, dtype=torch.float64) + 1).contiguous(
        memory_format=memory_format
    )
    gain = torch.rand(4, 6, generator=generator, dtype=torch.float64) + 0.5
    bias = torch.randn(4, 6, generator=generator, dtype=torch.float64)
    weight = torch.randn(5, 6, 3, 3, generator=generator, dtype=torch.float64)
    return x, gain, bias, weight, torch.randn(5, generator=generator, dtype=torch.float64)


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("size, by_phases", [(8, True), (4, False)], ids=["8x8 by phases", "4x4 direct"])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
def test_conv_variant_in_a_compiled_model(name, size, by_phases, memory_format, monkeypatch):
    """Output, every gradient and the running statistics equal eager torch's (fp64); the phase convolution is what
    the trace holds where `_by_phases` says so, the direct one elsewhere."""
    traced = []
    monkeypatch.setattr(CBN_MODULE, "upsample_conv", lambda *args: traced.append(1) or upsample_conv(*args))
    statistics = {"eager": (torch.zeros(6, dtype=torch.float64), torch.ones(6, dtype=torch.float64))}
    statistics["compiled"] = tuple(t.clone() for t in statistics["eager"])

    def op(which):
        return lambda x, gain, bias, weight, conv_bias: cbn_relu_upsample_conv(
            x, gain, bias, weight, conv_bias, *statistics[which], scale=2
        )

    inputs = _conv_inputs(size, memory_format)
    expected = _run(op("eager"), inputs, "torch")
    actual = _run(_compiled(op("compiled")), inputs, name)
    assert bool(traced) == by_phases
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-10, atol=1e-10)
    for a, e in zip(statistics["compiled"], statistics["eager"], strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def _plain_cases():
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(3, 4, 5, 5, generator=generator, dtype=torch.float64)
    return {
        "cbn_relu_upsample": (
            lambda x, gain, bias: cbn_relu_upsample(x, gain, bias, scale=2),
            (x, torch.rand(3, 4, dtype=torch.float64) + 0.5, torch.randn(3, 4, dtype=torch.float64)),
        ),
        "pixel_shuffle_prelu": (
            lambda x, w: pixel_shuffle_prelu(x, w, 2),
            (torch.randn(2, 8, 5, 5, generator=generator), torch.rand(2, generator=generator)),
        ),
        "mobilenet_score": (
            lambda logits: mobilenet_score(logits).reshape(1),
            (torch.randn(16, 10, generator=generator) * 3,),
        ),
    }


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("op", list(_plain_cases()))
def test_ops_trace_into_one_graph_on_every_backend(name, op):
    """In a compiled caller the ops are their reference arithmetic ("triton" launches no kernel of its own)."""
    fn, inputs = _plain_cases()[op]
    expected = _run(fn, inputs, "torch")
    actual = _run(_compiled(fn), inputs, name)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-6, atol=1e-6)


def test_compiled_generator_trains_like_the_eager_fused_one():
    """HRGAN-64 (blocks at 4×4 direct, 8×8 and 16×16 by phases), channels-last, fp64: one compiled graph; output,
    every parameter gradient and the running statistics as the eager fused generator's."""
    torch.manual_seed(0)
    eager = Generator(64, 10, 16, 16).to(torch.float64, memory_format=torch.channels_last)
    compiled = Generator(64, 10, 16, 16).to(torch.float64, memory_format=torch.channels_last)
    compiled.load_state_dict(eager.state_dict())
    z, y = torch.randn(6, 16, dtype=torch.float64), torch.arange(6)
    results = []
    for generator, call in ((eager, eager), (compiled, _compiled(compiled))):
        with backend("fused-torch"):
            out = call(z, y)
        out.mul(torch.linspace(-1, 1, out.numel(), dtype=torch.float64).view_as(out)).sum().backward()
        results.append([out, *(p.grad for p in generator.parameters()), *generator.buffers()])
    for a, e in zip(*results, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)
