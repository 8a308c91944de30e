"""Training frames from a video file: OpenCV's and DALI's readers agree, the tail is held out, bad files are
refused, and an upscaler trains on a video end to end."""

import logging

import cv2
import numpy as np
import pytest
import torch

from fastgan.data.factory import dali_available
from fastgan.data.sources import DataSourceError
from fastgan.data.video_sources import dali_video_frames, split_video_tail, video_frames
from fastgan.train.config import ConfigError, SRConfig, load_config, merge
from fastgan.train.run import load_sr_images, train
from fastgan.video_files import is_video

needs_dali = pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")


def _write_video(path, frames=20, fourcc="MJPG", size=(64, 48)):
    """A video whose frame i has blue level 6·i and a white square at x = 2·i (BGR as OpenCV writes)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*fourcc), 10, size)
    assert writer.isOpened(), fourcc
    for i in range(frames):
        frame = np.zeros((size[1], size[0], 3), np.uint8)
        frame[..., 0] = 6 * i
        frame[10:26, 2 * i : 2 * i + 16] = 255
        writer.write(frame)
    writer.release()
    return path


def test_opencv_reader_keeps_every_nth_frame_up_to_the_limit(tmp_path):
    video = _write_video(tmp_path / "session.avi")
    frames = video_frames(video, every=3)
    assert [name for name, _ in frames] == [f"session-{i:06d}" for i in range(0, 20, 3)]
    for (_, frame), index in zip(frames, range(0, 20, 3), strict=True):
        assert frame.shape == (3, 48, 64) and frame.dtype == torch.uint8
        assert abs(frame[2, 40, 5].item() - 6 * index) <= 4  # blue, now the RGB image's third channel (MJPEG)
    assert len(video_frames(video, every=3, limit=4)) == 4
    assert is_video(video) and is_video("x.MP4") and not is_video("x.png")


def test_a_truncated_video_is_reported(tmp_path, caplog):
    video = _write_video(tmp_path / "session.avi", frames=40)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        frames = video_frames(video, every=1)
    assert 0 < len(frames) < 40 and f"after {len(frames)} of the 40 frames" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        video_frames(video, every=1, limit=5)  # stopped by the limit, not by the damage
    assert "truncated" not in caplog.text


@needs_dali
def test_dali_reader_gives_opencvs_frames(tmp_path):
    video = _write_video(tmp_path / "session.avi")
    for every, limit in ((3, 0), (2, 5), (1, 0)):
        dali, opencv = dali_video_frames(video, every, limit), video_frames(video, every, limit)
        assert [name for name, _ in dali] == [name for name, _ in opencv]
        pairs = list(zip(dali, opencv, strict=True))
        error = torch.stack([a.float() - b.float() for (_, a), (_, b) in pairs]).abs()
        assert error.mean() < 1.0  # the same frames; the decoders' chroma up-sampling differs at the square's edges
        assert all(abs(int(a[2, 40, 5]) - int(b[2, 40, 5])) <= 2 for (_, a), (_, b) in pairs)  # flat: equal blue


@needs_dali
def test_dali_reader_turns_a_rotation_tagged_video_upright_as_opencv_does(tmp_path):
    import av

    for degrees in (90, 180, 270):
        video = tmp_path / f"portrait-{degrees}.mov"
        with av.open(str(video), "w") as container:
            stream = container.add_stream("mjpeg", rate=10)
            stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
            stream.set_display_rotation(degrees)  # a phone's portrait recording: stored landscape, tagged
            for i in range(8):
                picture = np.zeros((48, 64, 3), np.uint8)
                picture[4:20, 2 * i : 2 * i + 16] = 255  # off-centre, so each quarter turn looks different
                container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
            container.mux(stream.encode())
        dali, opencv = dali_video_frames(video, every=2), video_frames(video, every=2)
        assert opencv[0][1].shape == ((3, 48, 64) if degrees == 180 else (3, 64, 48))
        for (_, a), (_, b) in zip(dali, opencv, strict=True):
            assert a.shape == b.shape and (a.float() - b.float()).abs().mean() < 1.0, degrees


@needs_dali
def test_dali_reader_reports_a_truncated_video(tmp_path, caplog):
    video = _write_video(tmp_path / "session.avi", frames=40)
    video.write_bytes(video.read_bytes()[: video.stat().st_size // 2])
    with caplog.at_level(logging.WARNING):
        frames = dali_video_frames(video, every=4)
    assert 0 < len(frames) < 10 and "of the 40 frames" in caplog.text and "truncated" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        dali_video_frames(_write_video(tmp_path / "whole.avi", frames=38), every=4)  # 10 kept frames: all of it
    assert "truncated" not in caplog.text


@needs_dali
def test_a_codec_dali_lacks_falls_back_to_opencv_with_a_warning(tmp_path, caplog):
    video = _write_video(tmp_path / "mpeg4.mp4", fourcc="mp4v")  # MPEG-4 part 2: DALI's decoders lack it
    with caplog.at_level(logging.WARNING):
        frames = dali_video_frames(video, every=4)
    assert "DALI cannot decode" in caplog.text and "OpenCV" in caplog.text and str(video) in caplog.text
    assert [name for name, _ in frames] == [name for name, _ in video_frames(video, every=4)]


def test_the_tail_is_held_out_and_bad_videos_are_refused(tmp_path):
    frames = [(f"f{i}", torch.full((3, 4, 4), 10 * i, dtype=torch.uint8)) for i in range(20)]
    training, held_out = split_video_tail(frames)
    assert [n for n, _ in held_out] == ["f18", "f19"] and len(training) == 18  # the last eighth
    assert len(split_video_tail(frames[:3])[1]) == 1
    repeated = frames[:17] + [frames[16], ("new", frames[0][1] + 5), frames[16]]  # the tail: two repeats, one new
    assert [n for n, _ in split_video_tail(repeated)[1]] == ["new"]
    with pytest.raises(DataSourceError, match="none can be held out"):
        split_video_tail(frames[:18] + [frames[3], frames[7]])
    with pytest.raises(DataSourceError, match="at least 2 kept frames"):
        split_video_tail(frames[:1])
    with pytest.raises(DataSourceError, match="no video file"):
        video_frames(tmp_path / "missing.mp4")
    (tmp_path / "broken.mp4").write_bytes(b"not a video")
    with pytest.raises(DataSourceError, match="broken.mp4"):
        video_frames(tmp_path / "broken.mp4")
    with pytest.raises(ConfigError, match="video_every"):
        SRConfig(video_every=0)


@pytest.mark.parametrize("loader", ["torch", pytest.param("dali", marks=needs_dali)])
def test_an_upscaler_trains_on_a_video(tmp_path, loader):
    video = _write_video(tmp_path / "game.avi", frames=40)
    training, held_out = load_sr_images(SRConfig(images=str(video), video_every=2, video_frames=16), loader)
    assert len(training) == 14 and [n for n, _ in held_out] == ["game-000028", "game-000030"]
    config = merge(
        load_config("srresnet-x2-light"),
        {
            "data": {"loader": loader},
            "sr": {"images": str(video), "video_every": 2, "channels": 8, "blocks": 1, "crop": 32},
            "train": {"iterations": 2, "batch_size_g": 2, "device": "cpu"},
            "output": {"out_dir": str(tmp_path / "run"), "checkpoint_every": 2, "sample_every": 2},
        },
    )
    trainer = train(config)
    assert trainer.step == 2 and (tmp_path / "run" / "checkpoint.pt").is_file()
