"""Frames in and out of the upscaler: images (8- or 16-bit; grey, RGB or with alpha), folders of them, and videos.

OpenCV does the decoding and encoding (16-bit PNG/TIFF, alpha, and video through its bundled FFmpeg). A frame is
float32 RGB in [0, 1] plus what is needed to write it back as it came: its alpha, bit depth and whether it was grey.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v", ".mov": "mp4v", ".webm": "VP80"}
EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp")
PEAK = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}


class FrameError(ValueError):
    pass


@dataclass
class Frame:
    """rgb (3, H, W) float32 in [0, 1]; alpha (1, H, W) or None; the source's bit depth, greyness and name (an
    image's file name, or ``frame_NNNNNN`` for a video frame)."""

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    grey: bool = False
    name: str = "frame"


def frame_from_array(array: np.ndarray, name: str) -> Frame:
    """(H, W[, C]) uint8/uint16 as OpenCV decodes it (BGR order, C = 1, 2, 3 or 4) → Frame."""
    if array.dtype not in PEAK:
        raise FrameError(f"{name}: {array.dtype} pixels; 8- and 16-bit integer images are supported")
    pixels = array.reshape(*array.shape[:2], -1).astype(np.float32) / PEAK[array.dtype]
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise FrameError(f"{name}: {channels} channels; grey, grey+alpha, RGB and RGBA are supported")
    grey = channels <= 2
    colour = np.repeat(pixels[..., :1], 3, axis=2) if grey else pixels[..., 2::-1]  # BGR → RGB
    alpha = pixels[..., -1:] if channels in (2, 4) else None
    to_chw = lambda a: torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))  # noqa: E731
    return Frame(to_chw(colour), None if alpha is None else to_chw(alpha), 8 * array.dtype.itemsize, grey, name)


def frame_to_array(frame: Frame) -> np.ndarray:
    """The inverse of `frame_from_array`: clamped, rounded to the bit depth, grey as one channel, alpha last, BGR."""
    dtype = np.uint16 if frame.bit_depth == 16 else np.uint8
    colour = frame.rgb.mean(dim=0, keepdim=True) if frame.grey else frame.rgb.flip(0)  # RGB → BGR
    planes = colour if frame.alpha is None else torch.cat([colour, frame.alpha])
    pixels = (planes.clamp(0, 1) * PEAK[np.dtype(dtype)]).round().permute(1, 2, 0).cpu().numpy().astype(dtype)
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def read_image(path: str | Path) -> Frame:
    """An image file → Frame. Raises FileNotFoundError, or FrameError for corrupt or unsupported files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    array = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise FrameError(f"{path} is not a readable image (corrupt or unknown format: {', '.join(IMAGE_SUFFIXES)})")
    return frame_from_array(array, path.name)


def write_image(path: str | Path, frame: Frame) -> None:
    """Write atomically (encode, temporary file, rename): an interrupted run never leaves a half-written image."""
    path = Path(path)
    if frame.bit_depth == 16 and path.suffix.lower() in EIGHT_BIT_ONLY:
        raise FrameError(f"{path}: {path.suffix} holds 8 bits; write 16-bit frames as .png or .tif")
    ok, encoded = cv2.imencode(path.suffix, frame_to_array(frame))
    if not ok:
        raise FrameError(f"OpenCV cannot encode {path.suffix} images; use one of {', '.join(IMAGE_SUFFIXES)}")
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(encoded.tobytes())
    os.replace(temporary, path)


@dataclass
class FrameSource:
    """The frames of an image, a folder of images (sorted by name) or a video. Unreadable images in a folder are
    skipped with a warning and listed in `skipped`; a video's length is its container's frame count (an estimate
    for some codecs)."""

    path: Path
    kind: str  # "images" or "video"
    files: list[Path] = field(default_factory=list)
    fps: float | None = None
    frame_count: int = 0
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "images" and self.path.is_file():  # one image named by the user: its errors are fatal
            yield read_image(self.path)
            return
        if self.kind == "images":
            for file in self.files:
                try:
                    yield read_image(file)
                except FrameError as error:
                    log.warning("skipping %s", error)
                    self.skipped.append(str(file))
            return
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while (array := capture.read()[1]) is not None:
                yield frame_from_array(array, f"frame_{index:06d}")
                index += 1
        finally:
            capture.release()


def open_frames(path: str | Path) -> FrameSource:
    """A FrameSource for an image file, a folder of images or a video file."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no image, folder or video at {path}")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not files:
            raise FrameError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return FrameSource(path, "images", files)
    if path.suffix.lower() in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        if not capture.isOpened():
            raise FrameError(f"{path} is not a video OpenCV can open (corrupt, or a codec its FFmpeg lacks)")
        fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        return FrameSource(path, "video", fps=fps or 30.0, frame_count=count)
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise FrameError(
            f"{path}: unknown kind; give images ({', '.join(IMAGE_SUFFIXES)}), a folder or a video "
            f"({', '.join(VIDEO_SUFFIXES)})"
        )
    return FrameSource(path, "images", [path])


class FrameSink:
    """Writes upscaled frames where `open_sink` says; a context manager that closes the video writer."""

    def __init__(self, out: Path, source: FrameSource):
        self.out, self.source, self.writer, self.warned_alpha = out, source, None, False

    def write(self, frame: Frame) -> None:
        if self.source.kind == "images":
            single = self.source.path.is_file() and self.out.suffix.lower() in IMAGE_SUFFIXES
            write_image(self.out if single else self.out / frame.name, frame)
            return
        if frame.alpha is not None and not self.warned_alpha:
            log.warning("video output has no alpha channel: alpha dropped")
            self.warned_alpha = True
        array = frame_to_array(Frame(frame.rgb, None, 8, frame.grey, frame.name))
        if self.writer is None:
            fourcc = cv2.VideoWriter_fourcc(*VIDEO_SUFFIXES.get(self.out.suffix.lower(), "mp4v"))
            self.writer = cv2.VideoWriter(str(self.out), fourcc, self.source.fps, (array.shape[1], array.shape[0]))
            if not self.writer.isOpened():
                raise FrameError(f"cannot write video {self.out}; use one of {', '.join(VIDEO_SUFFIXES)}")
        self.writer.write(array if array.ndim == 3 else cv2.cvtColor(array, cv2.COLOR_GRAY2BGR))

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc_info) -> None:
        if self.writer is not None:
            self.writer.release()


def open_sink(out: str | Path, source: FrameSource) -> FrameSink:
    """Where the frames of `source` go: images into the folder `out` under their names and formats (or into the
    file `out` for a single image), a video into the video file `out`, at the source's frame rate."""
    out = Path(out).expanduser()
    if out.resolve() == source.path.resolve():
        raise FrameError(f"output {out} is the input; choose another path")
    if source.kind == "video" and out.suffix.lower() not in VIDEO_SUFFIXES:
        raise FrameError(f"a video goes to a video file ({', '.join(VIDEO_SUFFIXES)}), not {out}")
    single_file = source.kind == "images" and source.path.is_file() and out.suffix.lower() in IMAGE_SUFFIXES
    (out.parent if single_file or source.kind == "video" else out).mkdir(parents=True, exist_ok=True)
    return FrameSink(out, source)
