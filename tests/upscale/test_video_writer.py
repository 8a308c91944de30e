"""Upscaled videos are encoded through PyAV: each suffix's default encoder, a quality the user sets, any FFmpeg
encoder the container holds, and clear errors, before a model is loaded, for what cannot be written."""

import logging
import types
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from fastgan.upscale.frames import FrameError, open_frames, open_sink, players_hd
from fastgan.upscale.video_writer import CRF_RANGES, DEFAULT_CODECS, VideoWriter, check_encoding


def _photo_clip(path, frames=6, height=96, width=128):
    """A lossless clip of a photograph panning by 3 pixels a frame; returns the (frames, H, W, 3) RGB pixels."""
    from skimage import data

    photo = data.astronaut()[100 : 100 + height]
    pixels = np.stack([np.ascontiguousarray(photo[:, 3 * i : 3 * i + width]) for i in range(frames)])
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = width, height, "bgr0"
        for picture in pixels:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))
        container.mux(stream.encode())
    return pixels


def _upscaled_copy(source, out, **encoding):
    """Writes `source`'s frames to `out` (a stand-in for the upscaler: the frames as they are)."""
    with open_sink(out, source, **encoding) as sink:
        for frame in source:
            sink.write(frame)


def _decoded(path):
    with av.open(str(path)) as container:
        codec = container.streams.video[0].codec_context.name
        return codec, np.stack([frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)])


def _psnr(a, b):
    return 10 * np.log10(255**2 / np.mean((a.astype(np.float64) - b) ** 2))


def test_each_suffix_gets_its_encoder_at_a_quality_that_keeps_detail(tmp_path):
    """H.264 at CRF 18 for .mp4/.mov/.mkv, VP9 for .webm, MJPEG for .avi; a lower CRF keeps more."""
    pixels = _photo_clip(tmp_path / "clip.mkv")
    source = open_frames(tmp_path / "clip.mkv")
    quality = {}
    for suffix, codec in DEFAULT_CODECS.items():
        _upscaled_copy(source, tmp_path / f"out{suffix}")
        written, frames = _decoded(tmp_path / f"out{suffix}")
        assert written == {"libx264": "h264", "libvpx-vp9": "vp9", "mjpeg": "mjpeg"}[codec] and len(frames) == 6
        quality[suffix] = _psnr(frames, pixels)
    assert min(quality.values()) > 33, quality  # OpenCV's mp4v at its fixed bit rate: 34.6 dB on a 512² pan
    _upscaled_copy(source, tmp_path / "fine.mp4", crf=8)
    _upscaled_copy(source, tmp_path / "coarse.mp4", crf=40)
    fine, coarse = (_psnr(_decoded(tmp_path / f"{name}.mp4")[1], pixels) for name in ("fine", "coarse"))
    assert fine > quality[".mp4"] > coarse
    assert (tmp_path / "fine.mp4").stat().st_size > (tmp_path / "coarse.mp4").stat().st_size


def test_a_lossless_encoder_and_odd_sizes(tmp_path):
    """ffv1 gives the frames back bit for bit; an odd size, which 4:2:0 chroma cannot hold, is encoded 4:4:4."""
    pixels = _photo_clip(tmp_path / "clip.mkv", frames=3, height=45, width=63)
    source = open_frames(tmp_path / "clip.mkv")
    _upscaled_copy(source, tmp_path / "exact.mkv", codec="ffv1")
    codec, frames = _decoded(tmp_path / "exact.mkv")
    assert codec == "ffv1" and np.array_equal(frames, pixels)
    _upscaled_copy(source, tmp_path / "odd.mp4", codec="libx265", crf=CRF_RANGES["libx265"][0])
    with av.open(str(tmp_path / "odd.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "hevc" and stream.format.name == "yuv444p" and stream.width == 63


def test_what_cannot_be_encoded_is_refused_before_anything_is_written(tmp_path, caplog):
    _photo_clip(tmp_path / "clip.mkv", frames=2)
    source = open_frames(tmp_path / "clip.mkv")
    for out, encoding, message in (
        ("a.mp4", {"codec": "x264"}, "no encoder named 'x264'"),
        ("b.webm", {"codec": "libx264"}, "a .webm file cannot hold libx264 video"),
        ("c.mp4", {"crf": 52}, "--crf for libx264 is 0 … 51"),
        ("d.avi", {"crf": 20}, "mjpeg has no constant-rate factor"),
        ("e.mkv", {"codec": "h264_nvenc"}, "the h264_nvenc encoder cannot start here"),  # no NVIDIA GPU here
        ("f.mov", {"codec": "libvpx-vp9"}, "a .mov file cannot hold libvpx-vp9 video .*; try .mkv"),  # the header
    ):
        with pytest.raises(FrameError, match=message):
            open_sink(tmp_path / out, source, **encoding)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]
    (tmp_path / "frames").mkdir()
    cv2.imwrite(str(tmp_path / "frames" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    with caplog.at_level(logging.WARNING):  # images ignore the video options, with a warning
        open_sink(tmp_path / "out", open_frames(tmp_path / "frames"), codec="libx265")
    assert "--codec and --crf encode videos" in caplog.text


def test_yuv_video_is_converted_and_tagged_as_bt709(tmp_path):
    """Players show untagged HD video as BT.709 while FFmpeg converts as BT.601 by default (saturated colours off
    by up to 40 levels); the file says BT.709 and is converted so: OpenCV, which reads the training and upscaling
    inputs, and PyAV decode the colours back within a few levels."""
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (200, 100, 50), (30, 160, 220)])
    patches = np.repeat(np.repeat(colours[None], 64, axis=0), 32, axis=1).astype(np.uint8)  # (64, 192, 3) RGB
    with av.open(str(tmp_path / "patches.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = 192, 64, "bgr0"
        container.mux(stream.encode(av.VideoFrame.from_ndarray(patches, format="rgb24")))
        container.mux(stream.encode())
    _upscaled_copy(open_frames(tmp_path / "patches.mkv"), tmp_path / "out.mp4", crf=0)
    with av.open(str(tmp_path / "out.mp4")) as container:
        context = container.streams.video[0].codec_context
        assert (context.colorspace, context.color_primaries, context.color_trc, context.color_range) == (1, 1, 1, 1)
    centres = (slice(16, 48), slice(8, None, 32))
    by_pyav = _decoded(tmp_path / "out.mp4")[1][0][centres]
    by_opencv = cv2.VideoCapture(str(tmp_path / "out.mp4")).read()[1][..., ::-1][centres]
    for decoded in (by_pyav, by_opencv):
        assert np.abs(decoded.astype(int) - colours[None]).max() <= 5  # limited range and 4:2:0 chroma
    with av.open(str(tmp_path / "out.mp4")) as container:  # read with the other matrix, they would be far off
        as_bt601 = next(container.decode(video=0)).reformat(format="rgb24", src_colorspace="ITU601").to_ndarray()
    assert np.abs(as_bt601[centres].astype(int) - colours[None]).max() > 20


def test_an_untagged_hd_source_is_written_back_as_it_was_shown(tmp_path):
    """Players show an untagged HD video as BT.709 while OpenCV decodes it as BT.601: its copy is encoded back
    with BT.601 and left untagged, so players show it as they showed the source (tagged BT.709 it was up to 23
    levels off)."""
    colours = np.array([(255, 0, 0), (0, 255, 0), (0, 0, 255), (200, 100, 50)], np.uint8)
    picture = np.repeat(np.repeat(colours[None], 720, axis=0), 320, axis=1)  # (720, 1280, 3) RGB
    with av.open(str(tmp_path / "untagged.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt, stream.options = 1280, 720, "yuv420p", {"crf": "0"}
        container.mux(stream.encode(av.VideoFrame.from_ndarray(picture, format="rgb24")))  # BT.601, no tags
        container.mux(stream.encode())
    source = open_frames(tmp_path / "untagged.mp4")
    assert source.untagged_hd
    _upscaled_copy(source, tmp_path / "copy.mp4", crf=0)

    def as_players_show(path):
        with av.open(str(path)) as container:
            context = container.streams.video[0].codec_context
            shown = next(container.decode(video=0)).reformat(format="rgb24", src_colorspace="ITU709").to_ndarray()
            return context.colorspace, shown[360, 160::320].astype(int)

    (source_tag, source_shown), (copy_tag, copy_shown) = map(
        as_players_show, (tmp_path / "untagged.mp4", tmp_path / "copy.mp4")
    )
    assert source_tag == copy_tag == 2  # unspecified
    assert np.abs(copy_shown - source_shown).max() <= 3 and np.abs(source_shown - colours).max() > 15


def test_an_encoder_failure_is_reported_as_such_and_leaves_no_file(tmp_path):
    """MPEG-4 part 2 takes no 4:4:4, which an odd size needs: the first frame fails with a FrameError naming the
    encoder, not with the flush of the half-open file; nothing is left behind."""
    _photo_clip(tmp_path / "clip.mkv", frames=2, height=45, width=63)
    source = open_frames(tmp_path / "clip.mkv")
    with pytest.raises(FrameError, match="mpeg4 could not encode frame_000000") as raised:
        _upscaled_copy(source, tmp_path / "out.mp4", codec="mpeg4")
    assert isinstance(raised.value.__cause__, av.FFmpegError) and raised.value.__context__ is raised.value.__cause__
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv"]


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_variable_frame_rate_keeps_its_timing(tmp_path, suffix, caplog):
    """A phone's or a game recorder's variable frame rate: each frame keeps its time as OpenCV gives it (from the
    stream's start, as the copied audio is shifted), so the copy lasts as long as the source and stays in step with
    its audio (at OpenCV's average rate, this 3.4 s clip lasted 2.5 s). Matroska lists no frame count: OpenCV's
    estimate (40 here) is no sign of truncation. AVI, of fixed rate, cannot keep the times, and says so."""
    times = [0.5, 0.6, 0.7, 1.4, 1.5, 1.6, 3.0, 3.1, 3.9]
    with av.open(str(tmp_path / f"vfr{suffix}"), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i, time in enumerate(times):
            picture = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 25 * i, np.uint8), format="rgb24")
            picture.pts, picture.time_base = round(time * 1000), Fraction(1, 1000)
            container.mux(stream.encode(picture))
        container.mux(stream.encode())
    with caplog.at_level(logging.WARNING):
        _upscaled_copy(open_frames(tmp_path / f"vfr{suffix}"), tmp_path / f"copy{suffix}")
    with av.open(str(tmp_path / f"copy{suffix}")) as container:
        shown = [round(float(picture.time), 3) for picture in container.decode(video=0)]
    assert shown == [round(time - times[0], 3) for time in times] and not caplog.text
    with caplog.at_level(logging.WARNING):
        _upscaled_copy(open_frames(tmp_path / f"vfr{suffix}"), tmp_path / "copy.avi")
    assert caplog.text.count("the source's frame rate varies, which mjpeg in a .avi file cannot keep") == 1


@pytest.mark.parametrize(
    ("width", "height", "hd"), [(1280, 720, True), (1280, 536, True), (768, 578, True), (720, 576, False)]
)
def test_players_take_a_video_for_hd_by_its_lines_or_its_width(width, height, hd):
    assert players_hd(width, height) == hd


def test_encoders_that_take_no_fine_time_base_are_timed_by_frame_index(tmp_path):
    """MPEG-4 part 2 takes no time-base denominator over 65 535 and MPEG-2 only standard rates: they, and AVI files,
    are timed by frame index; the others keep the frames' times."""
    assert check_encoding(".mp4", None, None) == ("libx264", True)
    assert check_encoding(".avi", None, None) == ("mjpeg", False)
    _photo_clip(tmp_path / "clip.mkv", frames=3)
    source = open_frames(tmp_path / "clip.mkv")
    for name, codec, decoded in (("a.mp4", "mpeg4", "mpeg4"), ("b.mkv", "mpeg2video", "mpeg2video")):
        assert check_encoding(Path(name).suffix, codec, None) == (codec, False)
        _upscaled_copy(source, tmp_path / name, codec=codec)
        written, frames = _decoded(tmp_path / name)
        assert written == decoded and len(frames) == 3


def test_missing_or_backward_times_step_on_by_one_frame(tmp_path):
    """A time that does not move forward (a decoder's 0, a repeated time) is placed 1/fps after the previous frame,
    not squeezed against it."""
    writer = VideoWriter(tmp_path / "x.mkv", 25.0, "libx264", timed=True)
    ticks = [writer._pts(time) for time in (0.0, 0.04, 0.08, 0.12, 0.0, None, 0.2, 0.2)]
    assert ticks == [0, 3600, 7200, 10800, 14400, 18000, 21600, 25200]


def test_a_file_that_cannot_be_finished_is_an_error(tmp_path):
    """Closing writes the trailer (an MP4's index): its failure, a full disk say, is raised, not swallowed."""

    class FullDisk:
        def mux(self, packets):
            pass

        def close(self):
            raise OSError(28, "No space left on device")

    writer = VideoWriter(tmp_path / "x.mp4", 24.0, "libx264")
    writer.container, writer.stream = FullDisk(), types.SimpleNamespace(encode=lambda: [])
    with pytest.raises(OSError, match="No space left"):
        writer.close()
