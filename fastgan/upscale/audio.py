"""Carry a source video's audio into the upscaled one: the upscaled pictures' file is remuxed with the source's
audio streams by PyAV (FFmpeg's libraries), packets copied as they are (no re-encoding)."""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import av

log = logging.getLogger(__name__)


def _packets(
    container: av.container.InputContainer,
    streams: list,
    targets: list,
    start: Fraction | None = None,
    drop_before_zero: bool = False,
) -> Iterator[tuple[float, int, Any]]:
    """(time in seconds, order, packet) for the packets of `streams`, each re-addressed to its target stream; with
    a `start` (the audio's), moved `start` seconds earlier and those before it dropped. At a start of 0 the packets
    before it (AAC's priming packet, at −21 ms, the decoder's pre-roll) are kept unless `drop_before_zero`: the AVI
    muxer shifts every stream by them and showed the first picture for two frames. Without a `start` (the
    pictures'), every packet is kept: a B-frame stream's first ones are decoded before 0."""
    target_of = {stream.index: target for stream, target in zip(streams, targets, strict=True)}
    time = Fraction(0)
    for order, packet in enumerate(container.demux(*streams)):
        if packet.size == 0:  # the demuxer's flush packets
            continue
        stamp = packet.dts if packet.dts is not None else packet.pts  # Matroska leaves a B-frame stream's first dts
        if stamp is not None:
            time = stamp * packet.time_base
        if start is not None and time < start and (start > 0 or drop_before_zero):
            continue
        if start:
            shift = round(start / packet.time_base)
            packet.dts = None if packet.dts is None else packet.dts - shift
            packet.pts = None if packet.pts is None else packet.pts - shift
        packet.stream = target_of[packet.stream.index]
        yield float(time - (start or 0)), order, packet


def _first_picture(container: av.container.InputContainer) -> Fraction:
    """When the source's first picture shows, in seconds: where the file of its upscaled frames starts (at 0)."""
    videos = container.streams.video
    if not videos or videos[0].start_time is None:
        return Fraction(0)
    return videos[0].start_time * videos[0].time_base


def copy_audio(pictures: Path, source: Path) -> bool:
    """Rewrite the video file `pictures` (a temporary file of `source`'s upscaled frames) with its video stream
    and every audio stream of `source`, moved to start with the first picture and interleaved by time; -> whether
    it was rewritten. Whatever stops the copy (a codec the container cannot hold, Opus in .avi say, or a source no
    longer readable) leaves `pictures` as it was, with a warning: the pictures are never lost over their sound."""
    muxed = pictures.with_name(f"{pictures.stem}.audio{pictures.suffix}")
    codecs = "?"
    try:
        with av.open(str(source)) as sound:
            if not sound.streams.audio:
                return False
            audio_in = list(sound.streams.audio)
            codecs = ", ".join(stream.codec_context.name for stream in audio_in)
            with av.open(str(pictures)) as video, av.open(str(muxed), "w") as out:
                picture_in = video.streams.video[0]
                # opaque: the streams' parameters are copied as they are, not a codec opened by the decoder's name
                # (an AV1 file's is libdav1d, which is no encoder, and failed the whole copy)
                picture_out = out.add_stream_from_template(picture_in, opaque=True)
                # which leaves out the frame rate: Matroska then guessed 30 000 fps from B-frames' missing first dts
                picture_out.codec_context.framerate = picture_in.average_rate or picture_in.guessed_rate
                audio_out = [out.add_stream_from_template(stream, opaque=True) for stream in audio_in]
                merged = heapq.merge(
                    _packets(video, [picture_in], [picture_out]),
                    _packets(sound, audio_in, audio_out, _first_picture(sound), pictures.suffix.lower() == ".avi"),
                    key=lambda item: item[:2],
                )
                for _, _, packet in merged:
                    out.mux(packet)
    except Exception as error:  # FFmpegError, OSError, and PyAV's ValueError for a codec the container lacks
        muxed.unlink(missing_ok=True)
        log.warning(
            "%s: the source's audio (%s) could not be copied into a %s file (%s: %s); the video is written without "
            "it: write .mkv, which holds any codec",
            source,
            codecs,
            pictures.suffix,
            type(error).__name__,
            error,
        )
        return False
    except BaseException:
        muxed.unlink(missing_ok=True)
        raise
    os.replace(muxed, pictures)
    return True
