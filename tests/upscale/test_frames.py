"""Frame I/O: 8/16-bit, grey and alpha round-trip exactly; bad inputs are named (and skipped in folders); videos in
and out; outputs never overwrite inputs."""

import logging
from fractions import Fraction

import av
import cv2
import numpy as np
import pytest
import torch

from fastgan.upscale.frames import (
    Frame,
    FrameError,
    frame_from_array,
    frame_to_array,
    open_frames,
    open_sink,
    read_image,
    write_image,
)


def _noise(shape, dtype=np.uint8, seed=0):
    return np.random.default_rng(seed).integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


def _gradient(width=64, height=48, shift=0):
    """(H, W, 3) uint8 BGR: smooth, so a lossy codec keeps it close."""
    ramp = np.linspace(0, 200, width, dtype=np.float32)[None, :]
    column = np.linspace(0, 150, height, dtype=np.float32)[:, None]
    return np.stack([ramp + 0 * column, column + 0 * ramp, (ramp + column) / 2 + shift], axis=2).astype(np.uint8)


@pytest.mark.parametrize(
    ("shape", "dtype", "suffix"),
    [
        ((9, 13, 3), np.uint8, ".png"),
        ((9, 13, 3), np.uint16, ".png"),
        ((9, 13, 3), np.uint16, ".tif"),
        ((9, 13), np.uint8, ".png"),
        ((9, 13), np.uint16, ".png"),
        ((9, 13, 4), np.uint8, ".png"),
        ((9, 13, 4), np.uint16, ".png"),
    ],
)
def test_images_round_trip_exactly(tmp_path, shape, dtype, suffix):
    pixels = _noise(shape, dtype)
    cv2.imwrite(str(tmp_path / f"in{suffix}"), pixels)
    frame = read_image(tmp_path / f"in{suffix}")
    assert frame.rgb.shape == (3, 9, 13) and frame.rgb.dtype == torch.float32 and frame.name == f"in{suffix}"
    assert 0 <= frame.rgb.min() and frame.rgb.max() <= 1
    assert frame.bit_depth == 8 * np.dtype(dtype).itemsize and frame.grey == (len(shape) == 2)
    assert (frame.alpha is not None) == (len(shape) == 3 and shape[2] == 4)
    if frame.grey:
        assert torch.equal(frame.rgb[0], frame.rgb[1]) and torch.equal(frame.rgb[0], frame.rgb[2])
    if frame.alpha is not None:
        assert frame.alpha.shape == (1, 9, 13)
    write_image(tmp_path / f"out{suffix}", frame)
    written = cv2.imread(str(tmp_path / f"out{suffix}"), cv2.IMREAD_UNCHANGED)
    np.testing.assert_array_equal(written, pixels)  # same shape (grey: one channel), dtype and values
    if dtype == np.uint16:
        assert written.max() > 255
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_conversions_clamp_and_keep_grey_alpha_writable():
    frame = Frame(torch.tensor([2.0, -1.0, 0.5]).view(3, 1, 1))
    np.testing.assert_array_equal(frame_to_array(frame), [[[128, 0, 255]]])  # BGR, clamped, rounded
    grey_alpha = frame_from_array(np.array([[[10, 200]]], dtype=np.uint8), "la")
    assert grey_alpha.grey and grey_alpha.rgb.flatten().tolist() == pytest.approx([10 / 255] * 3)
    np.testing.assert_array_equal(frame_to_array(grey_alpha), [[[10, 10, 10, 200]]])  # OpenCV encodes no grey+alpha
    with pytest.raises(FrameError, match="5 channels"):
        frame_from_array(np.zeros((2, 2, 5), np.uint8), "five")


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_frames_are_quantised_before_they_leave_the_device(monkeypatch, bit_depth):
    """An upscaled frame lives on the upscaler's GPU: it crosses to the host as 8/16-bit integers (a quarter or half
    of the float32 bytes), not as float32 to be rounded by the CPU."""
    downloaded = []
    cpu = torch.Tensor.cpu
    monkeypatch.setattr(torch.Tensor, "cpu", lambda tensor, *a, **k: downloaded.append(tensor.dtype) or cpu(tensor))
    frame = Frame(torch.rand(3, 4, 6), torch.rand(1, 4, 6), bit_depth=bit_depth)
    pixels = frame_to_array(frame)
    assert downloaded == [torch.uint16 if bit_depth == 16 else torch.uint8]
    assert pixels.dtype == (np.uint16 if bit_depth == 16 else np.uint8) and pixels.shape == (4, 6, 4)
    assert pixels.flags.c_contiguous


def test_jpeg_reads_as_eight_bit(tmp_path):
    cv2.imwrite(str(tmp_path / "a.jpg"), _gradient())
    frame = read_image(tmp_path / "a.jpg")
    assert frame.bit_depth == 8 and frame.rgb.shape == (3, 48, 64) and frame.alpha is None and not frame.grey


def test_unsupported_corrupt_and_missing_images_say_so(tmp_path):
    cv2.imwrite(str(tmp_path / "float.tif"), np.random.rand(4, 4, 3).astype(np.float32))
    with pytest.raises(FrameError, match="8- and 16-bit integer"):
        read_image(tmp_path / "float.tif")
    (tmp_path / "broken.png").write_bytes(np.random.default_rng(0).bytes(300))
    with pytest.raises(FrameError, match="broken.png"):
        read_image(tmp_path / "broken.png")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        open_frames(tmp_path / "nowhere")
    with pytest.raises(FrameError, match="use one of"):
        write_image(tmp_path / "x.xyz", Frame(torch.rand(3, 4, 4)))


def test_a_16_bit_frame_written_as_jpeg_is_rounded_to_8_bits_with_a_warning(tmp_path, caplog):
    """A 16-bit PNG upscaled to .jpg was refused only when written, after the upscaling; it is rounded as 8-bit
    formats hold it (16-bit level v becomes round(v · 255 / 65535))."""
    deep = _noise((4, 5, 3), np.uint16)
    frame = frame_from_array(deep, "deep.png")
    with caplog.at_level(logging.WARNING):
        write_image(tmp_path / "x.bmp", frame)
    assert "holds 8 bits; the 16-bit frame is rounded to 8" in caplog.text
    expected = np.round(deep.astype(np.float64) * 255 / 65535).astype(np.uint8)
    assert np.array_equal(cv2.imread(str(tmp_path / "x.bmp"), cv2.IMREAD_UNCHANGED), expected)


def test_folder_skips_corrupt_files_with_a_warning(tmp_path, caplog):
    for name in ("a", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), _noise((5, 6, 3)))
    (tmp_path / "b.png").write_bytes(b"garbage")
    (tmp_path / "notes.txt").write_text("not an image")
    source = open_frames(tmp_path)
    with caplog.at_level(logging.WARNING):
        names = [frame.name for frame in source]
    assert source.kind == "images" and source.fps is None and len(source) == 3
    assert names == ["a.png", "c.png"] and source.skipped == [str(tmp_path / "b.png")] and "b.png" in caplog.text
    (tmp_path / "empty").mkdir()
    with pytest.raises(FrameError, match="holds no images"):
        open_frames(tmp_path / "empty")
    with pytest.raises(FrameError, match="overwrite the input"):
        open_sink(tmp_path, source)
    with pytest.raises(FrameError, match="overwrite the input"):
        open_sink(tmp_path, open_frames(tmp_path / "a.png"))  # one image into its own folder
    with pytest.raises(FrameError, match="not .*x.png"):
        open_sink(tmp_path / "x.png", source)


def test_outputs_keep_each_file_name_and_format(tmp_path):
    (tmp_path / "in").mkdir()
    cv2.imwrite(str(tmp_path / "in" / "a.png"), _noise((6, 5, 3), np.uint16))
    cv2.imwrite(str(tmp_path / "in" / "a.jpg"), _noise((6, 5, 3)))
    source = open_frames(tmp_path / "in")
    with open_sink(tmp_path / "out" / "deeper", source) as sink:
        for frame in source:
            sink.write(frame)
    assert sorted(p.name for p in (tmp_path / "out" / "deeper").iterdir()) == ["a.jpg", "a.png"]
    assert cv2.imread(str(tmp_path / "out" / "deeper" / "a.png"), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    single = open_frames(tmp_path / "in" / "a.png")
    with open_sink(tmp_path / "one" / "x2.tif", single) as sink:
        sink.write(next(iter(single)))
    assert cv2.imread(str(tmp_path / "one" / "x2.tif"), cv2.IMREAD_UNCHANGED).dtype == np.uint16


def _clip(path, frames):
    """An mp4 of `frames` 64×48 gradients at 24 frames/s; returns `path`."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 24.0, (64, 48))
    for i in range(frames):
        writer.write(_gradient(shift=10 * i))
    writer.release()
    return path


def test_video_frames_and_rate_survive_a_round_trip(tmp_path, caplog):
    clip = _clip(tmp_path / "clip.mp4", 5)
    source = open_frames(clip)
    frames = list(source)
    assert source.kind == "video" and source.fps == pytest.approx(24.0) and len(frames) == 5 == len(source)
    assert [f.name for f in frames[:2]] == ["frame_000000", "frame_000001"] and frames[0].rgb.shape == (3, 48, 64)
    for i, frame in enumerate(frames):
        expected = torch.from_numpy(_gradient(shift=10 * i)[..., ::-1].copy()).permute(2, 0, 1).float() / 255
        assert (frame.rgb - expected).abs().mean() < 0.05
    with caplog.at_level(logging.WARNING), open_sink(tmp_path / "out" / "copy.avi", source) as sink:
        for frame in frames:
            sink.write(Frame(frame.rgb, torch.ones(1, 48, 64), 8, False, frame.name))
    assert caplog.text.count("alpha dropped") == 1
    copy = open_frames(tmp_path / "out" / "copy.avi")
    assert len(list(copy)) == 5 and copy.fps == pytest.approx(24.0)
    with pytest.raises(FrameError, match="video file"):
        open_sink(tmp_path / "frames", source)
    with pytest.raises(FrameError, match="overwrite the input"):
        open_sink(clip, source)
    with open_sink(tmp_path / "sizes.mp4", source) as sink:
        sink.write(frames[0])
        with pytest.raises(FrameError, match="32×48"):
            sink.write(Frame(torch.rand(3, 48, 32)))
    (tmp_path / "fake.mp4").write_bytes(b"not a video")
    with pytest.raises(FrameError, match="fake.mp4"):
        open_frames(tmp_path / "fake.mp4")


def test_a_failed_video_leaves_the_earlier_output_and_no_temporary_file(tmp_path):
    """The video is written beside the output and moved over it only on success."""
    source = open_frames(_clip(tmp_path / "clip.mp4", 3))
    frames = list(source)
    out = tmp_path / "out.mp4"
    with open_sink(out, source) as sink:
        sink.write(frames[0])
        assert not out.exists()  # still the temporary file
    good = out.read_bytes()
    assert len(list(open_frames(out))) == 1
    with pytest.raises(FrameError, match="32×48"), open_sink(out, source) as sink:
        sink.write(frames[1])
        sink.write(Frame(torch.rand(3, 48, 32)))
    assert out.read_bytes() == good and sorted(p.name for p in tmp_path.iterdir()) == ["clip.mp4", "out.mp4"]


def test_empty_files_are_unreadable_images_and_skipped_in_folders(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _noise((5, 6, 3)))
    (tmp_path / "b.png").write_bytes(b"")
    with pytest.raises(FrameError, match="b.png"):
        read_image(tmp_path / "b.png")
    source = open_frames(tmp_path)
    assert [frame.name for frame in source] == ["a.png"] and source.skipped == [str(tmp_path / "b.png")]


def test_jpeg_is_read_upright_by_its_exif_orientation(tmp_path):
    """A phone photo stored 20×40 with orientation 6 (rotate 90° clockwise) is shown 40 high and 20 wide."""
    from PIL import Image

    stored = np.zeros((20, 40, 3), np.uint8)
    stored[:, :10] = 255  # white on the stored image's left: after the rotation, at the top
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / "phone.jpg", exif=exif.tobytes(), quality=95)
    frame = read_image(tmp_path / "phone.jpg")
    assert frame.rgb.shape == (3, 40, 20)
    assert frame.rgb[:, :8].mean() > 0.9 and frame.rgb[:, 12:].mean() < 0.1


def test_one_image_to_an_unknown_image_format_is_refused(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _noise((5, 6, 3)))
    with pytest.raises(FrameError, match="cannot write .gif images"):
        open_sink(tmp_path / "out" / "a.gif", open_frames(tmp_path / "a.png"))
    assert not (tmp_path / "out").exists()
    source = open_frames(tmp_path / "a.png")
    sink = open_sink(tmp_path / "results.v2", source)  # a folder with a dot
    assert not sink.out.exists()  # nothing is written before the first frame
    with sink:
        sink.write(next(iter(source)))
    assert (tmp_path / "results.v2" / "a.png").is_file()


def _straight_rgba(dtype=np.uint8):
    """(4, 5, 4) RGBA with one colour and alphas from 0 up, straight (not pre-multiplied)."""
    peak = np.iinfo(dtype).max
    rgba = np.empty((4, 5, 4), dtype)
    rgba[..., :3] = np.array([0.8, 0.1, 0.25]) * peak
    rgba[..., 3] = (np.arange(20).reshape(4, 5) * peak // 19).astype(dtype)
    return rgba


def test_tiffs_with_alpha_keep_straight_colour_and_grey(tmp_path):
    """OpenCV multiplies an 8-bit TIFF's colour by its alpha and drops a grey TIFF's alpha (a 16-bit grey + alpha TIFF
    decodes as black 8-bit); tifffile decodes these, and the TIFFs written back tag their alpha."""
    import tifffile
    from PIL import Image

    rgba = _straight_rgba()
    Image.fromarray(rgba, "RGBA").save(tmp_path / "pil.tif", compression="tiff_lzw")
    frame = read_image(tmp_path / "pil.tif")
    assert not frame.grey and frame.bit_depth == 8
    np.testing.assert_allclose(frame.rgb.permute(1, 2, 0).numpy(), rgba[..., :3] / 255, atol=1e-6)
    np.testing.assert_allclose(frame.alpha[0].numpy(), rgba[..., 3] / 255, atol=1e-6)
    write_image(tmp_path / "out.tif", frame)
    with tifffile.TiffFile(tmp_path / "out.tif") as tiff:
        assert tiff.pages.first.extrasamples == (tifffile.EXTRASAMPLE.UNASSALPHA,)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "out.tif")), rgba)  # what other readers see

    grey_alpha = np.stack([np.full((4, 5), 40000, np.uint16), _straight_rgba(np.uint16)[..., 3]], axis=2)
    tifffile.imwrite(tmp_path / "la16.tif", grey_alpha, photometric="minisblack", extrasamples=["unassalpha"])
    frame = read_image(tmp_path / "la16.tif")
    assert frame.grey and frame.bit_depth == 16 and frame.alpha is not None
    assert frame.rgb.mul(65535).round().unique().tolist() == [40000.0]
    write_image(tmp_path / "la16-out.tif", frame)
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "la16-out.tif"), grey_alpha)

    premultiplied = rgba.copy()
    premultiplied[..., :3] = np.round(rgba[..., :3] * (rgba[..., 3:] / 255.0)).astype(np.uint8)
    tifffile.imwrite(
        tmp_path / "assoc.tif", np.moveaxis(premultiplied, -1, 0), photometric="rgb", planarconfig="separate",
        extrasamples=["assocalpha"],
    )  # fmt: skip
    frame = read_image(tmp_path / "assoc.tif")
    opaque_enough = rgba[..., 3] >= 128  # where the pre-multiplied colour kept enough levels to recover it to ±1
    colour = frame.rgb.permute(1, 2, 0).numpy()[opaque_enough] * 255
    np.testing.assert_allclose(colour, rgba[..., :3][opaque_enough], atol=1.01)
    assert frame.rgb[:, 0, 0].tolist() == [0.0, 0.0, 0.0]  # alpha 0: no colour to recover


def test_grey_alpha_png_reads_as_grey(tmp_path):
    from PIL import Image

    grey_alpha = np.stack([np.full((4, 5), 90, np.uint8), _straight_rgba()[..., 3]], axis=2)
    Image.fromarray(grey_alpha, "LA").save(tmp_path / "la.png")
    frame = read_image(tmp_path / "la.png")
    assert frame.grey and frame.alpha is not None
    np.testing.assert_array_equal(frame_to_array(frame)[..., [0, 3]], grey_alpha)


def test_alpha_to_jpeg_is_dropped_with_a_warning(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_image(tmp_path / "x.jpg", Frame(torch.rand(3, 4, 4), torch.rand(1, 4, 4)))
    assert "alpha dropped" in caplog.text
    assert cv2.imread(str(tmp_path / "x.jpg"), cv2.IMREAD_UNCHANGED).shape == (4, 4, 3)


@pytest.mark.parametrize("orientation", range(1, 9))
def test_a_tiff_with_alpha_is_turned_upright_as_opencv_turns_one_without(tmp_path, orientation):
    """tifffile, which decodes TIFFs with alpha, ignored the Orientation tag OpenCV applies: an RGBA scan tagged
    "rotate 90°" came out sideways beside its RGB twin."""
    import tifffile

    rgba = _noise((10, 20, 4))
    tag = [(274, "H", 1, orientation, True)]
    tifffile.imwrite(tmp_path / "rgb.tif", rgba[..., :3], photometric="rgb", extratags=tag)
    tifffile.imwrite(tmp_path / "rgba.tif", rgba, photometric="rgb", extrasamples=[2], extratags=tag)
    upright = frame_to_array(read_image(tmp_path / "rgb.tif"))  # OpenCV's
    with_alpha = frame_to_array(read_image(tmp_path / "rgba.tif"))
    assert upright.shape[:2] == ((10, 20) if orientation < 5 else (20, 10))
    assert np.array_equal(with_alpha[..., :3], upright)


def test_a_cmyk_tiff_is_read_as_rgb_without_an_alpha_it_does_not_hold(tmp_path):
    """OpenCV, asked for every channel, gave a CMYK TIFF an opaque alpha, which the output then carried."""
    from PIL import Image

    Image.fromarray(_noise((6, 7, 4)), "CMYK").save(tmp_path / "print.tif")
    frame = read_image(tmp_path / "print.tif")
    assert frame.alpha is None and frame.rgb.shape == (3, 6, 7) and not frame.grey
    assert np.array_equal(frame_to_array(frame), cv2.imread(str(tmp_path / "print.tif")))  # OpenCV's CMYK -> BGR


def test_a_damaged_tiff_with_alpha_is_skipped_in_a_folder(tmp_path):
    """imagecodecs raises its own error types for damaged data; they become FrameErrors, which a folder skips."""
    frame = Frame(torch.rand(3, 32, 32), torch.rand(1, 32, 32))
    write_image(tmp_path / "a.tif", frame)
    write_image(tmp_path / "b.tif", frame)
    whole = (tmp_path / "b.tif").read_bytes()
    (tmp_path / "b.tif").write_bytes(whole[: 2 * len(whole) // 3])
    with pytest.raises(FrameError, match="b.tif"):
        read_image(tmp_path / "b.tif")
    source = open_frames(tmp_path)
    assert [f.name for f in source] == ["a.tif"] and source.skipped == [str(tmp_path / "b.tif")]


def test_a_folder_skips_files_it_cannot_open_and_names_formats_it_ignores(tmp_path, monkeypatch, caplog):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), _noise((5, 6, 3)))
    cv2.imwrite(str(tmp_path / "d.gif"), _noise((5, 6, 3)))
    fromfile = np.fromfile

    def refused(path, *args, **kwargs):
        if str(path).endswith("b.png"):
            raise PermissionError(13, "Permission denied", str(path))
        return fromfile(path, *args, **kwargs)

    monkeypatch.setattr(np, "fromfile", refused)
    with caplog.at_level(logging.WARNING):
        source = open_frames(tmp_path)
        names = [frame.name for frame in source]
    assert names == ["a.png", "c.png"] and source.skipped == [str(tmp_path / "b.png")]
    assert "Permission denied" in caplog.text and "skipping 1 image files" in caplog.text and "d.gif" in caplog.text


def test_a_folder_leaves_out_hidden_files(tmp_path):
    for name in ("a.png", "._a.png", ".b.png"):  # macOS's and editors' hidden copies
        cv2.imwrite(str(tmp_path / name), _noise((5, 6, 3)))
    assert [frame.name for frame in open_frames(tmp_path)] == ["a.png"]


def test_a_file_removed_while_a_folder_is_read_is_skipped(tmp_path, caplog):
    for name in ("a", "b", "c"):
        cv2.imwrite(str(tmp_path / f"{name}.png"), _noise((5, 6, 3)))
    frames = iter(open_frames(tmp_path))
    assert next(frames).name == "a.png"
    (tmp_path / "b.png").unlink()  # e.g. a game's capture folder rotating its files
    with caplog.at_level(logging.WARNING):
        assert [frame.name for frame in frames] == ["c.png"]
    assert "no image at" in caplog.text and "b.png" in caplog.text


def test_a_truncated_video_is_reported(tmp_path, caplog):
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"MJPG"), 24.0, (64, 48))
    for i in range(40):
        writer.write(_gradient(shift=i))
    writer.release()
    clip.write_bytes(clip.read_bytes()[: clip.stat().st_size // 2])
    source = open_frames(clip)
    with caplog.at_level(logging.WARNING):
        read = len(list(source))
    assert 0 < read < len(source) == 40
    assert f"after {read} of the 40 frames" in caplog.text


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"rgb": torch.rand(5, 3, 4)}, "rgb must be a \\(3, H, W\\) float"),
        ({"rgb": torch.full((3, 5, 4), 200, dtype=torch.uint8)}, "rgb must be a \\(3, H, W\\) float"),
        ({"rgb": torch.rand(3, 5, 4), "alpha": torch.rand(1, 5, 5)}, "alpha must be a \\(1, H, W\\)"),
        ({"rgb": torch.rand(3, 5, 4), "bit_depth": 12}, "bit_depth must be 8 or 16"),
    ],
    ids=["channels-last", "uint8", "alpha of another size", "12-bit"],
)
def test_frames_that_would_be_written_wrong_are_refused(kwargs, match):
    """Each once wrote a wrong image without complaint: BGRA from channels-last pixels, all white from uint8, an
    8-bit file for 12 bits."""
    with pytest.raises(ValueError, match=match):
        Frame(**kwargs)


def test_non_finite_pixels_are_not_written_as_black(tmp_path):
    rgb = torch.rand(3, 4, 4)
    rgb[1, 2, 2] = float("nan")
    with pytest.raises(FrameError, match="non-finite pixels"):
        write_image(tmp_path / "a.png", Frame(rgb, name="a.png"))
    assert not (tmp_path / "a.png").exists()


def _video_with_sound(path, audio_codec, frames=10, fps=10, first_picture=0):
    """A (16, 24) mpeg4 video of `frames` grey levels, the first shown at frame time `first_picture`, with one second
    of a 440 Hz tone per `fps` frames from time 0."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("mpeg4", rate=fps)
        video.width, video.height, video.pix_fmt = 24, 16, "yuv420p"
        audio = container.add_stream(audio_codec, rate=48000, layout="mono")
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((16, 24, 3), 20 * i, np.uint8), format="rgb24")
            picture.pts = first_picture + i
            container.mux(video.encode(picture))
        size, tone = audio.codec_context.frame_size, np.sin(np.arange(48000 * frames // fps) * 2 * np.pi * 440 / 48000)
        for start in range(0, len(tone), size):
            chunk = np.zeros((1, size), np.float32)
            chunk[0, : len(tone[start : start + size])] = tone[start : start + size]
            sound = av.AudioFrame.from_ndarray(chunk, format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 48000, start
            container.mux(audio.encode(sound))
        container.mux(video.encode())
        container.mux(audio.encode())


@pytest.mark.parametrize(
    ("source", "out", "kept", "codec"),
    [("aac", ".mp4", "aac", None), ("libopus", ".mkv", "opus", None), ("libopus", ".mkv", "opus", "libsvtav1")],
    ids=["aac-mp4", "opus-mkv", "opus-mkv-av1"],  # AV1: its decoder, libdav1d, is no encoder to copy a stream by
)
def test_a_videos_audio_is_copied_into_the_upscaled_one(tmp_path, source, out, kept, codec):
    clip = tmp_path / f"clip{'.mkv' if source == 'libopus' else '.mp4'}"
    _video_with_sound(clip, source)
    frames = open_frames(clip)
    with open_sink(tmp_path / f"x2{out}", frames, codec=codec) as sink:
        for frame in frames:
            sink.write(Frame(torch.nn.functional.interpolate(frame.rgb[None], scale_factor=2)[0]))
    with av.open(str(tmp_path / f"x2{out}")) as written:
        (audio,) = written.streams.audio
        assert audio.codec_context.name == kept and audio.sample_rate == 48000
        assert written.streams.video[0].codec_context.height == 32
        assert abs(written.duration / av.time_base - 1.0) < 0.05
        assert len(list(written.decode(video=0))) == 10  # PyAV's libdav1d: OpenCV's FFmpeg has no AV1 decoder
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([clip.name, f"x2{out}"])  # no temporary left


def _h264_with_silence(path, frames, fps, size, pixel_aspect=None):
    """An H.264 video of `frames` grey levels of `size` (H, W) at `fps`, with half a second of AAC silence."""
    with av.open(str(path), "w") as container:
        video = container.add_stream("libx264", rate=fps)
        (video.height, video.width), video.pix_fmt = size, "yuv420p"
        if pixel_aspect is not None:
            video.codec_context.sample_aspect_ratio = pixel_aspect
        audio = container.add_stream("aac", rate=48000, layout="mono")
        for i in range(frames):
            picture = av.VideoFrame.from_ndarray(np.full((*size, 3), 20 * i, np.uint8), format="rgb24")
            container.mux(video.encode(picture))
        for start in range(0, 24000, 1024):  # in AAC's 1 024-sample frames
            sound = av.AudioFrame.from_ndarray(np.zeros((1, 1024), np.float32), format="fltp", layout="mono")
            sound.sample_rate, sound.pts = 48000, start
            container.mux(audio.encode(sound))
        container.mux(video.encode())
        container.mux(audio.encode())


@pytest.mark.parametrize("out", [".mp4", ".mkv"])
def test_anamorphic_video_keeps_its_pixel_aspect_ratio(tmp_path, out):
    """A DVD-style source, 72×48 pixels shown at 16:9 (pixel aspect 32:27), with sound: its upscaled copy is shown
    at 16:9 too, also after the audio is copied in (which rewrites the file)."""
    clip = tmp_path / "dvd.mp4"
    _h264_with_silence(clip, 5, 10, (48, 72), Fraction(32, 27))
    frames = open_frames(clip)
    assert frames.pixel_aspect == Fraction(32, 27)
    with open_sink(tmp_path / f"x2{out}", frames) as sink:
        for frame in frames:
            sink.write(Frame(torch.nn.functional.interpolate(frame.rgb[None], scale_factor=2)[0]))
    with av.open(str(tmp_path / f"x2{out}")) as written:
        stream = written.streams.video[0]
        assert written.streams.audio and (stream.codec_context.width, stream.codec_context.height) == (144, 96)
        assert stream.sample_aspect_ratio == Fraction(32, 27) and stream.display_aspect_ratio == Fraction(16, 9)
    assert open_frames(tmp_path / f"x2{out}").pixel_aspect == Fraction(32, 27)


@pytest.mark.parametrize("out", [".mkv", ".avi"])
def test_pictures_keep_their_rate_and_times_when_aac_audio_is_copied_in(tmp_path, out):
    """An H.264 + AAC source at 24 fps: the .mkv copy read as 30 000 fps (the remuxed stream had no frame rate), and
    the .avi one showed its first picture for two frames (AAC's priming packet, at −21 ms, shifted every stream)."""
    clip = tmp_path / "cfr.mp4"
    _h264_with_silence(clip, 12, 24, (16, 32))
    frames = open_frames(clip)
    with open_sink(tmp_path / f"x1{out}", frames) as sink:
        for frame in frames:
            sink.write(frame)
    with av.open(str(tmp_path / f"x1{out}")) as written:
        stream = written.streams.video[0]
        assert written.streams.audio and stream.average_rate == 24
        times = sorted(float(p.pts * p.time_base) for p in written.demux(stream) if p.pts is not None)
    steps = [time - times[0] for time in times]  # Matroska shifts the file by the priming packet: sync is kept
    assert steps == pytest.approx([i / 24 for i in range(12)], abs=0.5 / 24)
    assert len(list(open_frames(tmp_path / f"x1{out}"))) == 12


def test_audio_a_container_cannot_hold_is_left_out_with_a_warning(tmp_path, caplog):
    clip = tmp_path / "clip.mkv"
    _video_with_sound(clip, "libopus")
    frames = open_frames(clip)
    with caplog.at_level(logging.WARNING), open_sink(tmp_path / "x1.avi", frames) as sink:
        for frame in frames:
            sink.write(frame)
    assert "audio (opus) could not be copied into a .avi file" in caplog.text and "write .mkv" in caplog.text
    with av.open(str(tmp_path / "x1.avi")) as written:
        assert not written.streams.audio and written.streams.video[0].frames in (0, 10)
    assert len(list(open_frames(tmp_path / "x1.avi"))) == 10
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clip.mkv", "x1.avi"]


def test_audio_starts_with_the_first_picture_and_a_lost_source_keeps_the_pictures(tmp_path, caplog):
    """OpenCV's file starts at its first frame: the sound before the source's first picture (0.5 s here) is cut so
    that the two stay in step; a source gone by the time its audio is copied costs the sound, not the video."""
    clip = tmp_path / "late.mp4"
    _video_with_sound(clip, "aac", first_picture=5)
    frames = open_frames(clip)
    with open_sink(tmp_path / "x1.mkv", frames) as sink:
        for frame in frames:
            sink.write(frame)
    with av.open(str(tmp_path / "x1.mkv")) as written:
        packets = [p for p in written.demux(written.streams.audio[0]) if p.dts is not None]
        start, end = (float(p.pts * p.time_base) for p in (packets[0], packets[-1]))
        assert start < 0.05 and 0.4 < end < 0.55  # the second half of the 1 s tone, from 0
    frames = open_frames(clip)
    with caplog.at_level(logging.WARNING), open_sink(tmp_path / "x2.mp4", frames) as sink:
        for frame in frames:
            sink.write(frame)
        clip.unlink()
    assert "could not be copied" in caplog.text and len(list(open_frames(tmp_path / "x2.mp4"))) == 10


def test_an_image_of_several_frames_warns_that_only_the_first_is_upscaled(tmp_path, caplog):
    import tifffile
    from PIL import Image

    tifffile.imwrite(tmp_path / "pages.tif", _noise((3, 6, 5, 3)), photometric="rgb")  # three pages
    pictures = [Image.fromarray(_noise((6, 5, 3), seed=i)) for i in range(4)]
    pictures[0].save(tmp_path / "moving.png", save_all=True, append_images=pictures[1:])  # an animated PNG
    pictures[0].save(tmp_path / "still.png")
    with caplog.at_level(logging.WARNING):
        frames = {name: read_image(tmp_path / name) for name in ("pages.tif", "moving.png", "still.png")}
    assert (
        "pages.tif holds 3 frames (pages); only the first" in caplog.text and "moving.png holds 4 frames" in caplog.text
    )
    assert "still.png" not in caplog.text
    assert torch.equal(frames["pages.tif"].rgb, read_image(tmp_path / "pages.tif").rgb)


def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _noise((5, 6, 3)))
    (tmp_path / "a-file").write_text("not a folder")
    for out in (tmp_path / "a-file" / "x2.png", tmp_path / "a-file" / "deeper" / "x2"):
        with pytest.raises(FrameError, match=f"{tmp_path / 'a-file'} is a file, not a folder"):
            open_sink(out, open_frames(tmp_path / "a.png" if out.suffix else tmp_path))
    open_sink(tmp_path / "new" / "deeper" / "x2.png", open_frames(tmp_path / "a.png"))  # made at the first frame
    assert not (tmp_path / "new").exists()


def test_a_video_with_alpha_warns_that_its_alpha_is_not_kept(tmp_path, caplog):
    clip = tmp_path / "overlay.mov"
    with av.open(str(clip), "w") as container:
        stream = container.add_stream("png", rate=10)
        stream.width, stream.height, stream.pix_fmt = 24, 16, "rgba"
        for i in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.full((16, 24, 4), 60 * i, np.uint8), "rgba")))
        container.mux(stream.encode())
    with caplog.at_level(logging.WARNING):
        frames = list(open_frames(clip))
    assert "alpha channel is not read (rgba)" in caplog.text and len(frames) == 3
    assert all(frame.alpha is None for frame in frames)  # OpenCV's decoder: what the warning is about
