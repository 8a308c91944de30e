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


@pytest.fixture(scope="session")
def tiny_sr_run(tmp_path_factory):
    """A finished 4-iteration SRResNet ×2 run (8 channels, 1 block, bicubic skip): its run directory."""
    from fastgan.train.config import load_config
    from fastgan.train.run import train

    out = tmp_path_factory.mktemp("sr") / "srresnet"
    config = merge(
        load_config("srresnet-x2-light"),
        {
            "sr": {"channels": 8, "blocks": 1, "crop": 32},
            "train": {"iterations": 4, "batch_size_g": 4, "device": "cpu"},
            "output": {"out_dir": str(out), "checkpoint_every": 4, "sample_every": 4, "tensorboard": False},
        },
    )
    train(config)
    return out
