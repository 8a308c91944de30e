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
    alpha (1, H, W) goes through the model as a grey image (`flat_alpha_kept`) or is up-sampled bicubically, never
    mixed into the colour."""
    if alpha not in ALPHA_MODES:
        raise ValueError(f"unknown alpha mode {alpha!r}; choose {', '.join(ALPHA_MODES)}")
    rgb = upscaler(frame.rgb).clamp(0, 1)
    upscaled_alpha = None
    if frame.alpha is not None:
        if alpha == "model":
            upscaled_alpha = upscaler(frame.alpha.expand(3, -1, -1)).mean(dim=0, keepdim=True)
            upscaled_alpha = flat_alpha_kept(frame.alpha, upscaled_alpha, upscaler.scale, upscaler.receptive_radius)
        else:
            low = frame.alpha[None].to(upscaler.device)
            upscaled_alpha = F.interpolate(low, scale_factor=upscaler.scale, mode="bicubic")[0]
        upscaled_alpha = upscaled_alpha.clamp(0, 1)
    return dataclasses.replace(frame, rgb=rgb, alpha=upscaled_alpha)


def flat_alpha_kept(alpha: torch.Tensor, upscaled: torch.Tensor, scale: int, radius: int) -> torch.Tensor:
    """`upscaled` (1, sH, sW), the model's ×s of `alpha` (1, H, W), with every output pixel whose input neighbourhood
    (its receptive field, `radius` input pixels each way) holds one alpha value given exactly that value: an opaque
    image stays opaque and a transparent surround transparent (the model's output of a flat grey is only near it,
    254 of 255 on one pixel-shuffle phase)."""
    low = alpha[None].to(upscaled.device)  # (1, 1, H, W)
    size = 2 * radius + 1

    def window_max(plane: torch.Tensor) -> torch.Tensor:  # separable: O(r), not O(r²), per pixel
        rows = F.max_pool2d(plane, (1, size), stride=1, padding=(0, radius))
        return F.max_pool2d(rows, (size, 1), stride=1, padding=(radius, 0))

    highest, lowest = window_max(low), -window_max(-low)
    flat = F.interpolate((highest == lowest).to(low.dtype), scale_factor=scale)[0] > 0
    return torch.where(flat, F.interpolate(low, scale_factor=scale)[0], upscaled)


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
