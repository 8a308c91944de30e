"""Data loading, DALI vs the torch loaders, on the same files: images/s and the share of a training step spent
waiting for data.

Two folders are written to a temporary directory (no downloads): 32×32 PNGs of the embedded set in class folders
(HRGAN's folder source) and 256×256 JPEG crops of scikit-image's bundled photographs (an upscaler folder). Measured:

- decode: the folder read into memory (`dali_folder_image_set` / `dali_folder_images` vs the PIL readers), images/s;
- batches: training batches from those images (`DALIImageLoader` vs `InMemoryLoader`, 32×32 with flips;
  `DALIPatchLoader` vs `SRPatchLoader`, 64×64 crops with flips and turns and their ×2 bicubic LR), images/s;
- train step: iterations of the embedded-64 preset (HRGAN) and of the light SRResNet ×2 preset on the JPEG folder,
  it/s and the fraction of each iteration spent in `next_batch` (the `data` phase).

On CUDA the DALI pipelines run on the GPU; on a CPU with device_id=None.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from PIL import Image

from bench.common import BATCH, DEVICE, ON_CUDA, WARMUP_ROUNDS, record, run_timed
from fastgan.data.factory import class_folder_image_set, dali_available, image_folder, image_loader, patch_loader
from fastgan.data.procedural import CLASS_NAMES
from fastgan.data.sources import embedded_image_set, folder_image_set
from fastgan.data.sr_sources import folder_images, skimage_photos
from fastgan.train.config import load_config, merge
from fastgan.train.hrgan_step import HRGANFamily
from fastgan.train.sr_step import SRFamily

PROVIDERS = ["torch", "dali"]
#: files per folder, batches per timed round, training iterations per timed round
FULL = {"png": 2000, "jpeg": 200, "batches": 50, "steps": 10}
SMOKE = {"png": 20, "jpeg": 4, "batches": 2, "steps": 1}
SIZES = [pytest.param(FULL, id="full"), pytest.param(SMOKE, marks=pytest.mark.smoke, id="smoke")]
SR_CROP, SR_SCALE, SR_BATCH = 64, 2, 16  # the light ×2 preset's crops and batch


def _needs(provider: str) -> None:
    if provider == "dali" and not dali_available():
        pytest.skip("NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """size -> (32×32 PNG class folder, 256×256 JPEG folder), each size's written on first use."""
    made = {}

    def folders_of(size: dict):
        name = "smoke" if size is SMOKE else "full"
        if name not in made:
            made[name] = _write_folders(tmp_path_factory.mktemp(f"data-{name}"), size)
        return made[name]

    return folders_of


def _write_folders(root, size: dict):
    image_set = embedded_image_set(size["png"], seed=0)
    for i, (image, label) in enumerate(zip(image_set.images, image_set.labels, strict=True)):
        path = root / "png" / CLASS_NAMES[label] / f"{i:05d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image.permute(1, 2, 0).numpy()).save(path)
    photos = skimage_photos()
    rng = np.random.default_rng(0)
    (root / "jpeg").mkdir()
    for i in range(size["jpeg"]):
        _, photo = photos[i % len(photos)]
        top, left = (int(rng.integers(0, extent - 256 + 1)) for extent in photo.shape[-2:])
        crop = photo[:, top : top + 256, left : left + 256].permute(1, 2, 0).numpy()
        Image.fromarray(crop).save(root / "jpeg" / f"{i:04d}.jpg", quality=90)
    return root / "png", root / "jpeg"


def _info(provider: str, case: str, mode: str, items: int, unit: str = "images") -> dict:
    return {"op": "data", "case": case, "mode": mode, "provider": provider, "items": items, "unit": unit}


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("kind", ["png", "jpeg"])
@pytest.mark.parametrize("size", SIZES)
def test_decode_folder(benchmark, folders, provider, kind, size):
    """A folder read into memory: 32×32 PNGs centre-cropped and resized as HRGAN's class folders are, 256×256 JPEGs
    at their own size as an upscaler's are."""
    _needs(provider)
    root = folders(size)[kind == "jpeg"]
    if kind == "png":
        name, read = "32×32 PNG", lambda: class_folder_image_set(provider, root, DEVICE)
    else:
        name, read = "256×256 JPEG", lambda: image_folder(provider, root, DEVICE)
    benchmark.group = f"decode {name} folder"
    seconds = run_timed(benchmark, read)
    record(benchmark, _info(provider, f"{name} folder ({size[kind]} files)", "decode", size[kind]), seconds)


def _timed_batches(benchmark, loader, batches: int, batch_size: int) -> float | None:
    def run():
        for _ in range(batches):
            loader.next_batch(batch_size)
        if ON_CUDA:
            torch.cuda.synchronize(DEVICE)

    return run_timed(benchmark, run)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
def test_hrgan_batches(benchmark, folders, provider, size):
    """Batches of the PNG folder's 32×32 images, flipped and normalised to [-1, 1]."""
    _needs(provider)
    image_set = folder_image_set(folders(size)[0])
    benchmark.group = "HRGAN batches"
    seconds = _timed_batches(benchmark, image_loader(provider, image_set, 0, True, DEVICE), size["batches"], BATCH)
    case = f"32×32 PNG folder ({len(image_set)} images), batch {BATCH}"
    record(benchmark, _info(provider, case, "batches", size["batches"] * BATCH), seconds)


def _sr_loader(provider: str, images):
    return patch_loader(provider, images, SR_CROP, SR_SCALE, 0, True, "bicubic", DEVICE)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
def test_sr_batches(benchmark, folders, provider, size):
    """(LR, HR) batches of 64×64 crops of the JPEG folder's images, flipped, turned and bicubic-down-scaled ×2."""
    _needs(provider)
    images = folder_images(folders(size)[1])
    benchmark.group = "SR batches"
    seconds = _timed_batches(benchmark, _sr_loader(provider, images), size["batches"], SR_BATCH)
    case = f"256×256 JPEG folder ({len(images)} images), {SR_CROP}×{SR_CROP} crops ×{SR_SCALE}, batch {SR_BATCH}"
    record(benchmark, _info(provider, case, "batches", size["batches"] * SR_BATCH), seconds)


class _DataTimer:
    """A loader that adds the seconds its `next_batch` calls take (the `data` phase) to `seconds`."""

    def __init__(self, loader):
        self.loader, self.seconds = loader, 0.0

    def next_batch(self, batch_size: int):
        start = time.perf_counter()
        batch = self.loader.next_batch(batch_size)
        if ON_CUDA:
            torch.cuda.synchronize(DEVICE)
        self.seconds += time.perf_counter() - start
        return batch


def _train_steps(benchmark, family, loader, steps: int, case: str, provider: str) -> None:
    """Time `steps` iterations per round; record it/s and the data-wait fraction of the timed rounds."""
    timer, rounds = _DataTimer(loader), []

    def run():
        data_before, start = timer.seconds, time.perf_counter()
        for step in range(steps):
            family.train_step(timer, step)
        if ON_CUDA:
            torch.cuda.synchronize(DEVICE)
        rounds.append((timer.seconds - data_before, time.perf_counter() - start))

    seconds = run_timed(benchmark, run)
    info = _info(provider, case, "train step", steps, unit="iterations")
    timed = rounds[WARMUP_ROUNDS:] or rounds  # --benchmark-disable on a CPU runs once, without warm-up
    info["data_wait_fraction"] = sum(d for d, _ in timed) / sum(s for _, s in timed)
    info["rounds"] = len(timed)
    record(benchmark, info, seconds)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
def test_hrgan_train_step_data_wait(benchmark, provider, size, tmp_path):
    """The embedded-64 preset's iteration (D step, G step with L_MS, EMA) on 256 embedded images."""
    _needs(provider)
    tiny = {"model": {"resolution": 32, "g_widths": [16, 16, 16, 16], "d_channels": 16}, "loss": {"lambda_ms": 0.0}}
    smoke = tiny if size is SMOKE else {}
    config = merge(
        merge(load_config("embedded-64"), smoke),
        {
            "data": {"num_images": 256},
            "train": {"device": DEVICE.type, "ema_start": 0},
            "output": {"cache_dir": str(tmp_path / "cache"), "samples_per_class": 1},
        },
    )
    image_set = embedded_image_set(256, seed=0)
    family = HRGANFamily(config, image_set, DEVICE)
    benchmark.group = "train step, data wait"
    case = f"HRGAN embedded-64 preset, batch {config.train.batch_size_d}/{config.train.batch_size_g}"
    _train_steps(benchmark, family, image_loader(provider, image_set, 0, True, DEVICE), size["steps"], case, provider)


@pytest.mark.parametrize("provider", PROVIDERS)
@pytest.mark.parametrize("size", SIZES)
def test_sr_train_step_data_wait(benchmark, folders, provider, size):
    """The light SRResNet ×2 preset's iteration on 64×64 crops of the JPEG folder."""
    _needs(provider)
    smoke = {"sr": {"channels": 8, "blocks": 1}} if size is SMOKE else {}
    config = merge(merge(load_config("srresnet-x2-light"), smoke), {"train": {"device": DEVICE.type}})
    images = folder_images(folders(size)[1])
    family = SRFamily(config, images[:1], DEVICE)
    benchmark.group = "train step, data wait"
    case = f"SRResNet ×2 light preset, 256×256 JPEG folder, batch {SR_BATCH}"
    _train_steps(benchmark, family, _sr_loader(provider, images), size["steps"], case, provider)
