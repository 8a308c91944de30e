"""Frames through the tiled upscaler: alpha handling and throughput timing on the upscaler's own device."""

import pytest
import torch
import torch.nn.functional as F

from fastgan.upscale.frames import Frame
from fastgan.upscale.pipeline import upscale_frame, upscale_frames
from fastgan.upscale.tiling import TiledUpscaler


def _nearest(tiles: torch.Tensor) -> torch.Tensor:
    return F.interpolate(tiles, scale_factor=2)


@pytest.mark.parametrize("alpha", ["model", "bicubic"])
def test_alpha_is_upscaled_apart_from_the_colour(alpha):
    upscaler = TiledUpscaler(_nearest, 2, 0, tile=16, overlap=2)
    frame = Frame(torch.zeros(3, 5, 7), torch.ones(1, 5, 7))
    out = upscale_frame(frame, upscaler, alpha)
    assert out.rgb.shape == (3, 10, 14) and out.alpha.shape == (1, 10, 14)
    assert out.rgb.abs().max() == 0 and torch.allclose(out.alpha, torch.ones(1, 10, 14))
    with pytest.raises(ValueError, match="unknown alpha mode 'blend'"):
        upscale_frame(frame, upscaler, "blend")


def test_timing_synchronises_only_the_upscalers_own_gpu(monkeypatch):
    """A CPU (or onnxruntime) upscaler on a GPU machine must not touch GPU 0: synchronising it opened a CUDA context
    there, which fails on a GPU in exclusive-process mode."""
    synchronised = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: synchronised.append(device))
    written = []
    speed = upscale_frames(
        [Frame(torch.rand(3, 6, 8))] * 2, written.append, TiledUpscaler(_nearest, 2, 0, tile=16, overlap=2)
    )
    assert synchronised == [] and len(written) == 2 and speed.frames == 2 and speed.input_pixels == 96

    class OnSecondGpu:  # stands in for a TiledUpscaler on cuda:1 (its frames stay on the CPU here)
        device, scale = torch.device("cuda", 1), 2

        def __call__(self, image):
            return _nearest(image[None])[0]

    upscale_frames([Frame(torch.rand(3, 6, 8))], written.append, OnSecondGpu())
    assert synchronised == [torch.device("cuda", 1)]
