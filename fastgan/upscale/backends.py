"""The three ways to run an upscaler on a batch of tiles, behind one call: (B, 3, t, t') float32 → (B, 3, s·t, s·t')
float32 on the backend's device. `load_upscaler` builds one from a training checkpoint (torch) or an exported ONNX
file (onnxruntime, TensorRT) together with what tiling needs: the scale and the receptive-field radius."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fastgan.export.onnx_export import PRECISIONS, UPSCALER_INPUT, UPSCALER_OUTPUT, onnxruntime_session, read_metadata
from fastgan.ops.backends import backend, fused_backend_for
from fastgan.upscale.receptive_field import receptive_radius
from fastgan.upscale.tiling import TileModel

BACKENDS = ("torch", "onnxruntime", "tensorrt")


class TorchTiles:
    """A torch upscaler in eval mode on `device`, computing in `precision` (fp32, fp16 or bf16); `fused` runs the
    fused ops (Triton kernels on CUDA) instead of their eager references. Takes the model over (moves and casts
    it in place)."""

    def __init__(self, model: nn.Module, device: torch.device, precision: str = "fp32", fused: bool = False):
        if precision not in PRECISIONS:
            raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")
        self.dtype = PRECISIONS[precision]
        self.model = model.to(device, self.dtype).eval()
        self.device = device
        self.ops = fused_backend_for(device) if fused else "torch"

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), backend(self.ops):
            return self.model(tiles.to(self.device, self.dtype)).float()


class OnnxRuntimeTiles:
    """An exported upscaler in onnxruntime on `device` ("auto": its CUDA provider when it has one, else the CPU;
    "cpu"; "cuda[:N]", an error if CUDA cannot start). Tiles go in and come out through host memory."""

    def __init__(self, path: str | Path, device: str = "auto"):
        self.session = onnxruntime_session(path, device=device)
        self.dtype = {"tensor(float)": np.float32, "tensor(float16)": np.float16}.get(self.session.get_inputs()[0].type)
        if self.dtype is None:
            raise ValueError(f"onnxruntime cannot feed {path}'s input type {self.session.get_inputs()[0].type}")
        self.device = torch.device("cpu")

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        try:
            (out,) = self.session.run([UPSCALER_OUTPUT], {UPSCALER_INPUT: tiles.cpu().numpy().astype(self.dtype)})
        except Exception as error:  # onnxruntime's own error types derive from Exception only
            raise RuntimeError(f"onnxruntime failed on a batch of tiles {tuple(tiles.shape)}: {error}") from error
        return torch.from_numpy(out).float()


def upscaler_engine(
    path: str | Path,
    precision: str,
    tile: int,
    batch: int,
    cache_dir: str | Path,
    index: int,
    min_tile: int = 1,
    workspace_bytes: int = 4 << 30,
) -> Path:
    """The TensorRT engine of an exported upscaler for CUDA device `index`, from `cache_dir` or built there with that
    device current (TensorRT builds for the current device); its profile takes what the tiler sends
    (`upscaler_profile`).

    Raises:
        NoCudaDeviceError: no GPU, or no device `index` (the message says what to use instead).
    """
    from fastgan.export.gpu import current_gpu
    from fastgan.export.tensorrt_build import engine_for, upscaler_profile

    gpu = current_gpu(index)
    profile = upscaler_profile(UPSCALER_INPUT, tile, batch, min_tile)
    with torch.cuda.device(index):
        return engine_for(path, precision, profile, cache_dir, workspace_bytes=workspace_bytes, gpu=gpu)


class TensorRTTiles:
    """An exported upscaler as a TensorRT engine (built on first use for this GPU, cached by model, precision,
    shape profile, GPU and TensorRT version), fed torch CUDA tensors; on CUDA device `device` (default: cuda:0),
    which builds and runs the engine."""

    def __init__(
        self,
        path: str | Path,
        precision: str,
        tile: int,
        batch: int,
        cache_dir: str | Path,
        device: torch.device | None = None,
        min_tile: int = 1,
        workspace_bytes: int = 4 << 30,
    ):
        from fastgan.export.tensorrt_runtime import TensorRTEngine

        if device is not None and device.type != "cuda":
            raise ValueError(f"TensorRT engines run on a CUDA device, not {device}: use --device cuda or cuda:N")
        index = 0 if device is None or device.index is None else device.index
        engine_path = upscaler_engine(path, precision, tile, batch, cache_dir, index, min_tile, workspace_bytes)
        self.engine = TensorRTEngine(engine_path, buffers="torch", device=index)
        self.dtype = torch.float16 if precision == "fp16" else torch.bfloat16 if precision == "bf16" else torch.float32
        self.device = torch.device("cuda", index)

    def __call__(self, tiles: torch.Tensor) -> torch.Tensor:
        inputs = {UPSCALER_INPUT: tiles.to(self.device, self.dtype).contiguous()}
        return self.engine.infer(inputs)[UPSCALER_OUTPUT].float()


@dataclass
class Upscaler:
    """A tile model and what tiling needs to know about it."""

    tiles: TileModel
    scale: int
    receptive_radius: int
    device: torch.device
    description: str


def load_upscaler(
    path: str | Path,
    backend_name: str = "torch",
    device: str = "auto",
    precision: str = "fp32",
    fused: bool = False,
    tile: int = 256,
    batch: int = 8,
    engine_cache: str | Path | None = None,
    z: torch.Tensor | None = None,
    *,
    min_tile: int = 1,
    workspace_bytes: int = 4 << 30,
    radius: int | None = None,
) -> Upscaler:
    """An upscaler from a training run (checkpoint file or run directory; backend "torch") or an ONNX file written by
    `python -m fastgan.export onnx` (backends "onnxruntime" and "tensorrt"; the precision is the file's own).

    A LAG run upscales with G(y, z) for the (Z,) noise `z` (default zeros, the centre); ONNX files hold the centre.
    TensorRT's engine is built for tiles from `min_tile` to `tile` with a `workspace_bytes` workspace: the values
    `python -m fastgan.export trt` was given, so that its engine is the one found in the cache. `radius`, the
    receptive radius measured for the same run before (LAG samples differ in z only), spares the torch backend
    measuring it again.
    """
    from fastgan.train.run import resolve_device
    from fastgan.train.upscalers import upscaler_from_checkpoint, upscaler_scale

    if backend_name not in BACKENDS:
        raise ValueError(f"unknown upscale backend {backend_name!r}; choose one of {', '.join(BACKENDS)}")
    path = Path(path).expanduser()
    if backend_name == "torch":
        if path.suffix.lower() == ".onnx":
            raise ValueError(
                f"{path} is an ONNX file: run it with --backend onnxruntime or tensorrt, or give torch a run"
            )
        model, config = upscaler_from_checkpoint(path, "cpu", z)
        scale = upscaler_scale(config)
        radius = receptive_radius(model, scale) if radius is None else radius
        target = resolve_device(device)
        tiles = TorchTiles(model, target, precision, fused)
        return Upscaler(tiles, scale, radius, target, f"torch {precision} on {target}{' fused' if fused else ''}")
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"backend {backend_name} runs ONNX files; export {path} with `python -m fastgan.export onnx`")
    if z is not None:
        raise ValueError("LAG samples (a noise z) run on the torch backend; ONNX files hold the centre G(y, 0)")
    meta = read_metadata(path)
    if meta["fastgan.kind"] != "upscaler":
        raise ValueError(f"{path} holds a {meta['fastgan.kind']}, not an upscaler")
    scale, radius, file_precision = (
        int(meta["fastgan.scale"]),
        int(meta["fastgan.receptive_radius"]),
        meta["fastgan.precision"],
    )
    if backend_name == "onnxruntime":
        if file_precision == "bf16":
            raise ValueError(
                f"{path} is a bf16 file, which onnxruntime's CPU and CUDA providers cannot run (bf16 files are for "
                "TensorRT): export fp32 or fp16 for onnxruntime"
            )
        tiles = OnnxRuntimeTiles(path, device)
        providers = ",".join(tiles.session.get_providers())
        return Upscaler(tiles, scale, radius, tiles.device, f"onnxruntime {file_precision} ({providers})")
    target = None if device == "auto" else resolve_device(device)  # None: the current GPU
    cache = engine_cache or path.parent / "engines"
    tiles = TensorRTTiles(path, file_precision, tile, batch, cache, target, min_tile, workspace_bytes)
    return Upscaler(tiles, scale, radius, tiles.device, f"TensorRT {file_precision}")
