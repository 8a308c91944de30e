"""data.loader: which loader a run gets, what happens without DALI, and DALI-fed runs that resume exactly."""

import logging

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data import factory
from fastgan.data.factory import resolve_loader
from fastgan.train.config import ConfigError, load_config, merge
from fastgan.train.run import build_trainer, resume, train

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
needs_dali = pytest.mark.skipif(not factory.dali_available(), reason="NVIDIA DALI is not installed")


@needs_dali
def test_auto_picks_dali_for_folders_and_gpus_and_a_resumed_run_keeps_its_loader():
    assert resolve_loader("auto", file_based=False, device=CPU) == "torch"  # in memory on a CPU: as fast without
    assert resolve_loader("auto", file_based=True, device=CPU) == "dali"
    assert resolve_loader("auto", file_based=False, device=CUDA) == "dali"
    assert resolve_loader("torch", file_based=True, device=CUDA) == "torch"
    assert resolve_loader("auto", True, CPU, resumed={"epoch": 3, "position": 1, "seed": 0, "size": 9}) == "torch"
    assert resolve_loader("auto", False, CPU, resumed={"loader": "dali", "batches": 4}) == "dali"


def test_without_dali_auto_falls_back_and_asking_for_it_says_how_to_install(monkeypatch):
    monkeypatch.setattr(factory, "dali_available", lambda: False)
    assert resolve_loader("auto", file_based=True, device=CUDA) == "torch"
    with pytest.raises(ValueError, match="pip install nvidia-dali-cuda120"):
        resolve_loader("auto", False, CPU, resumed={"loader": "dali"})
    config = load_config(None, ["data.loader=dali", "train.device=cpu"])  # a DALI run's config still loads here
    with pytest.raises(ConfigError, match="DALI is not installed.*pip install nvidia-dali-cuda120"):
        build_trainer(config)  # ... but training with it says how to get DALI
    with pytest.raises(ConfigError, match="data.loader must be one of"):
        load_config(None, ["data.loader=pillow"])


def test_color_jitter_reaches_the_loader_of_every_family(tiny_config, tmp_path):
    jitter = {"data": {"loader": "torch", "color_jitter": [0.1, 0.2, 0.3]}}
    small = {"channels": 8, "min_channels": 4, "blocks": 1, "critic_blocks": 1}
    for name, config in (
        ("hrgan", merge(tiny_config, {"loss": {"lambda_ms": 0.0}})),
        ("srgan", merge(load_config("srresnet-x2-light"), {"sr": {"channels": 8, "blocks": 1}})),
        ("lag", merge(load_config("lag-x4"), {"lag": small})),
    ):
        config = merge(config, jitter | {"output": {"out_dir": str(tmp_path / name), "tensorboard": False}})
        loader = build_trainer(config).loader
        assert loader.color_jitter == (0.1, 0.2, 0.3), name


@needs_dali
@pytest.mark.parametrize("jitter", [(0.0, 0.0, 0.0), (0.3, 0.3, 0.3)], ids=["plain", "jittered"])
def test_dali_run_resumes_exactly(tiny_config, tmp_path, jitter):
    data = {"loader": "dali", "color_jitter": list(jitter)}
    updates = {"model": {"resolution": 32}, "data": data, "loss": {"lambda_ms": 0.0}}
    config = merge(tiny_config, updates | {"train": {"iterations": 3}, "output": {"checkpoint_every": 1}})
    straight = train(config)
    assert straight.loader.color_jitter == jitter
    train(merge(config, {"train": {"iterations": 1}, "output": {"out_dir": str(tmp_path / "resumed")}}))
    resumed = resume(tmp_path / "resumed", {"train": {"iterations": 3}})
    assert straight.loader.state_dict() == resumed.loader.state_dict()
    assert straight.loader.state_dict()["loader"] == "dali"
    a, b = straight.family.state_dict(), resumed.family.state_dict()
    for name, weight in a["generator"].items():
        assert torch.equal(weight, b["generator"][name]), name
    with pytest.raises(ConfigError, match="data.loader"):
        resume(tmp_path / "resumed", {"data": {"loader": "torch"}})


@needs_dali
def test_upscaler_run_reads_a_folder_through_dali(tmp_path, caplog):
    rng = np.random.default_rng(0)
    for name in ("a", "b", "c"):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(tmp_path / f"{name}.png")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    config = merge(
        load_config("srresnet-x2-light"),
        {
            "sr": {"channels": 8, "blocks": 1, "crop": 32, "images": str(tmp_path), "held_out": ["c"]},
            "data": {"color_jitter": [0.1, 0.2, 0.3]},
            "train": {"iterations": 2, "batch_size_g": 4, "device": "cpu"},
            "output": {"out_dir": str(tmp_path / "run"), "tensorboard": False},
        },
    )
    caplog.set_level(logging.INFO)
    trainer = train(config)
    assert trainer.step == 2 and trainer.loader.state_dict()["loader"] == "dali"
    assert trainer.loader.color_jitter == (0.1, 0.2, 0.3)
    messages = [record.getMessage() for record in caplog.records]
    assert any("2 training and 1 held-out images, dali loader" in message for message in messages)
    assert any("broken.png" in message for message in messages)
