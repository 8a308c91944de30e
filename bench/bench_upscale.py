"""Tiled upscaling: tiles/s and megapixels/s per backend and tile size, and what tiling + blending costs against one
whole-image pass. The model is SRResNet ×2's light real-time preset (32 channels, 4 blocks, bicubic skip); random
weights, since speed does not depend on them. On CUDA also the 1080p → 4K frame time per backend (torch fp32, torch
fp16, TensorRT fp16 when TensorRT is installed)."""

from __future__ import annotations

import copy

import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from bench.common import DEVICE, ON_CUDA, record, run_interleaved, run_timed
from fastgan.export.onnx_export import export_upscaler
from fastgan.models.srgan import SRResNet
from fastgan.upscale.backends import OnnxRuntimeTiles, TorchTiles
from fastgan.upscale.receptive_field import receptive_radius
from fastgan.upscale.tiling import TiledUpscaler, TilePlan

SCALE = 2
#: (tile side, tiles per batch): about a quarter megapixel of input per call.
TILES = [(64, 16), (128, 4), (256, 1)]
SMOKE = pytest.param((16, 2), marks=pytest.mark.smoke, id="smoke")
OVERLAP, IMAGE_SIDE = 16, 512
#: Tile sides for the 512² image: 3 × 3 tiles of 203² (1.25× the padded image's pixels) and 2 × 2 of 288² (1.12×).
OVERHEAD_TILES = (256, 512)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return SRResNet(SCALE, channels=32, blocks=4, batch_norm=False, bicubic_skip=True).eval()


@pytest.fixture(scope="module")
def radius(model) -> int:
    """The model's receptive radius, measured once (2.4 s of float64 autograd on a 2-core CPU)."""
    return receptive_radius(model, SCALE)


@pytest.fixture(scope="module")
def backends(model, tmp_path_factory):
    """name -> tile model: torch (fp32 on the bench device, on its own copy of the model: TorchTiles casts the model
    it is given) and onnxruntime (fp32, its best provider), but not on a GPU machine whose onnxruntime has no CUDA
    provider (its CPU figures come from the CPU bench, in a fraction of the GPU's time)."""
    tiles = {"torch": TorchTiles(copy.deepcopy(model), DEVICE, "fp32", fused=ON_CUDA)}
    if not ON_CUDA or "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        path = export_upscaler(model, tmp_path_factory.mktemp("bench_upscale") / "x2.onnx", SCALE, 0)
        tiles["onnxruntime"] = OnnxRuntimeTiles(path)
    return tiles


def _tiles(backends: dict, name: str):
    if name not in backends:
        pytest.skip("onnxruntime has no CUDA provider on this GPU machine: its CPU cases belong to the CPU bench")
    return backends[name]


def _runs_on(tile_model) -> str:
    """Where a backend computes: the torch device, or onnxruntime's first execution provider."""
    if isinstance(tile_model, OnnxRuntimeTiles):
        return tile_model.session.get_providers()[0]
    return str(tile_model.device)


def _info(backend: str, case: str, mode: str, tiles: int, pixels: int, where: str) -> dict:
    return {
        "op": "upscale",
        "runs_on": where,
        "case": case,
        "mode": mode,
        "provider": backend,
        "tiles": tiles,
        "input_pixels": pixels,
        "scale": SCALE,
    }


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("tiling", [*(pytest.param(t, id=f"tile{t[0]}") for t in TILES), SMOKE])
def test_tile_throughput(benchmark, backends, backend, tiling):
    side, count = tiling
    benchmark.group = f"upscale tiles {side}x{side}"
    tile_model = _tiles(backends, backend)
    tiles = torch.rand(count, 3, side, side, device=tile_model.device)
    seconds = run_timed(benchmark, lambda: tile_model(tiles))
    info = _info(backend, f"{side}x{side} tiles ×{count}", "tiles", count, count * side * side, _runs_on(tile_model))
    record(benchmark, info, seconds)


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
@pytest.mark.parametrize("mode", ["whole", "tiled", "blend-only", "interleaved"])
@pytest.mark.parametrize(
    "size",
    [
        *(pytest.param((IMAGE_SIDE, tile), id=f"{IMAGE_SIDE}px-tile{tile}") for tile in OVERHEAD_TILES),
        pytest.param((48, 40), marks=pytest.mark.smoke, id="smoke"),
    ],
)
def test_tiling_overhead(benchmark, radius, backends, backend, mode, size):
    """One image through the tiler (tiles ≤ T, overlap 16, cosine feather) vs the same call with one tile; the two
    alternated in one case ("interleaved": their medians in extra_info as ``whole_ms``, ``tiled_ms``); and the
    tiler's own cost (cutting, weighting, accumulating) with a nearest-neighbour stand-in for the model."""
    side, tile = size
    benchmark.group = f"upscale {side}x{side} image, overlap {OVERLAP}"
    tile_model = _tiles(backends, backend)
    tiles = tile_model if mode != "blend-only" else lambda t: F.interpolate(t, scale_factor=SCALE)
    upscaler = TiledUpscaler(
        tiles,
        SCALE,
        radius,
        tile=tile,
        overlap=OVERLAP,
        batch=8,
        device=tile_model.device,
    )
    image = torch.rand(3, side, side, device=tile_model.device)
    padded = side + 2 * OVERLAP  # the reflect border the tiler adds
    case = f"{side}x{side} image, tile {tile}, overlap {OVERLAP}"
    tiles_run = len(TilePlan.for_image(padded, padded, tile, OVERLAP))
    if mode == "interleaved":
        steps = {"whole": lambda: upscaler(image, tile=padded), "tiled": lambda: upscaler(image, tile=tile)}
        seconds, medians = run_interleaved(benchmark, steps)
        info = _info(backend, case, mode, tiles_run + 1, 2 * side * side, _runs_on(tile_model))  # both passes
        record(benchmark, info | {f"{name}_ms": ms for name, ms in medians.items()}, seconds)
        return
    used_tile = padded if mode == "whole" else tile
    seconds = run_timed(benchmark, lambda: upscaler(image, tile=used_tile))
    info = _info(backend, case, mode, 1 if mode == "whole" else tiles_run, side * side, _runs_on(tile_model))
    record(benchmark, info, seconds)


@pytest.mark.skipif(not ON_CUDA, reason="1080p → 4K frame times need a CUDA device")
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_1080p_to_4k_frame_time(benchmark, model, radius, precision):
    """One 1920×1080 frame → 3840×2160 by the torch backend, tiled 512 with the receptive radius as overlap."""
    tiles = TorchTiles(copy.deepcopy(model), DEVICE, precision, fused=True)
    upscaler = TiledUpscaler(tiles, SCALE, radius, tile=512, overlap=radius, batch=8, device=DEVICE)
    frame = torch.rand(3, 1080, 1920, device=DEVICE)
    benchmark.group = "upscale 1080p → 4K frame"
    seconds = run_timed(benchmark, lambda: upscaler(frame))
    record(benchmark, _info(f"torch {precision}", "1080p→4K", "frame", 1, 1920 * 1080, str(DEVICE)), seconds)


@pytest.mark.skipif(not ON_CUDA, reason="TensorRT engines need a CUDA device")
def test_1080p_to_4k_frame_time_tensorrt(benchmark, model, radius, tmp_path):
    pytest.importorskip("tensorrt", reason="TensorRT is not installed (pip install tensorrt from NVIDIA's index)")
    from fastgan.upscale.backends import TensorRTTiles

    path = export_upscaler(model, tmp_path / "x2-fp16.onnx", SCALE, 0, precision="fp16")
    tiles = TensorRTTiles(path, "fp16", tile=512, batch=8, cache_dir=tmp_path / "engines")
    upscaler = TiledUpscaler(tiles, SCALE, radius, tile=512, overlap=radius, batch=8, device=DEVICE)
    frame = torch.rand(3, 1080, 1920, device=DEVICE)
    benchmark.group = "upscale 1080p → 4K frame"
    seconds = run_timed(benchmark, lambda: upscaler(frame))
    record(benchmark, _info("tensorrt fp16", "1080p→4K", "frame", 1, 1920 * 1080, str(DEVICE)), seconds)
