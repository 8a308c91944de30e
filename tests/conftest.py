"""Shared fixtures: a tiny HRGAN run config that trains in seconds on a CPU."""

from __future__ import annotations

import pytest

from fastgan.train.config import Config, merge


@pytest.fixture
def tiny_config(tmp_path) -> Config:
    """HRGAN-64 with 16-channel networks on 200 embedded images; λ_MS on, shipped evaluator."""
    return merge(
        Config(),
        {
            "model": {"resolution": 64, "g_channels": 16, "d_channels": 16, "z_dim": 32},
            "data": {"num_images": 200},
            "train": {"iterations": 4, "batch_size_d": 8, "batch_size_g": 8, "ema_start": 1, "device": "cpu"},
            "output": {
                "out_dir": str(tmp_path / "run"),
                "checkpoint_every": 2,
                "sample_every": 2,
                "log_every": 1,
                "samples_per_class": 2,
                "tensorboard": False,
                "cache_dir": str(tmp_path / "cache"),
            },
        },
    )
