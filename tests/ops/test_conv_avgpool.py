"""conv_avgpool: a "same" convolution then average pooling, as one strided convolution on the fused backends —
the same function as the reference (fp64), in the discriminator too, with less kept for backward."""

import pytest
import torch
import torch.nn.functional as F

from fastgan.models.blocks import ResBlockDown
from fastgan.models.hrgan import Discriminator
from fastgan.ops import BACKENDS, backend, conv_avgpool
from fastgan.ops.conv_avgpool import _cached_box_filter_matrix, conv_avgpool_ref, pooled_weight

FUSED = [name for name in BACKENDS if name != "torch"]


def _leaves(shape, out_channels, kernel_size, memory_format, with_bias):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(shape, generator=generator, dtype=torch.float64).contiguous(memory_format=memory_format)
    weight = torch.randn(out_channels, shape[1], kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64) if with_bias else None
    return [t if t is None else t.requires_grad_() for t in (x, weight, bias)]


def _output_and_gradients(name, leaves, scale):
    with backend(name):
        out = conv_avgpool(*leaves, scale)
    grad_out = torch.randn(out.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64).to(out)
    wanted = [t for t in leaves if t is not None]
    return [out, *torch.autograd.grad(out, wanted, grad_out)]


@pytest.mark.parametrize("name", FUSED)
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_fused_equals_convolution_then_pooling(name, kernel_size, scale, memory_format, with_bias):
    """Output and every gradient as the reference's (fp64), on odd sizes that pooling floors (7×11)."""
    leaves = _leaves((2, 3, 7, 11), 4, kernel_size, memory_format, with_bias)
    expected = _output_and_gradients("torch", leaves, scale)
    actual = _output_and_gradients(name, leaves, scale)
    assert actual[0].shape == (2, 4, 7 // scale, 11 // scale)
    for a, e in zip(actual, expected, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-12, atol=1e-12)


def test_torch_backend_is_the_reference_and_the_kernel_is_box_filtered():
    x, weight, bias = _leaves((1, 2, 6, 6), 3, 3, torch.contiguous_format, True)
    assert torch.equal(conv_avgpool(x, weight, bias), conv_avgpool_ref(x, weight, bias))
    centre = torch.zeros(1, 1, 3, 3)
    centre[0, 0, 1, 1] = 1.0
    expected = torch.zeros(1, 1, 4, 4)
    expected[0, 0, 1:3, 1:3] = 0.25  # the centre tap, seen from each pixel of the 2×2 window
    torch.testing.assert_close(pooled_weight(centre, 2), expected)


@pytest.mark.parametrize("memory_format", [torch.contiguous_format, torch.channels_last], ids=["nchw", "nhwc"])
@pytest.mark.parametrize("k, scale", [(1, 2), (3, 1), (3, 2), (3, 3), (5, 2)])
def test_pooled_weight_is_the_average_pooling_of_the_padded_taps(k, scale, memory_format):
    """The matrix product equals pooling each (Cout, Cin) kernel plane, value and gradient, in either weight layout;
    under bf16 autocast it still multiplies in fp32 (a bf16 product would round the taps to 8 bits)."""
    weight = torch.randn(5, 3, k, k, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    weight = weight.contiguous(memory_format=memory_format).requires_grad_()
    planes = F.pad(weight.reshape(15, 1, k, k), (scale - 1,) * 4)
    expected = F.avg_pool2d(planes, scale, stride=1).view(5, 3, k + scale - 1, k + scale - 1)
    grad = torch.randn(expected.shape, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    actual = pooled_weight(weight, scale)
    torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(*(torch.autograd.grad(y, weight, grad)[0] for y in (actual, expected)))
    single = weight.detach().float()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        under_autocast = pooled_weight(single, scale)
    assert under_autocast.dtype == torch.float32
    torch.testing.assert_close(under_autocast, pooled_weight(single, scale), rtol=0, atol=0)


def test_box_filter_matrix_first_built_during_inference_serves_autograd():
    """The cached matrix is built outside inference mode: an inference-mode tensor could not be saved for backward
    by a later training step's matrix product."""
    _cached_box_filter_matrix.cache_clear()
    weight = torch.randn(2, 3, 3, 3, requires_grad=True)
    with torch.inference_mode():
        pooled_weight(weight, 2)
    pooled_weight(weight, 2).sum().backward()
    torch.testing.assert_close(weight.grad, torch.ones_like(weight))  # each tap spreads 4 × 1/4 over the 4×4 kernel


def test_fused_strided_convolution_under_bf16_autocast(matches_reference):
    """Under autocast the box-filtered fp32 kernel is cast like a plain convolution's weight: bf16 out, as accurate
    as the reference's own bf16 result."""
    x, weight, bias = (t.detach().float() for t in _leaves((2, 8, 8, 8), 8, 3, torch.channels_last, True))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        reference = conv_avgpool_ref(x, weight, bias)
        with backend("fused-torch"):
            fused = conv_avgpool(x, weight, bias)
    matches_reference(fused, reference, conv_avgpool_ref(x.double(), weight.double(), bias.double()), what="out")


@pytest.mark.parametrize(
    "x_shape, weight_shape, scale, match",
    [
        ((2, 3, 8), (4, 3, 3, 3), 2, "x \\(N, Cin, H, W\\)"),
        ((2, 3, 8, 8), (4, 5, 3, 3), 2, "weight \\(Cout, Cin, k, k\\)"),
        ((2, 3, 8, 8), (4, 3, 2, 2), 2, "odd side"),
        ((2, 3, 8, 8), (4, 3, 3, 3), 0, "positive int"),
        ((2, 3, 1, 8), (4, 3, 3, 3), 2, "smaller than the 2×2 pool"),
    ],
)
def test_bad_shapes_say_what_is_wrong(x_shape, weight_shape, scale, match):
    with pytest.raises(ValueError, match=match):
        conv_avgpool(torch.zeros(x_shape), torch.zeros(weight_shape), None, scale)


@pytest.mark.parametrize("name, compiled", [*((name, False) for name in FUSED), ("fused-torch", True)])
def test_fused_discriminator_is_the_same_function(name, compiled):
    """HRGAN's D (both ResBlockDowns through conv_avgpool), fp64, eager or compiled into one graph (Dynamo and
    AOTAutograd): scores, every parameter gradient and the spectral-norm power-iteration vectors as the eager D's."""
    torch.manual_seed(0)
    eager = Discriminator(10, 16).double()
    fused = Discriminator(10, 16).double()
    fused.load_state_dict(eager.state_dict())
    if compiled:
        torch._dynamo.reset()
    call = torch.compile(fused, backend="aot_eager", fullgraph=True) if compiled else fused
    x, y = torch.randn(4, 3, 32, 32, dtype=torch.float64), torch.arange(4)
    results = []
    for network, forward, backend_name in ((eager, eager, "torch"), (fused, call, name)):
        with backend(backend_name):
            scores = forward(x, y)
        scores.mul(torch.linspace(-1, 1, 4, dtype=torch.float64)).sum().backward()
        results.append([scores, *(p.grad for p in network.parameters()), *network.buffers()])
    for a, e in zip(*results, strict=True):
        torch.testing.assert_close(a, e, rtol=1e-9, atol=1e-9)


def _saved_bytes(measure, name: str) -> int:
    """Activation bytes (distinct storages, parameters excluded) a ResBlockDown (128 channels, 32×32, batch 64)
    keeps for backward, on the meta device."""
    block = ResBlockDown(128, 128).to("meta")
    x = torch.empty(64, 128, 32, 32, device="meta", requires_grad=True)
    with backend(name):
        return measure(lambda: block(x), block.parameters())


def test_fused_res_block_down_keeps_no_full_resolution_convolution_output(kept_for_backward):
    """Eager's pools keep their inputs, conv2's and the shortcut's full-resolution outputs; fused keeps neither (its
    shortcut pools x, which the block keeps anyway, and convolves a quarter-size tensor): 3.3 instead of 5.0
    x-sized tensors."""
    eager, fused = _saved_bytes(kept_for_backward, "torch"), _saved_bytes(kept_for_backward, "fused-torch")
    x_bytes = 64 * 128 * 32 * 32 * 4
    assert fused <= eager - 1.5 * x_bytes, (fused / x_bytes, eager / x_bytes)


@pytest.mark.parametrize(
    "device, shape",
    [
        pytest.param("cpu", (8, 16, 16, 16), id="cpu"),
        pytest.param("cuda", (32, 48, 32, 32), marks=pytest.mark.cuda, id="cuda"),
    ],
)
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_fused_is_as_accurate_as_the_reference(device, shape, dtype, matches_reference):
    """The strided convolution with the box-filtered kernel ("triton" runs plain torch for this op, so on the CPU
    too; cuDNN's at D's first-block shape on CUDA): output and every gradient within twice the reference's own error
    against the fp64 truth."""
    leaves = _leaves(shape, shape[1], 3, torch.channels_last, True)
    truth = _output_and_gradients("torch", leaves, 2)
    on_device = [t.detach().to(device, dtype).requires_grad_() for t in leaves]
    reference = _output_and_gradients("torch", on_device, 2)
    fused = _output_and_gradients("triton", on_device, 2)
    for name, a, r, t in zip(("out", "dx", "dweight", "dbias"), fused, reference, truth, strict=True):
        matches_reference(a, r, t.to(device), what=name)
