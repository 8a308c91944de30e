"""DALI pipeline definitions: the pixel work of fastgan's DALI loaders, on a GPU or on the CPU.

Each pipeline takes its per-sample inputs from `fn.external_source`: the loaders choose the order, flips, crops and
colour-jitter factors from their seeds (so a checkpointed position resumes exactly, and the torch loaders draw the
same choices), and the pipeline decodes, crops, flips, rotates, jitters, resizes and normalises. Built with a
`device_id` the work runs on that GPU (decoding with device="mixed"); with `device_id=None` the same graph runs on the
CPU. Every pipeline is a `nvidia.dali.pipeline_def`: call it with the pipeline's arguments (`batch_size`,
`num_threads`, `device_id`, ...) besides its own.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import nvidia.dali.fn as fn
import nvidia.dali.math as dmath
import nvidia.dali.types as types
from nvidia.dali import pipeline_def
from nvidia.dali.pipeline import DataNode, Pipeline


def _on_gpu() -> bool:
    return Pipeline.current().device_id is not None


def _to_device(node: DataNode) -> DataNode:
    return node.gpu() if _on_gpu() else node


def _chw_float(images: DataNode, mean: float, std: float, mirror: DataNode | None = None) -> DataNode:
    """uint8 HWC -> float32 CHW, (x - mean) / std, mirrored left-right where `mirror` is 1."""
    return fn.crop_mirror_normalize(
        images, mirror=0 if mirror is None else mirror, mean=mean, std=std, dtype=types.FLOAT, output_layout="CHW"
    )


def _color_jitter(images: DataNode, factors: DataNode) -> DataNode:
    """uint8 HWC images through `fn.color_twist` with per-sample (3,) float32 (brightness, contrast, saturation)
    factors: rounded and clamped to uint8 once (`fastgan.data.color_jitter.color_twist` is its torch twin)."""
    return fn.color_twist(images, brightness=factors[0], contrast=factors[1], saturation=factors[2])


@pipeline_def
def image_batches(source: Callable[[], tuple[np.ndarray, ...]], jitter: bool):
    """HRGAN batches from in-memory images.

    Args:
        source: called once per batch; returns (uint8 (B, H, W, 3) images, (B,) int64 labels, (B,) int32 flips),
            and with `jitter` also (B, 3) float32 (brightness, contrast, saturation) factors.
        jitter: colour-jitter the images (before the flip and normalisation; both commute with it).

    Returns:
        images (B, 3, H, W) float32 in [-1, 1], flipped left-right where the flip is 1; labels (B,) int64.
    """
    outputs = 4 if jitter else 3
    images, labels, flips, *factors = fn.external_source(
        source=source,
        num_outputs=outputs,
        batch=True,
        layout=["HWC", "", "", ""][:outputs],
        dtype=[types.UINT8, types.INT64, types.INT32, types.FLOAT][:outputs],
    )
    images = _to_device(images)
    if jitter:
        images = _color_jitter(images, factors[0])
    return _chw_float(images, 127.5, 127.5, mirror=flips), _to_device(labels)


@pipeline_def
def patch_batches(
    source: Callable[[], tuple[list[np.ndarray], np.ndarray, np.ndarray, np.ndarray]],
    crop: int,
    augment: bool,
    jitter: bool,
):
    """Upscaler training crops of in-memory images (HR; the loader down-scales them with `degrade`, as the torch
    loader does, so LR means the same whichever loader made it).

    The crop is cut on the CPU (only the crop travels to the GPU), then flipped left-right and turned by multiples
    of 90° (`fn.flip`, `fn.rotate` with nearest-neighbour sampling: exact), then colour-jittered (in uint8).

    Args:
        source: called once per batch; returns B uint8 (H, W, 3) images and (B, 2) int32 (top, left) crop corners,
            with `augment` then (B,) int32 flips and (B,) float32 counter-clockwise turns in degrees, and with
            `jitter` then (B, 3) float32 (brightness, contrast, saturation) factors.
        crop: HR patch side.
        augment: flip and turn the crops.
        jitter: colour-jitter the crops.

    Returns:
        HR (B, 3, crop, crop), float32 in [0, 1].
    """
    dtypes = [types.UINT8, types.INT32] + [types.INT32, types.FLOAT] * augment + [types.FLOAT] * jitter
    images, corners, *extra = fn.external_source(
        source=source,
        num_outputs=len(dtypes),
        batch=True,
        layout=["HWC"] + [""] * (len(dtypes) - 1),
        dtype=dtypes,
        no_copy=True,  # the loader keeps the images alive and unchanged
    )
    patches = _to_device(fn.slice(images, corners, np.array([crop, crop], np.int32), axis_names="HW"))
    if augment:
        flips, angles = extra[:2]
        patches = fn.rotate(
            fn.flip(patches, horizontal=flips), angle=angles, interp_type=types.INTERP_NN, keep_size=True
        )
    if jitter:
        patches = _color_jitter(patches, extra[-1])
    return _chw_float(patches, 0.0, 255.0)


@pipeline_def
def decoded_images(resolution: int | None):
    """Decode encoded image files fed as `encoded` (`Pipeline.feed_input("encoded", [bytes, ...])`).

    Decodes on the GPU (device="mixed") when the pipeline has a device_id, else on the CPU; any mode becomes 8-bit
    RGB. With a `resolution`, each image is centre-cropped to a square (offsets rounded down) and resized to
    resolution×resolution (linear, anti-aliased).

    Args:
        resolution: output side, or None to keep every image's own size.

    Returns:
        uint8 (H, W, 3) images.
    """
    encoded = fn.external_source(name="encoded", batch=True, dtype=types.UINT8)
    images = fn.decoders.image(
        encoded, device="mixed" if _on_gpu() else "cpu", output_type=types.RGB, adjust_orientation=False
    )  # EXIF orientation ignored, as PIL's `read_rgb` does
    if resolution is None:
        return images
    shape = fn.peek_image_shape(encoded, dtype=types.INT32, adjust_orientation=False)  # (H, W, C) as decoded
    height, width = shape[0], shape[1]
    side = dmath.min(height, width)
    corner = fn.stack((height - side) // 2, (width - side) // 2)
    square = fn.slice(images, corner, fn.stack(side, side), axis_names="HW")
    return fn.resize(square, size=[resolution, resolution], interp_type=types.INTERP_LINEAR, antialias=True)
