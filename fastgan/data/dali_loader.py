"""DALI loaders: the batches of `InMemoryLoader` and `SRPatchLoader`, with the pixel work in DALI pipelines.

The loaders draw their choices (epoch order, flips, crops, colour-jitter factors) exactly as the torch loaders do and
feed them to the pipelines of `fastgan.data.dali_pipelines` through `fn.external_source`; DALI flips, crops, rotates,
jitters, normalises and lays out NCHW, on the training GPU or, without one, on the CPU (device_id=None); the upscaler
loader down-scales its HR crops with `degrade` on the same device, as the torch loader does.

DALI runs ahead of training (`prefetch` batches). The loaders count what they have *delivered*, not what DALI has
prepared: `state_dict` is the position after the last batch returned by `next_batch`, and `load_state_dict` drops
whatever was prefetched and restarts the pipeline there, so a resumed run sees exactly the batches an uninterrupted
one would.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from nvidia.dali.plugin.pytorch import DALIGenericIterator

from fastgan.data.color_jitter import NO_JITTER, check_amplitudes, jitter_factors
from fastgan.data.dali_pipelines import image_batches, patch_batches
from fastgan.data.image_set import ImageSet
from fastgan.data.loader import EpochCursor, check_loader_kind, epoch_plan, shard_bounds
from fastgan.data.sr_loader import check_patch_source, check_same_images, degrade, images_identity, patch_plan

log = logging.getLogger(__name__)

#: CPU threads of a pipeline: DALI's pixel work on these batches is small next to a training step.
DEFAULT_THREADS = 1
#: Batches DALI prepares ahead of the one being consumed.
DEFAULT_PREFETCH = 2


def dali_device_id(device: torch.device | str) -> int | None:
    """The DALI device_id for a torch device: its CUDA index, or None (a CPU pipeline) for the CPU."""
    device = torch.device(device)
    if device.type == "cpu":
        return None
    if device.type != "cuda":
        raise ValueError(f"DALI pipelines run on a CUDA device or the CPU, not {device}")
    return torch.cuda.current_device() if device.index is None else device.index


def _identity(loader, size: int) -> dict[str, Any]:
    """What a DALI loader's checkpointed position belongs to: data size, seed, shard and pipeline device."""
    return {
        "loader": "dali",
        "seed": loader.seed,
        "size": size,
        "shard_id": loader.shard_id,
        "num_shards": loader.num_shards,
        "pipeline": "cpu" if loader.device_id is None else "gpu",
    }


def _check_identity(state: dict[str, Any], current: dict[str, Any]) -> None:
    """Refuse a position saved for other data, seed or shards; warn when the pipeline moved between CPU and GPU
    (decoders and resamplers round differently there, so pixels may differ by a level from an unmoved run)."""
    check_loader_kind(state, "dali")
    keys = ("size", "seed", "shard_id", "num_shards")
    if any(state[key] != current[key] for key in keys):
        raise ValueError(
            f"the checkpoint's loader saw {state['size']} images with seed {state['seed']} as shard "
            f"{state['shard_id']} of {state['num_shards']}, this run has {current['size']} with seed "
            f"{current['seed']} as shard {current['shard_id']} of {current['num_shards']}: resume with the same data, "
            "seed and shards"
        )
    saved = state.get("pipeline", current["pipeline"])
    if saved != current["pipeline"]:
        log.warning(
            "the checkpoint's batches came from DALI's %s pipeline and this run's come from its %s one: the same "
            "images and crops, but decoding and resampling may round a level differently",
            saved.upper(),
            current["pipeline"].upper(),
        )


def _iterate(pipeline, names: list[str]) -> DALIGenericIterator:
    """An endless torch iterator over a pipeline whose external source never runs dry."""
    return DALIGenericIterator([pipeline], names, auto_reset=False)


class DALIImageLoader:
    """`InMemoryLoader`'s batches (same order, flips, jitter factors and position) with the jitter, flip and
    normalisation done by DALI.

    Each epoch is the permutation and flips of `fastgan.data.loader.epoch_plan(seed, epoch)` and the factors of
    `fastgan.data.color_jitter.jitter_factors(seed, epoch)`; with `num_shards` > 1 shard `shard_id` takes its
    contiguous slice of every epoch, so the shards partition each epoch and every shard sees each of its samples once
    per epoch. Batches run on across epoch boundaries: nothing is dropped or repeated.
    The pipeline works in chunks of the first batch size it is asked for; other sizes are cut from those chunks.

    Args:
        image_set: the training images.
        seed: seeds each epoch's order, flips and jitter factors.
        flip: random horizontal flips.
        device: where batches are delivered; a CUDA device runs the pipeline on that GPU.
        color_jitter: (brightness, contrast, saturation) amplitudes, each in [0, 1), as `InMemoryLoader`'s; DALI
            applies them with `fn.color_twist` (within one 8-bit level of `InMemoryLoader`'s images).
        shard_id: this process's shard, in [0, num_shards).
        num_shards: processes sharing the data.
        num_threads: DALI's CPU threads.
        prefetch: batches DALI prepares ahead.
    """

    def __init__(
        self,
        image_set: ImageSet,
        seed: int,
        flip: bool = True,
        device: torch.device | str = "cpu",
        color_jitter: Sequence[float] = NO_JITTER,
        shard_id: int = 0,
        num_shards: int = 1,
        num_threads: int = DEFAULT_THREADS,
        prefetch: int = DEFAULT_PREFETCH,
    ):
        self.start, self.end = shard_bounds(len(image_set), shard_id, num_shards)
        self.image_set, self.seed, self.flip, self.device = image_set, seed, flip, torch.device(device)
        self.color_jitter = check_amplitudes(color_jitter)
        self.shard_id, self.num_shards, self.num_threads, self.prefetch = shard_id, num_shards, num_threads, prefetch
        self.device_id = dali_device_id(self.device)
        self._pixels = image_set.images.permute(0, 2, 3, 1).contiguous().numpy()  # (N, H, W, 3) for DALI
        self._labels = image_set.labels.numpy()
        self.epoch, self.position = 0, 0  # of the next sample next_batch returns
        self._iterator: DALIGenericIterator | None = None
        self._left: tuple[torch.Tensor, torch.Tensor] | None = None  # the undelivered rest of the last chunk

    def _shard_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        order, flips = epoch_plan(self.seed, epoch, len(self.image_set), self.flip)
        factors = jitter_factors(self.seed, epoch, len(self.image_set), self.color_jitter)
        return order[self.start : self.end], flips[self.start : self.end], factors[self.start : self.end]

    def _start(self, chunk: int) -> None:
        """Build the pipeline, fed from the delivered position on in chunks of `chunk` samples."""
        cursor = EpochCursor(self._shard_plan, self.epoch, self.position)
        jitter = any(self.color_jitter)

        def source() -> tuple[np.ndarray, ...]:
            index, flips, factors = cursor.take(chunk)
            index = index.numpy()
            batch = self._pixels[index], self._labels[index], flips.numpy().astype(np.int32)
            return (*batch, factors.numpy()) if jitter else batch

        pipeline = image_batches(
            source,
            jitter,
            batch_size=chunk,
            num_threads=self.num_threads,
            device_id=self.device_id,
            prefetch_queue_depth=self.prefetch,
        )
        self._iterator, self._left = _iterate(pipeline, ["images", "labels"]), None

    def _chunk(self) -> tuple[torch.Tensor, torch.Tensor]:
        if self._left is not None:
            chunk, self._left = self._left, None
            return chunk
        out = next(self._iterator)[0]
        return out["images"], out["labels"]

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> images (B, 3, H, W) float32 in [-1, 1] and labels (B,) int64, on the loader's device."""
        if self._iterator is None:
            self._start(batch_size)
        images, labels, count = [], [], 0
        while count < batch_size:
            chunk_images, chunk_labels = self._chunk()
            take = min(batch_size - count, len(chunk_labels))
            if take < len(chunk_labels):
                self._left = chunk_images[take:], chunk_labels[take:]
            images.append(chunk_images[:take])
            labels.append(chunk_labels[:take])
            count += take
        epoch_length = self.end - self.start
        self.epoch, self.position = divmod(self.epoch * epoch_length + self.position + batch_size, epoch_length)
        if len(images) == 1:
            return images[0], labels[0]
        return torch.cat(images), torch.cat(labels)

    def state_dict(self) -> dict[str, Any]:
        return {**_identity(self, len(self.image_set)), "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_identity(state, _identity(self, len(self.image_set)))
        self.epoch, self.position = state["epoch"], state["position"]
        self._iterator, self._left = None, None  # whatever DALI prefetched belongs to the old position


class DALIPatchLoader:
    """`SRPatchLoader`'s (LR, HR) batches with cropping, flips, 90° turns and colour jitter done by DALI.

    Batch k draws the same crops, flips, turns and jitter factors as `SRPatchLoader`'s batch k (`patch_plan`,
    `jitter_factors`), so the HR patches are equal (jittered ones up to a rare one-level rounding tie), and the LR
    patches are `degrade`'s of them on the device, as the torch loader's are: LAG's conditioning and the SR
    evaluation down-scale with that same operator, so a loader with another resampler would train against a
    different degradation (DALI's bicubic differed by about one 8-bit level on average). With `num_shards` > 1, shard
    `shard_id` takes batches shard_id, shard_id + num_shards, ... of the single-process sequence, so the shards split
    it without dropping or repeating a batch. A call with another batch size than the last restarts the pipeline at
    the same position.

    Args:
        images: (name, uint8 (3, H, W)) training images, each at least crop×crop.
        crop: HR patch side, a multiple of `scale`.
        scale: up-scaling factor of the model.
        seed: seeds every batch's choices.
        augment: random horizontal flips and rotations by multiples of 90°.
        method: degradation, "bicubic" or "area" (`degrade`).
        device: where batches are delivered; a CUDA device runs the pipeline on that GPU.
        color_jitter: (brightness, contrast, saturation) amplitudes, each in [0, 1), as `SRPatchLoader`'s; DALI
            applies them with `fn.color_twist` to the HR crop after the flip and turn, before down-scaling.
        shard_id: this process's shard, in [0, num_shards).
        num_shards: processes sharing the data.
        num_threads: DALI's CPU threads.
        prefetch: batches DALI prepares ahead.
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
        shard_id: int = 0,
        num_shards: int = 1,
        num_threads: int = DEFAULT_THREADS,
        prefetch: int = DEFAULT_PREFETCH,
    ):
        check_patch_source(images, crop, scale, method)
        if not 0 <= shard_id < num_shards:
            raise ValueError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id}")
        self.crop, self.scale, self.seed, self.augment, self.method = crop, scale, seed, augment, method
        self.color_jitter = check_amplitudes(color_jitter)
        self.device = torch.device(device)
        self.shard_id, self.num_shards, self.num_threads, self.prefetch = shard_id, num_shards, num_threads, prefetch
        self.device_id = dali_device_id(self.device)
        self._pixels = [image.permute(1, 2, 0).contiguous().numpy() for _, image in images]  # (H, W, 3) each
        self.sizes = [tuple(image.shape[-2:]) for _, image in images]
        self.images_sha256 = images_identity(images)
        self.batches = 0  # batches delivered
        self._iterator: DALIGenericIterator | None = None
        self._batch_size = 0

    def _start(self, batch_size: int) -> None:
        """Build the pipeline, fed from the delivered position on with batches of `batch_size`."""
        batch = self.batches
        jitter = any(self.color_jitter)
        alive = deque(maxlen=self.prefetch + 2)  # no_copy: DALI reads each batch's arrays until it has run it

        def source() -> tuple:
            nonlocal batch
            number = batch * self.num_shards + self.shard_id  # in the single-process sequence
            batch += 1
            plan = patch_plan(self.seed, number, self.sizes, self.crop, batch_size).numpy()
            inputs = [[self._pixels[i] for i in plan[:, 0]], plan[:, 1:3].astype(np.int32)]
            if self.augment:
                inputs += [plan[:, 3].astype(np.int32), (90 * plan[:, 4]).astype(np.float32)]
            if jitter:
                inputs.append(jitter_factors(self.seed, number, batch_size, self.color_jitter).numpy())
            alive.append(inputs)
            return tuple(inputs)

        pipeline = patch_batches(
            source,
            self.crop,
            self.augment,
            jitter,
            batch_size=batch_size,
            num_threads=self.num_threads,
            device_id=self.device_id,
            prefetch_queue_depth=self.prefetch,
        )
        self._iterator, self._batch_size = _iterate(pipeline, ["hr"]), batch_size

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> LR (B, 3, crop/scale, crop/scale) and HR (B, 3, crop, crop), float32 in [0, 1], on the device."""
        if self._iterator is None or batch_size != self._batch_size:
            self._start(batch_size)
        hr = next(self._iterator)[0]["hr"]
        self.batches += 1
        return degrade(hr, self.scale, self.method), hr

    def state_dict(self) -> dict[str, Any]:
        state = {**_identity(self, len(self.sizes)), "batches": self.batches, "lr": "degrade"}
        return state | {"images_sha256": self.images_sha256}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        _check_identity(state, _identity(self, len(self.sizes)))
        check_same_images(state, self.images_sha256)
        if state.get("lr") != "degrade":
            log.warning(
                "the checkpoint's LR patches came from DALI's own resampler (before 2026-11-30); this run makes them "
                "with `degrade`, about one 8-bit level off on average: training continues on the new degradation"
            )
        self.batches = state["batches"]
        self._iterator = None  # whatever DALI prefetched belongs to the old position
