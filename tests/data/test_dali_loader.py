"""DALI loaders against the torch loaders: same batches, exact resume, shards that partition epochs (CPU pipelines)."""

import logging

import pytest
import torch

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")

from fastgan.data.color_jitter import color_twist, jitter_factors  # noqa: E402
from fastgan.data.dali_loader import DALIImageLoader, DALIPatchLoader  # noqa: E402
from fastgan.data.image_set import ImageSet  # noqa: E402
from fastgan.data.loader import InMemoryLoader  # noqa: E402
from fastgan.data.sources import embedded_image_set  # noqa: E402
from fastgan.data.sr_loader import SRPatchLoader, degrade  # noqa: E402

JITTER = (0.3, 0.4, 0.5)  # (brightness, contrast, saturation) amplitudes


def _unique_set(n: int) -> ImageSet:
    """n random 8×8 images, distinct with overwhelming probability, labels 0..4."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (n, 3, 8, 8), dtype=torch.uint8, generator=g)
    return ImageSet(images, torch.arange(n) % 5, tuple("abcde"), "unique")


def _pixels(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] floats back to their uint8 values."""
    return images.add(1).mul(127.5).round().to(torch.uint8)


def _photos(sizes=((40, 52), (64, 48), (33, 70))) -> list[tuple[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    smooth = [torch.rand(3, h // 4 + 1, w // 4 + 1, generator=g) for h, w in sizes]
    return [
        (f"p{i}", torch.nn.functional.interpolate(s[None], size=hw, mode="bilinear")[0].mul(255).to(torch.uint8))
        for i, (s, hw) in enumerate(zip(smooth, sizes, strict=True))
    ]


def test_image_batches_equal_the_torch_loaders_across_epochs_and_batch_sizes():
    image_set = embedded_image_set(40, seed=0)
    torch_loader, dali_loader = InMemoryLoader(image_set, seed=3), DALIImageLoader(image_set, seed=3)
    for batch_size in (16, 16, 16, 5, 30, 16):  # epochs end inside batches; sizes other than the first are cut
        (x, y), (u, v) = torch_loader.next_batch(batch_size), dali_loader.next_batch(batch_size)
        assert u.shape == (batch_size, 3, 32, 32) and u.dtype == torch.float32 and v.dtype == torch.int64
        assert -1 <= u.min() and u.max() <= 1
        assert torch.equal(v, y)
        assert torch.equal(_pixels(u), _pixels(x))  # same images and flips
        assert (u - x).abs().max() <= 1e-6  # (x - 127.5) / 127.5 vs x / 127.5 - 1: float rounding only
    assert dali_loader.epoch == torch_loader.epoch == 2 and dali_loader.position == torch_loader.position == 19


def test_image_loader_resumes_exactly_despite_prefetching():
    image_set = embedded_image_set(30, seed=0)
    straight = DALIImageLoader(image_set, seed=2)
    expected = [straight.next_batch(8) for _ in range(7)]
    interrupted = DALIImageLoader(image_set, seed=2, prefetch=3)
    for _ in range(3):
        interrupted.next_batch(8)  # DALI has prepared batches beyond these
    state = interrupted.state_dict()
    assert state["loader"] == "dali" and (state["epoch"], state["position"]) == (0, 24)
    resumed = DALIImageLoader(image_set, seed=2)
    resumed.load_state_dict(state)
    interrupted.load_state_dict(state)  # also drops what the running pipeline had prefetched
    for x, y in expected[3:]:
        for loader in (resumed, interrupted):
            u, v = loader.next_batch(8)
            assert torch.equal(u, x) and torch.equal(v, y)


def test_shards_partition_every_epoch():
    image_set = _unique_set(25)
    everything = sorted(image.numpy().tobytes() for image in image_set.images)
    shards = [DALIImageLoader(image_set, seed=4, flip=False, shard_id=s, num_shards=2) for s in range(2)]
    sizes = [shard.end - shard.start for shard in shards]
    assert sizes == [12, 13]
    for epoch in range(2):
        seen = []
        for shard, size in zip(shards, sizes, strict=True):
            images, _ = shard.next_batch(size)
            seen += [image.numpy().tobytes() for image in _pixels(images)]
            assert (shard.epoch, shard.position) == (epoch + 1, 0)
        assert sorted(seen) == everything  # no sample dropped, none repeated


def test_patch_batches_match_the_torch_loaders():
    """The same HR crops, and LR made from them by `degrade`, the operator LAG's conditioning and the SR evaluation
    use (DALI's own bicubic resampling differed by about one 8-bit level)."""
    photos = _photos()
    for method, scale in (("bicubic", 4), ("area", 4), ("area", 3)):
        torch_loader = SRPatchLoader(photos, crop=24, scale=scale, seed=5, method=method)
        dali_loader = DALIPatchLoader(photos, crop=24, scale=scale, seed=5, method=method)
        for batch_size in (6, 6, 3):  # another batch size restarts the pipeline at the same position
            (lr, hr), (lr_d, hr_d) = torch_loader.next_batch(batch_size), dali_loader.next_batch(batch_size)
            side = 24 // scale
            assert hr_d.shape == (batch_size, 3, 24, 24) and lr_d.shape == (batch_size, 3, side, side)
            assert hr_d.dtype == lr_d.dtype == torch.float32 and 0 <= lr_d.min() and lr_d.max() <= 1
            assert (hr_d - hr).abs().max() <= 1e-6  # the same crops, flips and 90° turns
            assert torch.equal(lr_d, degrade(hr_d, scale, method)), method
            assert (lr_d - lr).abs().max() <= 1 / 255 + 1e-6, method  # at most a rounding tie


def test_patch_loader_resumes_exactly_and_shards_split_the_batches(caplog):
    photos = _photos()
    straight = DALIPatchLoader(photos, crop=16, scale=2, seed=6, augment=False)
    expected = [straight.next_batch(4) for _ in range(6)]
    interrupted = DALIPatchLoader(photos, crop=16, scale=2, seed=6, augment=False)
    interrupted.next_batch(4), interrupted.next_batch(4)
    resumed = DALIPatchLoader(photos, crop=16, scale=2, seed=6, augment=False)
    older = {key: value for key, value in interrupted.state_dict().items() if key != "lr"}  # before `degrade`
    with caplog.at_level("WARNING", logger="fastgan.data.dali_loader"):
        resumed.load_state_dict(older)
    assert "DALI's own resampler" in caplog.text
    caplog.clear()
    resumed.load_state_dict(interrupted.state_dict())
    assert not caplog.text
    for lr, hr in expected[2:]:
        lr_r, hr_r = resumed.next_batch(4)
        assert torch.equal(lr_r, lr) and torch.equal(hr_r, hr)
    shards = [DALIPatchLoader(photos, 16, 2, seed=6, augment=False, shard_id=s, num_shards=2) for s in range(2)]
    for k in range(3):
        for s, shard in enumerate(shards):
            assert torch.equal(shard.next_batch(4)[1], expected[2 * k + s][1])


def test_jittered_image_batches_match_the_torch_loaders():
    image_set = embedded_image_set(40, seed=0)
    torch_loader = InMemoryLoader(image_set, seed=3, color_jitter=JITTER)
    dali_loader = DALIImageLoader(image_set, seed=3, color_jitter=JITTER)
    plain = InMemoryLoader(image_set, seed=3)
    for batch_size in (16, 16, 16, 5, 30, 16):  # epochs end inside batches
        (x, y), (u, v), (p, q) = (loader.next_batch(batch_size) for loader in (torch_loader, dali_loader, plain))
        assert torch.equal(v, y) and torch.equal(q, y)  # jitter leaves the order alone
        assert (_pixels(u).int() - _pixels(x).int()).abs().max() <= 1  # fn.color_twist vs color_twist: ties at most
        assert -1 <= u.min() and u.max() <= 1 and not torch.equal(_pixels(u), _pixels(p))


def test_jittered_patch_batches_match_the_torch_loaders():
    photos = _photos()
    for method, lr_error in (("bicubic", 0.1 / 255), ("area", 0.1 / 255)):
        torch_loader = SRPatchLoader(photos, crop=32, scale=4, seed=5, method=method, color_jitter=JITTER)
        dali_loader = DALIPatchLoader(photos, crop=32, scale=4, seed=5, method=method, color_jitter=JITTER)
        plain = SRPatchLoader(photos, crop=32, scale=4, seed=5, method=method)
        for k, batch_size in enumerate((6, 6, 3)):
            (lr, hr), (lr_d, hr_d) = torch_loader.next_batch(batch_size), dali_loader.next_batch(batch_size)
            assert (hr_d - hr).abs().max() <= 1 / 255 + 1e-6  # the same crops, turns and factors; ties at most
            assert (lr_d - lr).abs().mean() <= lr_error, method  # LR from the jittered HR on both sides
            hr_plain = plain.next_batch(batch_size)[1].mul(255).round().to(torch.uint8)
            factors = jitter_factors(5, k, batch_size, JITTER)
            assert (hr_d.mul(255) - color_twist(hr_plain, factors).float()).abs().max() <= 1 + 1e-3


def test_jittered_dali_loaders_resume_exactly_mid_epoch():
    image_set = embedded_image_set(30, seed=0)
    straight = DALIImageLoader(image_set, seed=2, color_jitter=JITTER)
    expected = [straight.next_batch(7) for _ in range(8)]  # epochs end inside batches
    interrupted = DALIImageLoader(image_set, seed=2, color_jitter=JITTER, prefetch=3)
    for _ in range(3):
        interrupted.next_batch(7)
    resumed = DALIImageLoader(image_set, seed=2, color_jitter=JITTER)
    resumed.load_state_dict(interrupted.state_dict())
    assert (resumed.epoch, resumed.position) == (0, 21)
    for x, y in expected[3:]:
        u, v = resumed.next_batch(7)
        assert torch.equal(u, x) and torch.equal(v, y)
    photos = _photos()
    straight = DALIPatchLoader(photos, crop=16, scale=2, seed=6, color_jitter=JITTER)
    expected = [straight.next_batch(4) for _ in range(5)]
    interrupted = DALIPatchLoader(photos, crop=16, scale=2, seed=6, color_jitter=JITTER)
    interrupted.next_batch(4), interrupted.next_batch(4)
    resumed = DALIPatchLoader(photos, crop=16, scale=2, seed=6, color_jitter=JITTER)
    resumed.load_state_dict(interrupted.state_dict())
    for lr, hr in expected[2:]:
        lr_r, hr_r = resumed.next_batch(4)
        assert torch.equal(lr_r, lr) and torch.equal(hr_r, hr)


def test_states_of_other_loaders_or_data_are_refused():
    image_set = embedded_image_set(20, seed=0)
    with pytest.raises(ValueError, match="torch loader.*dali loader"):
        DALIImageLoader(image_set, seed=0).load_state_dict(InMemoryLoader(image_set, seed=0).state_dict())
    with pytest.raises(ValueError, match="dali loader.*torch loader"):
        InMemoryLoader(image_set, seed=0).load_state_dict(DALIImageLoader(image_set, seed=0).state_dict())
    shard = DALIImageLoader(image_set, seed=0, shard_id=1, num_shards=2).state_dict()
    with pytest.raises(ValueError, match="same data, seed and shards"):
        DALIImageLoader(image_set, seed=0).load_state_dict(shard)
    photos = _photos()
    with pytest.raises(ValueError, match="dali loader.*torch loader"):
        SRPatchLoader(photos, 16, 2, seed=0).load_state_dict(DALIPatchLoader(photos, 16, 2, seed=0).state_dict())
    with pytest.raises(ValueError, match="shard_id"):
        DALIImageLoader(image_set, seed=0, shard_id=2, num_shards=2)


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU: the pipelines then run on it")
def test_gpu_pipelines_deliver_the_cpu_batches_on_the_gpu():
    image_set = embedded_image_set(40, seed=0)
    x, y = DALIImageLoader(image_set, seed=1).next_batch(16)
    u, v = DALIImageLoader(image_set, seed=1, device="cuda").next_batch(16)
    assert u.is_cuda and v.is_cuda and torch.equal(v.cpu(), y) and (u.cpu() - x).abs().max() <= 1e-6
    photos = _photos()
    lr, hr = DALIPatchLoader(photos, 32, 4, seed=2).next_batch(8)
    lr_g, hr_g = DALIPatchLoader(photos, 32, 4, seed=2, device="cuda").next_batch(8)
    assert hr_g.is_cuda and (hr_g.cpu() - hr).abs().max() <= 1e-6 and (lr_g.cpu() - lr).abs().max() <= 1 / 255 + 1e-6
    lr, _ = DALIPatchLoader(photos, 32, 4, seed=2, method="area").next_batch(8)
    lr_g, _ = DALIPatchLoader(photos, 32, 4, seed=2, method="area", device="cuda").next_batch(8)
    assert lr_g.is_cuda and (lr_g.cpu() - lr).abs().max() <= 1 / 255 + 1e-6  # `degrade` on each device


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs an NVIDIA GPU: the pipelines then run on it")
def test_gpu_pipelines_jitter_as_the_cpu_ones():
    image_set = embedded_image_set(40, seed=0)
    x, _ = DALIImageLoader(image_set, seed=1, color_jitter=JITTER).next_batch(16)
    u, _ = DALIImageLoader(image_set, seed=1, device="cuda", color_jitter=JITTER).next_batch(16)
    assert u.is_cuda and (_pixels(u.cpu()).int() - _pixels(x).int()).abs().max() <= 1  # ties may round otherwise
    photos = _photos()
    lr, hr = DALIPatchLoader(photos, 32, 4, seed=2, color_jitter=JITTER).next_batch(8)
    lr_g, hr_g = DALIPatchLoader(photos, 32, 4, seed=2, device="cuda", color_jitter=JITTER).next_batch(8)
    assert hr_g.is_cuda and (hr_g.cpu() - hr).abs().max() <= 1 / 255 + 1e-6
    assert (lr_g.cpu() - lr).abs().max() <= 3 / 255


def test_a_position_resumed_on_another_pipeline_device_warns(caplog):
    loader = DALIImageLoader(embedded_image_set(40, seed=0), seed=1)
    loader.next_batch(8)
    state = loader.state_dict()
    assert state["pipeline"] == "cpu"
    with caplog.at_level(logging.WARNING):
        DALIImageLoader(embedded_image_set(40, seed=0), seed=1).load_state_dict(state)
    assert not caplog.records
    with caplog.at_level(logging.WARNING):
        resumed = DALIPatchLoader(_photos(), 32, 4, seed=2)
        resumed.load_state_dict({**resumed.state_dict(), "batches": 3, "pipeline": "gpu"})
    assert "GPU pipeline" in caplog.text and resumed.batches == 3
