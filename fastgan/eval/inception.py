"""The InceptionV3 the field computes FID and the Inception score with: TensorFlow's 2015-12-05 graph as ported to
PyTorch (pytorch-fid's ``pt_inception-2015-12-05-6726825d.pth``), on torchvision's Inception3 with the port's
three differences: average pooling that excludes padding in the A, C and first E blocks, max pooling in the last
E block's pool branch, and 1008 logits. fastgan never downloads the weights: give the file, or put it in torch's
hub cache."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn
from torchvision.models import inception

from fastgan.torch_files import load_tensors

FID_WEIGHTS = "pt_inception-2015-12-05-6726825d.pth"
RESIZE_MODES = ("bilinear", "bicubic", "nearest")


class InceptionWeightsError(FileNotFoundError):
    """No usable FID Inception weights; the message says where to put them."""


def _branches_a(block: nn.Module, x: torch.Tensor, pool) -> list[torch.Tensor]:
    """InceptionA's four branches (torchvision's `_forward`), the pool branch pooling with `pool`."""
    five = block.branch5x5_2(block.branch5x5_1(x))
    double = block.branch3x3dbl_3(block.branch3x3dbl_2(block.branch3x3dbl_1(x)))
    return [block.branch1x1(x), five, double, block.branch_pool(pool(x))]


def _branches_c(block: nn.Module, x: torch.Tensor, pool) -> list[torch.Tensor]:
    """InceptionC's four branches, the pool branch pooling with `pool`."""
    seven = block.branch7x7_3(block.branch7x7_2(block.branch7x7_1(x)))
    double = x
    for i in range(1, 6):
        double = getattr(block, f"branch7x7dbl_{i}")(double)
    return [block.branch1x1(x), seven, double, block.branch_pool(pool(x))]


def _branches_e(block: nn.Module, x: torch.Tensor, pool) -> list[torch.Tensor]:
    """InceptionE's four branches, the pool branch pooling with `pool`."""
    three = block.branch3x3_1(x)
    double = block.branch3x3dbl_2(block.branch3x3dbl_1(x))
    return [
        block.branch1x1(x),
        torch.cat([block.branch3x3_2a(three), block.branch3x3_2b(three)], 1),
        torch.cat([block.branch3x3dbl_3a(double), block.branch3x3dbl_3b(double)], 1),
        block.branch_pool(pool(x)),
    ]


def _average_without_padding(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


def _max(x: torch.Tensor) -> torch.Tensor:
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def _with_pool(block: type[nn.Module], branches, pool) -> type[nn.Module]:
    """A subclass of torchvision's Inception `block` whose `branches` pool with `pool`."""
    return type(f"FID{block.__name__}", (block,), {"_forward": lambda self, x: branches(self, x, pool)})


_BlockA = _with_pool(inception.InceptionA, _branches_a, _average_without_padding)
_BlockC = _with_pool(inception.InceptionC, _branches_c, _average_without_padding)
_BlockE1 = _with_pool(inception.InceptionE, _branches_e, _average_without_padding)
_BlockE2 = _with_pool(inception.InceptionE, _branches_e, _max)


def fid_inception_network() -> torchvision.models.Inception3:
    """The FID InceptionV3 architecture with random weights (load the port's state dict into it)."""
    network = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False)
    network.Mixed_5b, network.Mixed_5c, network.Mixed_5d = _BlockA(192, 32), _BlockA(256, 64), _BlockA(288, 64)
    network.Mixed_6b, network.Mixed_6c = _BlockC(768, 128), _BlockC(768, 160)
    network.Mixed_6d, network.Mixed_6e = _BlockC(768, 160), _BlockC(768, 192)
    network.Mixed_7b, network.Mixed_7c = _BlockE1(1280), _BlockE2(2048)
    return network


class InceptionFeatures(nn.Module):
    """Frozen FID InceptionV3: (N, 3, H, W) float images in [-1, 1], any size → (pool3 (N, 2048), logits (N, 1008)).

    Images are resized to 299×299 (`resize`: bilinear as pytorch-fid, bicubic, or nearest as the HRGAN paper
    describes). The logits are pool3 times the final layer's weights without its bias, as the reference
    Inception-score code computes them.
    """

    def __init__(self, network: torchvision.models.Inception3, resize: str = "bilinear"):
        super().__init__()
        if resize not in RESIZE_MODES:
            raise ValueError(f"unknown resize {resize!r}; choose one of {', '.join(RESIZE_MODES)}")
        self.network, self.resize = network.eval().requires_grad_(False), resize

    def train(self, mode: bool = True) -> InceptionFeatures:
        """The network is frozen: it stays in eval mode (batch norm on its running statistics) whatever `mode` says."""
        return super().train(False)

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"Inception takes (N, 3, H, W) float images in [-1, 1], got {images.dtype} {tuple(images.shape)}"
                " (8-bit images: x / 127.5 - 1; grey ones: repeat the channel)"
            )
        x = images.float()
        if x.shape[-2:] != (299, 299):
            align = False if self.resize != "nearest" else None
            x = F.interpolate(x, size=(299, 299), mode=self.resize, align_corners=align)
        n = self.network
        for layer in (
            n.Conv2d_1a_3x3,
            n.Conv2d_2a_3x3,
            n.Conv2d_2b_3x3,
            n.maxpool1,
            n.Conv2d_3b_1x1,
            n.Conv2d_4a_3x3,
            n.maxpool2,
            n.Mixed_5b,
            n.Mixed_5c,
            n.Mixed_5d,
            n.Mixed_6a,
            n.Mixed_6b,
            n.Mixed_6c,
            n.Mixed_6d,
            n.Mixed_6e,
            n.Mixed_7a,
            n.Mixed_7b,
            n.Mixed_7c,
            n.avgpool,
        ):
            x = layer(x)
        pool = x.flatten(1)
        return pool, pool @ n.fc.weight.T


def fid_weights_path(weights: str | Path | None) -> Path:
    """`weights` if given, else torch's hub cache; InceptionWeightsError saying where to put them otherwise."""
    if weights is not None:
        path = Path(weights).expanduser()
        if path.is_file():
            return path
        raise InceptionWeightsError(f"Inception weights file {path} does not exist; give pytorch-fid's {FID_WEIGHTS}")
    cached = Path(torch.hub.get_dir()) / "checkpoints" / FID_WEIGHTS
    if cached.is_file():
        return cached
    raise InceptionWeightsError(
        f"no FID Inception weights: fastgan never downloads them. Pass --inception-weights PATH to pytorch-fid's "
        f"{FID_WEIGHTS} (the TensorFlow 2015-12-05 graph the field reports FID/IS with), or copy it to {cached}"
    )


def load_inception(weights: str | Path | None = None, resize: str = "bilinear", device="cpu") -> InceptionFeatures:
    """The frozen FID Inception from a weights file or the hub cache."""
    path = fid_weights_path(weights)
    network = fid_inception_network()
    state = load_tensors(path, InceptionWeightsError, "Inception weights", f"give pytorch-fid's {FID_WEIGHTS}")
    try:
        network.load_state_dict(state)
    except Exception as error:  # another network's state dict
        raise InceptionWeightsError(f"{path} is not the FID InceptionV3 state dict ({error})") from error
    return InceptionFeatures(network, resize).to(device)
