"""Frozen VGG19 feature maps for SRGAN's perceptual (content) loss, from weights the user provides."""

from __future__ import annotations

from pathlib import Path

import torch
import torchvision
from torch import nn

from fastgan.eval.evaluator import IMAGENET_MEAN, IMAGENET_STD
from fastgan.file_hash import sha256_file
from fastgan.torch_files import load_tensors

TORCHVISION_VGG19_FILENAME = "vgg19-dcbb9e9d.pth"  # torchvision's IMAGENET1K_V1 file name
#: torchvision `vgg19().features` index of each ReLU, by the paper's names (VGG_i,j = relu i_j).
VGG19_RELU = {
    "relu1_1": 1, "relu1_2": 3,
    "relu2_1": 6, "relu2_2": 8,
    "relu3_1": 11, "relu3_2": 13, "relu3_3": 15, "relu3_4": 17,
    "relu4_1": 20, "relu4_2": 22, "relu4_3": 24, "relu4_4": 26,
    "relu5_1": 29, "relu5_2": 31, "relu5_3": 33, "relu5_4": 35,
}  # fmt: skip


class VGGWeightsError(FileNotFoundError):
    """No usable VGG19 weights; the message says where to put them."""


def vgg19_cache_path() -> Path:
    """Where torchvision keeps its ImageNet VGG19 weights once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_VGG19_FILENAME


def resolve_vgg19_weights(weights: str | Path | None) -> Path:
    """`weights` if given, else torchvision's cache; fastgan never downloads them."""
    path = Path(weights).expanduser() if weights is not None else vgg19_cache_path()
    if path.is_file():
        return path
    raise VGGWeightsError(
        f"no VGG19 weights at {path}. fastgan never downloads weights: pass sr.vgg_weights=PATH (a torchvision "
        f"VGG19 state dict, {TORCHVISION_VGG19_FILENAME}) or copy that file to {vgg19_cache_path()}"
    )


def _float32(value):
    """A floating-point tensor in float32; anything else as it is (load_state_dict says what is wrong with it)."""
    return value.float() if isinstance(value, torch.Tensor) and value.is_floating_point() else value


class VGGFeatures(nn.Module):
    """Images (N, 3, H, W) in [0, 1] -> VGG19 feature map after `layer` (e.g. relu5_4 for the paper's VGG54).

    Frozen and always in eval mode; gradients flow to the input. Only the layers up to `layer` are kept.
    `fingerprint` names the weights (the sha256 of their file, "" if none), which a resumed SRGAN run must share.
    """

    def __init__(self, layer: str, state_dict: dict[str, torch.Tensor], fingerprint: str = ""):
        super().__init__()
        self.fingerprint = fingerprint
        if layer not in VGG19_RELU:
            raise ValueError(f"unknown VGG19 layer {layer!r}; choose one of {', '.join(VGG19_RELU)}")
        with torch.device("meta"):  # not 3 s of random initialisation that the weights replace
            network = torchvision.models.vgg19()
        try:  # float32 as the network's own parameters are (a half-precision file is widened)
            network.load_state_dict({name: _float32(value) for name, value in state_dict.items()}, assign=True)
        except RuntimeError as exc:
            raise VGGWeightsError(f"the weights do not match torchvision's VGG19: {exc}") from exc
        self.layer = layer
        self.features = network.features[: VGG19_RELU[layer] + 1]
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> VGGFeatures:
        """Frozen: stays in eval mode whatever `mode` says."""
        return super().train(False)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, H, W) in [0, 1] -> (N, C_layer, H', W')."""
        return self.features((images - self.mean) / self.std)


def load_vgg_features(layer: str, weights: str | Path | None, device: torch.device | str = "cpu") -> VGGFeatures:
    """VGGFeatures from a torchvision VGG19 state dict file (or torchvision's cache when `weights` is None)."""
    path = resolve_vgg19_weights(weights)
    state = load_tensors(
        path, VGGWeightsError, "VGG19 weights", f"pass torchvision's VGG19 state dict ({TORCHVISION_VGG19_FILENAME})"
    )
    if not isinstance(state, dict):
        raise VGGWeightsError(f"{path} is not a state dict")
    return VGGFeatures(layer, state, sha256_file(path)).to(device)
