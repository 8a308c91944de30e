"""Training frames from a video file (a recorded game session, say): every `every`-th frame, at most `limit` of them.

Two readers give the same frames: OpenCV (`video_frames`, the torch loader's) and DALI's `readers.video`
(`dali_video_frames`: CPU, or the GPU's decoder with a device_id). DALI's CPU decoder lacks codecs OpenCV reads
(H.264, HEVC, MPEG-4 part 2 — OpenCV's own "mp4v" — which only its GPU decoder takes); for those the DALI reader
says so in the log and reads the file with OpenCV. The GPU decoder (NVDEC) converts YUV to RGB in its own way, so
a run trained on a GPU with `data.loader=dali` may see frames a level or so off those `eval sr` reads through
OpenCV (not measured: no GPU with DALI here).
The held-out frames are the video's last stretch (`split_video_tail`), not frames interleaved with the training
ones, which would be near-copies of their neighbours.
"""

from __future__ import annotations

import logging
from pathlib import Path

import cv2
import numpy as np
import torch

from fastgan.data.sources import DataSourceError
from fastgan.data.sr_sources import NEAR_COPY_PSNR, NamedImages, near_copies
from fastgan.video_files import VIDEO_SUFFIXES, warn_if_truncated

log = logging.getLogger(__name__)

#: Frames per DALI reader batch.
VIDEO_BATCH = 8
#: Share of the kept frames held out for evaluation (at least one frame).
HELD_OUT_SHARE = 8


def _checked(path: str | Path, every: int, limit: int) -> Path:
    video = Path(path).expanduser()
    if not video.is_file():
        raise DataSourceError(f"no video file at {video}; point sr.images at a video ({', '.join(VIDEO_SUFFIXES)})")
    if every < 1 or limit < 0:
        raise DataSourceError(f"a video source needs every >= 1 and limit >= 0, got every={every}, limit={limit}")
    return video


def _named(video: Path, every: int, frames: list[torch.Tensor]) -> NamedImages:
    if not frames:
        raise DataSourceError(f"{video} holds no frames that can be decoded")
    return [(f"{video.stem}-{i * every:06d}", frame) for i, frame in enumerate(frames)]


def video_frames(path: str | Path, every: int = 4, limit: int = 0) -> NamedImages:
    """Frames 0, every, 2·every, … of a video, decoded by OpenCV.

    Args:
        path: the video file.
        every: keep one frame in `every`.
        limit: keep at most this many (0: all).

    Returns:
        [(f"{stem}-{frame index:06d}", uint8 (3, H, W) RGB)].

    Raises:
        DataSourceError: no such file, or OpenCV cannot open or decode it.
    """
    video = _checked(path, every, limit)
    capture = cv2.VideoCapture(str(video))
    frames: list[torch.Tensor] = []
    try:
        if not capture.isOpened():
            raise DataSourceError(f"{video} is not a video OpenCV can open (corrupt, or a codec its FFmpeg lacks)")
        listed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        index = 0
        while (not limit or len(frames) < limit) and capture.grab():
            if index % every == 0:
                ok, bgr = capture.retrieve()
                if not ok:
                    raise DataSourceError(f"{video}: frame {index} cannot be decoded")
                frames.append(torch.from_numpy(np.ascontiguousarray(bgr[..., ::-1])).permute(2, 0, 1).contiguous())
            index += 1
    finally:
        capture.release()
    if not limit or len(frames) < limit:
        warn_if_truncated(video, index, listed, " (the held-out frames are the last ones read)")
    return _named(video, every, frames)


def dali_video_frames(path: str | Path, every: int = 4, limit: int = 0, device_id: int | None = None) -> NamedImages:
    """`video_frames` decoded by DALI's `readers.video` (one-frame sequences `every` frames apart), on the CPU or,
    with a device_id, on that GPU; a codec DALI cannot decode falls back to OpenCV with a warning. Frames are turned
    upright by the container's rotation tag, as OpenCV turns them, and a file that ends early gets the same warning.

    Raises:
        DataSourceError: no such file, or neither DALI nor OpenCV can decode it.
    """
    video = _checked(path, every, limit)
    try:
        frames = _dali_decode(video, every, limit, device_id)
    except RuntimeError as exc:
        from fastgan.data.dali_sources import dali_reason

        log.warning("DALI cannot decode %s (%s); reading it with OpenCV instead", video, dali_reason(exc))
        return video_frames(video, every, limit)
    listed, quarter_turns = _listed_frames_and_turns(video)
    if not limit or len(frames) < limit:  # the last kept frame stands for up to `every` frames of the file
        warn_if_truncated(
            video, min(listed, len(frames) * every), listed, " (the held-out frames are the last ones read)"
        )
    return _named(video, every, [torch.rot90(frame, quarter_turns, (1, 2)).contiguous() for frame in frames])


def _listed_frames_and_turns(video: Path) -> tuple[int, int]:
    """(frames the container lists, counter-clockwise quarter turns that display the frames upright): a phone's
    portrait recording is stored landscape with a rotation tag, which OpenCV applies and DALI's reader does not."""
    capture = cv2.VideoCapture(str(video))
    try:
        listed = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        rotation = int(capture.get(cv2.CAP_PROP_ORIENTATION_META)) % 360  # clockwise degrees: 0, 90, 180 or 270
    finally:
        capture.release()
    return listed, (360 - rotation) // 90 % 4


def _dali_decode(video: Path, every: int, limit: int, device_id: int | None) -> list[torch.Tensor]:
    import nvidia.dali.fn as fn
    from nvidia.dali import pipeline_def

    @pipeline_def(batch_size=VIDEO_BATCH, num_threads=1, device_id=device_id, exec_async=False, exec_pipelined=False)
    def frames_pipeline():
        return fn.experimental.readers.video(
            device="cpu" if device_id is None else "gpu",
            filenames=[str(video)],
            sequence_length=1,
            step=every,
            random_shuffle=False,
            pad_last_batch=True,
            name="video",
        )

    pipeline = frames_pipeline()
    pipeline.build()
    count = pipeline.epoch_size("video")
    if limit:
        count = min(count, limit)
    frames: list[torch.Tensor] = []
    while len(frames) < count:
        (batch,) = pipeline.run()
        if device_id is not None:
            batch = batch.as_cpu()
        for i in range(min(len(batch), count - len(frames))):
            frames.append(torch.from_numpy(np.array(batch[i])[0]).permute(2, 0, 1).contiguous())  # (1, H, W, 3)
    return frames


def split_video_tail(frames: NamedImages) -> tuple[NamedImages, NamedImages]:
    """(training, held-out): the last eighth of the frames (at least one) is held out, less near-copies of training
    frames (`near_copies`: the first of the tail is only `video_every` frames after the last training frame).

    Raises:
        DataSourceError: fewer than two frames, or a tail that only repeats training frames.
    """
    if len(frames) < 2:
        raise DataSourceError(
            f"a video source needs at least 2 kept frames (training and held out), got {len(frames)}: lower "
            "sr.video_every or raise sr.video_frames"
        )
    held = max(1, len(frames) // HELD_OUT_SHARE)
    training, tail = frames[:-held], frames[-held:]
    held_out = [frame for frame, near in zip(tail, near_copies(tail, training), strict=True) if not near]
    if not held_out:
        raise DataSourceError(
            f"every frame of the video's last eighth ({tail[0][0]} …) is within {NEAR_COPY_PSNR:g} dB PSNR of a "
            "training frame, so none can be held out: use a video with more motion, or raise sr.video_every"
        )
    return training, held_out
