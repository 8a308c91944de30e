"""Readers that turn the embedded set, CIFAR pickles or a class-folder of images into an `ImageSet`.

Folder readers skip image files they cannot read (each logged as a warning naming it, then a count) and fail only
when nothing usable is left.
"""

from __future__ import annotations

import logging
import pickle
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, UnidentifiedImageError

from fastgan.data.image_set import ImageSet
from fastgan.data.procedural import CLASS_NAMES, render_uint8, sample_scenes

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm"}
_CIFAR = {
    # layout: (train files, class-name meta file, meta key, label key)
    "cifar10": ([f"data_batch_{i}" for i in range(1, 6)], "batches.meta", b"label_names", b"labels"),
    "cifar100": (["train"], "meta", b"fine_label_names", b"fine_labels"),
}


class DataSourceError(ValueError):
    """A data source is missing, corrupt or inconsistent; the message names the file."""


def embedded_image_set(num_images: int, seed: int) -> ImageSet:
    """The procedural set rendered at 32×32, HRGAN's training resolution (`generator_eval.true_renders` draws the
    same scenes at 64/128)."""
    scenes = sample_scenes(num_images, seed)
    return ImageSet(render_uint8(scenes, 32), scenes.labels, CLASS_NAMES, f"embedded(n={num_images},seed={seed})")


def _unpickle(path: Path) -> dict:
    if not path.is_file():
        raise DataSourceError(
            f"CIFAR file {path} is missing; point data.path at the extracted "
            "cifar-10-batches-py or cifar-100-python folder"
        )
    with path.open("rb") as f:
        try:
            content = pickle.load(f, encoding="bytes")
        except Exception as exc:  # a damaged pickle raises nearly anything: bad opcodes, missing globals, lengths
            raise DataSourceError(
                f"CIFAR file {path} is corrupt ({type(exc).__name__}: {exc}); re-extract the archive"
            ) from exc
    if not isinstance(content, dict):
        raise DataSourceError(f"CIFAR file {path} holds a {type(content).__name__}, not a CIFAR dict; re-extract it")
    return content


def _class_names(path: Path, key: bytes) -> tuple[str, ...]:
    try:
        return tuple(name.decode() for name in _unpickle(path)[key])
    except (KeyError, TypeError, AttributeError) as exc:
        raise DataSourceError(f"CIFAR meta file {path} has no list of byte-string class names {key!r}") from exc


def cifar_image_set(root: str | Path, variant: str) -> ImageSet:
    """CIFAR-10/100 training images from the standard python-pickle files under `root`."""
    if variant not in _CIFAR:
        raise DataSourceError(f"unknown CIFAR variant {variant!r}; use one of {sorted(_CIFAR)}")
    root = Path(root).expanduser()
    files, meta_file, names_key, label_key = _CIFAR[variant]
    names = _class_names(root / meta_file, names_key)
    images, labels = [], []
    for name in files:
        batch = _unpickle(root / name)
        if b"data" not in batch or label_key not in batch:
            raise DataSourceError(
                f"CIFAR file {root / name} has no {b'data'!r}/{label_key!r} entries: is it {variant}?"
            )
        data, file_labels = np.asarray(batch[b"data"]), np.asarray(batch[label_key])
        if data.dtype != np.uint8 or file_labels.dtype.kind not in "iu":
            raise DataSourceError(
                f"CIFAR file {root / name}: expected uint8 pixels and integer labels, got {data.dtype} and "
                f"{file_labels.dtype}; re-extract the archive"
            )
        if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or file_labels.shape != (data.shape[0],):
            raise DataSourceError(
                f"CIFAR file {root / name}: expected (N, 3072) pixels and N labels, got "
                f"{data.shape} and {file_labels.shape}"
            )
        images.append(torch.from_numpy(data.reshape(-1, 3, 32, 32)))
        labels.append(torch.as_tensor(file_labels, dtype=torch.int64))
    labels_all = torch.cat(labels)
    if int(labels_all.min()) < 0 or int(labels_all.max()) >= len(names):
        raise DataSourceError(
            f"CIFAR labels under {root} span [{int(labels_all.min())}, {int(labels_all.max())}] "
            f"but {meta_file} names {len(names)} classes: mixed-up CIFAR-10/100 files?"
        )
    return ImageSet(torch.cat(images), labels_all, names, f"{variant}:{root}")


def read_rgb(path: str | Path) -> torch.Tensor:
    """Read an image file of any mode as 8-bit RGB.

    Grey, grey+alpha, palette, CMYK and RGBA images are converted by PIL (alpha is dropped). 16-bit images are
    scaled, not clipped or truncated, to 8 bits: round(v * 255 / 65535) — greyscale ("I;16*" modes, and "I" as older
    PIL versions open 16-bit PNGs; by the image's maximum when a 32-bit "I" image exceeds 65535) and colour, which
    OpenCV decodes (PIL keeps only the high byte). Floating-point images are refused: their range is not known.

    Args:
        path: the image file.

    Returns:
        (3, H, W) uint8 RGB.

    Raises:
        DataSourceError: the file is missing, truncated, corrupt or not an image; the message names it.
    """
    try:
        with Image.open(path) as image:
            if image.mode in ("RGB", "RGBA") and any(";16" in str(t.args) for t in image.tile):
                array = _sixteen_bit_colour(path)  # decoded by OpenCV, not by PIL's truncation
            elif image.mode == "F":
                raise ValueError("floating-point pixels, whose range is not known; convert it to 8 or 16 bits")
            elif image.mode.startswith("I"):  # 16/32-bit integer greyscale: scale, don't clip, to 8 bits
                grey = np.asarray(image, dtype=np.float64)
                full = max(65535.0, float(grey.max(initial=0.0)))
                grey = (grey.clip(0, None) * (255.0 / full)).round().astype(np.uint8)
                array = np.repeat(grey[..., None], 3, axis=2)
            else:
                array = np.array(image.convert("RGB"))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise DataSourceError(f"cannot read image {path}: {exc}; remove or replace the file") from exc
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


def _sixteen_bit_colour(path: str | Path) -> np.ndarray:
    """A 16-bit colour image as (H, W, 3) uint8 RGB, rounded: round(v * 255 / 65535) (alpha dropped)."""
    bgr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_ANYDEPTH)
    if bgr is None:
        raise OSError("OpenCV cannot decode it")
    scaled = bgr[..., ::-1].astype(np.float64) * (255.0 / 65535.0) if bgr.dtype == np.uint16 else bgr[..., ::-1]
    return np.ascontiguousarray(np.round(scaled).astype(np.uint8))


def load_square(path: Path, resolution: int) -> torch.Tensor:
    """Centre-crop an image file to a square and resize it (anti-aliased) -> (3, R, R) uint8."""
    x = read_rgb(path).float().unsqueeze(0)  # (1, 3, H, W)
    side = min(x.shape[-2:])
    top, left = (x.shape[-2] - side) // 2, (x.shape[-1] - side) // 2
    x = x[..., top : top + side, left : left + side]
    if side != resolution:
        x = F.interpolate(x, size=(resolution, resolution), mode="bilinear", antialias=True, align_corners=False)
    return x.round().clamp(0, 255).to(torch.uint8)[0]


def tool_file(name: str) -> bool:
    """Whether a file or folder name is hidden or a tool's (.ipynb_checkpoints, macOS's __MACOSX and ._x.jpg)."""
    return name.startswith((".", "__"))


def class_folder_files(root: str | Path) -> tuple[tuple[str, ...], list[tuple[Path, int]]]:
    """The class names (sorted subfolder names of `root`) and every (image file, label) under them, in order; hidden
    and tools' files and folders (`tool_file`) are left out."""
    root = Path(root).expanduser()
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataSourceError(f"image folder {root} {state}; point data.path (--data-path) at the class folders' root")
    class_dirs = sorted(p for p in root.iterdir() if p.is_dir() and not tool_file(p.name))
    if not class_dirs:
        raise DataSourceError(f"image folder {root} has no class subfolders; put each class's images in root/<class>/")
    files = []
    for label, class_dir in enumerate(class_dirs):
        class_files = sorted(
            p
            for p in class_dir.rglob("*")
            if p.suffix.lower() in IMAGE_SUFFIXES and not any(map(tool_file, p.relative_to(class_dir).parts))
        )
        if not class_files:
            raise DataSourceError(f"class folder {class_dir} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files.extend((path, label) for path in class_files)
    return tuple(p.name for p in class_dirs), files


def read_or_skip(paths: list[Path], read: Callable[[Path], torch.Tensor]) -> list[torch.Tensor | None]:
    """`read(path)` for each path; a file it refuses (DataSourceError) is skipped with a logged warning naming it,
    and the number skipped is logged at the end.

    Returns:
        One image per path, None where the file was skipped.
    """
    images: list[torch.Tensor | None] = []
    for path in paths:
        try:
            images.append(read(path))
        except DataSourceError as exc:
            log.warning("skipping image file %s: %s", path, exc.__cause__ or exc)
            images.append(None)
    skipped = images.count(None)
    if skipped:
        log.warning("%d of %d image files skipped (unreadable or corrupt); see the warnings above", skipped, len(paths))
    return images


def labelled_image_set(
    root: str | Path, class_names: tuple[str, ...], files: list[tuple[Path, int]], images: list[torch.Tensor | None]
) -> ImageSet:
    """The `ImageSet` of a class folder from its `class_folder_files` and their (3, R, R) uint8 images, None where a
    file was skipped.

    Raises:
        DataSourceError: a class has no readable image.
    """
    kept = [(image, label) for image, (_, label) in zip(images, files, strict=True) if image is not None]
    empty = sorted(set(range(len(class_names))) - {label for _, label in kept})
    if empty:
        raise DataSourceError(
            f"class folder(s) {', '.join(class_names[i] for i in empty)} under {root} hold no readable image"
        )
    images = torch.stack([image for image, _ in kept])
    labels = torch.tensor([label for _, label in kept])
    return ImageSet(images, labels, class_names, f"folder:{Path(root).expanduser()}")


def folder_image_set(root: str | Path, resolution: int = 32) -> ImageSet:
    """Images under root/<class name>/ (any size and mode), centre-cropped and resized to `resolution`, skipping
    (with a warning each, and a count) files that cannot be read.

    Raises:
        DataSourceError: the folder is missing or has no class subfolders, or a class has no readable image.
    """
    class_names, files = class_folder_files(root)
    images = read_or_skip([path for path, _ in files], lambda path: load_square(path, resolution))
    return labelled_image_set(root, class_names, files, images)
