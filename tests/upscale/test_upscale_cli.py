"""End to end: a trained run exported to ONNX (fp32, int8) and upscaled from folders and videos by the torch and
onnxruntime backends; the two agree, bit depth, grey and alpha survive, TensorRT fails clearly without a GPU."""

import inspect
import logging

import av
import cv2
import numpy as np
import pytest
import torch

from fastgan.export import __main__ as export_cli
from fastgan.export.onnx_export import read_metadata
from fastgan.train.config import merge
from fastgan.upscale import __main__ as upscale_cli
from fastgan.upscale import pipeline
from fastgan.upscale.backends import Upscaler, load_upscaler
from fastgan.upscale.tiling import TiledUpscaler


def _smooth(height, width, channels, dtype=np.uint8, seed=0):
    coarse = np.random.default_rng(seed).random((channels, height // 8 + 1, width // 8 + 1)).astype(np.float32)
    image = torch.nn.functional.interpolate(torch.from_numpy(coarse)[None], size=(height, width), mode="bilinear")[0]
    peak = np.iinfo(dtype).max
    return np.round(image.clamp(0, 1).permute(1, 2, 0).numpy() * peak).astype(dtype).squeeze()


@pytest.fixture(scope="module")
def frames_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("frames")
    cv2.imwrite(str(folder / "rgb8.png"), _smooth(37, 50, 3))
    cv2.imwrite(str(folder / "rgb16.png"), _smooth(30, 41, 3, np.uint16, seed=1))
    cv2.imwrite(str(folder / "grey.png"), _smooth(33, 29, 1, seed=2))
    cv2.imwrite(str(folder / "rgba.png"), _smooth(26, 35, 4, seed=3))
    return folder


@pytest.fixture(scope="module")
def exported(tiny_sr_run):
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run)]) == 0
    return tiny_sr_run / "export" / "upscaler-fp32.onnx"


def test_export_cli_writes_upscaler_with_tiling_metadata(exported, tiny_sr_run):
    meta = read_metadata(exported)
    torch_model = load_upscaler(tiny_sr_run, "torch", device="cpu")
    assert meta["fastgan.scale"] == "2" and int(meta["fastgan.receptive_radius"]) == torch_model.receptive_radius == 10


def test_export_out_is_checked_before_the_export_and_an_uppercase_suffix_is_onnx(
    exported, tiny_sr_run, tmp_path, caplog, monkeypatch
):
    """An existing folder as --out failed with "Is a directory" after the whole export (after calibration for int8);
    a name without .onnx was written, then refused by the upscaler with advice to export it; UP.ONNX too."""
    monkeypatch.setattr(export_cli, "export_upscaler", lambda *args, **kwargs: pytest.fail("exported before checks"))
    (tmp_path / "a-file").write_text("")
    for out, said in ((tmp_path / "model", "suffix .onnx"), (tmp_path / "a-file" / "m.onnx", "is a file")):
        with caplog.at_level("ERROR"):
            assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", str(out)]) == 1
        assert said in caplog.text and not out.exists()
    monkeypatch.undo()
    folder = tmp_path / "exports"
    folder.mkdir()
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", str(folder)]) == 0
    assert (folder / "upscaler-fp32.onnx").read_bytes() == exported.read_bytes()
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", f"{tmp_path / 'new'}/"]) == 0
    assert (tmp_path / "new" / "upscaler-fp32.onnx").is_file()  # a folder to make, named by its trailing slash
    shouted = folder / "UP.ONNX"
    (folder / "upscaler-fp32.onnx").rename(shouted)
    assert load_upscaler(shouted, "onnxruntime", device="cpu").scale == 2


def test_folder_upscales_alike_in_torch_and_onnxruntime(exported, tiny_sr_run, frames_folder, tmp_path):
    common = ["--input", str(frames_folder), "--tile", "32", "--batch", "3"]
    assert upscale_cli.main(["--model", str(tiny_sr_run), "--output", str(tmp_path / "torch"), *common]) == 0
    assert (
        upscale_cli.main(
            ["--model", str(exported), "--backend", "onnxruntime", "--output", str(tmp_path / "ort"), *common]
        )
        == 0
    )
    for name in ("rgb8", "rgb16", "grey", "rgba"):
        source = cv2.imread(str(frames_folder / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        by_torch = cv2.imread(str(tmp_path / "torch" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        by_ort = cv2.imread(str(tmp_path / "ort" / f"{name}.png"), cv2.IMREAD_UNCHANGED)
        assert by_torch.dtype == source.dtype and by_torch.shape[:2] == (2 * source.shape[0], 2 * source.shape[1])
        assert by_torch.shape[2:] == source.shape[2:]  # grey stays grey, alpha stays
        difference = np.abs(by_torch.astype(np.int64) - by_ort.astype(np.int64)).max()
        assert difference <= (2 if source.dtype == np.uint8 else 2 * 257), (name, difference)


def test_int8_export_calibrates_on_the_runs_images_and_upscales(tiny_sr_run, frames_folder, tmp_path):
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--precision", "int8"]) == 0
    int8 = tiny_sr_run / "export" / "upscaler-int8.onnx"
    assert read_metadata(int8)["fastgan.precision"] == "int8"
    out = tmp_path / "int8"
    assert (
        upscale_cli.main(
            [
                "--model",
                str(int8),
                "--backend",
                "onnxruntime",
                "--input",
                str(frames_folder / "rgb8.png"),
                "--output",
                str(out / "x2.png"),
            ]
        )
        == 0
    )
    assert cv2.imread(str(out / "x2.png")).shape == (74, 100, 3)


def test_video_in_video_out(tiny_sr_run, tmp_path):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 12.0, (40, 24))
    for i in range(3):
        writer.write(_smooth(24, 40, 3, seed=i))
    writer.release()
    out = tmp_path / "clip-x2.avi"
    assert upscale_cli.main(["--model", str(tiny_sr_run), "--input", str(clip), "--output", str(out)]) == 0
    capture = cv2.VideoCapture(str(out))
    frames = []
    while (frame := capture.read()[1]) is not None:
        frames.append(frame)
    assert len(frames) == 3 and frames[0].shape == (48, 80, 3)
    assert capture.get(cv2.CAP_PROP_FPS) == pytest.approx(12.0)
    lossless = tmp_path / "clip-x2.mkv"
    arguments = ["--model", str(tiny_sr_run), "--input", str(clip), "--output", str(lossless)]
    assert upscale_cli.main([*arguments, "--codec", "ffv1"]) == 0
    with av.open(str(lossless)) as written:
        assert written.streams.video[0].codec_context.name == "ffv1"
        assert [picture.to_ndarray(format="bgr24").shape for picture in written.decode(video=0)] == [(48, 80, 3)] * 3


def test_clear_errors(exported, tiny_sr_run, tmp_path, caplog):
    image = tmp_path / "in.png"
    cv2.imwrite(str(image), _smooth(8, 8, 3))
    assert upscale_cli.main(["--model", str(exported), "--input", str(image), "--output", str(tmp_path / "o")]) == 1
    assert "--backend onnxruntime or tensorrt" in caplog.text
    onnxruntime_on_a_run = ["--model", str(tiny_sr_run), "--backend", "onnxruntime", "--input", str(image)]
    assert upscale_cli.main([*onnxruntime_on_a_run, "--output", str(tmp_path / "y.png")]) == 1
    assert "fastgan.export onnx" in caplog.text
    caplog.clear()  # the input and output are checked before any model is loaded (or an engine built)
    assert upscale_cli.main(["--model", "nowhere", "--input", str(tmp_path / "x.png"), "--output", "y"]) == 1
    assert "no image, folder or video at" in caplog.text and "nowhere" not in caplog.text
    assert upscale_cli.main(["--model", "nowhere", "--input", str(image), "--output", str(tmp_path / "y.mp4")]) == 1
    assert "images go to a folder (or one image to an image file)" in caplog.text and "nowhere" not in caplog.text
    if not torch.cuda.is_available():
        assert export_cli.main(["trt", "--onnx", str(exported)]) == 1
        assert "TensorRT" in caplog.text or "GPU" in caplog.text
    assert export_cli.main(["trt", "--onnx", str(exported), "--device", "cpu"]) == 1
    assert "TensorRT builds engines on a CUDA device, not cpu" in caplog.text
    unreadable = tmp_path / "unreadable"
    unreadable.mkdir()
    (unreadable / "empty.png").write_bytes(b"")
    model = ["--model", str(tiny_sr_run)]
    assert upscale_cli.main([*model, "--input", str(unreadable), "--output", str(tmp_path / "u")]) == 1
    assert "no frame of" in caplog.text
    (tmp_path / "a-file").write_text("in the way")
    cv2.imwrite(str(unreadable / "fine.png"), _smooth(8, 8, 3))
    assert upscale_cli.main([*model, "--input", str(unreadable), "--output", str(tmp_path / "a-file")]) == 1
    (tmp_path / "a-folder.onnx").mkdir()  # a folder, whatever its name: the file goes in it
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", str(tmp_path / "a-folder.onnx")]) == 0
    assert (tmp_path / "a-folder.onnx" / "upscaler-fp32.onnx").is_file()
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temporary files left


def test_eval_scores_the_exported_file_tiled_like_the_torch_model(exported, tiny_sr_run, tmp_path, monkeypatch):
    """Also: onnxruntime runs on the --device asked for, and the torch model without cuDNN's TF32 (so the table
    does not depend on the GPU generation)."""
    from fastgan.eval import __main__ as eval_main
    from fastgan.upscale import backends

    devices, tf32 = [], []
    load_upscaler, from_checkpoint = backends.load_upscaler, eval_main.upscaler_from_checkpoint

    def recording_load(path, name, device="auto", *rest):
        devices.append(device)
        return load_upscaler(path, name, device, *rest)

    def hooked(*args):
        generator, config = from_checkpoint(*args)
        generator.register_forward_pre_hook(lambda *_: tf32.append(torch.backends.cudnn.allow_tf32))
        return generator, config

    monkeypatch.setattr(backends, "load_upscaler", recording_load)
    monkeypatch.setattr(eval_main, "upscaler_from_checkpoint", hooked)
    table = eval_main.evaluate_sr(str(tiny_sr_run), "held-out", tmp_path, "cpu", (str(exported),), tile=48)
    assert devices == ["cpu"] and tf32 and not any(tf32)
    mean = {line.split("|")[2].strip(): line.split("|")[3].strip() for line in table.splitlines() if "**mean**" in line}
    onnx_row = next(name for name in mean if name.startswith("upscaler-fp32: onnxruntime"))
    assert mean[onnx_row] == mean["fastgan (srresnet)"]  # exact tiles, zero borders: the whole-image output


def test_eval_sr_keeps_a_row_for_each_onnx_file_of_the_same_name(exported, tiny_sr_run, tmp_path):
    from fastgan.eval import __main__ as eval_main

    other = tmp_path / "other-run" / exported.name
    other.parent.mkdir()
    other.write_bytes(exported.read_bytes())
    table = eval_main.evaluate_sr(str(tiny_sr_run), "held-out", tmp_path, "cpu", (str(exported), str(other)), 48)
    rows = [line.split("|")[2].strip() for line in table.splitlines() if "**mean**" in line]
    names = [f"{exported.parent.name}/{exported.stem}", f"other-run/{exported.stem}"]
    assert (
        sum(row.startswith(names[0] + ":") for row in rows) == sum(row.startswith(names[1] + ":") for row in rows) == 1
    )
    with pytest.raises(ValueError, match="more than once"):
        eval_main.evaluate_sr(str(tiny_sr_run), "held-out", tmp_path, "cpu", (str(exported), str(exported)), 48)


def test_eval_sr_names_a_missing_onnx_file(tiny_sr_run, tmp_path, capsys):
    from fastgan.eval import __main__ as eval_main

    missing = tmp_path / "missing.onnx"
    assert eval_main.main(["sr", "--checkpoint", str(tiny_sr_run), "--onnx", str(missing), "--out", str(tmp_path)]) == 2
    assert f"error: no ONNX file at {missing}" in capsys.readouterr().err


def test_an_export_that_differs_from_torch_fails_and_keeps_the_earlier_file(tiny_sr_run, tmp_path, monkeypatch):
    from fastgan.export import __main__ as export_main

    out = tmp_path / "x2.onnx"
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", str(out)]) == 0
    good = out.read_bytes()
    monkeypatch.setitem(export_main.TOLERANCE, "fp32", ("max", 0.0))  # any rounding now counts as broken
    assert export_cli.main(["onnx", "--checkpoint", str(tiny_sr_run), "--out", str(out)]) == 1
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["x2.onnx"]


def test_calibration_keeps_a_sample_of_the_frames_degraded_as_in_training(tiny_sr_run, tmp_path, monkeypatch):
    """A long source is sampled (at most 64 frames and 512 MiB of them, a seeded uniform sample, decoded one by one,
    whatever count a container lists), and the run's own images are degraded with its `sr.degrade`."""
    from fastgan.data import sr_loader
    from fastgan.export import __main__ as export_main
    from fastgan.train.upscalers import run_config

    for i in range(70):
        cv2.imwrite(str(tmp_path / f"f{i:03d}.png"), _smooth(8, 8, 3, seed=i))
    config = run_config(tiny_sr_run)
    frames = export_main._calibration_frames(str(tmp_path), config, 2)
    assert len(frames) == 64 and frames[0].shape == (3, 8, 8)
    again = export_main._calibration_frames(str(tmp_path), config, 2)
    assert all((a == b).all() for a, b in zip(frames, again, strict=True))  # the same sample every time
    from fastgan.upscale.frames import read_image

    late = [read_image(tmp_path / f"f{i:03d}.png").rgb.numpy().astype(np.float16) for i in range(64, 70)]
    assert any((frame == kept).all() for frame in late for kept in frames)  # not just the first 64 frames
    monkeypatch.setattr(export_main, "CALIBRATION_BYTES", 10 * frames[0].nbytes)  # large frames: fewer are kept
    assert len(export_main._calibration_frames(str(tmp_path), config, 2)) == 10
    cv2.imwrite(str(tmp_path / "f050.png"), _smooth(16, 16, 3))  # four times as large, after smaller ones
    kept = export_main._calibration_frames(str(tmp_path), config, 2)
    assert len(kept) == 2 and sum(frame.nbytes for frame in kept) <= 10 * frames[0].nbytes
    methods = []
    degrade = sr_loader.degrade
    monkeypatch.setattr(
        sr_loader, "degrade", lambda hr, scale, method: methods.append(method) or degrade(hr, scale, method)
    )
    export_main._calibration_frames(None, merge(config, {"sr": {"degrade": "area"}}), 2)
    assert methods and set(methods) == {"area"}


def test_options_a_backend_does_not_read_are_named(exported, frames_folder, tmp_path, caplog):
    args = ["--model", str(exported), "--backend", "onnxruntime", "--precision", "fp16", "--min-tile", "8"]
    with caplog.at_level(logging.WARNING):
        assert (
            upscale_cli.main([*args, "--input", str(frames_folder / "grey.png"), "--output", str(tmp_path / "a.png")])
            == 0
        )
    assert "--precision, --min-tile: not used by the onnxruntime backend" in caplog.text


def _nearest_x2(tiles: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.interpolate(tiles, scale_factor=2)


def test_tiling_and_engine_options_reach_their_own_parameters(frames_folder, tmp_path, monkeypatch):
    """The CLI hands load_upscaler, TiledUpscaler and upscale_frames their arguments by position: each option, at a
    value of its own, must arrive as the parameter of its name (two ints or two strings swapped would run), and
    without the options the defaults must (overlap: the model's receptive radius)."""
    calls = {"load": [], "tiler": [], "frames": []}

    def recording_load(*args, **kwargs):
        calls["load"].append(inspect.signature(load_upscaler).bind(*args, **kwargs).arguments)
        return Upscaler(_nearest_x2, 2, 3, torch.device("cpu"), "nearest ×2")

    class RecordingTiler(TiledUpscaler):
        def __init__(self, *args, **kwargs):
            calls["tiler"].append(inspect.signature(TiledUpscaler).bind(*args, **kwargs).arguments)
            super().__init__(*args, **kwargs)

    def recording_frames(*args, **kwargs):
        calls["frames"].append(inspect.signature(pipeline.upscale_frames).bind(*args, **kwargs).arguments)
        return pipeline.upscale_frames(*args, **kwargs)

    monkeypatch.setattr(upscale_cli, "load_upscaler", recording_load)
    monkeypatch.setattr(upscale_cli, "TiledUpscaler", RecordingTiler)
    monkeypatch.setattr(upscale_cli, "upscale_frames", recording_frames)
    io = ["--model", "run", "--input", str(frames_folder / "rgba.png"), "--device", "cpu", "--tile", "24"]
    options = ["--overlap", "5", "--feather", "2", "--window", "linear", "--batch", "3", "--border", "zero"]
    options += ["--alpha", "bicubic", "--engine-cache", str(tmp_path / "engines"), "--precision", "bf16", "--fused"]
    options += ["--min-tile", "4", "--workspace-gb", "0.5"]
    assert upscale_cli.main([*io, "--output", str(tmp_path / "a.png"), *options]) == 0
    assert upscale_cli.main([*io, "--output", str(tmp_path / "b.png")]) == 0
    given, default = calls["load"]
    assert {k: v for k, v in given.items() if k != "z"} == {
        "path": "run",
        "backend_name": "torch",
        "device": "cpu",
        "precision": "bf16",
        "fused": True,
        "tile": 24,
        "batch": 3,
        "engine_cache": str(tmp_path / "engines"),
        "min_tile": 4,
        "workspace_bytes": 2**29,
        "radius": None,  # measured by load_upscaler: nothing measured before
    }
    assert given["z"] is None and (default["engine_cache"], default["batch"], default["min_tile"]) == (None, 8, 1)
    given, default = calls["tiler"]
    expected = {"model": _nearest_x2, "scale": 2, "receptive_radius": 3, "tile": 24, "overlap": 5, "feather": 2}
    expected |= {"window": "linear", "batch": 3, "border": "zero", "device": torch.device("cpu")}
    assert given == expected
    assert default == {**expected, "overlap": 3, "feather": None, "window": "cosine", "batch": 8, "border": "reflect"}
    assert [(c["alpha"], c["upscaler"].overlap) for c in calls["frames"]] == [("bicubic", 5), ("model", 3)]
    assert cv2.imread(str(tmp_path / "a.png"), cv2.IMREAD_UNCHANGED).shape == (52, 70, 4)


@pytest.mark.parametrize(
    ("cli", "argv", "message"),
    [
        (export_cli, ["onnx", "--checkpoint", "run", "--calibration-tile", "0"], "positive integer, got 0"),
        (export_cli, ["trt", "--onnx", "x.onnx", "--batch", "-2"], "positive integer, got -2"),
        (export_cli, ["trt", "--onnx", "x.onnx", "--workspace-gb", "nan"], "positive, finite number, got nan"),
        (upscale_cli, ["--model", "m", "--input", "a.png", "--output", "b.png", "--tile", "0"], "got 0"),
        (upscale_cli, ["--model", "m", "--input", "a.png", "--output", "b.png", "--min-tile", "-1"], "got -1"),
    ],
    ids=["calibration-tile", "trt-batch", "workspace", "upscale-tile", "upscale-min-tile"],
)
def test_sizes_that_cannot_be_are_refused_before_any_work(cli, argv, message, capsys):
    """Once an onnxruntime traceback (a 0×0 calibration crop) or a bare numpy error (a negative one)."""
    with pytest.raises(SystemExit) as refused:
        cli.main(argv)
    assert refused.value.code == 2 and message in capsys.readouterr().err
