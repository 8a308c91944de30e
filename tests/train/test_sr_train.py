"""The SRResNet / SRGAN family in the training core: both stages run, resume exactly, and evaluate."""

import json

import pytest
import torch
import torchvision

from fastgan.eval import __main__ as eval_cli
from fastgan.models.vgg import VGGWeightsError
from fastgan.train.config import ConfigError, load_config, merge
from fastgan.train.run import resume, train
from fastgan.train.sr_step import generator_from_checkpoint, held_out_crops


@pytest.fixture
def sr_config(tmp_path):
    """SRResNet ×2 with 8 channels and 1 block on skimage photo crops; 4 iterations."""
    return merge(
        load_config("srresnet-x2-light"),
        {
            "sr": {"channels": 8, "blocks": 1, "crop": 32},
            "train": {"iterations": 4, "batch_size_g": 4, "device": "cpu"},
            "output": {
                "out_dir": str(tmp_path / "srresnet"),
                "checkpoint_every": 2,
                "sample_every": 2,
                "log_every": 1,
                "tensorboard": False,
            },
        },
    )


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_srresnet_stage_trains_resumes_exactly_and_samples(sr_config, tmp_path):
    straight = train(sr_config)
    records = _metrics(straight.run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"pixel", "g_loss", "psnr"} <= set(records[0])
    assert (straight.run_dir / "samples" / "step_0000004.png").is_file()
    half = merge(sr_config, {"train": {"iterations": 2}, "output": {"out_dir": str(tmp_path / "half")}})
    train(half)
    resumed = resume(tmp_path / "half", {"train": {"iterations": 4}})
    for a, b in zip(records, _metrics(resumed.run_dir), strict=True):
        assert a["g_loss"] == pytest.approx(b["g_loss"], rel=1e-5)
    for name, tensor in straight.family.generator.state_dict().items():
        assert torch.allclose(tensor, resumed.family.generator.state_dict()[name], atol=1e-6), name


def test_learning_rates_drop_by_the_decay_factor_from_lr_decay_at_on_and_across_a_resume(sr_config, tmp_path):
    """SRGAN's schedule: iterations before train.lr_decay_at run at the configured rates, the rest at
    lr_decay_factor times them — also when a resumed run crosses the boundary, or adds a decay."""
    config = merge(sr_config, {"train": {"iterations": 2, "lr_g": 3e-4, "lr_decay_at": 2, "lr_decay_factor": 0.25}})
    first = train(config)
    assert [g["lr"] for g in first.family.opt_g.param_groups] == [3e-4]  # iterations 1 and 2: steps 0 and 1 done
    resumed = resume(first.run_dir, {"train": {"iterations": 3}})
    assert [g["lr"] for g in resumed.family.opt_g.param_groups] == [pytest.approx(7.5e-5)]
    added = resume(first.run_dir, {"train": {"iterations": 4, "lr_decay_at": 4}})  # a decay not yet due
    assert [g["lr"] for g in added.family.opt_g.param_groups] == [3e-4]


@pytest.mark.cuda
@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
def test_srresnet_trains_on_cuda(sr_config, fused):
    """On CUDA (eager, and --fused: pixel_shuffle_prelu as a compiled Triton kernel): finite losses, weights there."""
    run = train(merge(sr_config, {"train": {"device": "cuda", "fused": fused}}))
    assert all(p.is_cuda for p in run.family.generator.parameters())
    records = _metrics(run.run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(torch.isfinite(torch.tensor(r[k])) for r in records for k in ("pixel", "g_loss", "psnr"))


def test_srgan_stage_starts_from_srresnet_and_needs_vgg_weights(sr_config, tmp_path):
    stage1 = train(sr_config)
    vgg = tmp_path / "vgg19.pth"
    torch.save(torchvision.models.vgg19().state_dict(), vgg)
    stage2 = {
        "sr": {"stage": "srgan", "init_from": str(stage1.run_dir), "vgg_weights": str(vgg), "relativistic": True},
        "train": {"iterations": 2, "batch_size_g": 2},
        "output": {"out_dir": str(tmp_path / "srgan")},
    }
    run = train(merge(sr_config, stage2))
    assert {"d_loss", "content", "g_adv"} <= set(_metrics(run.run_dir)[0])
    moved = tmp_path / "elsewhere" / "vgg19.pth"  # the same file, moved: resumes
    moved.parent.mkdir()
    vgg.rename(moved)
    resumed = resume(run.run_dir, {"train": {"iterations": 3}, "sr": {"vgg_weights": str(moved)}})
    assert resumed.step == 3
    state = torch.load(moved)
    state["features.0.bias"] += 1  # other weights: the content loss would change unseen
    torch.save(state, vgg)
    with pytest.raises(ValueError, match="trained with other VGG19 weights .*same sr.vgg_weights"):
        resume(run.run_dir, {"train": {"iterations": 4}, "sr": {"vgg_weights": str(vgg)}})
    missing_vgg = {"sr": stage2["sr"] | {"vgg_weights": str(tmp_path / "none.pth")}}
    with pytest.raises(VGGWeightsError, match="never downloads"):
        train(merge(sr_config, stage2 | missing_vgg | {"output": {"out_dir": str(tmp_path / "a")}}))
    other_width = {"sr": stage2["sr"] | {"channels": 4}, "output": {"out_dir": str(tmp_path / "b")}}
    with pytest.raises(ConfigError, match="sr.channels"):
        train(merge(sr_config, stage2 | other_width))


def test_eval_cli_writes_table_and_comparison(sr_config, tmp_path, capsys):
    run = train(sr_config)
    assert eval_cli.main(["sr", "--checkpoint", str(run.run_dir), "--out", str(tmp_path / "eval")]) == 0
    table = (tmp_path / "eval" / "sr_eval.md").read_text()
    for method in ("bicubic", "lanczos", "fastgan (srresnet)"):
        assert method in table
    for name in ("astronaut", "coffee", "chelsea"):
        assert name in table
    assert (tmp_path / "eval" / "sr_comparison.png").stat().st_size > 1000
    generator, config = generator_from_checkpoint(run.run_dir)
    assert config.sr.scale == 2 and not generator.training
    assert eval_cli.main(["sr", "--checkpoint", str(tmp_path / "missing")]) == 2
    assert "error:" in capsys.readouterr().err


def test_doom_frames_hold_out_another_episode():
    from fastgan.train.config import SRConfig
    from fastgan.train.run import load_sr_images

    train_frames, held_out = load_sr_images(SRConfig(images="doom", doom_frames=24))
    assert len(train_frames) == 24 and len(held_out) == 3
    assert all(name.split("-")[-2] == "0" for name, _ in train_frames)
    assert all(name.split("-")[-2] == "1" for name, _ in held_out)
    # every episode starts from the same view whatever the seed: seed 1's first frame is within 43 dB of seed 0's
    assert held_out[0][0] != "deadly_corridor-1-0000"
    for _, frame in held_out:
        error = min((frame.float() - other.float()).square().mean() for _, other in train_frames)
        assert 10 * torch.log10(255**2 / error) < 35


def test_held_out_image_smaller_than_the_scale_is_named():
    thin = ("thin", torch.zeros(3, 3, 40, dtype=torch.uint8))
    with pytest.raises(ConfigError, match="held-out image thin is 40×3"):
        held_out_crops([thin], scale=4, side=32)


def test_the_sample_grid_degrades_as_training_does(sr_config, monkeypatch):
    """An area-trained model is shown inputs made by area averaging, not by bicubic."""
    from fastgan.train import sr_step
    from fastgan.train.run import build_trainer

    trainer = build_trainer(merge(sr_config, {"sr": {"degrade": "area"}}))
    methods = []
    degrade = sr_step.degrade
    monkeypatch.setattr(
        sr_step, "degrade", lambda hr, scale, method: methods.append(method) or degrade(hr, scale, method)
    )
    assert trainer.family.sample_grid().shape[1] == 3 and methods == ["area"]


def test_a_run_on_a_folder_resumes_from_where_the_folder_moved_but_not_on_other_images(sr_config, tmp_path):
    """sr.images was frozen: a moved folder could not be resumed, though the missing-folder error said to point
    sr.images at it. Now it may move, to the same images (names and sizes decide every crop), not to others."""
    from PIL import Image

    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(4):
        pixels = torch.linspace(0, 255, 48 * 40).reshape(48, 40, 1).expand(48, 40, 3) * (0.5 + i / 8)
        Image.fromarray(pixels.round().byte().numpy()).save(folder / f"p{i}.png")
    config = merge(sr_config, {"sr": {"images": str(folder), "held_out": ["p3"]}, "train": {"iterations": 2}})
    run = train(config).run_dir
    moved = folder.rename(tmp_path / "moved")
    resumed = resume(run, {"train": {"iterations": 3}, "sr": {"images": str(moved)}})
    assert resumed.step == 3 and load_config(str(run / "config.yaml")).sr.images == str(moved)
    with pytest.raises(ConfigError, match="not from .*moved \\(folder\\) to skimage \\(skimage\\)"):
        resume(run, {"train": {"iterations": 4}, "sr": {"images": "skimage"}})
    Image.open(moved / "p0.png").crop((0, 0, 40, 40)).save(moved / "p0.png")  # as many images, one of another size
    with pytest.raises(ValueError, match="loader saw other images .*resume with the images it was trained on"):
        resume(run, {"train": {"iterations": 4}})
