"""TensorRT runtime: on a machine without a GPU every entry point fails early and says why; with a GPU and
TensorRT, an exported upscaler builds, caches and runs with torch and torch-free buffers, equal to torch."""

import pytest
import torch

from fastgan.export.cuda_buffers import make_buffers
from fastgan.export.gpu import NoCudaDeviceError, cuda_available, current_gpu
from fastgan.export.tensorrt_build import check_precision_supported, tensorrt_version

HAS_TENSORRT = True
try:
    import tensorrt  # noqa: F401
except ImportError:
    HAS_TENSORRT = False
needs_gpu_and_tensorrt = pytest.mark.skipif(
    not (cuda_available() and HAS_TENSORRT), reason="needs an NVIDIA GPU with TensorRT installed"
)


@pytest.mark.skipif(cuda_available(), reason="this machine has a GPU")
def test_no_gpu_is_reported_with_what_to_use_instead():
    with pytest.raises(NoCudaDeviceError, match="torch or onnxruntime"):
        current_gpu()


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install_it():
    with pytest.raises(RuntimeError, match="pip install tensorrt"):
        tensorrt_version()


def test_buffer_and_precision_choices_are_checked():
    from fastgan.export.gpu import GpuInfo

    with pytest.raises(ValueError, match="torch, cuda-python, pycuda"):
        make_buffers("numba")
    with pytest.raises(ValueError, match="bf16 engines need compute capability 8.0"):
        check_precision_supported("bf16", GpuInfo("Tesla T4", (7, 5), 16 << 30))
    check_precision_supported("fp16", GpuInfo("Tesla T4", (7, 5), 16 << 30))


@pytest.mark.cuda
@needs_gpu_and_tensorrt
@pytest.mark.parametrize("buffers", ["torch", "cuda-python"])
def test_engine_builds_caches_and_matches_torch(tmp_path, buffers):
    from fastgan.export.engine_cache import ShapeProfile
    from fastgan.export.onnx_export import export_upscaler
    from fastgan.export.tensorrt_build import engine_for
    from fastgan.export.tensorrt_runtime import TensorRTEngine
    from fastgan.models.srgan import SRResNet

    model = SRResNet(2, 8, 1, batch_norm=False, bicubic_skip=True).eval()
    path = export_upscaler(model, tmp_path / "x2.onnx", 2, 10)
    profile = ShapeProfile.for_images("lr", 3, (1, 2, 4), (8, 32, 64))
    engine = engine_for(path, "fp32", profile, tmp_path / "engines", tmp_path / "timing.cache")
    assert engine_for(path, "fp32", profile, tmp_path / "engines") == engine  # cached
    lr = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        expected = model(lr)
    runtime = TensorRTEngine(engine, buffers=buffers)
    if buffers == "torch":
        out = runtime.infer({"lr": lr.cuda()})["sr"].cpu()
    else:
        out = torch.from_numpy(runtime.infer({"lr": lr.numpy()})["sr"])
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)
    with pytest.raises(ValueError, match="outside the engine's profile"):
        runtime.infer(
            {"lr": lr[:1, :, :8, :80].contiguous().cuda() if buffers == "torch" else lr[:1, :, :8, :80].numpy()}
        )


def test_the_tensorrt_runtime_imports_without_torch():
    """Deployments without torch use the cuda-python buffers: the runtime's import chain must not pull torch in."""
    import subprocess
    import sys

    code = "import sys, fastgan.export.tensorrt_runtime, fastgan.export.tensorrt_build; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"
