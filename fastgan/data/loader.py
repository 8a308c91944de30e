"""Batches from an in-memory `ImageSet`, with a position that checkpoints and resumes exactly."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from fastgan.data.color_jitter import NO_JITTER, check_amplitudes, color_twist, jitter_factors
from fastgan.data.image_set import ImageSet


def epoch_plan(seed: int, epoch: int, size: int, flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """The order and horizontal flips of one epoch, drawn from a generator seeded by (seed, epoch).

    Returns:
        order (size,) int64, a permutation of range(size); flips (size,) bool, all False when `flip` is off.
    """
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    order = torch.randperm(size, generator=g)
    flips = torch.rand(size, generator=g) < 0.5 if flip else torch.zeros(size, dtype=torch.bool)
    return order, flips


def shard_bounds(size: int, shard_id: int, num_shards: int) -> tuple[int, int]:
    """[start, end) of shard `shard_id` of `num_shards` contiguous shards of `size` items (DALI readers' split).

    The shards partition range(size); their sizes differ by at most one.
    """
    if not 0 <= shard_id < num_shards:
        raise ValueError(f"shard_id must be in [0, num_shards={num_shards}), got {shard_id}")
    if num_shards > size:
        raise ValueError(f"{num_shards} shards of {size} samples would leave some shards empty")
    return size * shard_id // num_shards, size * (shard_id + 1) // num_shards


class EpochCursor:
    """A position (epoch, position) in an endless run of epochs whose per-sample choices come from `plan(epoch)`.

    Args:
        plan: epoch -> a tuple of tensors with one row per sample of the epoch (e.g. order (L,) int64 sample indices,
            flips (L,) bool, jitter factors (L, 3)), the same length L for every epoch.
        epoch: the epoch of the next sample.
        position: the next sample's position in its epoch.
    """

    def __init__(self, plan: Callable[[int], tuple[torch.Tensor, ...]], epoch: int = 0, position: int = 0):
        self.plan, self.epoch, self.position = plan, epoch, position
        self._plan = plan(epoch)
        if epoch < 0 or not 0 <= position < len(self._plan[0]):
            raise ValueError(
                f"loader position (epoch {epoch}, sample {position}) outside epochs of {len(self._plan[0])} samples: "
                "the checkpoint's loader state is damaged or belongs to other data"
            )

    def take(self, count: int) -> tuple[torch.Tensor, ...]:
        """The next `count` (≥ 1) samples' rows of each of the plan's tensors, running on into later epochs."""
        if count < 1:
            raise ValueError(f"a batch takes at least one sample, got {count}")
        parts = []
        while count:
            take = min(count, len(self._plan[0]) - self.position)
            parts.append([rows[self.position : self.position + take] for rows in self._plan])
            self.position += take
            count -= take
            if self.position == len(self._plan[0]):
                self.epoch, self.position = self.epoch + 1, 0
                self._plan = self.plan(self.epoch)
        return tuple(torch.cat(rows) for rows in zip(*parts, strict=True))


def check_loader_kind(state: dict[str, Any], kind: str) -> None:
    """Refuse a checkpointed position written by another kind of loader (DALI loaders name themselves in their
    state as "loader": "dali"; the torch loaders' states name none)."""
    saved = state.get("loader", "torch")
    if saved != kind:
        raise ValueError(
            f"the checkpoint's batches came from the {saved} loader and this is the {kind} loader: resume with the "
            f"same data.loader ({saved})"
        )


class InMemoryLoader:
    """Endless batches drawn without replacement, epoch after epoch, with random horizontal flips and, optionally,
    colour jitter.

    Each epoch's order and flips come from a generator seeded by (seed, epoch), and its jitter factors from another
    (`jitter_factors(seed, epoch)`), so the loader's whole state is (epoch, position): `state_dict` /
    `load_state_dict` resume it exactly. A batch that runs past the end of an epoch continues into the next one;
    no sample is dropped or repeated.

    Args:
        image_set: the training images.
        seed: seeds each epoch's order, flips and jitter factors.
        flip: random horizontal flips.
        device: where batches are delivered (and jittered).
        color_jitter: (brightness, contrast, saturation) amplitudes a, each in [0, 1): every image's factors are
            1 + U(-a, a), applied by `color_twist` after the flip; all 0 (the default) leaves the images untouched.
    """

    def __init__(
        self,
        image_set: ImageSet,
        seed: int,
        flip: bool = True,
        device: torch.device | str = "cpu",
        color_jitter: Sequence[float] = NO_JITTER,
    ):
        self.image_set, self.seed, self.flip, self.device = image_set, seed, flip, torch.device(device)
        self.color_jitter = check_amplitudes(color_jitter)
        self._cursor = EpochCursor(self._epoch_plan)

    @property
    def epoch(self) -> int:
        return self._cursor.epoch

    @property
    def position(self) -> int:
        return self._cursor.position

    def _epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        size = len(self.image_set)
        return *epoch_plan(self.seed, epoch, size, self.flip), jitter_factors(self.seed, epoch, size, self.color_jitter)

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> images (B, 3, H, W) float32 in [-1, 1] and labels (B,) int64, on the loader's device."""
        index_all, flip_all, factors = self._cursor.take(batch_size)
        images = self.image_set.images[index_all]
        images = torch.where(flip_all.view(-1, 1, 1, 1), images.flip(-1), images)
        images = images.to(self.device, non_blocking=True)
        if any(self.color_jitter):
            images = color_twist(images, factors)
        images = images.float().div_(127.5).sub_(1.0)
        return images, self.image_set.labels[index_all].to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": len(self.image_set)}

    def load_state_dict(self, state: dict[str, int | str]) -> None:
        check_loader_kind(state, "torch")
        if state["size"] != len(self.image_set) or state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's loader saw {state['size']} images with seed {state['seed']}, this run has "
                f"{len(self.image_set)} with seed {self.seed}: resume with the same data and seed"
            )
        self._cursor = EpochCursor(self._epoch_plan, state["epoch"], state["position"])
