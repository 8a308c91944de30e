"""Progressive growing (Karras et al. 2018; as LAG trains): which ×2 stage an upscaler trains at, how far its newest
stage has faded in, and the batch size and learning-rate scale of that stage — all a function of the number of
training images seen, so a checkpoint that records that number resumes mid-fade exactly.

Stage 1 (×2) trains for `stable_images`; each later stage s first fades in over `fade_images` (α from 0 to 1),
then trains stabilised for `stable_images`; the last stage then continues until the run ends.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastgan.train.config import Config, ConfigError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GrowthPhase:
    """Where a progressive run is: stage (1..S), alpha (fade-in weight of that stage, 1 once stable), and the
    stage's batch size and learning-rate scale."""

    stage: int
    alpha: float
    batch_size: int
    lr_scale: float


class GrowthSchedule:
    """Stages and fade-in weights by images seen.

    Args:
        stages: S, the ×2 stages of the network (the full scale is 2^S).
        stable_images: images trained at each stage once it has faded in (and at stage 1 from the start).
        fade_images: images over which each later stage's α ramps linearly from 0 to 1.
        batch_sizes: one per stage, or empty for `batch_size` everywhere.
        lr_scales: learning-rate multipliers, one per stage, or empty for 1 everywhere.
        batch_size: the batch size when `batch_sizes` is empty.
        first_stage: the stage training starts at (S: no growing, the whole network from the start).
    """

    def __init__(
        self,
        stages: int,
        stable_images: int,
        fade_images: int,
        batch_sizes: tuple[int, ...] = (),
        lr_scales: tuple[float, ...] = (),
        batch_size: int = 16,
        first_stage: int = 1,
    ):
        if not 1 <= first_stage <= stages or stable_images < 0 or fade_images < 1:
            raise ValueError(
                "progressive growing needs 1 <= first_stage <= stages, stable_images >= 0 and fade_images >= 1"
            )
        for name, values in (("batch_sizes", batch_sizes), ("lr_scales", lr_scales)):
            if values and len(values) != stages:
                raise ValueError(f"progressive.{name} needs one value per stage ({stages}), got {list(values)}")
        if min(batch_sizes or (batch_size,)) < 1 or not all(s > 0 for s in lr_scales):
            raise ValueError("progressive batch sizes and learning-rate scales must be positive")
        self.stages, self.first_stage = stages, first_stage
        self.stable_images, self.fade_images = stable_images, fade_images
        self.batch_sizes = tuple(batch_sizes) or (batch_size,) * stages
        self.lr_scales = tuple(lr_scales) or (1.0,) * stages

    @classmethod
    def fixed(cls, stages: int, batch_size: int) -> GrowthSchedule:
        """No growing: the whole network from the first image."""
        return cls(stages, 0, 1, batch_size=batch_size, first_stage=stages)

    def stage_start(self, stage: int) -> int:
        """Images seen when `stage` starts (fading in, after the first stage)."""
        grown = stage - self.first_stage
        return grown * self.stable_images + max(0, grown - 1) * self.fade_images

    def at(self, images_seen: int) -> GrowthPhase:
        """The phase of the step that starts after `images_seen` training images."""
        if images_seen < 0:
            raise ValueError(f"images_seen must be >= 0, got {images_seen}")
        stage = self.first_stage
        while stage < self.stages and images_seen >= self.stage_start(stage + 1):
            stage += 1
        alpha = 1.0
        if stage > self.first_stage:
            alpha = min(1.0, (images_seen - self.stage_start(stage)) / self.fade_images)
        return GrowthPhase(stage, alpha, self.batch_sizes[stage - 1], self.lr_scales[stage - 1])


def growth_schedule(config: Config, stages: int) -> GrowthSchedule:
    """The run's schedule: `progressive.*` when enabled, otherwise the whole network from the start."""
    p, batch = config.progressive, config.train.batch_size_g
    if not p.enabled:
        return GrowthSchedule.fixed(stages, batch)
    if stages < 2:
        raise ConfigError("progressive growing needs at least two ×2 stages (a scale of 4 or more)")
    return GrowthSchedule(stages, p.stable_images, p.fade_images, p.batch_sizes, p.lr_scales, batch)


def warn_if_too_short(config: Config, schedule: GrowthSchedule) -> None:
    """Warn when `train.iterations` end before the schedule's last stage has faded in: the run would save a model
    whose full-scale head is untrained (`warn_if_still_growing` says the same of a checkpoint)."""
    grows = schedule.stages > schedule.first_stage
    full = schedule.stage_start(schedule.stages) + (schedule.fade_images if grows else 0)
    seen = 0
    for _ in range(config.train.iterations):
        if seen >= full:
            return
        seen += schedule.at(seen).batch_size
    if seen < full:
        growth = schedule.at(seen)
        log.warning(
            "train.iterations=%d end at stage %d of %d (fade-in α = %.2f): %d more images are needed for the ×%d "
            "output to be trained; raise train.iterations or shorten progressive.stable_images/fade_images",
            config.train.iterations,
            growth.stage,
            schedule.stages,
            growth.alpha,
            full - seen,
            2**schedule.stages,
        )


def warn_if_still_growing(path: object, config: Config, stages: int, images_seen: int) -> None:
    """Warn when a checkpoint of a progressive run stopped before its last stage had faded in: the full-scale output
    of its generator then comes from a head still (or never) trained, and scores say nothing of the method."""
    growth = growth_schedule(config, stages).at(images_seen)
    if growth.stage < stages or growth.alpha < 1.0:
        log.warning(
            "%s stopped at stage %d of %d (fade-in α = %.2f): its ×%d output is not trained yet; train on (--resume) "
            "before judging it",
            path,
            growth.stage,
            stages,
            growth.alpha,
            2**stages,
        )


def stage_target(hr: torch.Tensor, stage: int, stages: int, alpha: float) -> torch.Tensor:
    """The real image a network at `stage` is compared with: HR box-averaged down to 2^stage × the input, and while
    the stage fades in, blended with its own ×2 coarser version (up-sampled nearest) by the same α as the network.

    Args:
        hr: (N, C, H, W) full-resolution images (H, W multiples of 2^stages).
        stage: 1..stages.
        stages: S; the full-resolution stage.
        alpha: the stage's fade-in weight.

    Returns:
        (N, C, H / 2^(S − stage), W / 2^(S − stage)).
    """
    target = F.avg_pool2d(hr, 2 ** (stages - stage)) if stage < stages else hr
    if stage > 1 and alpha < 1.0:
        coarse = F.interpolate(F.avg_pool2d(target, 2), scale_factor=2, mode="nearest")
        target = torch.lerp(coarse, target, alpha)
    return target
