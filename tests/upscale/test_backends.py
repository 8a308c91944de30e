"""Tile backends: torch in fp16/bf16 stays close to fp32; onnxruntime equals torch; bad choices are refused."""

import pytest
import torch

from fastgan.export.gpu import NoCudaDeviceError, cuda_available
from fastgan.export.onnx_export import export_upscaler
from fastgan.models.srgan import SRResNet
from fastgan.upscale.backends import OnnxRuntimeTiles, TorchTiles, load_upscaler

torch.manual_seed(0)
MODEL = SRResNet(2, channels=8, blocks=1, batch_norm=False, bicubic_skip=True).eval()


@pytest.mark.parametrize(("precision", "tolerance"), [("fp16", 2e-2), ("bf16", 6e-2)])
def test_torch_low_precision_tiles_stay_close_to_fp32(precision, tolerance):
    tiles = torch.rand(3, 3, 20, 24)
    reference = TorchTiles(MODEL, torch.device("cpu"))(tiles)
    low = TorchTiles(SRResNet(2, 8, 1, False, True).eval().requires_grad_(False), torch.device("cpu"), precision)
    low.model.load_state_dict(MODEL.state_dict())
    out = low(tiles)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 40, 48)
    assert (out - reference).abs().max() < tolerance


def test_onnxruntime_tiles_equal_torch_tiles(tmp_path):
    path = export_upscaler(MODEL, tmp_path / "x2.onnx", 2, 10)
    tiles = torch.rand(2, 3, 16, 16)
    torch.testing.assert_close(
        OnnxRuntimeTiles(path)(tiles), TorchTiles(MODEL, torch.device("cpu"))(tiles), rtol=0, atol=1e-5
    )


def test_load_upscaler_refuses_wrong_pairs(tmp_path):
    with pytest.raises(ValueError, match="choose one of torch, onnxruntime, tensorrt"):
        load_upscaler(tmp_path, "openvino")
    with pytest.raises(ValueError, match="fastgan.export onnx"):
        load_upscaler(tmp_path / "run", "onnxruntime")
    with pytest.raises(ValueError, match="precision"):
        TorchTiles(MODEL, torch.device("cpu"), "int4")
    path = export_upscaler(MODEL, tmp_path / "x2.onnx", 2, 10)
    with pytest.raises(ValueError, match="TensorRT engines run on a CUDA device, not cpu: use --device cuda"):
        load_upscaler(path, "tensorrt", device="cpu")


@pytest.mark.skipif(cuda_available(), reason="this machine has an NVIDIA GPU")
def test_tensorrt_without_a_gpu_says_what_to_use_instead(tmp_path):
    path = export_upscaler(MODEL, tmp_path / "x2.onnx", 2, 10)
    with pytest.raises(NoCudaDeviceError, match="--backend torch or onnxruntime"):
        load_upscaler(path, "tensorrt")
