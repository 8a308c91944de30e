"""Tile backends: torch in fp16/bf16 stays close to fp32; onnxruntime equals torch; bad choices are refused."""

from types import SimpleNamespace

import onnxruntime
import pytest
import torch
import torch.nn.functional as F

from fastgan.export.gpu import NoCudaDeviceError, cuda_available
from fastgan.export.onnx_export import export_upscaler, onnxruntime_device
from fastgan.export.tensorrt_build import upscaler_profile
from fastgan.models.srgan import SRResNet
from fastgan.upscale.backends import OnnxRuntimeTiles, TorchTiles, load_upscaler
from fastgan.upscale.tiling import TiledUpscaler

torch.manual_seed(0)
MODEL = SRResNet(2, channels=8, blocks=1, batch_norm=False, bicubic_skip=True).eval()


@pytest.fixture(scope="module")
def x2_onnx(tmp_path_factory):
    """MODEL as an fp32 ONNX file (radius 10), exported once for the tests that only read it (5 s an export)."""
    return export_upscaler(MODEL, tmp_path_factory.mktemp("export") / "x2.onnx", 2, 10)


@pytest.mark.parametrize(("precision", "tolerance"), [("fp16", 2e-2), ("bf16", 6e-2)])
def test_torch_low_precision_tiles_stay_close_to_fp32(precision, tolerance):
    tiles = torch.rand(3, 3, 20, 24)
    reference = TorchTiles(MODEL, torch.device("cpu"))(tiles)
    low = TorchTiles(SRResNet(2, 8, 1, False, True).eval().requires_grad_(False), torch.device("cpu"), precision)
    low.model.load_state_dict(MODEL.state_dict())
    out = low(tiles)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 40, 48)
    assert (out - reference).abs().max() < tolerance


def test_onnxruntime_tiles_equal_torch_tiles(x2_onnx):
    tiles = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(
        OnnxRuntimeTiles(x2_onnx)(tiles), TorchTiles(MODEL, torch.device("cpu"))(tiles), rtol=0, atol=1e-5
    )


def test_load_upscaler_refuses_wrong_pairs(tmp_path, x2_onnx):
    with pytest.raises(ValueError, match="choose one of torch, onnxruntime, tensorrt"):
        load_upscaler(tmp_path, "openvino")
    with pytest.raises(ValueError, match="fastgan.export onnx"):
        load_upscaler(tmp_path / "run", "onnxruntime")
    with pytest.raises(ValueError, match="precision"):
        TorchTiles(MODEL, torch.device("cpu"), "int4")
    with pytest.raises(ValueError, match="TensorRT engines run on a CUDA device, not cpu: use --device cuda"):
        load_upscaler(x2_onnx, "tensorrt", device="cpu")


def test_a_bf16_file_is_refused_by_onnxruntime_and_its_load_errors_are_runtime_errors(tmp_path):
    """bf16 files are for TensorRT; onnxruntime's own exception types (not RuntimeError) become RuntimeErrors, which
    the CLIs report as an error line."""
    from fastgan.export.onnx_export import onnxruntime_session

    path = export_upscaler(MODEL, tmp_path / "x2-bf16.onnx", 2, 10, precision="bf16")
    with pytest.raises(ValueError, match="bf16 file, which onnxruntime's CPU and CUDA providers cannot run"):
        load_upscaler(path, "onnxruntime")
    with pytest.raises(RuntimeError, match="onnxruntime cannot load"):
        onnxruntime_session(path, device="cpu")


def test_tensorrt_gets_the_engine_options_export_trt_was_given(x2_onnx, monkeypatch):
    """`upscale --min-tile/--workspace-gb` reach the engine cache's key, so the engine `export trt` built with them is
    the one found (the build is recorded here, not made: no GPU)."""
    from fastgan.upscale import backends

    asked = []

    def recorded(*args):
        asked.append(args)
        raise RuntimeError("recorded")

    monkeypatch.setattr(backends, "upscaler_engine", recorded)
    with pytest.raises(RuntimeError, match="recorded"):
        load_upscaler(x2_onnx, "tensorrt", tile=128, batch=4, min_tile=32, workspace_bytes=1 << 30)
    assert asked == [(x2_onnx, "fp32", 128, 4, x2_onnx.parent / "engines", 0, 32, 1 << 30)]


@pytest.mark.skipif(cuda_available(), reason="this machine has an NVIDIA GPU")
def test_tensorrt_without_a_gpu_says_what_to_use_instead(x2_onnx):
    with pytest.raises(NoCudaDeviceError, match="--backend torch or onnxruntime"):
        load_upscaler(x2_onnx, "tensorrt")


class _FakeSession:
    """Stands in for onnxruntime.InferenceSession: records the providers asked for and, like onnxruntime, starts
    only those this machine can."""

    started: tuple[str, ...] = ("CUDAExecutionProvider", "CPUExecutionProvider")
    asked: list = []

    def __init__(self, path, options, providers):
        type(self).asked.append(providers)
        names = [p if isinstance(p, str) else p[0] for p in providers]
        self.providers = [name for name in names if name in self.started]

    def get_providers(self):
        return self.providers

    def get_inputs(self):
        return [SimpleNamespace(type="tensor(float)")]


@pytest.fixture
def fake_onnxruntime_gpu(monkeypatch):
    """onnxruntime-gpu on a machine with a GPU, as far as the session is concerned."""
    monkeypatch.setattr(
        onnxruntime, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"]
    )
    monkeypatch.setattr(onnxruntime, "InferenceSession", _FakeSession)
    monkeypatch.setattr(_FakeSession, "asked", [])
    return _FakeSession


def test_onnxruntime_runs_on_the_device_asked_for(fake_onnxruntime_gpu, tmp_path):
    for device in ("cuda:1", "cuda", "cpu", "auto"):
        OnnxRuntimeTiles(tmp_path / "x2.onnx", device)
    cuda, cpu = "CUDAExecutionProvider", "CPUExecutionProvider"
    assert fake_onnxruntime_gpu.asked == [
        [(cuda, {"device_id": 1}), cpu],
        [(cuda, {"device_id": 0}), cpu],
        [cpu],  # not the GPU, though onnxruntime-gpu has one
        [cuda, cpu],
    ]


def test_onnxruntime_falling_back_to_the_cpu_is_an_error_when_cuda_was_asked_for(
    fake_onnxruntime_gpu, tmp_path, monkeypatch
):
    monkeypatch.setattr(fake_onnxruntime_gpu, "started", ("CPUExecutionProvider",))  # e.g. mismatched cuDNN
    with pytest.raises(RuntimeError, match="could not start its CUDA provider for cuda:1.*--device cpu"):
        OnnxRuntimeTiles(tmp_path / "x2.onnx", "cuda:1")
    assert OnnxRuntimeTiles(tmp_path / "x2.onnx", "auto").session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_onnxruntime_beside_a_cuda_model_runs_on_the_cpu_without_its_cuda_provider(fake_onnxruntime_gpu, monkeypatch):
    """`eval sr --device cuda --onnx F`: plain onnxruntime scores F on the CPU rather than refusing the device."""
    assert onnxruntime_device("cuda:1") == "cuda:1"  # onnxruntime-gpu (faked): the model's own GPU
    monkeypatch.setattr(onnxruntime, "get_available_providers", lambda: ["CPUExecutionProvider"])
    assert [onnxruntime_device(d) for d in ("cuda:1", "cuda", "cpu", "auto")] == ["cpu", "cpu", "cpu", "auto"]


@pytest.mark.skipif(
    "CUDAExecutionProvider" in onnxruntime.get_available_providers(), reason="this onnxruntime has CUDA"
)
def test_onnxruntime_without_cuda_refuses_a_cuda_device(x2_onnx):
    with pytest.raises(ValueError, match="no CUDA execution provider: pip install onnxruntime-gpu"):
        OnnxRuntimeTiles(x2_onnx, "cuda:0")
    with pytest.raises(ValueError, match="unknown device 'gpu0'"):
        OnnxRuntimeTiles(x2_onnx, "gpu0")


def test_the_tensorrt_profile_admits_every_tile_the_tiler_sends():
    """Whatever the image size, border and overlap, the tiles the tiler batches lie within the engine's profile (an
    image smaller than a tile goes in whole, down to one pixel a side; the last batch is smaller)."""
    tile, batch, sent = 32, 4, set()

    def model(tiles: torch.Tensor) -> torch.Tensor:
        sent.add(tuple(tiles.shape))
        return F.interpolate(tiles, scale_factor=2)

    for border in ("reflect", "zero"):
        for overlap in (0, 1, 8):
            upscaler = TiledUpscaler(model, 2, 0, tile=tile, overlap=overlap, batch=batch, border=border)
            for height in range(1, 41):
                for width in (1, 5, 40):
                    upscaler(torch.rand(3, height, width))
    ((_, (low, _, high)),) = upscaler_profile("lr", tile, batch).shapes
    outside = [shape for shape in sent if not all(a <= s <= b for a, s, b in zip(low, shape, high, strict=True))]
    assert not outside and min(shape[2] for shape in sent) == 1
    with pytest.raises(ValueError, match="1 <= --min-tile <= --tile, got --min-tile 32, --tile 16"):
        upscaler_profile("lr", 16, batch, min_tile=32)
