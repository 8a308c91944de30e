"""Batches from an in-memory `ImageSet`, with a position that checkpoints and resumes exactly."""

from __future__ import annotations

import torch

from fastgan.data.image_set import ImageSet


class InMemoryLoader:
    """Endless batches drawn without replacement, epoch after epoch, with random horizontal flips.

    Each epoch's order and flips come from a generator seeded by (seed, epoch), so the loader's whole
    state is (epoch, position): `state_dict` / `load_state_dict` resume it exactly. A batch that runs
    past the end of an epoch continues into the next one; no sample is dropped or repeated.
    """

    def __init__(self, image_set: ImageSet, seed: int, flip: bool = True, device: torch.device | str = "cpu"):
        self.image_set, self.seed, self.flip, self.device = image_set, seed, flip, torch.device(device)
        self.epoch, self.position = 0, 0
        self._order, self._flips = self._epoch_plan(0)

    def _epoch_plan(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        n = len(self.image_set)
        order = torch.randperm(n, generator=g)
        flips = torch.rand(n, generator=g) < 0.5 if self.flip else torch.zeros(n, dtype=torch.bool)
        return order, flips

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """-> images (B, 3, H, W) float32 in [-1, 1] and labels (B,) int64, on the loader's device."""
        index, flips = [], []
        remaining = batch_size
        while remaining:
            take = min(remaining, len(self.image_set) - self.position)
            index.append(self._order[self.position : self.position + take])
            flips.append(self._flips[self.position : self.position + take])
            self.position += take
            remaining -= take
            if self.position == len(self.image_set):
                self.epoch, self.position = self.epoch + 1, 0
                self._order, self._flips = self._epoch_plan(self.epoch)
        index_all, flip_all = torch.cat(index), torch.cat(flips)
        images = self.image_set.images[index_all]
        images = torch.where(flip_all.view(-1, 1, 1, 1), images.flip(-1), images)
        images = images.to(self.device, non_blocking=True).float().div_(127.5).sub_(1.0)
        return images, self.image_set.labels[index_all].to(self.device, non_blocking=True)

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "size": len(self.image_set)}

    def load_state_dict(self, state: dict[str, int]) -> None:
        if state["size"] != len(self.image_set) or state["seed"] != self.seed:
            raise ValueError(
                f"the checkpoint's loader saw {state['size']} images with seed {state['seed']}, this run has "
                f"{len(self.image_set)} with seed {self.seed}: resume with the same data and seed"
            )
        self.epoch, self.position = state["epoch"], state["position"]
        self._order, self._flips = self._epoch_plan(self.epoch)
