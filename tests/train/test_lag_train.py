"""LAG and progressive SRResNet in the training core: they run, grow, resume mid-fade exactly, and serve."""

import json

import pytest
import torch

from fastgan.data.sr_loader import degrade
from fastgan.losses_lag import lr_conditioning
from fastgan.train.config import ConfigError, load_config, merge
from fastgan.train.lag_step import LAGSampler, conditioning_reference, lag_generator_from_checkpoint
from fastgan.train.progressive import stage_target
from fastgan.train.run import resume, train


@pytest.fixture
def lag_config(tmp_path):
    """LAG ×4 with 8 channels, grown ×2 → ×4 over 6 iterations of 2 crops: stage 1 for 4 images, fade for 4."""
    return merge(
        load_config("lag-x4"),
        {
            "lag": {"channels": 8, "min_channels": 4, "blocks": 1, "critic_blocks": 1, "noise_dim": 4, "samples": 2},
            "progressive": {"stable_images": 4, "fade_images": 4, "batch_sizes": [2, 2], "lr_scales": [1.0, 0.5]},
            "sr": {"crop": 32},
            "train": {"iterations": 6, "batch_size_g": 2, "ema_start": 1, "device": "cpu"},
            "output": {
                "out_dir": str(tmp_path / "lag"),
                "checkpoint_every": 3,
                "sample_every": 3,
                "log_every": 1,
                "tensorboard": False,
            },
        },
    )


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("method", ["bicubic", "area"])
def test_real_images_land_on_their_conditioning_reference_at_every_stage(method):
    """The critic conditions real images with 0, so a real stage image must down-scale exactly onto the reference
    samples are measured against, at every stage and fade-in α. With y itself as the reference a bicubic ×4 model
    missed it at stage 1 (H of a box-averaged image is not y) and while the last stage faded in; area H never did."""
    smooth = torch.nn.functional.interpolate(
        torch.rand(2, 3, 8, 8, generator=torch.Generator().manual_seed(0)), 64, mode="bilinear"
    )
    hr = degrade(smooth, 1, method)  # 8-bit
    y = degrade(hr, 4, method) * 2 - 1
    missed_y = []
    for stage, alpha in ((1, 1.0), (2, 0.5), (2, 1.0)):
        real = stage_target(hr * 2 - 1, stage, 2, alpha)
        reference = conditioning_reference(y, real, stage == 2 and alpha == 1.0, method)
        assert not lr_conditioning(reference, real, 2**stage, method).any(), (stage, alpha)
        missed_y.append(bool(lr_conditioning(y, real, 2**stage, method).any()))
    assert missed_y == ([True, True, False] if method == "bicubic" else [False, False, False])  # box averages nest


def test_lag_grows_and_resumes_mid_fade_exactly(lag_config, tmp_path):
    straight = train(lag_config)
    records = _metrics(straight.run_dir)
    assert [(r["stage"], r["alpha"]) for r in records] == [(1, 1), (1, 1), (2, 0), (2, 0.5), (2, 1), (2, 1)]
    assert {"d_loss", "gp", "g_adv", "centre", "psnr_centre", "psnr_bicubic"} <= set(records[0])
    assert (straight.run_dir / "samples" / "step_0000006.png").is_file()
    half = merge(lag_config, {"train": {"iterations": 3}, "output": {"out_dir": str(tmp_path / "half")}})
    train(half)  # stops after step 3: at α = 0 of stage 2, the next step is mid-fade
    resumed = resume(tmp_path / "half", {"train": {"iterations": 6}})
    for a, b in zip(records, _metrics(resumed.run_dir), strict=True):
        assert (a["stage"], a["alpha"]) == (b["stage"], b["alpha"])
        assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-5)
    for ours, theirs in ((straight.family, resumed.family),):
        for name, tensor in ours.generator.state_dict().items():
            assert torch.allclose(tensor, theirs.generator.state_dict()[name], atol=1e-6), name
        for name, tensor in ours.critic.state_dict().items():
            assert torch.allclose(tensor, theirs.critic.state_dict()[name], atol=1e-6), name


def test_channels_last_lag_follows_the_nchw_run(lag_config, tmp_path):
    """train.channels_last (default) puts generator and critic in NHWC; the losses, gradient penalty included, match
    an NCHW run up to rounding."""
    nhwc = train(lag_config)
    for network in (nhwc.family.generator, nhwc.family.critic):
        weights = [p for p in network.parameters() if p.dim() == 4]
        assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    nchw_config = merge(lag_config, {"train": {"channels_last": False}, "output": {"out_dir": str(tmp_path / "nchw")}})
    for a, b in zip(_metrics(nhwc.run_dir), _metrics(train(nchw_config).run_dir), strict=True):
        for key in ("d_loss", "gp", "g_loss", "centre"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), (a["step"], key)


def test_trained_lag_serves_centre_and_samples(lag_config):
    trainer = train(lag_config)
    generator, config = lag_generator_from_checkpoint(trainer.run_dir)
    assert config.lag.scale == 4
    lr = torch.rand(2, 3, 8, 8)
    centre = LAGSampler(generator)
    assert torch.equal(centre(lr), centre(lr))  # G(y, 0) is deterministic
    assert centre(lr).shape == (2, 3, 32, 32)
    sample = LAGSampler(generator, torch.randn(config.lag.noise_dim))
    assert not torch.allclose(sample(lr), centre(lr))
    for wrong in (torch.randn(2 * config.lag.noise_dim), torch.randn(2, config.lag.noise_dim // 2)):
        with pytest.raises(ValueError, match=rf"z must be one \({config.lag.noise_dim},\) noise vector"):
            LAGSampler(generator, wrong)  # a (2, Z/2) z was once silently reshaped


def test_progressive_srresnet_grows_and_resumes(tmp_path):
    config = merge(
        load_config("srresnet-x2-light"),
        {
            "sr": {"scale": 4, "channels": 8, "blocks": 1, "crop": 32},
            "progressive": {"enabled": True, "stable_images": 4, "fade_images": 4},
            "train": {"iterations": 4, "batch_size_g": 2, "device": "cpu"},
            "output": {"out_dir": str(tmp_path / "sr"), "checkpoint_every": 2, "log_every": 1, "tensorboard": False},
        },
    )
    straight = train(config)
    records = _metrics(straight.run_dir)
    assert [(r["stage"], r["alpha"]) for r in records] == [(1, 1), (1, 1), (2, 0), (2, 0.5)]
    train(merge(config, {"train": {"iterations": 3}, "output": {"out_dir": str(tmp_path / "half")}}))
    resumed = resume(tmp_path / "half", {"train": {"iterations": 4}})
    assert _metrics(resumed.run_dir)[-1]["g_loss"] == pytest.approx(records[-1]["g_loss"], rel=1e-5)
    with pytest.raises(ConfigError, match="two ×2 stages"):
        train(merge(config, {"sr": {"scale": 2}, "output": {"out_dir": str(tmp_path / "x2")}}))
