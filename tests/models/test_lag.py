"""LAG networks and objectives: shapes at every stage, fade-in continuity, determinism of the centre, the
straight-through rounding, the conditioning and the gradient penalty."""

import pytest
import torch
import torch.nn.functional as F

from fastgan.data.sr_loader import degrade
from fastgan.losses_lag import COLOR_RESOLUTION, downscale, gradient_penalty, lr_conditioning, straight_through_round
from fastgan.models.growing import GrowingSRResNet
from fastgan.models.lag import LAGCritic, LAGGenerator
from fastgan.models.srgan import SRResNet


@pytest.fixture
def networks():
    torch.manual_seed(0)
    generator = LAGGenerator(scale=8, channels=16, blocks=1, noise_dim=4, min_channels=4, bicubic_skip=False)
    return generator, LAGCritic(scale=8, channels=16, blocks=1, min_channels=4)


def test_every_stage_has_its_size(networks):
    generator, critic = networks
    y, z = torch.rand(2, 3, 5, 7) * 2 - 1, torch.randn(2, 4)
    for stage in (1, 2, 3):
        x = generator(y, z, stage, alpha=0.5)
        assert x.shape == (2, 3, 5 * 2**stage, 7 * 2**stage)
        assert critic.project(x, torch.zeros_like(y), stage, 0.5).shape == (2, 16, 5, 7)
        assert critic(x, torch.zeros_like(y), stage, 0.5).shape == (2,)
    assert generator(y, z).shape == (2, 3, 40, 56)


def test_a_stage_starting_to_fade_in_changes_nothing(networks):
    """alpha = 0: the new stage's output is the previous stage's, up-sampled; the critic sees the image pooled."""
    generator, critic = networks
    y, z = torch.rand(2, 3, 4, 4) * 2 - 1, torch.randn(2, 4)
    previous = generator(y, z, stage=1)
    assert torch.allclose(generator(y, z, 2, alpha=0.0), F.interpolate(previous, scale_factor=2), atol=1e-6)
    x, d = torch.randn(2, 3, 16, 16), torch.rand(2, 3, 4, 4)
    assert torch.allclose(critic(x, d, 2, alpha=0.0), critic(F.avg_pool2d(x, 2), d, 1), atol=1e-6)
    assert not torch.allclose(generator(y, z, 2, alpha=0.5), generator(y, z, 2, alpha=0.0))


@pytest.mark.parametrize("grown", ["lag", "srresnet"])
def test_fading_in_with_a_bicubic_skip_starts_from_the_previous_output(grown):
    """With the skip on, alpha = 0 still gives the previous stage's whole output (heads + bicubic) up-sampled."""
    torch.manual_seed(2)
    if grown == "lag":
        net = LAGGenerator(scale=4, channels=8, blocks=1, noise_dim=4, bicubic_skip=True)
        for head in net.to_rgb:  # trained heads: not the zero start
            torch.nn.init.normal_(head.weight, std=0.1)
        y = torch.rand(2, 3, 5, 6) * 2 - 1

        def run(stage, alpha):
            return net(y, None, stage, alpha)
    else:
        net = GrowingSRResNet(SRResNet(scale=4, channels=8, blocks=1, batch_norm=False, bicubic_skip=True))
        y = torch.rand(2, 3, 5, 6)

        def run(stage, alpha):
            return net(y, stage, alpha)

    previous = run(1, 1.0)
    assert torch.allclose(run(2, 0.0), F.interpolate(previous, scale_factor=2), atol=1e-5)
    assert not torch.allclose(run(2, 1.0), run(2, 0.0), atol=1e-3)


def test_centre_is_deterministic_and_samples_differ():
    torch.manual_seed(1)
    generator = LAGGenerator(scale=4, channels=8, blocks=1, noise_dim=4, bicubic_skip=False).eval()
    y = torch.rand(3, 3, 6, 6) * 2 - 1
    assert torch.equal(generator(y), generator(y, torch.zeros(3, 4)))
    assert torch.equal(generator(y), generator(y.clone()))
    assert not torch.allclose(generator(y, torch.randn(3, 4)), generator(y, torch.randn(3, 4)))
    with pytest.raises(ValueError, match="z must be"):
        generator(y, torch.zeros(3, 5))


def test_bicubic_skip_starts_at_the_bicubic_image():
    generator = LAGGenerator(scale=4, channels=8, blocks=1, noise_dim=4, bicubic_skip=True)
    y = torch.rand(2, 3, 6, 6) * 2 - 1
    expected = F.interpolate(y, scale_factor=4, mode="bicubic", align_corners=False)
    assert torch.allclose(generator(y, torch.randn(2, 4)), expected, atol=1e-6)


def test_bad_stage_or_alpha_is_refused(networks):
    generator, _ = networks
    y = torch.zeros(1, 3, 4, 4)
    with pytest.raises(ValueError, match="stage must be in 1..3"):
        generator(y, stage=4)
    with pytest.raises(ValueError, match="alpha"):
        generator(y, stage=2, alpha=1.5)
    with pytest.raises(ValueError, match="scale"):
        LAGGenerator(scale=6)


def test_straight_through_round_rounds_forward_and_passes_gradients():
    x = torch.tensor([0.2, 0.6, -1.4, 2.5001], requires_grad=True)
    y = straight_through_round(x)
    assert y.tolist() == [0.0, 1.0, -1.0, 3.0]
    (y * torch.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [1.0, 2.0, 3.0, 4.0]


def test_conditioning_is_zero_for_the_real_image_and_counts_levels():
    torch.manual_seed(2)
    smooth = F.interpolate(torch.rand(2, 3, 4, 4), size=(32, 32), mode="bilinear", align_corners=True)
    hr = smooth * 0.8 + 0.1  # away from 0 and 1, so bicubic overshoot is never clamped
    y = degrade(hr, 4) * 2 - 1
    for method, factor in (("bicubic", 4), ("area", 2), ("area", 4), ("area", 8)):
        # area: box means of 8-bit values land on .5 ties (14 % of pixels at ×2), which float error tipped either way
        quantised = (hr * 255).round() / 255
        real = lr_conditioning(degrade(quantised, factor, method) * 2 - 1, quantised * 2 - 1, factor, method)
        assert (real == 0).all(), (method, factor)
    real = lr_conditioning(y, hr * 2 - 1, 4)
    assert torch.equal(real, real.round()) and (real == 0).all()  # whole numbers of levels
    shifted = lr_conditioning(y, hr * 2 - 1 + 3 * COLOR_RESOLUTION, 4)  # three 8-bit levels brighter
    assert ((shifted - 3).abs() <= 1).all() and (shifted == 3).float().mean() > 0.99
    edges = torch.zeros(2, 3, 32, 32)
    edges[..., 8:24, 8:24] = 1  # a hard-edged square: bicubic overshoots [0, 1] around it, which `degrade` clamps
    assert (downscale(edges * 2 - 1, 4).abs() > 1).any()
    assert (lr_conditioning(degrade(edges, 4) * 2 - 1, edges * 2 - 1, 4) == 0).all()
    over = torch.full((1, 3, 8, 8), 1.5, requires_grad=True)  # a sample beyond the range, whose input is not white
    lr_conditioning(torch.full((1, 3, 2, 2), 1 - 2 * COLOR_RESOLUTION), over, 4).sum().backward()
    assert (over.grad > 0).all()  # the clamp passes gradients, like the rounding: G can bring the sample back
    x = (hr * 2 - 1 + 0.37 * COLOR_RESOLUTION).requires_grad_(True)
    lr_conditioning(y, x, 4).sum().backward()
    assert x.grad.abs().sum() > 0  # gradients reach the sample through the rounding


def test_gradient_penalty_of_a_linear_critic():
    """C(x) = <w, x> has ∇C = w everywhere, so the penalty is (‖w‖ − 1)² whatever the mix."""
    w = torch.randn(3, 4, 4, requires_grad=True)

    def critic(x):
        return (x * w).flatten(1).sum(1)

    real, fake = torch.randn(5, 3, 4, 4), torch.randn(5, 3, 4, 4)
    penalty = gradient_penalty(critic, real, fake, rho=torch.rand(5))
    expected = (w.detach().norm() - 1) ** 2
    assert penalty.item() == pytest.approx(expected.item(), rel=1e-5)
    penalty.backward()  # differentiable in the critic's parameters: d/dw (‖w‖ − 1)² = 2(‖w‖ − 1) w / ‖w‖
    wd = w.detach()
    assert torch.allclose(w.grad, 2 * (wd.norm() - 1) * wd / wd.norm(), atol=1e-5)
    assert gradient_penalty(critic, real, fake, target=wd.norm().item()).item() == pytest.approx(0.0, abs=1e-6)


def test_growing_srresnet_ends_as_the_plain_network():
    torch.manual_seed(3)
    net = SRResNet(scale=4, channels=8, blocks=1, batch_norm=False, bicubic_skip=True).eval()
    grown = GrowingSRResNet(net).eval()
    lr = torch.rand(2, 3, 6, 5)
    assert torch.allclose(grown(lr, stage=2), net(lr), atol=1e-6)
    assert grown(lr, stage=1).shape == (2, 3, 12, 10)
    faded, first = grown(lr, stage=2, alpha=0.0), grown(lr, stage=1)  # each stage's skip inside the blend
    assert torch.allclose(faded, F.interpolate(first, scale_factor=2), atol=1e-5)
