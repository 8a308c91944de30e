"""Folders of image files decoded by a DALI pipeline: on the GPU (device="mixed") with a device_id, else on the CPU.

The DALI counterparts of `fastgan.data.sources.folder_image_set` and `fastgan.data.sr_sources.folder_images`. A file
that cannot be read or decoded is skipped, never fatal: each one is logged as a warning naming it, and the total is
logged once the folder is read. Files are read in Python (bytes only) and fed to the pipeline, so an unreadable file
is caught before DALI sees it, and a batch DALI cannot decode is decoded again file by file to find the culprits.
Formats DALI's decoder lacks (GIF), and TIFF, whose float and 32-bit samples DALI treats otherwise than `read_rgb`
(it clips floats that `read_rgb` refuses as of unknown range, and refuses 32-bit integers that `read_rgb` scales), are
read by the PIL readers, so both loaders keep the same files, with the same pixels. The format is the one the file's
header names, not its suffix: a GIF saved as .png is read, as PIL reads it.
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
from fastgan.data.sources import DataSourceError, class_folder_files, labelled_image_set, load_square, read_rgb
from fastgan.data.sr_sources import NamedImages, image_files, readable_images

log = logging.getLogger(__name__)

#: Files decoded per pipeline run.
DECODE_BATCH = 32
#: Formats (as PIL names them from a file's header) DALI's image decoder reads as `read_rgb` does: JPEG (and a
#: camera's multi-picture JPEG, MPO, whose first picture both decode), PNG, BMP, WebP and PNM.
DALI_FORMATS = {"JPEG", "MPO", "PNG", "BMP", "WEBP", "PPM"}


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


def _dali_reads(encoded: np.ndarray) -> bool:
    """Whether DALI decodes this file as `read_rgb` does: its header is one of `DALI_FORMATS`. A file PIL refuses from
    its header (not an image, over PIL's decompression-bomb limit) is not: `read_rgb` skips it with its reason, so
    both readers keep the same files and DALI is never handed a bomb."""
    try:
        with Image.open(io.BytesIO(encoded)) as image:
            return image.format in DALI_FORMATS
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def decode_files(
    paths: list[Path],
    pil_read: Callable[[Path], torch.Tensor],
    resolution: int | None = None,
    device_id: int | None = None,
    batch_size: int = DECODE_BATCH,
    num_threads: int | None = None,
) -> list[torch.Tensor | None]:
    """Decode image files with DALI where it decodes them as `read_rgb` does (`_dali_reads`), the others with
    `pil_read`, as the torch loader does; skip (with a logged warning each) those that cannot be read or decoded.

    Args:
        paths: the image files.
        pil_read: path -> uint8 (3, H, W), the PIL reader of the same images (raising DataSourceError to skip one).
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
            elif _dali_reads(data):
                batch.append((i, data))
            else:
                try:
                    images[i] = pil_read(paths[i])
                except DataSourceError as exc:
                    skip(paths[i], str(exc.__cause__ or exc))
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


def dali_folder_image_set(root: str | Path, resolution: int = 32, device_id: int | None = None) -> ImageSet:
    """`folder_image_set` decoded by DALI: images under root/<class name>/, centre-cropped and resized to
    `resolution` (linear, anti-aliased), skipping unreadable and corrupt files.

    Raises:
        DataSourceError: the folder is missing or has no class subfolders, or a class has no readable image.
    """
    class_names, files = class_folder_files(root)
    paths = [path for path, _ in files]
    decoded = decode_files(paths, lambda path: load_square(path, resolution), resolution, device_id)
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
    return readable_images(root, files, decode_files([path for _, path in files], read_rgb, None, device_id))
