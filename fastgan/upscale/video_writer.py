"""Video files encoded by FFmpeg's encoders through PyAV: H.264 by default, at a constant quality (CRF) the user can
set. OpenCV's writer offered MPEG-4 part 2 at a fixed bit rate, which loses what an upscaler adds: on 30 frames of
a moving 512×512 photograph, 34.6 dB PSNR in 172 KiB against libx264 CRF 18's 36.4 dB in 85 KiB."""

from __future__ import annotations

import contextlib
import io
import logging
import math
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

log = logging.getLogger(__name__)

#: The encoder each video suffix gets unless another is named.
DEFAULT_CODECS = {".mp4": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9", ".avi": "mjpeg"}
#: FFmpeg's name of each suffix's container format.
CONTAINERS = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska", ".webm": "webm", ".avi": "avi"}
#: Encoders that take a constant-rate factor (lower: better and larger): (default, largest).
CRF_RANGES = {
    "libx264": (18, 51),
    "libx265": (20, 51),
    "libvpx-vp9": (31, 63),
    "libsvtav1": (30, 63),
    "libaom-av1": (30, 63),
}
#: Time base of the frames' presentation times: MPEG's 90 kHz, exact for 24, 25, 30 and 30000/1001 frames/s.
TIME_BASE = Fraction(1, 90_000)
#: Containers with a fixed frame rate: their frames are timed by their index.
FIXED_RATE = (".avi",)
#: FFmpeg's codes for BT.709 (matrix, primaries and transfer alike) and for limited ("MPEG", 16–235) range.
BT709, LIMITED_RANGE = 1, 1
#: MJPEG's fixed quantiser (1 best … 31), as qmin = qmax: 2 (FFmpeg's qmin default, stated here so no default moves
#: it) gives 36.6 dB on 480×512 of the photograph (4:2:0); without the fixed-quantiser flag, 33.6 dB.
MJPEG_QUANTISER = 2


class VideoEncodingError(ValueError):
    """An encoder or quality the output cannot take; the message says what to use."""


def _options(codec: str, crf: int | None) -> dict[str, str]:
    """The encoder's private options for `crf` (its default when None), or MJPEG's fixed quantiser."""
    if codec == "mjpeg":
        return {"qmin": str(MJPEG_QUANTISER), "qmax": str(MJPEG_QUANTISER)}
    if codec not in CRF_RANGES:
        return {}
    options = {"crf": str(CRF_RANGES[codec][0] if crf is None else crf)}
    return options | {"b": "0"} if codec == "libvpx-vp9" else options  # vp9: constant quality, no bit-rate cap


def _pixel_format(codec: str, width: int, height: int) -> str:
    """4:2:0 chroma where the size allows it (what players expect); 4:4:4 for odd sizes, which 4:2:0 cannot hold."""
    odd = width % 2 or height % 2
    if codec == "mjpeg":
        return "yuvj444p" if odd else "yuvj420p"
    if codec == "ffv1":
        return "bgr0"
    return "yuv444p" if odd else "yuv420p"


def _converts_bt709(codec: str, bt709: bool) -> bool:
    """Whether pictures are converted to YUV with BT.709's matrix and tagged so: asked for (`bt709`), and the encoder
    is neither MJPEG (JPEG's YUV is BT.601 by definition) nor FFV1 (kept RGB)."""
    return bt709 and codec not in ("mjpeg", "ffv1")


def _add_stream(container, codec: str, fps: float, crf: int | None, width: int, height: int, bt709: bool = True):
    stream = container.add_stream(codec, rate=Fraction(fps).limit_denominator(1001))
    stream.width, stream.height = width, height
    stream.pix_fmt = _pixel_format(codec, width, height)
    stream.options = _options(codec, crf)
    if codec == "mjpeg":
        stream.codec_context.qscale = True  # the flag: a fixed quantiser (qmin = qmax), not rate control
    if _converts_bt709(codec, bt709):
        context = stream.codec_context
        context.colorspace = context.color_primaries = context.color_trc = BT709
        context.color_range = LIMITED_RANGE
    return stream


class _EncoderError(Exception):
    """The encoder did not open."""


class _ContainerError(Exception):
    """The container could not write its header for the stream."""


def _trial(suffix: str, codec: str, crf: int | None, time_base: Fraction | None = None) -> None:
    """Open `codec` on a 64×64 stream of a `suffix` container in memory, as `VideoWriter` would.

    Raises:
        av.codec.codec.UnknownCodecError: no such encoder.
        ValueError: the container refuses the codec outright ("'webm' format does not support 'libx264' codec").
        _EncoderError: the encoder does not open (no GPU for NVENC, a pixel format or time base it refuses).
        _ContainerError: the container cannot write a header for it (VP9 in .mov).
    """
    with av.open(io.BytesIO(), "w", format=CONTAINERS[suffix]) as trial:
        stream = _add_stream(trial, codec, 24.0, crf, 64, 64)
        if time_base is not None:
            stream.codec_context.time_base = time_base
        try:
            stream.codec_context.open()
        except av.FFmpegError as error:
            raise _EncoderError(str(error)) from error
        try:
            trial.start_encoding()
        except av.FFmpegError as error:
            raise _ContainerError(str(error)) from error


def check_encoding(suffix: str, codec: str | None, crf: int | None) -> tuple[str, bool]:
    """(the encoder a `suffix` video is written with: `codec`, or the suffix's default; whether it keeps the frames'
    presentation times), after checking that PyAV has it, that the container holds it and that `crf` is within its
    range, on trial streams in memory. Times need a container of variable rate (not AVI) and an encoder that takes
    TIME_BASE (MPEG-4 part 2 takes no denominator over 65 535, MPEG-2 only standard rates): else frames are timed by
    their index.

    Raises:
        VideoEncodingError: an unknown encoder, one the container cannot hold or that cannot start here (no GPU for
            NVENC, a pixel format it refuses), or a CRF it does not take.
    """
    codec = codec or DEFAULT_CODECS[suffix]
    if crf is not None:
        if codec not in CRF_RANGES:
            takes = ", ".join(CRF_RANGES)
            raise VideoEncodingError(f"--crf applies to {takes}; {codec} has no constant-rate factor")
        if not 0 <= crf <= CRF_RANGES[codec][1]:
            raise VideoEncodingError(f"--crf for {codec} is 0 … {CRF_RANGES[codec][1]} (lower: better), got {crf}")
    other = "" if suffix == ".mkv" else "; try .mkv"
    try:
        _trial(suffix, codec, crf)
    except av.codec.codec.UnknownCodecError as error:
        raise VideoEncodingError(
            f"no encoder named {codec!r} in PyAV's FFmpeg: try libx264, libx265, libvpx-vp9 or ffv1"
        ) from error
    except _EncoderError as error:  # NVENC without an NVIDIA GPU, a pixel format or option the encoder refuses
        pixels = _pixel_format(codec, 64, 64)
        raise VideoEncodingError(f"the {codec} encoder cannot start here on {pixels} pictures ({error})") from error
    except (ValueError, _ContainerError) as error:
        raise VideoEncodingError(f"a {suffix} file cannot hold {codec} video ({error}){other}") from error
    if suffix in FIXED_RATE:
        return codec, False
    try:
        _trial(suffix, codec, crf, TIME_BASE)
    except (_EncoderError, _ContainerError):
        return codec, False
    return codec, True


class VideoWriter:
    """Writes 8-bit BGR frames (H, W, 3) to a video file with `codec` at `fps`; the stream opens on the first frame
    (its size). Pictures are converted with BT.709's matrix and tagged so when `bt709`, else with FFmpeg's default
    (BT.601) and left untagged. When `timed` (`check_encoding`), frames keep the presentation times they are given,
    so a variable frame rate stays in step with the copied audio; else they are timed by their index. A
    `pixel_aspect` (width / height of a pixel; None: square) is tagged on the stream. `close` flushes the encoder and
    finishes the file; `abort` only closes it."""

    def __init__(
        self,
        path: Path,
        fps: float,
        codec: str,
        crf: int | None = None,
        bt709: bool = True,
        timed: bool = False,
        pixel_aspect: Fraction | None = None,
    ):
        self.path, self.fps, self.codec, self.crf, self.pixel_aspect = path, fps, codec, crf, pixel_aspect
        self.bt709 = _converts_bt709(codec, bt709)
        self.timed = timed
        self.container = None
        self.stream = None
        self.last_time, self.last_pts = -math.inf, -1  # seconds, TIME_BASE ticks
        self.frames, self.warned_retimed = 0, False

    def write(self, bgr: np.ndarray, time: float | None = None) -> None:
        """Encode one frame, shown at `time` seconds in its source (None: 1/fps after the previous one)."""
        if self.container is None:
            self.container = av.open(str(self.path), "w")
            height, width = bgr.shape[:2]
            self.stream = _add_stream(self.container, self.codec, self.fps, self.crf, width, height, self.bt709)
            if self.timed:
                self.stream.codec_context.time_base = TIME_BASE
            if self.pixel_aspect is not None:
                self.stream.codec_context.sample_aspect_ratio = self.pixel_aspect
        picture = av.VideoFrame.from_ndarray(bgr, format="bgr24")
        if self.bt709:
            picture = picture.reformat(format=self.stream.pix_fmt, dst_colorspace="ITU709")
            picture.colorspace = picture.color_primaries = picture.color_trc = BT709
            picture.color_range = LIMITED_RANGE
        if self.timed:
            picture.pts, picture.time_base = self._pts(time), TIME_BASE
        else:
            self._warn_if_retimed(time)
        for packet in self.stream.encode(picture):
            self.container.mux(packet)

    def _warn_if_retimed(self, time: float | None) -> None:
        """Warn once when a frame timed by its index lands over a frame away from its source time (a variable
        frame rate, which then drifts from the copied audio)."""
        self.frames += 1
        if time is None or self.warned_retimed or abs(time - (self.frames - 1) / self.fps) <= 1.5 / self.fps:
            return
        self.warned_retimed = True
        log.warning(
            "the source's frame rate varies, which %s in a %s file cannot keep (frames are timed by their index, so "
            "the video drifts from its audio): write .mkv or .mp4 with libx264 to keep it",
            self.codec,
            self.path.suffix,
        )

    def _pts(self, time: float | None) -> int:
        """`time` in TIME_BASE units, as the source gave it (OpenCV's times start with the stream, as the copied
        audio does); a time missing, or not after the previous frame's, becomes 1/fps after the previous frame."""
        if time is None or time <= self.last_time:
            time = 0.0 if self.last_time == -math.inf else self.last_time + 1 / self.fps
        self.last_time = time
        pts = max(round(time / TIME_BASE), self.last_pts + 1)
        self.last_pts = pts
        return pts

    def close(self) -> None:
        """Flush the encoder and finish the file (its trailer: an MP4's index); errors propagate."""
        if self.container is None:
            return
        try:
            if self.stream is not None:
                self.container.mux(self.stream.encode())  # what the encoder still holds
        except BaseException:
            self.abort()
            raise
        container, self.container = self.container, None
        container.close()

    def abort(self) -> None:
        """Close the file without flushing the encoder (after an error: the file is discarded)."""
        container, self.container = self.container, None
        if container is not None:
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
