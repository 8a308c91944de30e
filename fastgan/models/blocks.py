"""Residual building blocks of the HRGAN generator and discriminator (BigGAN/SNGAN style)."""

from __future__ import annotations

import types

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from fastgan.ops import conv_avgpool, nearest_upsample
from fastgan.ops.cbn_relu_upsample import CBNReLUUpsample


def _xavier_layer_(layer: nn.Module) -> None:
    nn.init.xavier_uniform_(layer.weight)
    if getattr(layer, "bias", None) is not None:
        nn.init.zeros_(layer.bias)


def xavier_init_(module: nn.Module) -> None:
    """Xavier-uniform weights and zero biases for every conv and linear layer (HRGAN Algorithm 1, line 1). Class
    embeddings are not layers here: `ConditionalBatchNorm2d` starts every class at gain 1, bias 0, as Miyato's
    SNGAN projection code does (BigGAN-PyTorch initialises its embeddings too)."""
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            _xavier_layer_(layer)


def sn_xavier(layer: nn.Module) -> nn.Module:
    """Xavier-uniform-initialise `layer` (zero bias), then spectrally normalise it, σ in fp32 under autocast.

    The order matters: spectral norm estimates σ by power iteration when it is attached, so the
    weights must already be final. CUDA autocast runs torch's power iteration (`torch.mv`) in bf16, which would
    round σ by about 0.4 % a step; the parametrization runs with autocast off instead (the layer's own
    convolution or matmul still autocasts).
    """
    _xavier_layer_(layer)
    layer = spectral_norm(layer)
    normalisation = layer.parametrizations.weight[0]
    normalisation.forward = types.MethodType(_forward_without_autocast, normalisation)  # rebinds on deepcopy
    return layer


def _forward_without_autocast(parametrization: nn.Module, weight: torch.Tensor) -> torch.Tensor:
    """`parametrization`'s own forward with autocast off on CUDA and CPU: weight (fp32) -> normalised weight."""
    with torch.autocast("cuda", enabled=False), torch.autocast("cpu", enabled=False):
        return type(parametrization).forward(parametrization, weight)


class ConditionalBatchNorm2d(CBNReLUUpsample):
    """Batch norm whose affine parameters depend on the class: gain = 1 + embed_g(y), bias = embed_b(y).

    Batch statistics in training, running statistics in eval. The normalisation itself happens inside
    `fastgan.ops.cbn_relu_upsample`, together with the ReLU and up-sampling that always follow it; calling the
    module (``bn(x, gain, bias, scale)``, inherited) returns that activation, `relu_upsample_conv` also the conv.
    """

    def __init__(self, channels: int, num_classes: int, momentum: float = 0.1, eps: float = 1e-5):
        super().__init__(channels, momentum, eps)
        self.gain = nn.Embedding(num_classes, channels)
        self.bias = nn.Embedding(num_classes, channels)
        nn.init.zeros_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def relu_upsample_conv(self, x: torch.Tensor, y: torch.Tensor, conv: nn.Conv2d, scale: int) -> torch.Tensor:
        """(N, C, H, W), labels (N,) -> conv(relu(CBN(x)) nearest-upsampled by `scale`): (N, Cout, sH, sW).

        Fused backends keep only x and recompute the activation in backward; after up-sampling they convolve by
        phases at x's resolution where that saves work, never forming the up-sampled input of `conv`.
        """
        return self.forward_conv(x, 1.0 + self.gain(y), self.bias(y), conv, scale)


class ResBlockUp(nn.Module):
    """Main: CBN → ReLU → nearest ×2 → conv3×3 → CBN → ReLU → conv3×3; shortcut: conv1×1 → nearest ×2.

    The shortcut convolves before up-sampling: a 1×1 convolution commutes with nearest up-sampling, so this is
    the same function at a quarter of the cost and memory. Each CBN → ReLU (→ up-sample) feeds its convolution
    through `cbn_relu_upsample_conv`, which on the fused backends keeps only the block's input and the first
    convolution's output for backward.
    """

    def __init__(self, in_channels: int, out_channels: int, num_classes: int):
        super().__init__()
        self.bn1 = ConditionalBatchNorm2d(in_channels, num_classes)
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1)
        self.bn2 = ConditionalBatchNorm2d(out_channels, num_classes)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W), labels (N,) -> (N, Cout, 2H, 2W)."""
        h = self.bn1.relu_upsample_conv(x, y, self.conv1, scale=2)  # (N, Cout, 2H, 2W)
        h = self.bn2.relu_upsample_conv(h, y, self.conv2, scale=1)
        return h + nearest_upsample(self.shortcut(x), 2)


class ResBlockDown(nn.Module):
    """Main: [ReLU] → conv3×3 → ReLU → conv3×3 → avgpool ×½; shortcut: conv1×1 → avgpool ×½ (spectral norm).

    The first block of the discriminator sees the image, not a feature map, so it has no leading ReLU
    and pools its shortcut before the 1×1 convolution (SNGAN's "optimized" block). Each convolution followed by
    pooling goes through `conv_avgpool`: on the fused backends one strided convolution that computes only the
    pooled outputs.
    """

    def __init__(self, in_channels: int, out_channels: int, first: bool = False):
        super().__init__()
        self.first = first
        self.conv1 = sn_xavier(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = sn_xavier(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shortcut = sn_xavier(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H/2, W/2)."""
        h = x if self.first else F.relu(x)
        h = conv_avgpool(F.relu(self.conv1(h)), self.conv2.weight, self.conv2.bias, 2)
        if self.first:
            return h + self.shortcut(F.avg_pool2d(x, 2))
        return h + conv_avgpool(x, self.shortcut.weight, self.shortcut.bias, 2)


class ResBlock(nn.Module):
    """Main: ReLU → conv3×3 → ReLU → conv3×3; shortcut: conv1×1 (spectral norm); resolution unchanged."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv1 = sn_xavier(nn.Conv2d(in_channels, out_channels, 3, padding=1))
        self.conv2 = sn_xavier(nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.shortcut = sn_xavier(nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, Cin, H, W) -> (N, Cout, H, W)."""
        return self.conv2(F.relu(self.conv1(F.relu(x)))) + self.shortcut(x)
