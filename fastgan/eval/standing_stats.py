"""BigGAN's "standing statistics": a generator's batch-norm running statistics re-estimated for the weights it has."""

from __future__ import annotations

import torch
from torch import nn


def _batch_norm_layers(module: nn.Module) -> list[nn.Module]:
    """The layers that keep running statistics and update them by `momentum` (nn.BatchNorm2d, CBNReLUUpsample)."""
    return [
        layer
        for layer in module.modules()
        if isinstance(getattr(layer, "running_mean", None), torch.Tensor)
        and isinstance(getattr(layer, "running_var", None), torch.Tensor)
        and hasattr(layer, "momentum")
    ]


@torch.no_grad()
def standing_statistics(generator: nn.Module, batches: int, batch_size: int, seed: int = 0) -> nn.Module:
    """Set every batch-norm layer's running mean and variance to the mean of its batch statistics over `batches`
    training-mode batches of G(z, y) (z ~ N(0, I), uniform labels), the layers before it normalised by those
    batches' own statistics, as they were in training.

    The running averages training leaves trail the weights, and an EMA generator's are averaged alongside weights
    they were not measured with; these are measured for the weights as they are.

    Args:
        generator: an HRGAN generator (`num_classes`, `z_dim` attributes; forward(z (N, z_dim), y (N,))).
        batches, batch_size: how many batches of how many samples.
        seed: the draws of z and y.

    Returns:
        The generator, in eval mode.
    """
    layers = _batch_norm_layers(generator)
    if batches < 1 or batch_size < 2:
        raise ValueError(f"standing statistics need batches ≥ 1 of ≥ 2 samples, got {batches} of {batch_size}")
    if not layers:
        raise ValueError("the generator has no batch-norm layers: there are no statistics to re-estimate")
    device = next(generator.parameters()).device
    momenta = [layer.momentum for layer in layers]
    saved = [(layer.running_mean.clone(), layer.running_var.clone()) for layer in layers]
    sums = [(torch.zeros_like(layer.running_mean), torch.zeros_like(layer.running_var)) for layer in layers]
    noise = torch.Generator().manual_seed(seed)
    try:
        generator.train()
        for layer in layers:
            layer.momentum = 1.0  # the running buffers hold the last batch's statistics
        for _ in range(batches):
            for layer in layers:  # 0·NaN is NaN: a diverged checkpoint's statistics must not leak into the update
                layer.running_mean.zero_()
                layer.running_var.fill_(1.0)
            z = torch.randn(batch_size, generator.z_dim, generator=noise)
            y = torch.randint(generator.num_classes, (batch_size,), generator=noise)
            generator(z.to(device), y.to(device))
            for layer, (mean, var) in zip(layers, sums, strict=True):
                mean += layer.running_mean
                var += layer.running_var
    except BaseException:
        for layer, (mean, var) in zip(layers, saved, strict=True):  # a failed estimate leaves them as they were
            layer.running_mean.copy_(mean)
            layer.running_var.copy_(var)
        raise
    finally:
        for layer, momentum in zip(layers, momenta, strict=True):
            layer.momentum = momentum
        generator.eval()
    for layer, (mean, var) in zip(layers, sums, strict=True):
        layer.running_mean.copy_(mean / batches)
        layer.running_var.copy_(var / batches)
    return generator
