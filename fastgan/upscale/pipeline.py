"""Frames through a tiled upscaler: colour by the model, alpha by the model or bicubically, with throughput."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from tqdm import tqdm

from fastgan.upscale.frames import Frame
from fastgan.upscale.tiling import TiledUpscaler

ALPHA_MODES = ("model", "bicubic")


def upscale_frame(frame: Frame, upscaler: TiledUpscaler, alpha: str = "model") -> Frame:
    """The frame upscaled ×s, clamped to [0, 1], left on the upscaler's device (writing it quantises it there);
    alpha (1, H, W) goes through the model as a grey image or is up-sampled bicubically, never mixed into the
    colour."""
    if alpha not in ALPHA_MODES:
        raise ValueError(f"unknown alpha mode {alpha!r}; choose {', '.join(ALPHA_MODES)}")
    rgb = upscaler(frame.rgb).clamp(0, 1)
    upscaled_alpha = None
    if frame.alpha is not None:
        if alpha == "model":
            upscaled_alpha = upscaler(frame.alpha.expand(3, -1, -1)).mean(dim=0, keepdim=True)
        else:
            low = frame.alpha[None].to(upscaler.device)
            upscaled_alpha = F.interpolate(low, scale_factor=upscaler.scale, mode="bicubic")[0]
        upscaled_alpha = upscaled_alpha.clamp(0, 1)
    return dataclasses.replace(frame, rgb=rgb, alpha=upscaled_alpha)


@dataclass
class Throughput:
    frames: int
    seconds: float
    input_pixels: int

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0

    @property
    def megapixels_per_second(self) -> float:
        return self.input_pixels / self.seconds / 1e6 if self.seconds else 0.0


def upscale_frames(
    frames: Iterable[Frame], write, upscaler: TiledUpscaler, alpha: str = "model", total: int | None = None
) -> Throughput:
    """Upscale every frame and hand it to `write`, with a progress bar showing frames per second."""
    done, pixels, start = 0, 0, time.perf_counter()
    with tqdm(frames, total=total, unit="frame", desc="upscale") as bar:
        for frame in bar:
            write(upscale_frame(frame, upscaler, alpha))
            done, pixels = done + 1, pixels + frame.rgb.shape[1] * frame.rgb.shape[2]
    if upscaler.device.type == "cuda":  # only the upscaler's own GPU: no context on another, none for a CPU run
        torch.cuda.synchronize(upscaler.device)
    return Throughput(done, time.perf_counter() - start, pixels)
