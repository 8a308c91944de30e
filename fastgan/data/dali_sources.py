"""Folders of image files decoded by a DALI pipeline: on the GPU (device="mixed") with a device_id, else on the CPU.

The DALI counterparts of `fastgan.data.sources.folder_image_set` and `fastgan.data.sr_sources.folder_images`. A file
that cannot be read or decoded is skipped, never fatal: each one is logged as a warning naming it, and the total is
logged once the folder is read. Files are read in Python (bytes only) and fed to the pipeline, so an unreadable file
is caught before DALI sees it, and a batch DALI cannot decode is decoded again file by file to find the culprits.
Formats DALI's decoder lacks (GIF), and TIFF, whose float and 32-bit samples DALI treats otherwise than `read_rgb`
(it clips floats that `read_rgb` refuses as of unknown range, and refuses 32-bit integers that `read_rgb` scales), are
read by the PIL readers, so both loaders keep the same files, with the same pixels.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from fastgan.data.dali_pipelines import decoded_images
from fastgan.data.image_set import ImageSet
from fastgan.data.sources import class_folder_files, labelled_image_set, load_square, read_or_skip, read_rgb
from fastgan.data.sr_sources import NamedImages, image_files, readable_images

log = logging.getLogger(__name__)

#: Files decoded per pipeline run.
DECODE_BATCH = 32
#: Suffixes DALI's image decoder reads as `read_rgb` does (JPEG, PNG, BMP, WebP, PNM); other image files go to PIL.
DALI_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".ppm"}


def dali_reason(exc: Exception) -> str:
    """The operator's own complaint inside a DALI pipeline error (which otherwise repeats the pipeline's code)."""
    text = str(exc)
    reason = text.split("encountered:", 1)[-1].split("Current pipeline object", 1)[0].strip()
    return (reason or text).splitlines()[0].strip()


class _Decoder:
    """A synchronous decoding pipeline, rebuilt after a failure (a DALI pipeline that failed cannot run again)."""

    def __init__(self, resolution: int | None, device_id: int | None, batch_size: int, num_threads: int):
        self.resolution, self.device_id, self.batch_size, self.num_threads = (
            resolution,
            device_id,
            batch_size,
            num_threads,
        )
        self._pipeline = None

    def __call__(self, encoded: list[np.ndarray]) -> list[torch.Tensor]:
        """Encoded files (each a uint8 byte array) -> uint8 (3, H, W) RGB images; raises RuntimeError if any fails."""
        if self._pipeline is None:
            self._pipeline = decoded_images(
                self.resolution,
                batch_size=self.batch_size,
                num_threads=self.num_threads,
                device_id=self.device_id,
                exec_async=False,
                exec_pipelined=False,
                prefetch_queue_depth=1,
            )
            self._pipeline.build()
        self._pipeline.feed_input("encoded", encoded)
        try:
            (images,) = self._pipeline.run()
        except RuntimeError:
            self._pipeline = None
            raise
        if self.device_id is not None:
            images = images.as_cpu()
        return [torch.from_numpy(np.array(images[i])).permute(2, 0, 1).contiguous() for i in range(len(images))]


def _over_pixel_limit(encoded: np.ndarray) -> str | None:
    """Why `read_rgb` refuses an image this large (PIL's decompression-bomb limit, from the header alone), or None:
    both readers keep the same files, and DALI is not handed a bomb. A header PIL cannot parse is DALI's to judge."""
    try:
        with Image.open(io.BytesIO(encoded)):
            return None
    except Image.DecompressionBombError as exc:
        return f"{exc}; downscale it"
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        return None


def decode_files(
    paths: list[Path],
    resolution: int | None = None,
    device_id: int | None = None,
    batch_size: int = DECODE_BATCH,
    num_threads: int | None = None,
) -> list[torch.Tensor | None]:
    """Decode image files with DALI, skipping (with a logged warning each) those that cannot be read or decoded.

    Args:
        paths: the image files.
        resolution: centre-crop each image to a square and resize it to resolution×resolution; None keeps its size.
        device_id: the GPU that decodes ("mixed"), or None for the CPU.
        batch_size: files per pipeline run.
        num_threads: DALI's CPU threads (default: all cores).

    Returns:
        One uint8 (3, H, W) RGB image per path, None where the file was skipped.
    """
    decoder = _Decoder(resolution, device_id, batch_size, num_threads or os.cpu_count() or 1)
    images: list[torch.Tensor | None] = [None] * len(paths)
    skipped = 0

    def skip(path: Path, reason: str) -> None:
        nonlocal skipped
        skipped += 1
        log.warning("skipping image file %s: %s", path, reason)

    for start in range(0, len(paths), batch_size):
        batch = []
        for i in range(start, min(start + batch_size, len(paths))):
            try:
                data = np.fromfile(paths[i], dtype=np.uint8)
            except OSError as exc:
                skip(paths[i], f"cannot read it ({exc})")
                continue
            if data.size == 0:
                skip(paths[i], "it is empty")
            elif (too_large := _over_pixel_limit(data)) is not None:
                skip(paths[i], too_large)
            else:
                batch.append((i, data))
        if not batch:
            continue
        try:
            decoded = decoder([data for _, data in batch])
        except RuntimeError:  # find the files DALI cannot decode, one at a time
            decoded = []
            for i, data in batch:
                try:
                    decoded.extend(decoder([data]))
                except RuntimeError as exc:
                    skip(paths[i], f"DALI cannot decode it ({dali_reason(exc)})")
                    decoded.append(None)
        for (i, _), image in zip(batch, decoded, strict=True):
            images[i] = image
    if skipped:
        log.warning("%d of %d image files skipped (unreadable or corrupt); see the warnings above", skipped, len(paths))
    return images


def _decode_with_fallback(
    paths: list[Path], resolution: int | None, device_id: int | None, pil_read: Callable[[Path], torch.Tensor]
) -> list[torch.Tensor | None]:
    """`decode_files` for the formats DALI decodes as `read_rgb` does; the others (GIF, TIFF) through `pil_read`, as
    the torch loader's reader does, so that both readers keep the same files."""
    images: list[torch.Tensor | None] = [None] * len(paths)
    by_dali = [i for i, path in enumerate(paths) if path.suffix.lower() in DALI_SUFFIXES]
    by_pil = [i for i, path in enumerate(paths) if path.suffix.lower() not in DALI_SUFFIXES]
    for index, image in zip(by_dali, decode_files([paths[i] for i in by_dali], resolution, device_id), strict=True):
        images[index] = image
    for index, image in zip(by_pil, read_or_skip([paths[i] for i in by_pil], pil_read), strict=True):
        images[index] = image
    return images


def dali_folder_image_set(root: str | Path, resolution: int = 32, device_id: int | None = None) -> ImageSet:
    """`folder_image_set` decoded by DALI: images under root/<class name>/, centre-cropped and resized to
    `resolution` (linear, anti-aliased), skipping unreadable and corrupt files.

    Raises:
        DataSourceError: the folder is missing or has no class subfolders, or a class has no readable image.
    """
    class_names, files = class_folder_files(root)
    paths = [path for path, _ in files]
    decoded = _decode_with_fallback(paths, resolution, device_id, lambda path: load_square(path, resolution))
    return labelled_image_set(root, class_names, files, decoded)


def dali_folder_images(root: str | Path, device_id: int | None = None) -> NamedImages:
    """`folder_images` decoded by DALI: every image file under `root` at its own size, skipping unreadable and
    corrupt files.

    Returns:
        [(path relative to root without suffix, uint8 (3, H, W))].

    Raises:
        DataSourceError: the folder is missing, holds no image files, or none of them can be decoded.
    """
    files = image_files(root)
    return readable_images(root, files, _decode_with_fallback([path for _, path in files], None, device_id, read_rgb))
