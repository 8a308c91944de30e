import pytest
import torch
import torch.nn.functional as F

from fastgan.ops import nearest_upsample


@pytest.mark.parametrize("scale", [1, 2, 3])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_matches_interpolate_forward_and_backward(scale, dtype):
    x = torch.randn(2, 3, 5, 7, dtype=dtype, requires_grad=True)
    ref_x = x.detach().clone().requires_grad_()
    out, ref = nearest_upsample(x, scale), F.interpolate(ref_x, scale_factor=scale, mode="nearest")
    assert out.shape == (2, 3, 5 * scale, 7 * scale) and torch.equal(out, ref)
    grad = torch.randn_like(out)
    out.backward(grad)
    ref.backward(grad)
    tol = 1e-6 if dtype == torch.float32 else 3e-2
    assert torch.allclose(x.grad, ref_x.grad, atol=tol, rtol=tol)


def test_gradcheck_and_non_contiguous_input():
    x = torch.randn(2, 4, 3, 3, dtype=torch.float64).transpose(2, 3).requires_grad_()
    assert torch.autograd.gradcheck(lambda t: nearest_upsample(t, 2), (x,))


@pytest.mark.parametrize("scale", [2, 3])
def test_channels_last_input_stays_channels_last(scale):
    """An NHWC network's activations come out NHWC (no layout copy for the next convolution), same values."""
    x = torch.randn(2, 6, 5, 7).contiguous(memory_format=torch.channels_last).requires_grad_()
    out = nearest_upsample(x, scale)
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    assert torch.equal(out, F.interpolate(x.detach().contiguous(), scale_factor=scale, mode="nearest"))
    grad = torch.randn_like(out)
    out.backward(grad)
    assert torch.allclose(x.grad, F.avg_pool2d(grad.contiguous(), scale, divisor_override=1), atol=1e-6)


def test_rejects_non_4d_input():
    with pytest.raises(ValueError, match="N, C, H, W"):
        nearest_upsample(torch.randn(3, 4, 4), 2)


@pytest.mark.parametrize("scale", [0, -1, 2.5, True])
def test_rejects_a_scale_that_is_not_a_positive_integer(scale):
    """0 once returned an empty tensor without complaint."""
    with pytest.raises(ValueError, match="positive integer"):
        nearest_upsample(torch.randn(1, 2, 3, 3), scale)
