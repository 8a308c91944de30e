import pytest
import torch
import torch.nn.functional as F

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


@pytest.mark.parametrize("scale", [2, 3])
@pytest.mark.parametrize("kernel_size", [1, 3, 5])
@pytest.mark.parametrize("memory_format", [torch.contiguous_format, CHANNELS_LAST], ids=["nchw", "channels_last"])
@pytest.mark.parametrize("with_bias", [True, False], ids=["bias", "no-bias"])
def test_matches_convolution_of_the_upsampled_input(scale, kernel_size, memory_format, with_bias):
    """Output and every gradient equal to autograd through interpolate + conv2d (fp64, odd non-square input)."""
    x, weight, bias = _leaves((2, 3, 5, 7), 4, kernel_size, torch.float64, memory_format, with_bias)
    leaves = [t.clone().requires_grad_() for t in (x, weight, bias) if t is not None]
    ref = _direct(*leaves, scale) if with_bias else _direct(leaves[0], leaves[1], None, scale)
    grad_out = torch.randn(ref.shape, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    grad_out = grad_out.contiguous(memory_format=memory_format)
    ref.backward(grad_out)

    out = upsample_conv(x, weight, bias, scale)
    grads = upsample_conv_backward(grad_out, x, weight, scale, (True, True, with_bias))
    assert out.shape == ref.shape and out.is_contiguous(memory_format=memory_format)
    torch.testing.assert_close(out, ref, rtol=1e-12, atol=1e-12)
    for got, leaf in zip(grads, leaves, strict=False):
        torch.testing.assert_close(got, leaf.grad, rtol=1e-12, atol=1e-12)
    assert grads[2] is None if not with_bias else grads[2].shape == (4,)


def test_backward_computes_only_what_is_asked():
    x, weight, _ = _leaves((1, 2, 4, 4), 3, 3, torch.float32, torch.contiguous_format)
    grad_x, grad_weight, grad_bias = upsample_conv_backward(torch.ones(1, 3, 8, 8), x, weight, 2, (True, False, False))
    assert grad_x.shape == x.shape and grad_weight is None and grad_bias is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
def test_low_precision_within_torchs_own_error(dtype):
    """In fp16/bf16 (the convolution's dtype under autocast) no further from the fp64 truth than torch's own
    interpolate + conv2d in that dtype, give or take a factor of 2; weight and bias gradients come in fp32 sums."""
    x, weight, bias = _leaves((2, 8, 6, 6), 8, 3, torch.float64, torch.contiguous_format)
    truth = _direct(x, weight, bias, 2)
    torch_error = (_direct(x.to(dtype), weight.to(dtype), bias.to(dtype), 2).double() - truth).abs().max()
    out = upsample_conv(x.to(dtype), weight.to(dtype), bias.to(dtype), 2)
    assert out.dtype == dtype
    assert (out.double() - truth).abs().max() <= 2 * torch_error + 1e-3

    grad_out = torch.randn(truth.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    _, grad_weight, grad_bias = upsample_conv_backward(grad_out, x, weight, 2, (False, True, True))
    got = upsample_conv_backward(grad_out.to(dtype), x.to(dtype), weight.to(dtype), 2, (False, True, True))
    assert got[1].dtype == got[2].dtype == dtype
    for low, exact in zip(got[1:], (grad_weight, grad_bias), strict=True):
        assert (low.double() - exact).abs().max() <= 0.02 * exact.abs().max()


def test_phase_weight_sums_the_taps_each_phase_reads():
    weight = torch.arange(9.0).view(1, 1, 3, 3)  # rows [0 1 2], [3 4 5], [6 7 8]
    phases = phase_weight(weight, 2).view(2, 2, 2, 2)  # (p, q, u, v)
    assert phases[0, 0].tolist() == [[0.0, 3.0], [9.0, 24.0]]  # rows {0}, {1, 2} × columns {0}, {1, 2}
    assert phases[1, 1].tolist() == [[8.0, 7.0], [13.0, 8.0]]  # rows {0, 1}, {2} × columns {0, 1}, {2}
