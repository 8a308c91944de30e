"""The frozen MobileNetV3-small evaluator E whose MobileNet score guides the HRGAN generator."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fastgan.file_hash import sha256_file
from fastgan.torch_files import load_tensors

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
TORCHVISION_FILENAME = "mobilenet_v3_small-047dcff4.pth"  # torchvision's IMAGENET1K_V1 file name
EVALUATOR_FORMAT = "fastgan-evaluator-v1"
EMBEDDED_EVALUATOR = "embedded_mobilenet_v3_small.pt"


class EvaluatorWeightsError(FileNotFoundError):
    """Raised when no usable evaluator weights can be found; the message says where to put them."""


@dataclass(frozen=True)
class EvaluatorSpec:
    """What an evaluator file declares about itself."""

    num_classes: int
    resolution: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    fingerprint: str  # sha256 of the weights file


class Evaluator(nn.Module):
    """Frozen MobileNetV3-small: generator images in [-1, 1] at any resolution -> class logits.

    Images are mapped to the evaluator's own resolution (bilinear, anti-aliased when shrinking) and
    normalisation. Parameters never train and the network stays in eval mode, but gradients flow
    through it to its input.
    """

    def __init__(self, network: nn.Module, spec: EvaluatorSpec):
        super().__init__()
        self.network, self.spec = network, spec
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1))
        self.requires_grad_(False)
        super().train(False)

    def train(self, mode: bool = True) -> Evaluator:
        """The evaluator is frozen: it stays in eval mode whatever `mode` says."""
        return super().train(False)

    def _prepare(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> (N, 3, r, r) at the evaluator's resolution, ImageNet-normalised."""
        if images.dim() != 4 or images.shape[1] != 3 or not images.is_floating_point():
            raise ValueError(
                f"the evaluator takes (N, 3, R, R) float images in [-1, 1], got {images.dtype} {tuple(images.shape)}"
                " (8-bit images: x / 127.5 - 1)"
            )
        x = (images.float() + 1.0) * 0.5
        size = self.spec.resolution
        if x.shape[-1] != size or x.shape[-2] != size:
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False, antialias=x.shape[-1] > size)
        return (x - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(N, 3, R, R) in [-1, 1] -> (N, num_classes) logits."""
        return self.network(self._prepare(images))

    def features(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(N, 3, R, R) in [-1, 1] -> (pooled features (N, 576), logits (N, num_classes)): the evaluator's own
        feature space, where fastgan measures Fréchet distances when no Inception weights are at hand."""
        pooled = self.network.avgpool(self.network.features(self._prepare(images))).flatten(1)
        return pooled, self.network.classifier(pooled)


def embedded_evaluator_path() -> Path:
    """The MobileNetV3-small that fastgan trained on its embedded dataset (shipped with the package)."""
    return Path(str(resources.files("fastgan.eval") / "weights" / EMBEDDED_EVALUATOR))


def torchvision_cache_path() -> Path:
    """Where torchvision keeps its ImageNet MobileNetV3-small weights once downloaded."""
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILENAME


def default_evaluator_weights(weights: str | Path | None, data_source: str) -> str | Path | None:
    """`weights` if given; the shipped evaluator for the embedded dataset; else None (torchvision's cache)."""
    if weights is None and data_source == "embedded":
        return embedded_evaluator_path()
    return weights


def resolve_evaluator_weights(weights: str | Path | None) -> Path:
    """The file to load: `weights` if given, else torchvision's cache; a clear error if neither exists."""
    if weights is not None:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise EvaluatorWeightsError(
                f"evaluator weights file {path} does not exist; pass a torchvision MobileNetV3-small state dict "
                f"({TORCHVISION_FILENAME}) or a fastgan evaluator file (python -m fastgan.eval.train_evaluator)"
            )
        return path
    cached = torchvision_cache_path()
    if cached.is_file():
        return cached
    raise EvaluatorWeightsError(
        "no MobileNetV3-small evaluator weights found. fastgan never downloads them: pass --evaluator-weights "
        f"PATH, or copy torchvision's ImageNet file {TORCHVISION_FILENAME} to {cached}. The embedded dataset "
        f"uses the evaluator fastgan ships ({embedded_evaluator_path()})."
    )


def load_evaluator(weights: str | Path | None, device: torch.device | str = "cpu") -> Evaluator:
    """Load a frozen evaluator from a fastgan evaluator file or a torchvision MobileNetV3-small state dict.

    Args:
        weights: file path, or None for torchvision's cache.
        device: where the evaluator runs.
    """
    path = resolve_evaluator_weights(weights)
    payload = load_tensors(
        path,
        EvaluatorWeightsError,
        "evaluator weights",
        f"pass a torchvision MobileNetV3-small state dict ({TORCHVISION_FILENAME}) or a fastgan evaluator file",
    )
    if isinstance(payload, dict) and payload.get("format") == EVALUATOR_FORMAT:
        state = payload["state_dict"]
        resolution, mean, std = int(payload["resolution"]), tuple(payload["mean"]), tuple(payload["std"])
    else:
        state, resolution, mean, std = payload, 224, IMAGENET_MEAN, IMAGENET_STD
    head = state.get("classifier.3.weight") if isinstance(state, dict) else None
    if head is None:
        raise EvaluatorWeightsError(f"{path} is not a MobileNetV3-small state dict (no classifier.3.weight)")
    network = torchvision.models.mobilenet_v3_small(num_classes=head.shape[0])
    try:
        network.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as exc:
        raise EvaluatorWeightsError(f"{path} does not match torchvision's MobileNetV3-small: {exc}") from exc
    spec = EvaluatorSpec(head.shape[0], resolution, mean, std, sha256_file(path))
    return Evaluator(network, spec).to(device)
