"""A LAG run serves the upscaling CLI (centre and K samples), the SR evaluation, the spread measurement and the
ONNX export of its centre."""

import cv2
import numpy as np
import pytest
import torch

from fastgan.eval import __main__ as eval_cli
from fastgan.eval.sample_spread import draw_samples, markdown, sample_spread, spread_sheet
from fastgan.eval.sr_compare import GAP, LABEL_BAND
from fastgan.export import __main__ as export_cli
from fastgan.train.lag_step import lag_generator_from_checkpoint
from fastgan.upscale import __main__ as upscale_cli
from fastgan.upscale.backends import load_upscaler
from fastgan.upscale.tiling import TiledUpscaler, seam_error


def _image(path, seed):
    rng = np.random.default_rng(seed)
    cv2.imwrite(str(path), rng.integers(0, 256, (10, 12, 3), dtype=np.uint8))


def test_upscale_writes_the_centre_and_k_distinct_samples(tiny_lag_run, tmp_path, monkeypatch):
    """Also: the receptive radius is measured once, for the centre, not again for each sample."""
    from fastgan.upscale import backends

    measured = []
    measure = backends.receptive_radius
    monkeypatch.setattr(backends, "receptive_radius", lambda *args: measured.append(1) or measure(*args))
    folder = tmp_path / "lr"
    folder.mkdir()
    _image(folder / "a.png", 0)
    out = tmp_path / "sr"
    assert (
        upscale_cli.main(
            [
                "--model",
                str(tiny_lag_run),
                "--input",
                str(folder),
                "--output",
                str(out),
                "--samples",
                "2",
                "--tile",
                "16",
            ]
        )
        == 0
    )
    centre = cv2.imread(str(out / "a.png"))
    samples = [cv2.imread(str(tmp_path / f"sr-sample{k}" / "a.png")) for k in (1, 2)]
    assert centre.shape == samples[0].shape == (40, 48, 3)
    assert not np.array_equal(samples[0], samples[1]) and len(measured) == 1
    again = tmp_path / "again"
    assert upscale_cli.main(["--model", str(tiny_lag_run), "--input", str(folder), "--output", str(again)]) == 0
    assert np.array_equal(cv2.imread(str(again / "a.png")), centre)  # the centre is deterministic


def test_samples_go_beside_the_output_also_when_it_is_named_by_dot(tmp_path, monkeypatch):
    from fastgan.upscale.frames import FrameError

    (tmp_path / "out").mkdir()
    monkeypatch.chdir(tmp_path / "out")
    assert upscale_cli.sample_output(".", 2) == str(tmp_path / "out-sample2")
    assert upscale_cli.sample_output("sr", 1) == str(tmp_path / "out" / "sr-sample1")
    with pytest.raises(FrameError, match="has nothing beside it"):
        upscale_cli.sample_output("/", 1)


def test_noise_scale_sets_the_samples_standard_deviation(tiny_lag_run, tmp_path, capsys, caplog):
    """--noise-scale σ draws z from N(0, σ²I): the same draws scaled; a tiny σ gives the centre back; σ must be
    positive and finite."""
    unit, scaled = upscale_cli.noise_draws(3, 8, 5), upscale_cli.noise_draws(3, 8, 5, 0.25)
    assert unit[0] is None and scaled[0] is None
    assert all(torch.equal(0.25 * a, b) for a, b in zip(unit[1:], scaled[1:], strict=True))
    _image(tmp_path / "a.png", 2)
    common = ["--model", str(tiny_lag_run), "--input", str(tmp_path / "a.png"), "--tile", "16"]
    near_centre = ["--output", str(tmp_path / "c.png"), "--samples", "1", "--noise-scale", "1e-6"]
    assert upscale_cli.main([*common, *near_centre]) == 0
    centre, near = (cv2.imread(str(tmp_path / name)).astype(int) for name in ("c.png", "c-sample1.png"))
    assert np.abs(centre - near).max() <= 1
    assert upscale_cli.main([*common, "--output", str(tmp_path / "e.png"), "--noise-scale", "0.5"]) == 0
    assert "without --samples only the centre is written" in caplog.text
    for bad in ("0", "nan", "-1"):
        with pytest.raises(SystemExit):
            upscale_cli.main([*common, "--output", str(tmp_path / "d.png"), "--samples", "1", "--noise-scale", bad])
        assert "must be a positive, finite number" in capsys.readouterr().err


def test_spread_at_a_smaller_noise_scale_is_smaller(tiny_lag_run, tmp_path, capsys):
    """eval spread --noise-scale σ: the same z's times σ, so a tiny σ leaves next to no spread; the table says σ."""
    generator, _ = lag_generator_from_checkpoint(tiny_lag_run)
    images = [
        ("noise", torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8, generator=torch.Generator().manual_seed(3)))
    ]
    (unit,), (tiny,) = (sample_spread(draw_samples(generator, images, 4, noise_scale=s), 4) for s in (1.0, 1e-6))
    assert tiny.std_levels < 0.1 < unit.std_levels
    assert "z ~ N(0, 0.5²I)" in markdown([unit], 4, 4, 0.5) and "N(0" not in markdown([unit], 4, 4)
    spread = ["spread", "--checkpoint", str(tiny_lag_run), "--noise-scale", "0.5", "--samples", "2"]
    assert eval_cli.main([*spread, "--out", str(tmp_path)]) == 0
    assert "z ~ N(0, 0.5²I)" in (tmp_path / "spread.md").read_text()


def test_samples_are_refused_for_runs_without_noise(tiny_sr_run, tmp_path, caplog):
    _image(tmp_path / "a.png", 1)
    args = ["--input", str(tmp_path / "a.png"), "--output", str(tmp_path / "b.png"), "--samples", "2"]
    assert upscale_cli.main(["--model", str(tiny_sr_run), *args]) == 1
    assert "needs a LAG run" in caplog.text


def test_tiled_lag_equals_the_whole_image(tiny_lag_run):
    """One z per image (broadcast planes), so tiles of a sample agree with the whole sample."""
    z = torch.randn(4)
    upscaler = load_upscaler(tiny_lag_run, "torch", device="cpu", z=z)
    r = upscaler.receptive_radius
    tiled = TiledUpscaler(upscaler.tiles, 4, r, tile=2 * r + 5, overlap=r, device=torch.device("cpu"))
    assert seam_error(tiled, torch.rand(3, 21, 17)) < 1e-5


def test_spread_and_eval_of_a_lag_run(tiny_lag_run, tmp_path, capsys):
    generator, config = lag_generator_from_checkpoint(tiny_lag_run)
    images = [("noise", torch.randint(0, 256, (3, 24, 20), dtype=torch.uint8))]
    draws = draw_samples(generator, images, samples=3)
    assert draws[0].samples.shape == (3, 3, 24, 20) and draws[0].lr.shape == (1, 3, 6, 5)
    assert torch.equal(draws[0].samples, draw_samples(generator, images, samples=3)[0].samples)  # seeded z's
    (result,) = sample_spread(draws, 4)
    assert result.std_levels > 0 and result.psnr_bicubic > 0
    assert "**mean**" in markdown([result], 4, 3)
    sheet = spread_sheet(draws + draws, shown=2)  # LR, bicubic, centre, 2 samples, std, HR: 7 panels a row
    assert sheet.size == (7 * 20 + 6 * GAP, 2 * (20 + LABEL_BAND))  # 20×20 centre crops
    with pytest.raises(ValueError, match="at least 2 samples"):
        sample_spread(draw_samples(generator, images, samples=1), 4)
    out = tmp_path / "spread"
    spread = ["spread", "--checkpoint", str(tiny_lag_run), "--samples", "2", "--out", str(out), "--device", "cpu"]
    assert eval_cli.main(spread) == 0
    assert "spread" in capsys.readouterr().out and (out / "spread.png").stat().st_size > 0
    assert eval_cli.main(["sr", "--checkpoint", str(tiny_lag_run), "--out", str(tmp_path / "eval")]) == 0
    assert "LAG, z = 0" in (tmp_path / "eval" / "sr_eval.md").read_text()


def test_export_holds_the_centre(tiny_lag_run):
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_lag_run)]) == 0
    assert (tiny_lag_run / "export" / "upscaler-fp32.onnx").is_file()
