"""An in-memory labelled image set: the common form every HRGAN data source is read into."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class ImageSet:
    """N labelled images held as uint8.

    Attributes:
        images: (N, 3, H, W) uint8 RGB.
        labels: (N,) int64 in [0, len(class_names)).
        class_names: one name per class.
        name: where the images came from (for logs and cache keys).
    """

    images: torch.Tensor
    labels: torch.Tensor
    class_names: tuple[str, ...]
    name: str

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4 or self.images.shape[1] != 3:
            raise ValueError(
                f"{self.name}: images must be (N, 3, H, W) uint8, got {self.images.dtype} {tuple(self.images.shape)}"
            )
        if self.labels.is_floating_point() or self.labels.is_complex() or self.labels.dtype == torch.bool:
            raise ValueError(f"{self.name}: labels must be integers (int64 class indices), got {self.labels.dtype}")
        if self.labels.shape != (self.images.shape[0],):
            raise ValueError(
                f"{self.name}: {self.images.shape[0]} images but labels of shape {tuple(self.labels.shape)}"
            )
        if len(self) == 0:
            raise ValueError(f"{self.name}: the image set is empty")
        low, high = int(self.labels.min()), int(self.labels.max())
        if low < 0 or high >= self.num_classes:
            raise ValueError(f"{self.name}: labels span [{low}, {high}] but there are {self.num_classes} classes")

    def __len__(self) -> int:
        return self.labels.numel()

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def resolution(self) -> int:
        return self.images.shape[-1]

    def fingerprint(self) -> str:
        """sha256 of the pixels, labels and class names: changes whenever the data does."""
        digest = hashlib.sha256()
        digest.update(self.images.contiguous().numpy().tobytes())
        digest.update(self.labels.numpy().tobytes())
        digest.update("\n".join(self.class_names).encode())
        return digest.hexdigest()

    def identity(self) -> dict[str, str]:
        """What a resumed run checks its data against: the class names, a sha256 of the labels, and `fingerprint`."""
        labels = hashlib.sha256(self.labels.to(torch.int64).numpy().tobytes()).hexdigest()
        return {"classes": "\n".join(self.class_names), "labels_sha256": labels, "sha256": self.fingerprint()}
