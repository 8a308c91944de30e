import pytest
import torch
from torch import nn

from fastgan.models.blocks import ConditionalBatchNorm2d, ResBlockUp
from fastgan.models.hrgan import Discriminator, Generator, downsample_to_training, generator_channels
from fastgan.ops import backend


@pytest.mark.parametrize("resolution,blocks", [(32, 3), (64, 4), (128, 5)])
def test_generator_shape_range_and_block_count(resolution, blocks):
    g = Generator(resolution, num_classes=10, z_dim=32, channels=32)
    z, y = torch.randn(3, 32), torch.tensor([0, 4, 9])
    x = g(z, y)
    assert x.shape == (3, 3, resolution, resolution)
    assert x.min() >= -1 and x.max() <= 1
    assert len(g.blocks) == blocks and all(isinstance(b, ResBlockUp) for b in g.blocks)


@pytest.mark.parametrize("resolution", [32, 64, 128])
def test_discriminator_scores_downsampled_output(resolution):
    g, d = Generator(resolution, 10, z_dim=16, channels=16), Discriminator(10, channels=16)
    y = torch.tensor([1, 2])
    fake = downsample_to_training(g(torch.randn(2, 16), y))
    assert fake.shape == (2, 3, 32, 32)
    assert d(fake, y).shape == (2,)


def test_downsample_is_average_pool():
    x = torch.arange(64 * 64, dtype=torch.float32).view(1, 1, 64, 64).expand(1, 3, 64, 64)
    out = downsample_to_training(x)
    assert torch.allclose(out[0, 0, 0, 0], x[0, 0, :2, :2].mean())


def test_discriminator_rejects_high_resolution_input():
    with pytest.raises(ValueError, match="downsample_to_training"):
        Discriminator(10, channels=16)(torch.randn(1, 3, 64, 64), torch.tensor([0]))


def test_generator_refuses_labels_it_would_misread():
    """A wrong-length y was reported as a gain shape mismatch deep in the first block; float labels as an embedding
    error."""
    g = Generator(32, num_classes=10, z_dim=8, channels=8)
    for y in (torch.tensor([0, 1]), torch.tensor([0.0, 1.0, 2.0]), torch.tensor([[0], [1], [2]])):
        with pytest.raises(ValueError, match=r"labels must be integer class indices of shape \(3,\)"):
            g(torch.randn(3, 8), y)


def test_every_discriminator_layer_is_spectrally_normalised():
    d = Discriminator(10, channels=16)
    layers = [m for m in d.modules() if isinstance(m, (nn.Conv2d, nn.Linear, nn.Embedding))]
    assert len(layers) == 4 * 3 + 2
    for layer in layers:
        assert hasattr(layer, "parametrizations") and "weight" in layer.parametrizations
        sigma = torch.linalg.matrix_norm(layer.weight.detach().flatten(1), ord=2)
        assert sigma < 1.5  # one power iteration from a random u already brings σ near 1


def test_spectral_norm_estimates_sigma_without_autocast(monkeypatch):
    """σ's power iteration runs with autocast off (CUDA autocast would run its torch.mv in bf16; CPU autocast stands
    in here), while D's own layers still autocast; a deep copy (EMA, export) normalises its own weights."""
    import copy

    d = Discriminator(10, channels=16)
    autocast_in_power_iteration = []
    mv = torch.mv

    def recorded_mv(*args, **kwargs):
        autocast_in_power_iteration.append(torch.is_autocast_enabled("cpu"))
        return mv(*args, **kwargs)

    monkeypatch.setattr(torch, "mv", recorded_mv)
    features = []
    d.blocks.register_forward_hook(lambda module, args, out: features.append(out.dtype) and None)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        d(torch.randn(2, 3, 32, 32), torch.tensor([1, 2]))
    assert autocast_in_power_iteration and not any(autocast_in_power_iteration)
    assert features == [torch.bfloat16]  # the convolutions themselves ran under autocast
    twin = copy.deepcopy(d)
    normalisation = twin.linear.parametrizations.weight[0]
    assert normalisation.forward.__self__ is normalisation
    assert torch.equal(twin.linear.weight, d.linear.weight)


def test_xavier_uniform_init_and_zero_biases():
    g = Generator(32, 10, z_dim=16, channels=32)
    conv = g.blocks[0].conv1
    fan_in, fan_out = conv.in_channels * 9, conv.out_channels * 9
    bound = (6 / (fan_in + fan_out)) ** 0.5
    assert conv.weight.abs().max() <= bound and conv.weight.abs().max() > 0.9 * bound
    assert torch.count_nonzero(conv.bias) == 0


def test_generator_is_class_conditional():
    g = Generator(32, 10, z_dim=16, channels=16)
    for bn in (m for m in g.modules() if isinstance(m, ConditionalBatchNorm2d)):
        nn.init.normal_(bn.gain.weight, std=0.5)
    g.eval()
    z = torch.randn(1, 16).expand(2, 16)
    x = g(z, torch.tensor([0, 1]))
    assert not torch.allclose(x[0], x[1])


@pytest.mark.parametrize("name", ["torch", "fused-torch"])
def test_conditional_batch_norm_uses_running_statistics_in_eval(name):
    bn, conv = ConditionalBatchNorm2d(4, num_classes=3), nn.Conv2d(4, 2, 3, padding=1)
    x, y = torch.randn(8, 4, 5, 5) * 3 + 2, torch.randint(3, (8,))
    bn.train()
    with backend(name):
        bn.relu_upsample_conv(x, y, conv, scale=1)
        assert torch.allclose(bn.running_mean, 0.1 * x.mean(dim=(0, 2, 3)), atol=1e-5)
        bn.eval()
        single = bn.relu_upsample_conv(x[:1], y[:1], conv, scale=2)
        batch = bn.relu_upsample_conv(x, y, conv, scale=2)
    assert single.shape == (1, 2, 10, 10)
    assert torch.allclose(single, batch[:1], atol=1e-5)  # eval output does not depend on the rest of the batch


def test_generator_channels_halve_above_32():
    assert generator_channels(128, 64) == [64, 64, 64, 32, 16]
    with pytest.raises(ValueError, match="32, 64, 128"):
        generator_channels(256, 64)


def test_explicit_widths_and_their_validation():
    g = Generator(64, 10, z_dim=16, widths=[64, 64, 32, 16, 8])
    assert [b.conv1.out_channels for b in g.blocks] == [64, 32, 16, 8]
    assert g(torch.randn(2, 16), torch.tensor([0, 1])).shape == (2, 3, 64, 64)
    with pytest.raises(ValueError, match="needs 5 entries"):
        Generator(64, 10, widths=[64, 32, 16])


def test_discriminator_takes_one_label_per_image():
    """Labels (N, 1) with N equal to the channel count once broadcast to an (N, C) "score"; one label for all images
    was silently applied to each."""
    d = Discriminator(num_classes=4, channels=8)
    x = torch.randn(8, 3, 32, 32)
    assert d(x, torch.arange(8) % 4).shape == (8,)
    for labels in (torch.zeros(8, 1, dtype=torch.long), torch.zeros(1, dtype=torch.long)):
        with pytest.raises(ValueError, match=r"labels must have shape \(8,\)"):
            d(x, labels)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_classes": 0}, "must be positive"),
        ({"channels": 0}, "must be positive"),
        ({"widths": [16, 16, 0, 16, 16]}, "widths must be positive"),
    ],
)
def test_generator_sizes_must_be_positive(kwargs, match):
    """Zero classes were accepted; a zero width failed in Xavier init with a ZeroDivisionError."""
    with pytest.raises(ValueError, match=match):
        Generator(**{"resolution": 64, "num_classes": 10, "channels": 16, **kwargs})


@pytest.mark.parametrize("shape", [(2, 3, 16, 16), (2, 3, 48, 48), (2, 3, 64, 32)], ids=str)
def test_downsampling_to_training_takes_only_multiples_of_32(shape):
    """16×16 once failed with "stride should not be zero"; 48×48 came back unchanged."""
    with pytest.raises(ValueError, match="multiple of 32"):
        downsample_to_training(torch.randn(shape))
