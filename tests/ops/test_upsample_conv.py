import pytest
import torch
import torch.nn.functional as F

from fastgan.ops import upsample_conv as upsample_conv_module
from fastgan.ops.nearest_upsample import is_nhwc
from fastgan.ops.upsample_conv import phase_layout, phase_weight, upsample_conv, upsample_conv_backward

CHANNELS_LAST = torch.channels_last


def _direct(x, weight, bias, scale):
    return F.conv2d(F.interpolate(x, scale_factor=scale, mode="nearest"), weight, bias, padding=weight.shape[-1] // 2)


def _leaves(shape, out_channels, kernel_size, dtype, memory_format, with_bias=True, seed=0):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=generator, dtype=torch.float64).to(dtype).contiguous(memory_format=memory_format)
    weight = torch.randn(out_channels, shape[1], kernel_size, kernel_size, generator=generator, dtype=torch.float64)
    bias = torch.randn(out_channels, generator=generator, dtype=torch.float64) if with_bias else None
    return x, weight.to(dtype), None if bias is None else bias.to(dtype)


def test_layout_of_a_3x3_convolution_after_2x_upsampling():
    """Even output rows read input rows i−1 (tap 0) and i (taps 1, 2); odd ones i (taps 0, 1) and i+1 (tap 2)."""
    layout = phase_layout(2, 3)
    assert (layout.width, layout.padding, layout.starts) == (2, 1, (0, 1))
    assert layout.bins == (((0,), (1, 2)), ((0, 1), (2,)))
    assert layout.multiply_add_ratio == pytest.approx(4 / 9)
    assert layout.output_size(16) == 17


def _check_against_direct(shape, scale, kernel_size, memory_format, with_bias=True, grad_layout=None):
    """Output and every gradient equal (fp64) to autograd through interpolate + conv2d; grad_out laid out by
    `grad_layout` (default: x's layout)."""
    x, weight, bias = _leaves(shape, 4, kernel_size, torch.float64, memory_format, with_bias)
    leaves = {"x": x.clone().requires_grad_(), "weight": weight.clone().requires_grad_()}
    if with_bias:
        leaves["bias"] = bias.clone().requires_grad_()
    ref = _direct(leaves["x"], leaves["weight"], leaves.get("bias"), scale)
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_out = (grad_layout or (lambda t: t.contiguous(memory_format=memory_format)))(grad_out)
    ref.backward(grad_out)

    out = upsample_conv(x, weight, bias, scale)
    grad_x, grad_weight, grad_bias = upsample_conv_backward(grad_out, x, weight, scale, (True, True, with_bias))
    assert out.shape == ref.shape and is_nhwc(out) == is_nhwc(x)  # x's layout (either, where C or H·W is 1)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_x, leaves["x"].grad, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(grad_weight, leaves["weight"].grad, rtol=1e-12, atol=1e-12)
    if with_bias:
        torch.testing.assert_close(grad_bias, leaves["bias"].grad, rtol=1e-12, atol=1e-12)
    else:
        assert grad_bias is None


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_matches_convolution_of_the_upsampled_input(scale, kernel_size, memory_format, with_bias):
    """Odd, non-square input; every scale/kernel pairing takes one of the two interleaving paths (one strided view
    when the phases' first rows step evenly, a copy per phase otherwise)."""
    _check_against_direct((2, 3, 5, 7), scale, kernel_size, memory_format, with_bias)


@pytest.mark.parametrize(
    "grad_layout",
    [
        lambda t: t.contiguous(memory_format=CHANNELS_LAST),
        lambda t: t.transpose(2, 3).contiguous().transpose(2, 3),
        lambda t: t.sum().expand_as(t),  # what .sum().backward() hands down: every stride 0
    ],
    ids=["channels_last", "transposed", "expanded"],
)
def test_takes_a_gradient_in_any_layout(grad_layout):
    _check_against_direct((2, 3, 5, 7), 2, 3, torch.contiguous_format, grad_layout=grad_layout)


@pytest.mark.parametrize("shape", [(1, 1, 1, 1), (1, 2, 1, 3), (3, 1, 2, 1)], ids=str)
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
def test_degenerate_shapes(shape, memory_format):
    """N, C, H or W of 1, where NCHW and channels-last strides are ambiguous."""
    _check_against_direct(shape, 2, 3, memory_format)


def test_backward_computes_only_what_is_asked():
    x, weight, _ = _leaves((1, 2, 4, 4), 3, 3, torch.float32, torch.contiguous_format)
    grad_x, grad_weight, grad_bias = upsample_conv_backward(torch.ones(1, 3, 8, 8), x, weight, 2, (True, False, False))
    assert grad_x.shape == x.shape and grad_weight is None and grad_bias is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("weight_dtype", ["same", "fp32"], ids=["weight-same", "weight-fp32"])
def test_low_precision_within_torchs_own_error(dtype, weight_dtype):
    """In fp16/bf16 — with the weight in that dtype, or in fp32 as under autocast — output and every gradient no
    further from the fp64 truth than torch's own interpolate + conv2d (and autograd) in that dtype, twice over."""
    x, weight, bias = _leaves((2, 8, 6, 6), 8, 3, torch.float64, torch.contiguous_format)
    grad_out = torch.randn(2, 8, 12, 12, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def torch_in(precision):
        leaves = [t.to(precision, copy=True).requires_grad_() for t in (x, weight, bias)]
        out = _direct(*leaves, 2)
        out.backward(grad_out.to(precision))
        return [out, *(leaf.grad for leaf in leaves)]

    truth, low = torch_in(torch.float64), torch_in(dtype)
    conv_weight = weight.to(dtype if weight_dtype == "same" else torch.float32)
    out = upsample_conv(x.to(dtype), conv_weight, bias.to(dtype), 2)
    grads = upsample_conv_backward(grad_out.to(dtype), x.to(dtype), conv_weight, 2, (True, True, True))
    assert out.dtype == grads[0].dtype == dtype and grads[1].dtype == grads[2].dtype == conv_weight.dtype
    for name, got, ref, exact in zip(("out", "dx", "dweight", "dbias"), [out, *grads], low, truth, strict=True):
        torch_error = (ref.double() - exact).abs().max().item()
        error = (got.double() - exact).abs().max().item()
        assert error <= 2 * torch_error + 1e-6 * exact.abs().max().item(), (name, error, torch_error)


def test_phase_weight_sums_the_taps_each_phase_reads():
    weight = torch.arange(9.0).view(1, 1, 3, 3)  # rows [0 1 2], [3 4 5], [6 7 8]
    phases = phase_weight(weight, 2).view(2, 2, 2, 2)  # (p, q, u, v)
    assert phases[0, 0].tolist() == [[0.0, 3.0], [9.0, 24.0]]  # rows {0}, {1, 2} × columns {0}, {1, 2}
    assert phases[1, 1].tolist() == [[8.0, 7.0], [13.0, 8.0]]  # rows {0, 1}, {2} × columns {0, 1}, {2}


def test_tap_sums_are_built_on_the_weights_device_without_a_host_copy():
    """On CUDA a host-to-device copy synchronises, and inside a CUDA graph capture it fails: the tap-sum constant is
    built where the weight lives (meta stands in for the GPU), never copied from the CPU."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class CopiesFromTheHost(TorchDispatchMode):
        def __init__(self):
            super().__init__()
            self.copies = []

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            inputs = [a for a in args if isinstance(a, torch.Tensor)]
            if isinstance(out, torch.Tensor) and out.device.type != "cpu" and any(a.is_cpu for a in inputs):
                self.copies.append(func)
            return out

    upsample_conv_module._tap_sums.cache_clear()
    with CopiesFromTheHost() as mode:
        phases = phase_weight(torch.randn(4, 3, 3, 3, device="meta"), 2)
    assert mode.copies == [] and phases.shape == (16, 3, 2, 2)
    cpu = torch.randn(4, 3, 3, 3)
    upsample_conv_module._tap_sums.cache_clear()
    torch.testing.assert_close(phase_weight(cpu, 2), phase_weight(cpu.double(), 2).float())


def _autograd_matches_direct(fn, scale, kernel_size, memory_format):
    """fn(x, weight, bias, scale) on fp64 leaves: its output (in x's layout) and every gradient equal autograd's
    through interpolate + conv2d."""
    x, weight, bias = _leaves((2, 3, 5, 7), 4, kernel_size, torch.float64, memory_format)
    grad_out = torch.randn(2, 4, 5 * scale, 7 * scale, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    results = []
    for candidate in (_direct, fn):
        leaves = [t.clone().requires_grad_() for t in (x, weight, bias)]
        out = candidate(*leaves, scale)
        out.backward(grad_out)
        results.append([out, *(leaf.grad for leaf in leaves)])
    assert is_nhwc(results[1][0]) == is_nhwc(x)
    for actual, expected in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(actual, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("scale, kernel_size", [(2, 3), (3, 5), (4, 3), (2, 7)])
def test_compiled_forward_is_differentiated_by_autograd(scale, kernel_size):
    """Under torch.compile the phases are interleaved by slices and stacks that AOTAutograd differentiates: output
    and every gradient as autograd through interpolate + conv2d (fp64, one graph)."""
    torch._dynamo.reset()
    compiled = torch.compile(upsample_conv, backend="aot_eager", fullgraph=True)
    _autograd_matches_direct(compiled, scale, kernel_size, CHANNELS_LAST)


@pytest.mark.parametrize("scale", [1, 2, 3, 4])
@pytest.mark.parametrize("kernel_size", [1, 3, 5, 7])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
def test_eager_call_on_inputs_that_require_grad_is_differentiated_by_autograd(scale, kernel_size, memory_format):
    """Called directly under autograd (x, weight and bias leaves), the output and its gradients are autograd's
    through interpolate + conv2d; the copy per phase into one output failed for (3, 3), (3, 5), (4, 3), (4, 5) and
    (4, 7) ("a leaf Variable that requires grad is being used in an in-place operation")."""
    _autograd_matches_direct(upsample_conv, scale, kernel_size, memory_format)
