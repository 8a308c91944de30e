import pytest
import torch
import torch.nn.functional as F

from fastgan.ops import cbn_relu_upsample


def _composed(x, gain, bias, running_mean, running_var, training, scale):
    h = F.batch_norm(x, running_mean, running_var, training=training, momentum=0.1, eps=1e-5)
    h = F.relu(h * gain[:, :, None, None] + bias[:, :, None, None])
    return F.interpolate(h, scale_factor=scale, mode="nearest")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("scale", [1, 2])
def test_equals_batch_norm_relu_interpolate(training, scale):
    x, gain, bias = torch.randn(3, 4, 5, 5) * 2 + 1, torch.rand(3, 4) + 0.5, torch.randn(3, 4)
    mean_a, var_a = torch.randn(4), torch.rand(4) + 0.5
    mean_b, var_b = mean_a.clone(), var_a.clone()
    out = cbn_relu_upsample(x, gain, bias, mean_a, var_a, training=training, scale=scale)
    ref = _composed(x, gain, bias, mean_b, var_b, training, scale)
    assert out.shape == (3, 4, 5 * scale, 5 * scale)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.allclose(mean_a, mean_b) and torch.allclose(var_a, var_b)  # running stats updated alike


def test_gradients_match_the_composition():
    args = [
        torch.randn(2, 3, 4, 4, dtype=torch.float64, requires_grad=True),
        torch.rand(2, 3, dtype=torch.float64, requires_grad=True),
        torch.randn(2, 3, dtype=torch.float64, requires_grad=True),
    ]
    assert torch.autograd.gradcheck(lambda x, g, b: cbn_relu_upsample(x, g, b, scale=2), args)


def test_shape_errors_say_what_was_expected():
    with pytest.raises(ValueError, match="gain, bias \\(N, C\\)"):
        cbn_relu_upsample(torch.randn(2, 3, 4, 4), torch.ones(3), torch.zeros(2, 3))
