"""Carry a source video's audio into the upscaled one: OpenCV writes pictures only, so its file is remuxed with
the source's audio streams by PyAV (FFmpeg's libraries), packets copied as they are (no re-encoding)."""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)


def _packets(container: av.container.InputContainer, streams: list, targets: list) -> Iterator[tuple[float, int, Any]]:
    """(time in seconds, order, packet) for the packets of `streams`, each re-addressed to its target stream."""
    target_of = {stream.index: target for stream, target in zip(streams, targets, strict=True)}
    for order, packet in enumerate(container.demux(*streams)):
        if packet.dts is None:  # the demuxer's flush packets
            continue
        time = float(packet.dts * packet.time_base)
        packet.stream = target_of[packet.stream.index]
        yield time, order, packet


def copy_audio(pictures: Path, source: Path) -> bool:
    """Rewrite the video file `pictures` (a temporary file OpenCV wrote) with its video stream and every audio stream
    of `source`, interleaved by time; -> whether it was rewritten. A container that cannot hold the source's audio
    codec (say, Opus in .avi) leaves `pictures` as it was, with a warning naming a container that can."""
    with av.open(str(source)) as sound:
        if not sound.streams.audio:
            return False
        muxed = pictures.with_name(f"{pictures.stem}.audio{pictures.suffix}")
        try:
            with av.open(str(pictures)) as video, av.open(str(muxed), "w") as out:
                picture_in = video.streams.video[0]
                picture_out = out.add_stream_from_template(picture_in)
                audio_in = list(sound.streams.audio)
                audio_out = [out.add_stream_from_template(stream) for stream in audio_in]
                merged = heapq.merge(
                    _packets(video, [picture_in], [picture_out]),
                    _packets(sound, audio_in, audio_out),
                    key=lambda item: item[:2],
                )
                for _, _, packet in merged:
                    out.mux(packet)
        except BaseException as error:
            muxed.unlink(missing_ok=True)
            if not isinstance(error, av.FFmpegError | ValueError):  # ValueError: PyAV's refusal of a codec
                raise
            codecs = ", ".join(stream.codec_context.name for stream in sound.streams.audio)
            log.warning(
                "%s: the source's audio (%s) could not be copied into a %s file (%s); the video is written without "
                "it: write .mkv, which holds any codec",
                source,
                codecs,
                pictures.suffix,
                error,
            )
            return False
    os.replace(muxed, pictures)
    return True
