"""Progressive growing schedule: stages, fade-in α, per-stage batch sizes and learning rates, real-image targets."""

import pytest
import torch
import torch.nn.functional as F

from fastgan.train.progressive import GrowthSchedule, stage_target


def test_stages_fade_in_then_stabilise():
    schedule = GrowthSchedule(3, stable_images=100, fade_images=50, batch_sizes=(16, 8, 4), lr_scales=(1, 0.5, 0.25))
    expected = {
        0: (1, 1.0, 16, 1.0),
        99: (1, 1.0, 16, 1.0),
        100: (2, 0.0, 8, 0.5),  # stage 2 starts fading in after 100 images
        125: (2, 0.5, 8, 0.5),
        150: (2, 1.0, 8, 0.5),  # faded in: stable for 100 images
        249: (2, 1.0, 8, 0.5),
        250: (3, 0.0, 4, 0.25),
        290: (3, 0.8, 4, 0.25),
        300: (3, 1.0, 4, 0.25),
        10**9: (3, 1.0, 4, 0.25),  # the last stage runs to the end
    }
    for seen, (stage, alpha, batch, lr) in expected.items():
        phase = schedule.at(seen)
        assert (phase.stage, phase.batch_size, phase.lr_scale) == (stage, batch, lr), seen
        assert phase.alpha == pytest.approx(alpha), seen


def test_fixed_schedule_is_the_whole_network_from_the_start():
    schedule = GrowthSchedule.fixed(stages=2, batch_size=12)
    assert [schedule.at(n) for n in (0, 10**6)] == [schedule.at(0)] * 2
    assert (schedule.at(0).stage, schedule.at(0).alpha, schedule.at(0).batch_size) == (2, 1.0, 12)


def test_bad_schedules_are_refused():
    with pytest.raises(ValueError, match="one value per stage"):
        GrowthSchedule(2, 10, 10, batch_sizes=(4,))
    with pytest.raises(ValueError, match="positive"):
        GrowthSchedule(2, 10, 10, lr_scales=(1.0, 0.0))
    with pytest.raises(ValueError, match="fade_images"):
        GrowthSchedule(2, 10, 0)
    with pytest.raises(ValueError, match="images_seen"):
        GrowthSchedule(2, 10, 10).at(-1)


def test_stage_target_pools_and_fades_like_the_network():
    hr = torch.rand(2, 3, 16, 16)
    assert torch.equal(stage_target(hr, 3, 3, 1.0), hr)
    assert torch.allclose(stage_target(hr, 2, 3, 1.0), F.avg_pool2d(hr, 2))
    at_two = F.avg_pool2d(hr, 2)
    coarse = F.interpolate(F.avg_pool2d(at_two, 2), scale_factor=2, mode="nearest")
    assert torch.allclose(stage_target(hr, 2, 3, 0.0), coarse)
    assert torch.allclose(stage_target(hr, 2, 3, 0.25), 0.75 * coarse + 0.25 * at_two)
    assert torch.equal(stage_target(hr, 1, 3, 0.0), F.avg_pool2d(hr, 4))  # stage 1 never fades


def test_a_checkpoint_before_the_last_stage_is_flagged(caplog):
    """Scoring a ×4 run that stopped at its ×2 stage (or mid-fade) would judge an untrained head: warned."""
    from fastgan.train.config import load_config
    from fastgan.train.progressive import warn_if_still_growing

    growing = ["progressive.enabled=true", "progressive.stable_images=100", "progressive.fade_images=100"]
    config = load_config(None, ["model.name=srgan", "sr.scale=4", *growing])
    for seen, flagged in ((50, "stage 1 of 2"), (150, "α = 0.50"), (250, None)):
        caplog.clear()
        warn_if_still_growing("runs/x4", config, 2, seen)
        assert (flagged in caplog.text) if flagged else "stopped at" not in caplog.text, seen


def test_a_run_too_short_for_its_last_stage_is_flagged_at_the_start(caplog):
    """The LAG preset cut to 500 iterations (8 000 images) ends as its ×4 stage starts fading in: warned before it
    trains, with the images missing; the preset itself (38 400 images) and per-stage batch sizes are followed."""
    from fastgan.train.config import load_config
    from fastgan.train.progressive import growth_schedule, warn_if_too_short

    short = load_config("lag-x4", ["train.iterations=500"])
    warn_if_too_short(short, growth_schedule(short, 2))
    assert "end at stage 2 of 2 (fade-in α = 0.00): 8000 more images" in caplog.text
    caplog.clear()
    preset = load_config("lag-x4")
    warn_if_too_short(preset, growth_schedule(preset, 2))
    assert caplog.text == ""
    batches = load_config("lag-x4", ["train.iterations=1000", "progressive.batch_sizes=[32, 4]"])
    warn_if_too_short(batches, growth_schedule(batches, 2))  # 250 steps of 32 reach stage 2, 750 of 4 fade in 3 000
    assert "end at stage 2 of 2 (fade-in α = 0.38): 5000 more images" in caplog.text
