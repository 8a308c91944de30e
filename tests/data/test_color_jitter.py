"""Colour jitter: the factors' range and stream, `color_twist` against DALI's formula, and the torch loaders with it."""

import numpy as np
import pytest
import torch

from fastgan.data.color_jitter import RGB_TO_YIQ, check_amplitudes, color_twist, jitter_factors
from fastgan.data.factory import dali_available
from fastgan.data.loader import InMemoryLoader, epoch_plan
from fastgan.data.sources import embedded_image_set
from fastgan.data.sr_loader import SRPatchLoader, degrade

JITTER = (0.3, 0.4, 0.5)


def _random_images(n: int, h: int = 24, w: int = 20) -> torch.Tensor:
    return torch.randint(0, 256, (n, 3, h, w), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def _photos():
    g = torch.Generator().manual_seed(1)
    return [(f"p{i}", torch.randint(0, 256, (3, h, w), dtype=torch.uint8, generator=g))
            for i, (h, w) in enumerate(((40, 52), (64, 48), (33, 70)))]  # fmt: skip


def test_factors_lie_within_the_amplitudes_vary_and_come_from_their_own_stream():
    factors = jitter_factors(seed=3, key=0, count=2000, amplitudes=(0.2, 0.4, 0.0))
    assert factors.shape == (2000, 3) and factors.dtype == torch.float32
    for column, amplitude in ((0, 0.2), (1, 0.4)):
        values = factors[:, column]
        assert 1 - amplitude <= values.min() < 1 - 0.9 * amplitude  # within [1 - a, 1 + a], spread across it
        assert 1 + 0.9 * amplitude < values.max() <= 1 + amplitude
    assert torch.equal(factors[:, 2], torch.ones(2000))  # amplitude 0: factor exactly 1
    assert torch.equal(factors, jitter_factors(3, 0, 2000, (0.2, 0.4, 0.0)))
    assert not torch.equal(factors, jitter_factors(3, 1, 2000, (0.2, 0.4, 0.0)))
    assert not torch.equal(factors, jitter_factors(4, 0, 2000, (0.2, 0.4, 0.0)))
    with pytest.raises(ValueError, match=r"three amplitudes.*each in \[0, 1\)"):
        check_amplitudes((0.1, -0.2, 0.1))
    with pytest.raises(ValueError, match="three amplitudes"):
        check_amplitudes((0.1, 0.2))


def test_color_twist_follows_dalis_formula():
    images = _random_images(4)
    assert torch.equal(color_twist(images, torch.ones(4, 3)), images)
    # contrast 0: every pixel becomes the contrast centre 128 (uint8), times the brightness, rounded half up
    flat = color_twist(images, torch.tensor([[1.0, 0.0, 1.0], [0.5, 0.0, 1.0], [1.5, 0.0, 0.3], [0.0, 1.0, 1.0]]))
    assert flat[0].eq(128).all() and flat[1].eq(64).all() and flat[2].eq(192).all() and flat[3].eq(0).all()
    # contrast 0.5 maps v to 64 + v / 2: halves round up; brightness 1.9 saturates at 255
    ramp = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, 3, 16, 16).contiguous()
    out = color_twist(ramp, torch.tensor([[1.0, 0.5, 1.0], [1.9, 1.0, 1.0]]))
    assert torch.equal(out[0, 0].flatten(), torch.floor(64 + torch.arange(256) / 2 + 0.5).to(torch.uint8))
    assert out[1, 0].flatten()[-1] == 255 and out[1, 0].flatten()[134] == 255 and out[1, 0].flatten()[134 // 2] == 127
    # saturation s: s · rgb + (1 − s) · k · luma, k = YIQ⁻¹'s first column
    k = torch.linalg.inv(RGB_TO_YIQ)[:, 0]
    luma = torch.einsum("c,nchw->nhw", RGB_TO_YIQ[0], images.double())
    expected = 0.4 * images.double() + 0.6 * k.view(1, 3, 1, 1) * luma[:, None]
    out = color_twist(images, torch.tensor([[1.0, 1.0, 0.4]]).expand(4, 3))
    assert (out.double() - expected.add(0.5).floor().clamp(0, 255)).abs().max() <= 1  # float32 vs float64 near a tie


@pytest.mark.skipif(not dali_available(), reason="NVIDIA DALI is not installed")
def test_color_twist_matches_dalis_operator():
    import nvidia.dali.fn as fn
    import nvidia.dali.types as types
    from nvidia.dali import pipeline_def

    images = _random_images(32, 64, 48)
    factors = jitter_factors(0, 0, 32, (0.9, 0.9, 0.9))
    hwc = images.permute(0, 2, 3, 1).contiguous().numpy()

    @pipeline_def(batch_size=32, num_threads=1, device_id=None)
    def twist():
        x, f = fn.external_source(
            source=lambda: (hwc, factors.numpy()), num_outputs=2, batch=True, layout=["HWC", ""],
            dtype=[types.UINT8, types.FLOAT],
        )  # fmt: skip
        return fn.color_twist(x, brightness=f[0], contrast=f[1], saturation=f[2])

    pipeline = twist()
    pipeline.build()
    (out,) = pipeline.run()
    dali = torch.from_numpy(np.stack([np.array(out[i]) for i in range(32)])).permute(0, 3, 1, 2)
    error = (dali.int() - color_twist(images, factors).int()).abs()
    assert error.max() <= 1 and error.count_nonzero() <= 20  # ties in float32 (2 of 294,912 values when written)


def test_image_loader_jitters_its_unchanged_batches():
    image_set = embedded_image_set(30, seed=0)
    plain, jittered = InMemoryLoader(image_set, seed=2), InMemoryLoader(image_set, seed=2, color_jitter=JITTER)
    order, flips = epoch_plan(2, 0, 30, flip=True)
    reference = torch.where(flips.view(-1, 1, 1, 1), image_set.images[order].flip(-1), image_set.images[order])
    factors = torch.cat([jitter_factors(2, epoch, 30, JITTER) for epoch in (0, 1)])
    for start in (0, 12, 24):  # the last batch runs into epoch 1
        (x, y), (u, v) = plain.next_batch(12), jittered.next_batch(12)
        assert torch.equal(y, v)  # the same order
        if start == 0:  # jitter off: the batches of before (order and flips of epoch_plan, nothing else)
            assert torch.equal(x, reference[:12].float().div(127.5).sub(1))
        pixels = x.add(1).mul(127.5).round().to(torch.uint8)
        assert torch.equal(u, color_twist(pixels, factors[start : start + 12]).float().div(127.5).sub(1))
        assert not torch.equal(u, x)


def test_patch_loader_jitters_hr_before_degrading_it():
    plain = SRPatchLoader(_photos(), crop=16, scale=2, seed=5)
    jittered = SRPatchLoader(_photos(), crop=16, scale=2, seed=5, color_jitter=JITTER)
    for k in range(3):
        (_, hr), (lr_j, hr_j) = plain.next_batch(6), jittered.next_batch(6)
        pixels = hr.mul(255).round().to(torch.uint8)
        assert torch.equal(hr_j, color_twist(pixels, jitter_factors(5, k, 6, JITTER)).float().div(255))
        assert torch.equal(lr_j, degrade(hr_j, 2)) and not torch.equal(hr_j, hr)


def test_jittered_torch_loaders_resume_exactly_mid_epoch():
    image_set = embedded_image_set(30, seed=0)
    straight = InMemoryLoader(image_set, seed=2, color_jitter=JITTER)
    expected = [straight.next_batch(7) for _ in range(8)]  # 56 samples: epochs end inside batches
    interrupted = InMemoryLoader(image_set, seed=2, color_jitter=JITTER)
    for _ in range(3):
        interrupted.next_batch(7)
    resumed = InMemoryLoader(image_set, seed=2, color_jitter=JITTER)
    resumed.load_state_dict(interrupted.state_dict())
    assert (resumed.epoch, resumed.position) == (0, 21)
    for x, y in expected[3:]:
        u, v = resumed.next_batch(7)
        assert torch.equal(u, x) and torch.equal(v, y)
    patches = SRPatchLoader(_photos(), crop=16, scale=2, seed=5, color_jitter=JITTER)
    expected = [patches.next_batch(4) for _ in range(4)]
    resumed = SRPatchLoader(_photos(), crop=16, scale=2, seed=5, color_jitter=JITTER)
    resumed.load_state_dict({"batches": 2, "seed": 5, "size": 3})
    for lr, hr in expected[2:]:
        lr_r, hr_r = resumed.next_batch(4)
        assert torch.equal(lr_r, lr) and torch.equal(hr_r, hr)
