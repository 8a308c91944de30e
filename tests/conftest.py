"""Shared fixtures (tiny run configs that train in seconds on a CPU) and the skip of `cuda` tests without a GPU."""

from __future__ import annotations

import pytest
import torch

from fastgan.train.config import Config, merge


def pytest_collection_modifyitems(config, items):
    """Tests marked `cuda` skip, with the reason, where torch sees no NVIDIA GPU."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs an NVIDIA GPU (torch.cuda.is_available() is False here)")
    for item in items:
        if item.get_closest_marker("cuda") is not None:
            item.add_marker(skip)


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


@pytest.fixture(scope="session")
def tiny_lag_run(tmp_path_factory):
    """A finished 4-iteration LAG ×4 run (8 channels, grown ×2 → ×4, no bicubic skip, EMA = the live weights from
    step 1, so z visibly matters): its run directory."""
    from fastgan.train.config import load_config
    from fastgan.train.run import train

    out = tmp_path_factory.mktemp("lag") / "lag"
    config = merge(
        load_config("lag-x4"),
        {
            "lag": {
                "channels": 8,
                "min_channels": 4,
                "blocks": 1,
                "critic_blocks": 1,
                "noise_dim": 4,
                "bicubic_skip": False,
            },
            "progressive": {"stable_images": 4, "fade_images": 4},
            "sr": {"crop": 32},
            "train": {"iterations": 4, "batch_size_g": 2, "ema_start": 1, "ema_decay": 0.0, "device": "cpu"},
            "output": {"out_dir": str(out), "checkpoint_every": 4, "sample_every": 4, "tensorboard": False},
        },
    )
    train(config)
    return out
