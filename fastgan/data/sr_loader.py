"""Training pairs for the upscalers: random HR crops and the LR images degraded from them, resumable exactly."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import torch
import torch.nn.functional as F

from fastgan.data.color_jitter import NO_JITTER, check_amplitudes, color_twist, jitter_factors
from fastgan.data.loader import check_loader_kind
from fastgan.data.sources import DataSourceError

DEGRADATIONS = ("bicubic", "area")


def degrade(hr: torch.Tensor, scale: int, method: str = "bicubic") -> torch.Tensor:
    """Down-scale HR images to LR ones, quantised to 8 bits as a saved LR image would be.

    "bicubic" is anti-aliased bicubic interpolation (`F.interpolate(..., antialias=True)`, like PIL's and
    MATLAB's imresize, the SR benchmarks' degradation), clamped to [0, 1]; "area" is the box average of each
    scale×scale block (`F.avg_pool2d`). Both are then rounded to multiples of 1/255.

    Args:
        hr: (B, C, H, W) float in [0, 1]; H and W multiples of `scale`.
        scale: down-scaling factor (>= 1).
        method: "bicubic" or "area".

    Returns:
        (B, C, H/scale, W/scale) float in [0, 1], same dtype and device as `hr`.
    """
    if method not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    if hr.dim() != 4 or not hr.is_floating_point():
        raise ValueError(f"degrade takes float (B, C, H, W) images in [0, 1], got {hr.dtype} {tuple(hr.shape)}")
    if scale < 1:
        raise ValueError(f"scale must be >= 1, got {scale}")
    h, w = hr.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"HR size {h}×{w} must be a multiple of the scale {scale}; crop it first (center_crops)")
    if method == "area":
        lr = F.avg_pool2d(hr, scale)
    else:
        lr = F.interpolate(hr, size=(h // scale, w // scale), mode="bicubic", antialias=True, align_corners=False)
    return lr.clamp(0, 1).mul(255).round().div(255)


def center_crops(images: list[tuple[str, torch.Tensor]], scale: int) -> list[torch.Tensor]:
    """Evaluation images: each centre-cropped to the largest height and width divisible by `scale`.

    Args:
        images: (name, uint8 (3, H, W)) pairs.
        scale: up-scaling factor of the model.

    Returns:
        One float (1, 3, H', W') tensor in [0, 1] per image, H' = H - H % scale, W' = W - W % scale.
    """
    crops = []
    for name, image in images:
        h, w = (size // scale * scale for size in image.shape[-2:])
        if h == 0 or w == 0:
            raise DataSourceError(
                f"image {name} ({image.shape[-2]}×{image.shape[-1]}) is smaller than the scale {scale}"
            )
        top, left = (image.shape[-2] - h) // 2, (image.shape[-1] - w) // 2
        crops.append(image[None, :, top : top + h, left : left + w].float().div(255))
    return crops


def check_patch_source(images: list[tuple[str, torch.Tensor]], crop: int, scale: int, method: str) -> None:
    """Refuse training images or settings no patch loader can use, naming the offending images.

    Args:
        images: (name, uint8 (3, H, W)) training images, each at least crop×crop.
        crop: HR patch side, a multiple of `scale`.
        scale: up-scaling factor of the model.
        method: degradation, one of `DEGRADATIONS`.
    """
    if scale < 1 or crop < scale or crop % scale:
        raise ValueError(f"the crop {crop} must be a positive multiple of the scale {scale}")
    if method not in DEGRADATIONS:
        raise ValueError(f"degradation must be one of {DEGRADATIONS}, got {method!r}")
    if not images:
        raise DataSourceError("no training images: the image source is empty or every image is held out")
    for name, image in images:
        if image.dtype != torch.uint8 or image.dim() != 3 or image.shape[0] != 3:
            raise DataSourceError(
                f"image {name} is {image.dtype} {tuple(image.shape)}; training images must be uint8 (3, H, W) RGB"
            )
    small = [f"{name} ({im.shape[-2]}×{im.shape[-1]})" for name, im in images if min(im.shape[-2:]) < crop]
    if small:
        raise DataSourceError(
            f"image(s) smaller than the {crop}×{crop} crop (height×width): {', '.join(small)}; "
            "remove them or use a smaller crop (sr.crop)"
        )


def patch_plan(seed: int, batch: int, sizes: list[tuple[int, int]], crop: int, batch_size: int) -> torch.Tensor:
    """The random choices of patch batch number `batch`, from a generator seeded by (seed, batch).

    Each patch draws, in order: a uniformly chosen image, its top and left offsets, a horizontal flip and a number
    of 90° turns (drawn whether or not the loader augments, so augmenting does not change the crops).

    Args:
        seed: the loader's seed.
        batch: the batch's number (0, 1, ...).
        sizes: (height, width) of every training image.
        crop: HR patch side.
        batch_size: patches in the batch.

    Returns:
        (batch_size, 5) int64 rows of (image index, top, left, flip 0/1, turns 0-3).
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + batch)
    rows = []
    for _ in range(batch_size):
        image = int(torch.randint(len(sizes), (1,), generator=g))
        height, width = sizes[image]
        top = int(torch.randint(height - crop + 1, (1,), generator=g))
        left = int(torch.randint(width - crop + 1, (1,), generator=g))
        rows.append(
            (image, top, left, int(torch.randint(2, (1,), generator=g)), int(torch.randint(4, (1,), generator=g)))
        )
    return torch.tensor(rows, dtype=torch.int64).view(batch_size, 5)


def images_identity(images: list[tuple[str, torch.Tensor]]) -> str:
    """sha256 of the training images' names and sizes, in order: what decides every crop a patch loader cuts, so a
    run resumes exactly on images moved to another folder, and not on others of the same count."""
    listing = "".join(f"{name}\t{image.shape[-2]}x{image.shape[-1]}\n" for name, image in images)
    return hashlib.sha256(listing.encode()).hexdigest()


def check_same_images(state: dict, identity: str) -> None:
    """Refuse a loader position saved for other images (`images_identity`; absent from checkpoints of older
    versions, which the image count alone checks)."""
    saved = state.get("images_sha256", identity)
    if saved != identity:
        raise ValueError(
            f"the checkpoint's loader saw other images (names and sizes sha256 {saved[:12]}, now {identity[:12]}): "
            "resume with the images it was trained on (sr.images), or start a new run"
        )


class SRPatchLoader:
    """Endless (LR, HR) batches of random `crop`×`crop` HR patches, with flips, 90° turns and optional colour jitter.

    Each patch comes from a uniformly chosen image at a uniformly chosen position. Batch k's choices come from
    a generator seeded by (seed, k) and its jitter factors from `jitter_factors(seed, k)`, so the loader's whole
    state is k: `state_dict` / `load_state_dict` resume it exactly. LR patches are made from the (augmented,
    jittered) HR ones by `degrade`, so both show the same colours.

    Args:
        images: (name, uint8 (3, H, W)) training images, each at least crop×crop.
        crop: HR patch side, a multiple of `scale`.
        scale: up-scaling factor of the model.
        seed: seeds every batch's choices.
        augment: random horizontal flips and rotations by multiples of 90° (the 8 symmetries of the square).
        method: degradation, "bicubic" or "area".
        device: where batches are delivered (patches are cut on the CPU, jittered and degraded on the device).
        color_jitter: (brightness, contrast, saturation) amplitudes a, each in [0, 1): every patch's factors are
            1 + U(-a, a), applied by `color_twist` to the uint8 HR patch after the flip and turn; all 0 (the default)
            leaves the patches untouched.
    """

    def __init__(
        self,
        images: list[tuple[str, torch.Tensor]],
        crop: int,
        scale: int,
        seed: int,
        augment: bool = True,
        method: str = "bicubic",
        device: torch.device | str = "cpu",
        color_jitter: Sequence[float] = NO_JITTER,
    ):
        check_patch_source(images, crop, scale, method)
        self.images, self.crop, self.scale, self.seed = images, crop, scale, seed
        self.augment, self.method, self.device = augment, method, torch.device(device)
        self.color_jitter = check_amplitudes(color_jitter)
        self.sizes = [tuple(image.shape[-2:]) for _, image in images]
        self.images_sha256 = images_identity(images)
        self.batches = 0

    def _patch(self, image: int, top: int, left: int, flip: int, turns: int) -> torch.Tensor:
        """The (3, crop, crop) uint8 patch of one row of `patch_plan`."""
        patch = self.images[image][1][:, top : top + self.crop, left : left + self.crop]
        if self.augment:
            patch = torch.rot90(patch.flip(-1) if flip else patch, turns, dims=(-2, -1))
        return patch

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> LR (B, 3, crop/scale, crop/scale) and HR (B, 3, crop, crop), float32 in [0, 1], on the device."""
        plan = patch_plan(self.seed, self.batches, self.sizes, self.crop, batch_size)
        patches = torch.stack([self._patch(*row) for row in plan.tolist()])  # (B, 3, crop, crop) uint8
        patches = patches.to(self.device, non_blocking=True)
        if any(self.color_jitter):
            patches = color_twist(patches, jitter_factors(self.seed, self.batches, batch_size, self.color_jitter))
        self.batches += 1
        hr = patches.float().div_(255)
        return degrade(hr, self.scale, self.method), hr

    def state_dict(self) -> dict[str, int | str]:
        return {
            "batches": self.batches,
            "seed": self.seed,
            "size": len(self.images),
            "images_sha256": self.images_sha256,
        }

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        check_loader_kind(state, "torch")
        if state["size"] != len(self.images) or state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's loader saw {state['size']} images with seed {state['seed']}, this run has "
                f"{len(self.images)} with seed {self.seed}: resume with the same data and seed"
            )
        check_same_images(state, self.images_sha256)
        self.batches = state["batches"]
