"""The HRGAN generator of a training checkpoint, as evaluation and export take it."""

from __future__ import annotations

from pathlib import Path

import torch

from fastgan.data.procedural import CLASS_NAMES
from fastgan.eval.standing_stats import standing_statistics
from fastgan.models.hrgan import Generator
from fastgan.train.checkpoint import CheckpointError, averaged_generator, load_checkpoint
from fastgan.train.config import Config, merge

#: Which generator weights an evaluation takes: the EMA's (fastgan's samples; the live ones until averaging starts)
#: or the live network's (the paper's protocol: it keeps no EMA).
GENERATOR_WEIGHTS = ("ema", "live")
WEIGHTS_HELP = "the generator's EMA weights (default) or its live ones (the paper keeps no EMA)"
STANDING_HELP = "re-estimate the generator's batch-norm statistics over N batches first (BigGAN's standing stats)"


def generator_from_checkpoint(
    path: str | Path, weights: str = "ema", standing_batches: int = 0, device: torch.device | str = "cpu"
) -> tuple[Generator, Config]:
    """The generator of a training checkpoint with its EMA (the live weights if EMA had not started) or its live
    weights (`weights`), on `device` in eval mode; with `standing_batches`, its batch-norm statistics re-estimated
    there over that many batches of the run's G batch size (`standing_statistics`)."""
    return generator_from_state(load_checkpoint(path), path, weights, standing_batches, device)


def generator_from_state(
    state: dict, path: str | Path, weights: str = "ema", standing_batches: int = 0, device: torch.device | str = "cpu"
) -> tuple[Generator, Config]:
    """`generator_from_checkpoint` for a checkpoint already loaded from `path` (named in errors)."""
    if weights not in GENERATOR_WEIGHTS:
        raise ValueError(f"unknown generator weights {weights!r}; choose {' or '.join(GENERATOR_WEIGHTS)}")
    config = merge(Config(), state["config"])
    if config.model.name != "hrgan":
        raise CheckpointError(
            f"{path} is a {config.model.name} run, not an HRGAN one; score upscalers with `python -m fastgan.eval sr` "
            "(and LAG's sample spread with `spread`)"
        )
    family = state["family"]
    num_classes = family["generator"]["blocks.0.bn1.gain.weight"].shape[0]
    m = config.model
    generator = Generator(m.resolution, num_classes, m.z_dim, m.g_channels, m.g_widths)
    if weights == "live":
        generator.load_state_dict(family["generator"])
    else:
        generator = averaged_generator(generator, family)
    generator = generator.to(device)
    if standing_batches:
        standing_statistics(generator, standing_batches, config.train.batch_size_g)
    return generator.eval(), config


def class_names(state: dict, num_classes: int) -> list[str]:
    """The names of the classes an HRGAN checkpoint was trained on, in label order: those its data identity keeps
    (folder names, CIFAR's, the embedded set's); for a checkpoint of an older version the embedded set's, or the
    labels' numbers."""
    data = state["family"].get("data")
    names = data["classes"].split("\n") if data else []
    if not names and state["config"].get("data", {}).get("source", "embedded") == "embedded":
        names = list(CLASS_NAMES)
    return names if len(names) == num_classes else [str(label) for label in range(num_classes)]
