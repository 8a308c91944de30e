"""Frames through the tiled upscaler: alpha handling and throughput timing on the upscaler's own device."""

import pytest
import torch
import torch.nn.functional as F

from fastgan.upscale.frames import Frame
from fastgan.upscale.pipeline import upscale_frame, upscale_frames
from fastgan.upscale.tiling import TiledUpscaler


def _nearest(tiles: torch.Tensor) -> torch.Tensor:
    return F.interpolate(tiles, scale_factor=2)


GAINS = torch.tensor([0.8, 1.1, 1.4])  # per colour channel: their mean, 1.1, is what the model does to alpha


def _graded_nearest(tiles: torch.Tensor) -> torch.Tensor:
    """Nearest ×2 with a gain per channel: alpha through it is scaled by the mean gain, and over-shoots 1."""
    return _nearest(tiles) * GAINS[:, None, None]


def test_alpha_is_upscaled_apart_from_the_colour():
    """`model`: alpha as a grey image through the model (its channels averaged), `bicubic`: torch's bicubic ×s;
    both clamped to [0, 1], the colour untouched by either."""
    upscaler = TiledUpscaler(_graded_nearest, 2, 1, tile=16, overlap=2)  # no flat 3×3 alpha neighbourhood below
    rgb = torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    rows, cols = torch.meshgrid(torch.arange(5), torch.arange(7), indexing="ij")
    ramp = cols / 6
    alpha = torch.where((rows + cols) % 2 == 0, ramp, 1 - ramp)[None]  # a checkerboard of a ramp and its reverse
    frame = Frame(rgb, alpha)
    by_model, by_bicubic = upscale_frame(frame, upscaler, "model"), upscale_frame(frame, upscaler, "bicubic")
    colour = _graded_nearest(rgb[None])[0].clamp(0, 1)
    torch.testing.assert_close(by_model.rgb, colour)
    torch.testing.assert_close(by_bicubic.rgb, colour)
    model_alpha = _nearest(alpha[None])[0] * GAINS.mean()
    bicubic_alpha = F.interpolate(alpha[None], scale_factor=2, mode="bicubic")[0]
    assert model_alpha.max() > 1 and bicubic_alpha.min() < 0 and bicubic_alpha.max() > 1  # the clamps matter
    torch.testing.assert_close(by_model.alpha, model_alpha.clamp(0, 1))
    torch.testing.assert_close(by_bicubic.alpha, bicubic_alpha.clamp(0, 1))
    assert (by_model.alpha - by_bicubic.alpha).abs().max() > 0.1
    with pytest.raises(ValueError, match="unknown alpha mode 'blend'"):
        upscale_frame(frame, upscaler, "blend")


def test_flat_alpha_stays_exactly_flat_through_a_model_that_does_not_return_it():
    """An opaque image came out with alpha 254 on a pixel-shuffle phase; here a model that dims alpha to 0.9 keeps
    1 and 0 wherever the receptive field (radius 1) sees only them, and dims only the pixels near the edge."""
    upscaler = TiledUpscaler(lambda tiles: _nearest(tiles) * 0.9, 2, 1, tile=16, overlap=2)
    rgb = torch.rand(3, 4, 6, generator=torch.Generator().manual_seed(0))
    opaque = upscale_frame(Frame(rgb, torch.ones(1, 4, 6)), upscaler)
    assert torch.equal(opaque.alpha, torch.ones(1, 8, 12))
    half = torch.zeros(1, 4, 6)
    half[..., 3:] = 1  # transparent left, opaque right
    alpha = upscale_frame(Frame(rgb, half), upscaler).alpha
    assert torch.equal(alpha[..., :4], torch.zeros(1, 8, 4)) and torch.equal(alpha[..., 8:], torch.ones(1, 8, 4))
    assert torch.equal(alpha[..., 4:6], torch.zeros(1, 8, 2)) and torch.allclose(alpha[..., 6:8], torch.tensor(0.9))


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
