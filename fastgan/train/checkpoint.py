"""Atomic checkpoint files: a crash or Ctrl-C mid-write never leaves a truncated checkpoint behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from fastgan.atomic import atomic_write
from fastgan.torch_files import load_tensors

CHECKPOINT_FORMAT = "fastgan-checkpoint-v1"
CHECKPOINT_NAME = "checkpoint.pt"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable or from another kind of run."""


def save_checkpoint(state: dict[str, Any], path: str | Path) -> Path:
    """Write `state` to a temporary file beside `path`, fsync it, then rename it over `path`."""
    return atomic_write(path, lambda file: torch.save({"format": CHECKPOINT_FORMAT, **state}, file))


def run_directory(path: str | Path) -> Path:
    """The run directory of `path`: the path itself, or the folder of a checkpoint file."""
    path = Path(path).expanduser()
    return path if path.is_dir() else path.parent


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file, or the checkpoint inside a run directory."""
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / CHECKPOINT_NAME
    if not path.is_file():
        raise CheckpointError(f"no checkpoint at {path}; pass the run directory or its {CHECKPOINT_NAME}")
    state = load_tensors(path, CheckpointError, "checkpoint", f"pass a fastgan run directory or its {CHECKPOINT_NAME}")
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{path} is not a fastgan training checkpoint")
    return state


def averaged_generator(generator: torch.nn.Module, family: dict[str, Any]) -> torch.nn.Module:
    """`generator` with a checkpointed family's EMA weights ("generator_ema") once averaging has started, else with
    its live weights ("generator")."""
    from fastgan.train.ema import WeightEMA

    ema = WeightEMA(generator, decay=0.0)
    ema.load_state_dict(family["generator_ema"])
    if int(ema.n_averaged) > 0:
        return ema.module
    generator.load_state_dict(family["generator"])
    return generator
