"""Frames in and out of the upscaler: images (8- or 16-bit; grey, RGB or with alpha), folders of them, and videos.

OpenCV does the decoding and the images' encoding (16-bit PNG/TIFF, alpha, and video decoding through its bundled
FFmpeg); videos are encoded through PyAV (`fastgan.upscale.video_writer`), and TIFFs with an alpha channel are
decoded by tifffile: OpenCV multiplies an 8-bit TIFF's colour by its alpha and
drops a grey TIFF's alpha. A frame is float32 RGB in [0, 1] plus what is needed to write it back as it came: its
alpha, bit depth and whether it was grey.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import logging
import mimetypes
from collections.abc import Iterator
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import PIL.Image
import tifffile
import torch

from fastgan.atomic import atomic_path, unwritable_reason, write_bytes_atomically
from fastgan.data.sources import tool_file
from fastgan.upscale.audio import copy_audio
from fastgan.upscale.icc import EMBEDS as ICC_EMBEDS
from fastgan.upscale.icc import profile_colour_space, read_icc_profile, with_icc_profile
from fastgan.upscale.video_writer import VideoEncodingError, VideoWriter, check_encoding
from fastgan.video_files import VIDEO_SUFFIXES, warn_if_truncated

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp")
NO_ALPHA = (".jpg", ".jpeg")
PEAK = {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}
#: FFmpeg's code for a stream that does not say its colour matrix.
UNSPECIFIED_COLOURSPACE = 2


class FrameError(ValueError):
    """An input that cannot be read (corrupt, unsupported format or pixel type) or an output that cannot be written."""


@dataclass
class Frame:
    """One image or video frame, with what is needed to write it back as it came.

    Attributes:
        rgb: (3, H, W) float32 in [0, 1]; a grey source is repeated into three equal channels. On the CPU as read,
            on the upscaler's device once upscaled.
        alpha: (1, H, W) float32 in [0, 1], or None when the source had no alpha channel.
        bit_depth: 8 or 16, the source's bits per channel.
        grey: the source had one colour channel; it is written back as one.
        name: an image's file name (``a.png``: stem and format) or ``frame_NNNNNN`` for a video frame.
        icc_profile: the source image's ICC colour profile, written into the output where its format holds one.
        time: a video frame's presentation time in seconds, as its source gave it (variable frame rates too).
    """

    rgb: torch.Tensor
    alpha: torch.Tensor | None = None
    bit_depth: int = 8
    grey: bool = False
    name: str = "frame"
    icc_profile: bytes | None = None
    time: float | None = None

    def __post_init__(self) -> None:
        if self.rgb.dim() != 3 or self.rgb.shape[0] != 3 or not self.rgb.is_floating_point():
            raise ValueError(
                f"frame {self.name}: rgb must be a (3, H, W) float tensor in [0, 1], got {self.rgb.dtype} "
                f"{tuple(self.rgb.shape)}"
            )
        if self.alpha is not None and (
            self.alpha.shape != (1, *self.rgb.shape[1:]) or not self.alpha.is_floating_point()
        ):
            raise ValueError(
                f"frame {self.name}: alpha must be a (1, H, W) float tensor the size of rgb {tuple(self.rgb.shape)}, "
                f"got {self.alpha.dtype} {tuple(self.alpha.shape)}"
            )
        if self.bit_depth not in (8, 16):
            raise ValueError(f"frame {self.name}: bit_depth must be 8 or 16, got {self.bit_depth!r}")


def _chw(pixels: np.ndarray) -> torch.Tensor:
    """(H, W, C) float32 → contiguous (C, H, W) tensor."""
    return torch.from_numpy(np.ascontiguousarray(pixels.transpose(2, 0, 1)))


def frame_from_array(array: np.ndarray, name: str) -> Frame:
    """Convert pixels as OpenCV decodes them into a Frame.

    Args:
        array: (H, W) or (H, W, C) uint8/uint16 with C = 1 (grey), 2 (grey+alpha), 3 (BGR) or 4 (BGRA).
        name: the frame's name, used in messages and as the output file name.

    Raises:
        FrameError: another pixel type or channel count.
    """
    if array.dtype not in PEAK:
        raise FrameError(f"{name}: {array.dtype} pixels; 8- and 16-bit integer images are supported")
    pixels = array.reshape(*array.shape[:2], -1).astype(np.float32) / PEAK[array.dtype]
    channels = pixels.shape[2]
    if channels not in (1, 2, 3, 4):
        raise FrameError(f"{name}: {channels} channels; grey, grey+alpha, RGB and RGBA images are supported")
    grey = channels <= 2
    colour = np.repeat(pixels[..., :1], 3, axis=2) if grey else pixels[..., 2::-1]  # BGR → RGB
    alpha = _chw(pixels[..., -1:]) if channels in (2, 4) else None
    return Frame(_chw(colour), alpha, 8 * array.dtype.itemsize, grey, name)


def frame_to_array(frame: Frame) -> np.ndarray:
    """The inverse of `frame_from_array`, for a frame of any size (an upscaled one too).

    Colour and alpha are clamped to [0, 1] and rounded to the frame's bit depth; a grey frame becomes one channel
    (the mean of the three), or BGRA when it has alpha, since OpenCV encodes no grey+alpha images.

    Returns:
        (H, W) grey, (H, W, 3) BGR or (H, W, 4) BGRA; uint16 for 16-bit frames, else uint8.
    """
    dtype = np.dtype(np.uint16 if frame.bit_depth == 16 else np.uint8)
    integers = torch.uint16 if frame.bit_depth == 16 else torch.uint8
    if frame.grey:
        colour = frame.rgb.mean(dim=0, keepdim=True).expand(1 if frame.alpha is None else 3, -1, -1)
    else:
        colour = frame.rgb.flip(0)  # RGB → BGR
    planes = colour if frame.alpha is None else torch.cat([colour, frame.alpha.to(colour.dtype)])
    if not torch.isfinite(planes.sum()):  # NaN and ±inf reach the sum; a full isfinite map costs as much as the copy
        raise FrameError(
            f"frame {frame.name} has non-finite pixels (NaN or inf): the model's output is broken — check its weights "
            "and precision (fp16 overflow?)"
        )
    # quantised where the frame is (the upscaler's GPU for an upscaled one): only integers cross to the host
    pixels = (planes.clamp(0, 1) * PEAK[dtype]).round().to(integers).permute(1, 2, 0).contiguous().cpu().numpy()
    return pixels[..., 0] if pixels.shape[2] == 1 else pixels


def _decoded_tiff(data: np.ndarray, name: str) -> np.ndarray | None:
    """A TIFF in OpenCV's layout, by its one parsed header: a grey or RGB one with alpha decoded by tifffile with
    straight alpha, (H, W, 2) grey + alpha or (H, W, 4) BGRA in its stored dtype; one without extra samples by
    OpenCV asked for its colours alone (asked for every channel, it gives a CMYK TIFF an opaque alpha it does not
    hold). None for every other file, which OpenCV decodes as stored.

    An associated (pre-multiplied) alpha is divided out; the first extra sample is the alpha, further ones are
    dropped. The pixels are turned upright as the Orientation tag says, as OpenCV turns the TIFFs it decodes.

    Raises:
        FrameError: the TIFF declares alpha but its pixels cannot be decoded.
    """
    if data[:4].tobytes() not in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return None
    try:
        tiff = tifffile.TiffFile(io.BytesIO(data.tobytes()))
    except Exception:  # a header tifffile cannot parse: OpenCV's to judge
        return None
    with tiff:
        try:
            page = tiff.pages.first
            colours = {tifffile.PHOTOMETRIC.MINISBLACK: 1, tifffile.PHOTOMETRIC.RGB: 3}.get(page.photometric)
            associated = bool(page.extrasamples) and page.extrasamples[0] == tifffile.EXTRASAMPLE.ASSOCALPHA
        except Exception:  # a header tifffile cannot parse: OpenCV's to judge
            return None
        if not page.extrasamples:
            return cv2.imdecode(data, cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH)
        if colours is None:
            return None
        try:  # tifffile's and imagecodecs' errors for damaged data are of many types
            pixels = page.asarray()
        except Exception as error:
            raise FrameError(f"{name}: a TIFF with alpha whose pixels cannot be decoded ({error})") from error
        if page.axes.startswith("S"):  # planar configuration "separate": (S, H, W)
            pixels = np.moveaxis(pixels, 0, -1)
        orientation = page.tags.valueof(274, 1)  # Orientation; OpenCV turns the TIFFs it decodes upright too
    if pixels.ndim != 3 or pixels.shape[2] <= colours or pixels.dtype not in PEAK:
        raise FrameError(
            f"{name}: a TIFF with alpha decoded as {pixels.dtype} pixels of shape {pixels.shape}; 8- and 16-bit "
            "grey or RGB images with alpha are supported"
        )
    colour, alpha = pixels[..., :colours], pixels[..., colours : colours + 1]
    if associated:
        peak = PEAK[pixels.dtype]
        straight = colour * (peak / np.maximum(alpha, 1).astype(np.float64))
        colour = np.where(alpha > 0, straight.round().clip(0, peak), 0).astype(pixels.dtype)
    return _upright(np.concatenate([colour[..., ::-1], alpha], axis=2), orientation)  # RGB → BGR, as OpenCV


def _upright(pixels: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W, C) pixels stored under a TIFF/EXIF Orientation (1–8) as they are shown: mirrored, turned or both."""
    shown = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: a.transpose(1, 0, 2),
        6: lambda a: np.rot90(a, -1),
        7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
        8: lambda a: np.rot90(a, 1),
    }
    return np.ascontiguousarray(shown.get(orientation, lambda a: a)(pixels))


def _png_grey_alpha(data: np.ndarray) -> bool:
    """Whether `data` is a PNG of colour type 4 (grey + alpha), which OpenCV decodes as BGRA."""
    return data[:8].tobytes() == b"\x89PNG\r\n\x1a\n" and data[12:16].tobytes() == b"IHDR" and int(data[25]) == 4


def read_image(path: str | Path) -> Frame:
    """Read an image file (any format OpenCV decodes; 8- or 16-bit; grey, RGB, with or without alpha).

    Raises:
        FileNotFoundError: no file at `path`.
        FrameError: the file is corrupt, not an image, cannot be read (permissions, removed between the check and
            the read) or holds another pixel type (float TIFF, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no image at {path}")
    try:
        data = np.fromfile(path, dtype=np.uint8)  # bytes, decoded in memory: also reads non-ASCII paths
    except OSError as error:
        raise FrameError(f"cannot read {path}: {error}") from error
    # JPEGs (no alpha) are decoded upright as their EXIF orientation says, as viewers show them: the written output
    # carries no orientation tag. Other formats keep every channel as stored.
    jpeg = path.suffix.lower() in (".jpg", ".jpeg")
    flags = cv2.IMREAD_ANYCOLOR | cv2.IMREAD_ANYDEPTH if jpeg else cv2.IMREAD_UNCHANGED
    array = _decoded_tiff(data, path.name)
    if array is None:
        try:
            array = cv2.imdecode(data, flags)
        except cv2.error:  # an empty file
            array = None
    if array is None:
        raise FrameError(f"{path} is not a readable image (corrupt, or not one of {', '.join(IMAGE_SUFFIXES)})")
    if array.ndim == 3 and array.shape[2] == 4 and _png_grey_alpha(data):
        array = array[..., [0, 3]]  # grey + alpha, which OpenCV expanded to BGRA
    _warn_if_several_frames(data, path)
    frame = frame_from_array(array, path.name)
    return dataclasses.replace(frame, icc_profile=_matching_profile(read_icc_profile(data), frame, path))


def _warn_if_several_frames(data: np.ndarray, path: Path) -> None:
    """Warn that only the first frame is upscaled of a file holding several (a multi-page TIFF, an animated PNG or
    WebP), counted by PIL from the file's structure without decoding pixels."""
    try:
        with PIL.Image.open(io.BytesIO(data)) as image:
            count = getattr(image, "n_frames", 1)
    except (PIL.UnidentifiedImageError, OSError, SyntaxError, ValueError, PIL.Image.DecompressionBombError):
        return  # OpenCV decoded it: nothing to count by
    if count > 1:
        log.warning("%s holds %d frames (pages); only the first is upscaled and written", path, count)


def _matching_profile(profile: bytes | None, frame: Frame, path: Path) -> bytes | None:
    """`profile` when it describes the frame's colours as they will be written (RGB, or GRAY for a grey frame);
    None, with a warning, for another space: OpenCV turns a CMYK JPEG into RGB, which its CMYK profile would
    misdescribe."""
    if profile is None:
        return None
    space = profile_colour_space(profile)
    if space != ("GRAY" if frame.grey else "RGB"):
        log.warning(
            "%s: its %s ICC profile does not describe the decoded pixels; the output goes without it", path, space
        )
        return None
    return profile


def write_image(path: str | Path, frame: Frame) -> None:
    """Write `frame` in the format its suffix names, atomically: it is encoded in memory, written to a temporary
    file in the same folder and renamed, so an interrupted run never leaves a half-written image.

    Raises:
        FrameError: an unknown suffix. A 16-bit frame written as a format that holds 8 bits (jpg, bmp, webp) is
            rounded to 8 bits, and a frame with alpha written as JPEG loses its alpha, each with a warning.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in IMAGE_SUFFIXES:
        raise FrameError(
            f"{path}: cannot write {suffix or 'suffix-less'} images; use one of {', '.join(IMAGE_SUFFIXES)}"
        )
    if frame.bit_depth == 16 and suffix in EIGHT_BIT_ONLY:
        log.warning(
            "%s: %s holds 8 bits; the 16-bit frame is rounded to 8 (write .png or .tif to keep 16)", path, suffix
        )
        frame = dataclasses.replace(frame, bit_depth=8)
    if frame.alpha is not None and suffix in NO_ALPHA:
        log.warning("%s: %s holds no alpha channel; alpha dropped (write .png, .tif or .webp to keep it)", path, suffix)
        frame = dataclasses.replace(frame, alpha=None)
    array = frame_to_array(frame)
    if suffix in (".tif", ".tiff") and (frame.alpha is not None or frame.icc_profile):
        write_bytes_atomically(path, _tiff_bytes(array, frame.grey, frame.alpha is not None, frame.icc_profile))
        return
    if frame.grey and frame.alpha is not None and frame.icc_profile:  # OpenCV would write RGBA under a GRAY profile
        if suffix == ".png" and frame.bit_depth == 8:
            write_bytes_atomically(path, _grey_alpha_png(array, frame.icc_profile))
            return
        log.warning(
            "%s: grey + alpha is written as RGBA, which the input's GRAY ICC profile does not describe; written "
            "without it (8-bit .png and .tif keep grey + alpha and the profile)",
            path,
        )
        frame = dataclasses.replace(frame, icc_profile=None)
    ok, encoded = cv2.imencode(suffix, array)
    if not ok:
        raise FrameError(f"OpenCV failed to encode {path}")
    data = encoded.tobytes()
    if frame.icc_profile and suffix in ICC_EMBEDS:
        try:
            data = with_icc_profile(data, suffix, frame.icc_profile)
        except ValueError as error:  # a profile too large for JPEG's 255 segments
            log.warning("%s: written without the input's ICC colour profile (%s)", path, error)
    elif frame.icc_profile:
        log.warning(
            "%s: %s is written without the input's ICC colour profile (.png, .jpg and .tif keep it)", path, suffix
        )
    write_bytes_atomically(path, data)


def _grey_alpha_png(bgra: np.ndarray, icc_profile: bytes) -> bytes:
    """An 8-bit grey frame's (H, W, 4) BGRA (`frame_to_array`) as a grey + alpha PNG carrying its GRAY profile."""
    buffer = io.BytesIO()
    PIL.Image.fromarray(np.ascontiguousarray(bgra[..., [0, 3]]), mode="LA").save(
        buffer, format="PNG", icc_profile=icc_profile
    )
    return buffer.getvalue()


def _tiff_bytes(array: np.ndarray, grey: bool, alpha: bool, icc_profile: bytes | None) -> bytes:
    """`frame_to_array`'s (H, W[, C]) BGR[A] or grey[+alpha] as a deflate-compressed TIFF with the ICC profile, if
    any, and its alpha tagged as such (unassociated), neither of which OpenCV's encoder does: grey + alpha for a
    grey frame, else RGBA."""
    if alpha:
        pixels = array[..., [0, 3]] if grey else array[..., [2, 1, 0, 3]]
    else:
        pixels = array if grey else array[..., ::-1]
    buffer = io.BytesIO()
    tifffile.imwrite(
        buffer,
        np.ascontiguousarray(pixels),
        photometric="minisblack" if grey else "rgb",
        extrasamples=["unassalpha"] if alpha else None,
        compression="zlib",
        iccprofile=icc_profile,
    )
    return buffer.getvalue()


@dataclass
class FrameSource:
    """The frames of one image, a folder of images (sorted by name) or a video, made by `open_frames`.

    Unreadable images in a folder are skipped with a warning and listed in `skipped` (by the latest iteration);
    `len` counts them too. A named single image fails loudly instead. A video's `len` is its container's frame count,
    which is an estimate for some codecs and containers: the frames iterated are the truth.
    """

    path: Path
    kind: str  # "images" or "video"
    files: list[Path] = field(default_factory=list)
    fps: float | None = None  # videos only
    frame_count: int = 0
    untagged_hd: bool = False  # videos only: no colour tags, and HD (`_video_probe`)
    listed: bool = True  # videos only: the container lists its frame count (else frame_count is OpenCV's estimate)
    pixel_aspect: Fraction | None = None  # videos only: the pixels' width / height when not square (`_video_probe`)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.files) if self.kind == "images" else self.frame_count

    def __iter__(self) -> Iterator[Frame]:
        if self.kind == "video":
            yield from self._video_frames()
        elif self.path.is_file():
            yield read_image(self.path)
        else:
            self.skipped = []
            for file in self.files:
                try:
                    frame = read_image(file)
                except (FrameError, FileNotFoundError) as error:  # removed since the folder was listed: not found
                    log.warning("skipping %s", error)
                    self.skipped.append(str(file))
                    continue
                yield frame

    def _video_frames(self) -> Iterator[Frame]:
        capture = cv2.VideoCapture(str(self.path))
        try:
            index = 0
            while (array := capture.read()[1]) is not None:
                time = capture.get(cv2.CAP_PROP_POS_MSEC) / 1000  # the frame just read
                yield dataclasses.replace(frame_from_array(array, f"frame_{index:06d}"), time=time)
                index += 1
        finally:
            capture.release()
        if self.listed:  # an estimate says nothing of truncation
            warn_if_truncated(self.path, index, self.frame_count)


def _named_image(path: Path) -> bool:
    """Whether `path`'s suffix names an image format (by its MIME type: .gif, .heic, .ppm, ... too)."""
    return (mimetypes.guess_type(path.name)[0] or "").startswith("image/")


def open_frames(path: str | Path) -> FrameSource:
    """Open an image file, a folder of images or a video file.

    Raises:
        FileNotFoundError: nothing at `path`.
        FrameError: an empty folder, an unknown suffix, or a video OpenCV cannot open.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"no image, folder or video at {path}")
    if path.is_dir():
        entries = sorted(p for p in path.iterdir() if p.is_file() and not tool_file(p.name))  # no ._x.png copies
        files = [p for p in entries if p.suffix.lower() in IMAGE_SUFFIXES]
        other_images = [p.name for p in entries if p.suffix.lower() not in IMAGE_SUFFIXES and _named_image(p)]
        if other_images:
            log.warning(
                "%s: skipping %d image files of formats the upscaler does not write back (%s); convert them to one "
                "of %s",
                path,
                len(other_images),
                ", ".join(other_images[:5]) + (", ..." if len(other_images) > 5 else ""),
                ", ".join(IMAGE_SUFFIXES),
            )
        if not files:
            raise FrameError(f"{path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return FrameSource(path, "images", files)
    suffix = path.suffix.lower()
    if suffix in VIDEO_SUFFIXES:
        capture = cv2.VideoCapture(str(path))
        try:
            if not capture.isOpened():
                raise FrameError(f"{path} is not a video OpenCV can open (corrupt, or a codec its FFmpeg lacks)")
            fps, count = capture.get(cv2.CAP_PROP_FPS), int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        finally:
            capture.release()
        fps = fps or 30.0  # when the container lacks it
        untagged_hd, listed_count, pixel_aspect = _video_probe(path)
        count = listed_count or max(count, 0)
        return FrameSource(
            path,
            "video",
            fps=fps,
            frame_count=count,
            untagged_hd=untagged_hd,
            listed=listed_count > 0,
            pixel_aspect=pixel_aspect,
        )
    if suffix not in IMAGE_SUFFIXES:
        raise FrameError(
            f"{path}: unknown kind; give an image ({', '.join(IMAGE_SUFFIXES)}), a folder of them or a video "
            f"({', '.join(VIDEO_SUFFIXES)})"
        )
    return FrameSource(path, "images", [path])


def players_hd(width: int, height: int) -> bool:
    """Whether players take a video of this size for HD, whose untagged colours they show as BT.709 (mpv's rule:
    over 576 lines, or at least 1280 columns; VLC's: over 576 lines)."""
    return height > 576 or width >= 1280


def _video_probe(video: Path) -> tuple[bool, int, Fraction | None]:
    """(whether `video` carries no colour matrix and is HD by `players_hd`, the frame count its container lists or
    0, its pixels' aspect ratio when not square). Players show an untagged HD video as BT.709 while OpenCV decodes
    it as BT.601, so its upscaled copy is encoded back with BT.601, untagged, to be shown as the source was (a
    tagged source is decoded by its tag and written as BT.709, tagged). Matroska and WebM list no count: OpenCV's
    estimate, duration × rate, is then wrong for a variable frame rate. Anamorphic video (DVD, DV, broadcast SD:
    720×480 shown at 16:9) keeps its pixel aspect ratio, which scaling both sides alike does not change. Pictures
    with alpha (PNG or ProRes 4444 in .mov, say) are warned of: OpenCV decodes video without it."""
    try:
        with av.open(str(video)) as container:
            stream = container.streams.video[0]
            context = stream.codec_context
            if context.pix_fmt and any(part.is_alpha for part in av.VideoFormat(context.pix_fmt).components):
                log.warning(
                    "%s: its pictures' alpha channel is not read (%s); the upscaled video has none",
                    video,
                    context.pix_fmt,
                )
            untagged = context.colorspace == UNSPECIFIED_COLOURSPACE and players_hd(context.width, context.height)
            aspect = stream.sample_aspect_ratio or context.sample_aspect_ratio  # the container's, else the codec's
            return untagged, max(stream.frames, 0), aspect if aspect and aspect != 1 else None
    except (av.FFmpegError, IndexError, OSError):  # OpenCV opened it: decode and write as for any other
        return False, 0, None


class FrameSink:
    """Writes frames where `open_sink` decided; a context manager that finishes the video. A video is written to a
    temporary file beside `out` and moved over it only when the sink closes without an error, so a failed or
    interrupted run leaves an earlier `out` as it was."""

    def __init__(
        self, out: Path, source: FrameSource, single_file: bool, codec: str | None = None, crf=None, timed=False
    ):
        self.out, self.source, self.single_file = out, source, single_file
        self.codec, self.crf, self.timed = codec, crf, timed
        self.video_file = contextlib.ExitStack()  # holds `atomic_path(out)` once the first frame opens the writer
        self.writer: VideoWriter | None = None
        self.temporary: Path | None = None  # the video file being written, until it is moved to `out`
        self.size: tuple[int, int] | None = None
        self.warned_alpha = False

    def write(self, frame: Frame) -> None:
        """Write one frame: an image under its own name (or the named file), or the next frame of the video.

        Raises:
            FrameError: a video frame of another size than the first, or a video the encoder cannot write.
        """
        if self.source.kind == "images":
            write_image(self.out if self.single_file else self.out / frame.name, frame)
            return
        if frame.alpha is not None and not self.warned_alpha:
            log.warning("%s: video holds no alpha channel; alpha dropped", self.out)
            self.warned_alpha = True
        array = frame_to_array(dataclasses.replace(frame, alpha=None, bit_depth=8))
        array = cv2.cvtColor(array, cv2.COLOR_GRAY2BGR) if array.ndim == 2 else array
        size = (array.shape[1], array.shape[0])
        if self.writer is None:
            self.temporary = self.video_file.enter_context(atomic_path(self.out, keep_suffix=True))
            bt709 = not self.source.untagged_hd
            self.writer = VideoWriter(
                self.temporary, self.source.fps, self.codec, self.crf, bt709, self.timed, self.source.pixel_aspect
            )
            self.size = size
        if size != self.size:
            raise FrameError(f"{frame.name} is {size[0]}×{size[1]} but {self.out} is {self.size[0]}×{self.size[1]}")
        try:
            self.writer.write(array, frame.time)
        except av.FFmpegError as error:
            raise FrameError(f"{self.codec} could not encode {frame.name} into {self.out}: {error}") from error

    def close(self, *exc_info) -> None:
        """Finish the video file, if one was started: given the source's audio and moved into place, or (given an
        exception's info) removed."""
        exc_info = exc_info or (None, None, None)
        try:
            if self.writer is not None:
                writer, self.writer = self.writer, None
                if exc_info[0] is not None:  # the file is discarded: no flush, whose error would hide the first
                    writer.abort()
                else:
                    writer.close()
                    copy_audio(self.temporary, self.source.path)
        except BaseException as error:
            self.video_file.__exit__(type(error), error, error.__traceback__)  # removes the temporary
            raise
        self.video_file.__exit__(*exc_info)

    def __enter__(self) -> FrameSink:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close(*exc_info)


def open_sink(out: str | Path, source: FrameSource, codec: str | None = None, crf: int | None = None) -> FrameSink:
    """Decide where the frames of `source` go, writing nothing yet (the first frame creates the output folder), so
    that a wrong output is refused before a model is loaded.

    A video goes to the video file `out`, encoded with `codec` (default: libx264 for .mp4/.mov/.mkv, libvpx-vp9
    for .webm, mjpeg for .avi) at constant-rate factor `crf` (default: the codec's in `video_writer.CRF_RANGES`),
    at the source's frame rate, 8-bit, without alpha, with the source's audio streams copied
    (`fastgan.upscale.audio`). Images go into the folder `out` under their own names and formats; a single image
    goes to `out` itself when it has an image suffix.

    Raises:
        FrameError: `out` would overwrite the input, is the wrong kind (a video to a folder, images to a video), or
            cannot hold `codec` at `crf` (`VideoEncodingError`).
    """
    out = Path(out).expanduser()
    suffix = out.suffix.lower()
    single_file = source.kind == "images" and source.path.is_file() and suffix in IMAGE_SUFFIXES
    if source.kind == "video" and suffix not in VIDEO_SUFFIXES:
        raise FrameError(f"a video goes to a video file ({', '.join(VIDEO_SUFFIXES)}), not {out}")
    timed = False
    if source.kind == "video":
        try:
            codec, timed = check_encoding(suffix, codec, crf)
        except VideoEncodingError as error:
            raise FrameError(f"{out}: {error}") from error
    elif codec is not None or crf is not None:
        log.warning("--codec and --crf encode videos; %s gets images, written in their own formats", out)
    if source.kind == "images" and not single_file and suffix in (*IMAGE_SUFFIXES, *VIDEO_SUFFIXES):
        raise FrameError(f"images go to a folder (or one image to an image file), not {out}")
    named_image = _named_image(out)  # .gif, .heic, ...: not a folder
    if source.kind == "images" and source.path.is_file() and not single_file and named_image and not out.is_dir():
        raise FrameError(f"{out}: cannot write {suffix} images; use one of {', '.join(IMAGE_SUFFIXES)} (or a folder)")
    targets = [out] if single_file or source.kind == "video" else [out / file.name for file in source.files]
    inputs = {file.resolve() for file in (source.path, *source.files)}
    if not inputs.isdisjoint(target.resolve() for target in targets):
        raise FrameError(f"output {out} would overwrite the input {source.path}; choose another path")
    _check_writable(out if source.kind == "images" and not single_file else out.parent, out)
    return FrameSink(out, source, single_file, codec, crf, timed)


def _check_writable(folder: Path, out: Path) -> None:
    """Refuse an output whose folder could not be made or written in (`unwritable_reason`).

    Raises:
        FrameError: naming the part in the way.
    """
    reason = unwritable_reason(folder)
    if reason is not None:
        raise FrameError(f"{out}: {reason}; choose another output")
