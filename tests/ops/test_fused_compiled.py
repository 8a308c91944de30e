"""The "fused-compiled" backend (`torch.compile` of the fused torch arithmetic, what --fused runs on a CPU) gives
the same results as "fused-torch" for every op, forward and backward, on shapes of different sizes."""

import pytest
import torch

from fastgan.ops import backend, cbn_relu_upsample_conv, mobilenet_score, pixel_shuffle_prelu
from fastgan.ops.backends import cpu_compiler_available, kernels_for
from fastgan.ops.cbn_relu_upsample import _TorchKernels as CBNKernels
from fastgan.ops.mobilenet_score import _TorchKernels as ScoreKernels
from fastgan.ops.pixel_shuffle_prelu import _TorchKernels as ShuffleKernels

pytestmark = pytest.mark.skipif(
    not cpu_compiler_available(), reason="TorchInductor needs a C++ compiler ($CXX, g++ or c++) on the PATH"
)


def _forward_backward(name, op, *inputs):
    leaves = [t.detach().clone().requires_grad_(t.is_floating_point()) for t in inputs]
    with backend(name):
        out = op(*leaves)
    out.float().mul(torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
    return [out] + [leaf.grad for leaf in leaves if leaf.requires_grad]


def _cbn(x, gain, bias, weight):
    running_mean, running_var = torch.zeros(x.shape[1]), torch.ones(x.shape[1])
    return cbn_relu_upsample_conv(x, gain, bias, weight, None, running_mean, running_var, scale=2)


CASES = {
    "cbn_relu_upsample_conv": (
        _cbn,
        [
            lambda n, c, s: (
                torch.randn(n, c, s, s) + 1,
                torch.rand(n, c) + 0.5,
                torch.randn(n, c),
                torch.randn(3, c, 3, 3),
            ),
        ],
    ),
    # 5×5 is up-sampled inside the compiled code (not by ATen's copy), 8×8 convolved by phases at x's resolution
    "cbn_relu_upsample_conv, channels-last": (
        _cbn,
        [
            lambda n, c, s: (
                (torch.randn(n, c, s, s) + 1).to(memory_format=torch.channels_last),
                torch.rand(n, c) + 0.5,
                torch.randn(n, c),
                torch.randn(3, c, 3, 3).to(memory_format=torch.channels_last),
            ),
        ],
    ),
    "pixel_shuffle_prelu": (
        lambda x, w: pixel_shuffle_prelu(x, w, 2),
        [lambda n, c, s: (torch.randn(n, 4 * c, s, s), torch.rand(c))],
    ),
    "mobilenet_score": (mobilenet_score, [lambda n, c, s: (torch.randn(4 * n, 10 * c) * 3,)]),
}


def test_one_compilation_serves_calls_with_and_without_gradients_and_broadcast_parameters():
    """A training step calls the kernels on tensors that require gradients (G step) and on ones that don't (D step),
    with class-conditional gain/bias rows and an unconditional BN's expanded ones (stride 0): one compiled graph
    serves them all; each variant would otherwise cost a TorchInductor compile (seconds on a CPU)."""
    torch._dynamo.reset()  # no graph compiled by earlier tests (first in this file: they reuse none)
    kernels = kernels_for("fused-compiled", "cbn_relu_upsample", CBNKernels)
    x, mean, rstd = torch.randn(4, 8, 6, 6), torch.zeros(8), torch.ones(8)
    rows = (torch.rand(4, 8) + 0.5, torch.randn(4, 8))
    expanded = ((torch.rand(8) + 0.5).expand(4, 8), torch.randn(8).expand(4, 8))
    compiled_frames = torch._dynamo.utils.counters["frames"]["ok"]
    with torch.no_grad():  # as inside an autograd Function
        kernels.forward_given_stats(x, mean, rstd, *rows, 2)
        assert torch._dynamo.utils.counters["frames"]["ok"] > compiled_frames  # it compiled
        with torch._dynamo.config.patch(error_on_recompile=True):
            for gain, bias in (rows, expanded):
                for requires_grad in (False, True):
                    leaves = [t.detach().requires_grad_(requires_grad) for t in (x, gain, bias)]
                    out = kernels.forward_given_stats(leaves[0], mean, rstd, *leaves[1:], 2)
                    reference = CBNKernels.forward_given_stats(x, mean, rstd, gain, bias, 2)
                    assert torch.allclose(out, reference, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("op", CASES)
def test_compiled_matches_uncompiled(op):
    function, [make] = CASES[op]
    for n, c, s in ((2, 3, 5), (3, 4, 8)):  # a second shape reuses the dynamic-shape compilation
        torch.manual_seed(n)
        inputs = make(n, c, s)
        compiled = _forward_backward("fused-compiled", function, *inputs)
        plain = _forward_backward("fused-torch", function, *inputs)
        for got, ref in zip(compiled, plain, strict=True):
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-5), op


def test_compiled_backend_compiles_what_the_kernels_name():
    """pixel_shuffle_prelu's forward and its gradient's un-shuffle stay torch arithmetic (ATen is faster there on a
    CPU), the PReLU backward it calls through the class compiles; kernels without COMPILED compile every method."""
    shuffle = kernels_for("fused-compiled", "pixel_shuffle_prelu", ShuffleKernels)
    assert shuffle.forward is ShuffleKernels.forward
    assert shuffle.backward.__func__ is ShuffleKernels.backward.__func__ and shuffle.backward.__self__ is shuffle
    assert shuffle.prelu_backward is not ShuffleKernels.prelu_backward
    score = kernels_for("fused-compiled", "mobilenet_score", ScoreKernels)
    assert score.score_and_gradient is not ScoreKernels.score_and_gradient


def test_compiled_names_only_static_methods():
    """A COMPILED entry that is not a static method (a typo, a class method) would compile nothing: it is refused."""

    class Kernels:
        COMPILED = ("backward",)

        @classmethod
        def backward(cls, x):
            return x

    with pytest.raises(TypeError, match=r"Kernels.COMPILED names \['backward'\]: not static methods"):
        kernels_for("fused-compiled", "any_op", Kernels)


@pytest.mark.parametrize("name", ["fused-torch", "fused-compiled"])
def test_cbn_gradient_comes_in_the_layout_of_x(name):
    """dx follows x's layout whatever grad_out's, as F.batch_norm's does, so the convolution before it need not copy.
    Compiled, an NCHW call first makes the strides dynamic, where layout had been lost before."""
    kernels = kernels_for(name, "cbn_relu_upsample", CBNKernels)
    for channels_last_x in (False, True, True):
        x = torch.randn(4, 8, 6, 6)
        x = x.contiguous(memory_format=torch.channels_last) if channels_last_x else x
        grad = torch.randn(4, 8, 6, 6)
        grad = grad if channels_last_x else grad.contiguous(memory_format=torch.channels_last)
        mean, rstd, gain, bias = torch.zeros(8), torch.ones(8), torch.rand(4, 8), torch.randn(4, 8)
        dx = kernels.backward(grad, x, mean, rstd, gain, bias, 1, True)[0]
        assert dx.stride() == x.stride(), (channels_last_x, dx.stride(), x.stride())
