import pytest
import torch
import torchvision
from torch.utils.flop_counter import FlopCounterMode

from fastgan.losses_sr import discriminator_loss, generator_adversarial_loss, perceptual_loss, pixel_loss
from fastgan.models.srgan import SRDiscriminator, SRResNet
from fastgan.models.vgg import VGG19_RELU, VGGFeatures, VGGWeightsError, load_vgg_features
from fastgan.ops import backend


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("batch_norm", [True, False])
def test_generator_shapes(scale, batch_norm):
    g = SRResNet(scale, channels=8, blocks=2, batch_norm=batch_norm)
    assert g(torch.rand(2, 3, 12, 10)).shape == (2, 3, 12 * scale, 10 * scale)
    with pytest.raises(ValueError, match="scale must be one of"):
        SRResNet(3)


@pytest.mark.parametrize("scale", [2, 4])
def test_flops_per_output_pixel_matches_torch_flop_counter(scale):
    g = SRResNet(scale, channels=16, blocks=3, batch_norm=False)
    with FlopCounterMode(display=False) as counter:
        out = g(torch.rand(1, 3, 8, 8))
    assert g.flops_per_output_pixel() == pytest.approx(counter.get_total_flops() / out[0, 0].numel(), rel=1e-9)


def test_fused_generator_equals_eager():
    torch.manual_seed(0)
    g = SRResNet(4, channels=4, blocks=1, batch_norm=False)
    for module in g.modules():
        if isinstance(module, torch.nn.PReLU) or type(module).__name__ == "PixelShufflePReLU":
            torch.nn.init.uniform_(module.weight, -0.5, 0.5)  # negative slopes too
    lr = torch.rand(2, 3, 6, 5)
    results = {}
    for name in ("torch", "fused-torch", "triton"):
        g.zero_grad()
        with backend(name):
            out = g(lr)
        out.square().mean().backward()
        results[name] = [out.detach()] + [p.grad.clone() for p in g.parameters()]
    for name in ("fused-torch", "triton"):
        for got, ref in zip(results[name], results["torch"], strict=True):
            assert torch.allclose(got, ref, rtol=1e-5, atol=1e-6), name


def test_discriminator_takes_any_crop_size():
    d = SRDiscriminator(channels=8)
    assert d(torch.rand(2, 3, 96, 96)).shape == (2,)
    assert d(torch.rand(2, 3, 40, 56)).shape == (2,)


@pytest.fixture(scope="module")
def vgg_state():
    torch.manual_seed(0)
    return torchvision.models.vgg19().state_dict()


@pytest.mark.parametrize("layer,channels,stride", [("relu2_2", 128, 2), ("relu5_4", 512, 16)])
def test_vgg_features_stop_at_the_chosen_relu(vgg_state, layer, channels, stride):
    vgg = VGGFeatures(layer, vgg_state)
    assert isinstance(vgg.features[-1], torch.nn.ReLU)
    assert vgg(torch.rand(1, 3, 64, 64)).shape == (1, channels, 64 // stride, 64 // stride)
    assert not any(p.requires_grad for p in vgg.parameters())
    vgg.train()
    assert not vgg.training


def test_every_vgg19_relu_name_points_at_its_relu():
    """relu{b}_{i} is the ReLU after the i-th convolution of block b (blocks of 2, 2, 4, 4, 4 convolutions):
    five layers share relu5_*'s shape, so only counting the convolutions tells a wrong index."""
    with torch.device("meta"):  # the layers alone
        features = torchvision.models.vgg19().features
    blocks = (2, 2, 4, 4, 4)
    for name, index in VGG19_RELU.items():
        block, conv = (int(part) for part in name.removeprefix("relu").split("_"))
        convolutions = sum(isinstance(layer, torch.nn.Conv2d) for layer in features[: index + 1])
        assert isinstance(features[index], torch.nn.ReLU) and convolutions == sum(blocks[: block - 1]) + conv, name


def test_vgg_errors_say_what_to_do(vgg_state, tmp_path):
    with pytest.raises(ValueError, match="unknown VGG19 layer"):
        VGGFeatures("relu6_1", vgg_state)
    with pytest.raises(VGGWeightsError, match="never downloads"):
        load_vgg_features("relu5_4", tmp_path / "missing.pth")
    (tmp_path / "bad.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(VGGWeightsError, match="cannot read"):
        load_vgg_features("relu5_4", tmp_path / "bad.pth")
    torch.save(vgg_state, tmp_path / "vgg19.pth")
    assert load_vgg_features("relu2_2", tmp_path / "vgg19.pth").layer == "relu2_2"


def test_losses(vgg_state):
    hr, sr = torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32, requires_grad=True)
    assert pixel_loss(hr, hr) == 0 and pixel_loss(sr, hr, "l1") > 0
    with pytest.raises(ValueError, match="pixel loss"):
        pixel_loss(sr, hr, "ssim")
    vgg = VGGFeatures("relu2_2", vgg_state)
    assert perceptual_loss(vgg, hr, hr) == 0
    perceptual_loss(vgg, sr, hr).backward()
    assert sr.grad is not None and sr.grad.abs().sum() > 0
    real, fake = torch.tensor([3.0, 2.0]), torch.tensor([-3.0, -2.0])
    assert discriminator_loss(real, fake, relativistic=False) < discriminator_loss(fake, real, relativistic=False)
    assert discriminator_loss(real, fake, relativistic=True) < discriminator_loss(fake, real, relativistic=True)
    assert generator_adversarial_loss(None, real, relativistic=False) < generator_adversarial_loss(None, fake, False)
    with pytest.raises(ValueError, match="relativistic"):
        generator_adversarial_loss(None, fake, relativistic=True)


def test_bicubic_skip_adds_detail_to_bicubic_upsampling():
    g = SRResNet(2, channels=4, blocks=1, batch_norm=False, bicubic_skip=True)
    torch.nn.init.zeros_(g.tail.weight)
    torch.nn.init.zeros_(g.tail.bias)
    lr = torch.rand(1, 3, 6, 7)
    bicubic = torch.nn.functional.interpolate(lr, scale_factor=2, mode="bicubic", align_corners=False)
    assert torch.allclose(g(lr), bicubic)
