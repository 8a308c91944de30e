"""Frame I/O: 8/16-bit, grey and alpha round-trip exactly; corrupt files are named and skipped; videos in and out."""

import logging

import cv2
import numpy as np
import pytest
import torch

from fastgan.upscale.frames import Frame, FrameError, open_frames, open_sink, read_image, write_image


def _noise(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


@pytest.mark.parametrize(
    ("shape", "dtype", "suffix"),
    [
        ((9, 13, 3), np.uint8, ".png"),
        ((9, 13, 3), np.uint16, ".png"),
        ((9, 13, 3), np.uint16, ".tif"),
        ((9, 13), np.uint8, ".png"),
        ((9, 13, 4), np.uint8, ".png"),
        ((9, 13, 4), np.uint16, ".png"),
    ],
)
def test_images_round_trip_exactly(tmp_path, shape, dtype, suffix):
    pixels = _noise(shape, dtype)
    cv2.imwrite(str(tmp_path / f"in{suffix}"), pixels)
    frame = read_image(tmp_path / f"in{suffix}")
    assert frame.rgb.shape == (3, 9, 13) and frame.rgb.dtype == torch.float32
    assert frame.bit_depth == 8 * np.dtype(dtype).itemsize and frame.grey == (len(shape) == 2)
    assert (frame.alpha is not None) == (len(shape) == 3 and shape[2] == 4)
    write_image(tmp_path / f"out{suffix}", frame)
    np.testing.assert_array_equal(cv2.imread(str(tmp_path / f"out{suffix}"), cv2.IMREAD_UNCHANGED), pixels)


def test_unsupported_and_corrupt_images_say_so(tmp_path):
    cv2.imwrite(str(tmp_path / "float.tif"), np.random.rand(4, 4, 3).astype(np.float32))
    with pytest.raises(FrameError, match="8- and 16-bit"):
        read_image(tmp_path / "float.tif")
    (tmp_path / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(FrameError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError):
        read_image(tmp_path / "missing.png")
    sixteen = Frame(torch.rand(3, 4, 4), bit_depth=16)
    with pytest.raises(FrameError, match="png or .tif"):
        write_image(tmp_path / "x.jpg", sixteen)


def test_folder_skips_corrupt_files_with_a_warning(tmp_path, caplog):
    for name in ("a", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), _noise((5, 6, 3)))
    (tmp_path / "b.png").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frames(tmp_path)
    with caplog.at_level(logging.WARNING):
        names = [frame.name for frame in source]
    assert len(source) == 3 and names == ["a.png", "c.png"] and source.skipped == [str(tmp_path / "b.png")]
    assert "b.png" in caplog.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match="holds no images"):
        open_frames(tmp_path / "empty")
    with pytest.raises(FrameError, match="is the input"):
        open_sink(tmp_path, source)


def test_video_frames_and_rate_survive_a_round_trip(tmp_path):
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (64, 48))
    gradient = np.broadcast_to(np.linspace(0, 255, 64, dtype=np.uint8)[None, :, None], (48, 64, 3)).copy()
    for _ in range(5):
        writer.write(gradient)
    writer.release()
    source = open_frames(clip)
    frames = list(source)
    assert source.kind == "video" and source.fps == pytest.approx(24.0) and len(frames) == 5 == len(source)
    expected = torch.from_numpy(gradient[..., ::-1].copy()).permute(2, 0, 1).float() / 255
    assert (frames[0].rgb - expected).abs().mean() < 0.05
    with open_sink(tmp_path / "copy.mp4", source) as sink:
        for frame in frames:
            sink.write(frame)
    assert len(list(open_frames(tmp_path / "copy.mp4"))) == 5
    with pytest.raises(FrameError, match="video file"):
        open_sink(tmp_path / "frames", source)


def test_folder_output_keeps_each_file_name_and_format(tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), _noise((6, 5, 3), np.uint16))
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), _noise((6, 5, 3)))
    source = open_frames(tmp_path / "in")
    with open_sink(tmp_path / "out", source) as sink:
        for frame in source:
            sink.write(frame)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["a.jpg", "a.png"]
    assert cv2.imread(str(tmp_path / "out" / "a.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
