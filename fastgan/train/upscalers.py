"""The upscaler a training run produced, whatever its family: SRResNet/SRGAN, or LAG's G(y, z) at a fixed z."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from fastgan.train.checkpoint import CheckpointError, load_checkpoint
from fastgan.train.config import Config, merge


def run_config(path: str | Path) -> Config:
    """The configuration saved in a run's checkpoint (file or run directory)."""
    return merge(Config(), load_checkpoint(path)["config"])


def upscaler_scale(config: Config) -> int:
    """The up-scaling factor of an upscaler run."""
    return config.lag.scale if config.model.name == "lag" else config.sr.scale


def upscaler_name(config: Config) -> str:
    """How tables name the run's upscaler."""
    return "fastgan (LAG, z = 0)" if config.model.name == "lag" else f"fastgan ({config.sr.stage})"


def upscaler_from_checkpoint(
    path: str | Path, device: torch.device | str = "cpu", z: torch.Tensor | None = None
) -> tuple[nn.Module, Config]:
    """An upscaler run's network mapping (N, 3, h, w) in [0, 1] to (N, 3, s·h, s·w) (unclamped), in eval mode.

    Args:
        path: the run directory or checkpoint file of an SRResNet/SRGAN or LAG run.
        device: where the network is put.
        z: LAG only: the (Z,) noise of every image (default zeros: the centre G(y, 0)).
    """
    from fastgan.train.lag_step import LAGSampler, lag_generator_from_checkpoint
    from fastgan.train.sr_step import generator_from_checkpoint

    config = run_config(path)
    if config.model.name == "lag":
        generator, config = lag_generator_from_checkpoint(path, device)
        return LAGSampler(generator, z).to(device).eval(), config
    if config.model.name != "srgan":
        raise CheckpointError(f"{path} is a {config.model.name} run, not an upscaler (SRResNet/SRGAN or LAG)")
    if z is not None:
        raise ValueError(f"{path} is an SRResNet/SRGAN run: it takes no noise (samples are for LAG runs)")
    return generator_from_checkpoint(path, device)
