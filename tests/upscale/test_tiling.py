"""Tiling: the geometry covers every pixel with enough context, the blend weights are a partition of unity, and
with overlap ≥ receptive radius + feather the tiled output equals the whole-image output."""

import functools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fastgan.models.srgan import SRResNet
from fastgan.upscale import tiling
from fastgan.upscale.receptive_field import receptive_radius
from fastgan.upscale.tiling import TiledUpscaler, TilePlan, axis_weights, plan_axis, seam_error

torch.manual_seed(0)
LIGHT_X2 = SRResNet(2, channels=8, blocks=2, batch_norm=False, bicubic_skip=True).eval()
PAPER_X4 = SRResNet(4, channels=8, blocks=1, batch_norm=True).eval()


@pytest.mark.parametrize(
    ("length", "tile", "overlap"),
    [(512, 256, 16), (1080, 256, 16), (37, 16, 3), (16, 16, 4), (5, 64, 8), (257, 64, 0), (100, 33, 16)],
)
def test_axis_plan_covers_everything_with_enough_context(length, tile, overlap):
    axis = plan_axis(length, tile, overlap)
    assert axis.size <= tile and axis.starts[0] == 0 and axis.starts[-1] + axis.size == length
    assert all(b - a <= axis.size for a, b in zip(axis.starts, axis.starts[1:], strict=False))  # no gap
    assert len(axis.boundaries) == len(axis.starts) - 1
    assert axis.context() >= min(overlap, length)


def test_axis_plan_rejects_tiles_without_a_core():
    with pytest.raises(ValueError, match="no core"):
        plan_axis(100, 32, 16)


@pytest.mark.parametrize("window", ["linear", "cosine"])
@pytest.mark.parametrize("feather", [0, 3, 8])
def test_blend_weights_are_a_partition_of_unity(window, feather):
    axis, scale = plan_axis(150, 48, 8), 2
    total = torch.zeros(150 * scale, dtype=torch.float64)
    for i, start in enumerate(axis.starts):
        weight = axis_weights(axis, i, scale, feather, window)
        assert weight.min() >= 0 and weight.max() <= 1
        inside = torch.zeros_like(total)
        inside[start * scale : (start + axis.size) * scale] = weight
        total += inside
        lo = axis.boundaries[i - 1] - feather if i else 0  # non-zero only within `feather` of the core
        hi = axis.boundaries[i] + feather if i < len(axis.boundaries) else 150
        assert not inside[: lo * scale].any() and not inside[hi * scale :].any()
    torch.testing.assert_close(total, torch.ones_like(total), rtol=0, atol=1e-12)


def test_receptive_radius_is_exact_for_known_architectures():
    stack = nn.Sequential(nn.Conv2d(3, 8, 5, padding=2), nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2))
    assert receptive_radius(stack, 2) == 3
    # SRResNet ×2: head 4 + 2 per block + body tail 1 + up-sampling conv 1 + tail 9×9 at 2× (2); the bicubic skip
    # (radius 2) runs in parallel and adds nothing
    for blocks in (1, 3):
        assert receptive_radius(SRResNet(2, 4, blocks, batch_norm=False, bicubic_skip=True), 2) == 8 + 2 * blocks


def test_receptive_radius_survives_gradients_that_underflow():
    """Through 40 layers of tiny weights the gradient at the receptive field's edge is ~1e-340: zero even in
    float64. The measurement keeps only the gradient's support at each layer, so it still finds all 40."""
    layers = [nn.Conv2d(1, 1, 3, padding=1) for _ in range(40)]
    with torch.no_grad():
        for layer in layers:
            layer.weight.mul_(1e-8)
    assert receptive_radius(nn.Sequential(*layers, nn.Upsample(scale_factor=2)), 2, channels=1) == 40


def test_receptive_radius_rejects_global_models():
    class Global(nn.Module):
        def forward(self, x):
            return nn.functional.interpolate(x + x.mean(), scale_factor=2)

    with pytest.raises(ValueError, match="not tileable"):
        receptive_radius(Global(), 2, limit=80)


@functools.cache
def _radius(model, scale):
    return receptive_radius(model, scale)


def _upscaler(model, scale, **kwargs):
    return TiledUpscaler(model, scale, _radius(model, scale), **kwargs)


@pytest.mark.parametrize(("model", "scale"), [(LIGHT_X2, 2), (PAPER_X4, 4)])
@pytest.mark.parametrize("window", ["linear", "cosine"])
@torch.no_grad()
def test_tiled_equals_whole_image_when_overlap_covers_the_receptive_field(model, scale, window):
    radius = _radius(model, scale)
    image = torch.rand(3, 37, 51)
    for overlap, feather in ((radius, 0), (radius + 5, 5)):
        upscaler = _upscaler(model, scale, tile=2 * overlap + 9, overlap=overlap, feather=feather, window=window)
        assert (
            upscaler.exact and len(TilePlan.for_image(37 + 2 * overlap, 51 + 2 * overlap, upscaler.tile, overlap)) > 4
        )
        assert seam_error(upscaler, image) < 1e-5


@torch.no_grad()
def test_zero_border_tiling_reproduces_the_plain_model_call():
    upscaler = _upscaler(LIGHT_X2, 2, tile=40, overlap=14, border="zero", batch=3)
    image = torch.rand(3, 61, 45)
    torch.testing.assert_close(upscaler(image), LIGHT_X2(image[None])[0], rtol=0, atol=1e-5)


@torch.no_grad()
def test_small_overlap_leaves_a_measurable_seam_that_feathering_reduces():
    image = torch.rand(3, 64, 64)
    radius = _radius(LIGHT_X2, 2)
    hard = seam_error(_upscaler(LIGHT_X2, 2, tile=32, overlap=4, feather=0), image)
    feathered = seam_error(_upscaler(LIGHT_X2, 2, tile=32, overlap=4), image)  # feather = overlap when < radius
    assert radius > 4 and hard > 1e-3 and 0 < feathered < hard


@torch.no_grad()
def test_batch_size_and_tiny_images_do_not_change_the_result():
    image = torch.rand(3, 40, 29)
    one = _upscaler(LIGHT_X2, 2, tile=36, overlap=12, batch=1)(image)
    many = _upscaler(LIGHT_X2, 2, tile=36, overlap=12, batch=16)(image)
    torch.testing.assert_close(one, many, rtol=0, atol=1e-6)
    for shape in ((3, 1, 1), (3, 2, 7), (3, 5, 3)):
        assert _upscaler(LIGHT_X2, 2, tile=36, overlap=12)(torch.rand(shape)).shape == (3, 2 * shape[1], 2 * shape[2])


def test_bad_arguments_say_what_to_do():
    with pytest.raises(ValueError, match="window"):
        TiledUpscaler(LIGHT_X2, 2, 10, window="gauss")
    with pytest.raises(ValueError, match="feather"):
        TiledUpscaler(LIGHT_X2, 2, 10, overlap=8, feather=9)
    with pytest.raises(ValueError, match="no core"):
        TiledUpscaler(LIGHT_X2, 2, 10, tile=16, overlap=8)
    with pytest.raises(TypeError, match="are integers"):
        TiledUpscaler(LIGHT_X2, 2.5, 10)
    with pytest.raises(ValueError, match="receptive_radius must be ≥ 0"):
        TiledUpscaler(LIGHT_X2, 2, -3)
    with pytest.raises(ValueError, match=r"tile must be ≥ 1 .*got -5 and 8"):
        TiledUpscaler(LIGHT_X2, 2, 10, tile=-5, overlap=8)
    with pytest.raises(ValueError, match="one"):
        TiledUpscaler(LIGHT_X2, 2, 10)(torch.rand(1, 3, 8, 8))


@pytest.mark.parametrize(
    "image, error, match",
    [
        (torch.full((3, 8, 8), 200, dtype=torch.uint8), TypeError, "divide 8-bit images by 255"),
        (torch.rand(20, 40, 3), ValueError, "channels-last"),
        (torch.rand(3, 0, 8), ValueError, "no pixels"),
    ],
    ids=["uint8", "channels-last", "empty"],
)
def test_images_in_another_form_are_refused(image, error, match):
    """8-bit pixels once came out as 0–255 intensities, a channels-last image as a (40, 100, 6) "upscale"."""
    with pytest.raises(error, match=match):
        TiledUpscaler(nn.Identity(), 1, 0, tile=16, overlap=2)(image)


def test_a_model_of_another_scale_is_named():
    """An upscaler told ×4 for a ×2 model once failed in the blend with a bare tensor-size error."""
    with pytest.raises(ValueError, match=r"does not upscale ×4 .*the scale it was exported with"):
        TiledUpscaler(LIGHT_X2, 4, 10, tile=16, overlap=4)(torch.rand(3, 20, 20))


def test_frames_of_one_size_reuse_the_tiling_geometry(monkeypatch):
    """A video's frames share their plan, blend weights and weight sums: built once (not per frame), rebuilt for
    another size, and the result is the one a fresh upscaler gives."""
    built = []
    weights = tiling.axis_weights
    monkeypatch.setattr(tiling, "axis_weights", lambda *a, **k: built.append(1) or weights(*a, **k))

    def model(tiles):
        return F.interpolate(tiles, scale_factor=2, mode="bilinear")

    upscaler = TiledUpscaler(model, 2, 2, tile=24, overlap=4)
    frames = [torch.rand(3, 30, 50) for _ in range(3)]
    outputs = [upscaler(frames[0])]
    per_geometry = len(built)
    outputs += [upscaler(frame) for frame in frames[1:]]
    assert per_geometry > 0 and len(built) == per_geometry  # the second and third frames built nothing
    upscaler(torch.rand(3, 20, 50))
    assert len(built) > per_geometry  # another size: its own geometry
    for frame, out in zip(frames, outputs, strict=True):
        torch.testing.assert_close(out, TiledUpscaler(model, 2, 2, tile=24, overlap=4)(frame), rtol=0, atol=0)
