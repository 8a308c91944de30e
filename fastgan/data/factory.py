"""Which loader a run uses (`data.loader`: auto, dali or torch) and the readers and loaders of that kind.

"dali" runs the pixel work in DALI pipelines (`fastgan.data.dali_loader`, `fastgan.data.dali_sources`), on the
training GPU or on the CPU; "torch" is the fallback that needs no DALI (`InMemoryLoader`, `SRPatchLoader`, PIL
decoding). Both draw the same order, flips, crops and colour-jitter factors from the same seed, and both skip
unreadable or corrupt image files with a warning naming each. "auto" picks DALI when it is installed and
either the images are decoded from a folder or the run is on a GPU; in-memory sets on a CPU keep the torch loader,
which is as fast there (README, "Data loading"). DALI is imported only when a DALI reader or loader is built.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from fastgan.data.color_jitter import NO_JITTER
from fastgan.data.image_set import ImageSet
from fastgan.data.loader import InMemoryLoader
from fastgan.data.sources import folder_image_set
from fastgan.data.sr_loader import SRPatchLoader
from fastgan.data.sr_sources import NamedImages, folder_images
from fastgan.data.video_sources import video_frames

LOADERS = ("auto", "dali", "torch")
DALI_INSTALL = "pip install nvidia-dali-cuda120 (its CPU pipelines need no GPU), or fastgan's `dali` extra"


def dali_available() -> bool:
    """Whether NVIDIA DALI is installed (without importing it)."""
    try:
        return importlib.util.find_spec("nvidia.dali") is not None
    except ModuleNotFoundError:  # no `nvidia` namespace package at all
        return False


def resolve_loader(
    requested: str, file_based: bool, device: torch.device, resumed: dict[str, Any] | None = None
) -> str:
    """The kind of loader, "dali" or "torch", a run uses.

    Args:
        requested: the run's data.loader, "auto", "dali" or "torch".
        file_based: the training images are decoded from a folder of files.
        device: the training device.
        resumed: the checkpoint's loader state when resuming: the run keeps the loader that wrote it.

    Raises:
        ValueError: the loader needs DALI and DALI is not installed.
    """
    if requested not in LOADERS:
        raise ValueError(f"data.loader must be one of {LOADERS}, got {requested!r}")
    if resumed is not None:
        kind = resumed.get("loader", "torch")
    elif requested == "auto":
        kind = "dali" if dali_available() and (file_based or device.type == "cuda") else "torch"
    else:
        kind = requested
    if kind == "dali" and not dali_available():
        raise ValueError(f"this run's batches come from the DALI loader, and DALI is not installed: {DALI_INSTALL}")
    return kind


def class_folder_image_set(kind: str, root: str | Path, device: torch.device) -> ImageSet:
    """A 32×32 class-folder image set decoded by DALI or by PIL (either skips unreadable and corrupt files)."""
    if kind == "torch":
        return folder_image_set(root)
    from fastgan.data.dali_loader import dali_device_id
    from fastgan.data.dali_sources import dali_folder_image_set

    return dali_folder_image_set(root, device_id=dali_device_id(device))


def image_folder(kind: str, root: str | Path, device: torch.device) -> NamedImages:
    """Every image under a folder at its own size, decoded by DALI or by PIL (either skips unreadable and corrupt
    files)."""
    if kind == "torch":
        return folder_images(root)
    from fastgan.data.dali_loader import dali_device_id
    from fastgan.data.dali_sources import dali_folder_images

    return dali_folder_images(root, dali_device_id(device))


def video(kind: str, path: str | Path, every: int, limit: int, device: torch.device) -> NamedImages:
    """Every `every`-th frame of a video (at most `limit`; 0: all), decoded by DALI's video reader or by OpenCV."""
    if kind == "torch":
        return video_frames(path, every, limit)
    from fastgan.data.dali_loader import dali_device_id
    from fastgan.data.video_sources import dali_video_frames

    return dali_video_frames(path, every, limit, dali_device_id(device))


def image_loader(
    kind: str,
    image_set: ImageSet,
    seed: int,
    flip: bool,
    device: torch.device,
    color_jitter: Sequence[float] = NO_JITTER,
):
    """HRGAN batches: `InMemoryLoader` or `DALIImageLoader` (the same order, flips and colour-jitter factors)."""
    if kind == "torch":
        return InMemoryLoader(image_set, seed, flip, device, color_jitter)
    from fastgan.data.dali_loader import DALIImageLoader

    return DALIImageLoader(image_set, seed, flip, device, color_jitter)


def patch_loader(
    kind: str,
    images: NamedImages,
    crop: int,
    scale: int,
    seed: int,
    augment: bool,
    method: str,
    device: torch.device,
    color_jitter: Sequence[float] = NO_JITTER,
):
    """Upscaler (LR, HR) batches: `SRPatchLoader` or `DALIPatchLoader` (the same crops, flips, turns and colour-jitter
    factors)."""
    if kind == "torch":
        return SRPatchLoader(images, crop, scale, seed, augment, method, device, color_jitter)
    from fastgan.data.dali_loader import DALIPatchLoader

    return DALIPatchLoader(images, crop, scale, seed, augment, method, device, color_jitter)
