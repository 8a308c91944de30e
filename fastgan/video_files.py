"""What the upscaler, the training readers and the configuration share about video files: the suffixes read and
written, and the warning for a video that stops decoding early."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

#: Video suffixes (read by OpenCV or DALI, written through PyAV: `fastgan.upscale.video_writer`).
VIDEO_SUFFIXES = (".mp4", ".avi", ".mkv", ".mov", ".webm")


def is_video(path: str | Path) -> bool:
    """Whether `path` names a video file by its suffix (mp4, avi, mkv, mov, webm)."""
    return Path(path).suffix.lower() in VIDEO_SUFFIXES


def warn_if_truncated(video: Path, decoded: int, listed: int, note: str = "") -> None:
    """Warn when decoding `video` stopped well before the `listed` frames its container reports (an estimate in
    some containers: a 1 % shortfall, or one frame, passes)."""
    if listed - decoded > max(1, listed // 100):
        log.warning(
            "%s: decoding stopped after %d of the %d frames its container lists; the file may be truncated or "
            "corrupt%s",
            video,
            decoded,
            listed,
            note,
        )
