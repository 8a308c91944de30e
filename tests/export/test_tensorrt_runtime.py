"""TensorRT runtime: on a machine without a GPU or TensorRT every entry point fails early and says why; with both, a
small exported upscaler builds, caches and runs with torch and torch-free buffers, equal to torch."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from fastgan.export import tensorrt_build
from fastgan.export.cuda_buffers import DTYPE_NAMES, array_dtype_name, dtype_name, make_buffers, numpy_dtype
from fastgan.export.engine_cache import ShapeProfile, StaleEngineError
from fastgan.export.gpu import GpuInfo, NoCudaDeviceError, cuda_available, current_gpu
from fastgan.export.tensorrt_build import check_precision_supported, engine_for, tensorrt_version

HAS_GPU = cuda_available()
HAS_TENSORRT = importlib.util.find_spec("tensorrt") is not None
T4 = GpuInfo("Tesla T4", (7, 5))
H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
PROFILE = ShapeProfile.for_images("lr", 3, (1, 2, 4), (8, 32, 64))


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_no_gpu_is_reported_with_what_needs_one_and_what_to_use_instead():
    with pytest.raises(NoCudaDeviceError, match="no NVIDIA GPU") as error:
        current_gpu()
    assert "TensorRT engines" in str(error.value) and "--backend torch or onnxruntime" in str(error.value)
    assert not cuda_available()


def test_missing_cuda_python_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # makes `from cuda.bindings import runtime` fail
    with pytest.raises(NoCudaDeviceError, match="pip install cuda-python"):
        current_gpu()
    with pytest.raises(RuntimeError, match="pip install cuda-python"):
        make_buffers("cuda-python")


@pytest.mark.skipif(HAS_TENSORRT, reason="TensorRT is installed here")
def test_missing_tensorrt_says_how_to_install_it_and_what_works_without_it(tmp_path):
    from fastgan.export.tensorrt_runtime import TensorRTEngine

    for call in (tensorrt_version, lambda: TensorRTEngine(tmp_path / "m.engine")):
        with pytest.raises(RuntimeError, match="pip install tensorrt") as error:
            call()
        assert "NVIDIA's package index" in str(error.value) and "onnxruntime backends work" in str(error.value)


def test_buffer_back_ends_are_checked():
    with pytest.raises(ValueError, match="unknown buffer back-end 'numba'; choose one of torch, cuda-python, pycuda"):
        make_buffers("numba")


@pytest.mark.skipif(HAS_GPU, reason="this machine has an NVIDIA GPU")
def test_cuda_python_buffers_name_the_failing_call():
    with pytest.raises(RuntimeError, match=r"cuda(Get|Set)Device failed: cudaError\w+"):
        make_buffers("cuda-python")


@pytest.mark.skipif(torch.cuda.is_available(), reason="torch sees a GPU")
def test_torch_buffers_need_a_gpu():
    with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
        make_buffers("torch")


@pytest.mark.skipif(importlib.util.find_spec("pycuda") is not None, reason="pycuda is installed")
def test_pycuda_buffers_say_how_to_install_pycuda():
    with pytest.raises(RuntimeError, match="pip install pycuda.*cuda-python"):
        make_buffers("pycuda")


class _FakePyCuda(SimpleNamespace):
    """The parts of `pycuda.driver` the pycuda back-end uses, with pycuda's context stack recorded."""

    def __init__(self):
        stack, synchronized_in = [], []
        context = SimpleNamespace(push=lambda: stack.append("primary"))
        super().__init__(
            stack=stack,
            synchronized_in=synchronized_in,
            init=lambda: None,
            Device=lambda index: SimpleNamespace(retain_primary_context=lambda: context),
            Context=SimpleNamespace(pop=stack.pop),
            Stream=lambda: SimpleNamespace(handle=7, synchronize=lambda: synchronized_in.append(list(stack))),
        )


def test_pycuda_buffers_leave_no_context_pushed(monkeypatch):
    """pycuda aborts the process at exit while a context it pushed is still current: the back-end pushes its primary
    context only around its own work (it stayed pushed from the constructor until an explicit close)."""
    fake = _FakePyCuda()
    monkeypatch.setitem(sys.modules, "pycuda", SimpleNamespace(driver=fake))
    monkeypatch.setitem(sys.modules, "pycuda.driver", fake)
    buffers = make_buffers("pycuda")
    assert fake.stack == []
    with buffers.active():
        assert fake.stack == ["primary"]
    buffers.close()
    assert fake.synchronized_in == [["primary"]] and fake.stack == []  # synchronised in the context, popped again


def test_cuda_python_buffers_make_their_device_current_and_restore_it(monkeypatch):
    """The current device is per thread and torch may change it: every scope sets the buffers' device again and
    restores the caller's (it was set once, in the constructor)."""
    runtime = pytest.importorskip("cuda.bindings.runtime", reason="cuda-python is in the dev extra")
    success, current = runtime.cudaError_t.cudaSuccess, {"device": 0}
    calls = []

    def set_device(device):
        calls.append(device)
        current["device"] = device
        return (success,)

    monkeypatch.setattr(runtime, "cudaGetDevice", lambda: (success, current["device"]))
    monkeypatch.setattr(runtime, "cudaSetDevice", set_device)
    monkeypatch.setattr(runtime, "cudaStreamCreate", lambda: (success, 5))
    buffers = make_buffers("cuda-python", device=1)
    assert calls == [1, 0] and buffers.stream == 5
    with buffers.active():
        assert current["device"] == 1
    assert current["device"] == 0


class _FakeContext:
    """An execution context for one input "lr" and one output "sr" that records the device current at each call."""

    def __init__(self, device, accept_addresses=True):
        self.device, self.accept_addresses, self.runs = device, accept_addresses, []

    def set_input_shape(self, name, shape):
        self.shape = shape
        return True

    def set_tensor_address(self, name, pointer):
        return self.accept_addresses

    def get_tensor_shape(self, name):
        n, c, h, w = self.shape
        return (n, c, 2 * h, 2 * w)

    def execute_async_v3(self, stream):
        self.runs.append(self.device["current"])
        return True


def _fake_engine(monkeypatch, accept_addresses=True, deserializes=True):
    """A TensorRTEngine on device 1 over a fake TensorRT and numpy buffers that track the current device."""
    from fastgan.export import tensorrt_runtime

    device = {"current": 0, "loaded_on": None, "closed": False}
    context = _FakeContext(device, accept_addresses)

    class Buffers:
        stream = 3

        @contextlib.contextmanager
        def active(self):
            previous, device["current"] = device["current"], 1
            try:
                yield
            finally:
                device["current"] = previous

        def upload(self, array):
            return SimpleNamespace(ptr=0x1000, owner=array)

        def empty(self, shape, dtype):
            return SimpleNamespace(ptr=0x2000, owner=np.zeros(shape, dtype))

        def synchronize(self):
            pass

        def download(self, array):
            return array.owner

        def close(self):
            device["closed"] = True

    def deserialize(data):
        device["loaded_on"] = device["current"]
        engine = SimpleNamespace(
            create_execution_context=lambda: context,
            num_io_tensors=2,
            get_tensor_name=["lr", "sr"].__getitem__,
            get_tensor_mode=lambda name: "in" if name == "lr" else "out",
            get_tensor_dtype=lambda name: SimpleNamespace(name="FLOAT"),
            get_tensor_profile_shape=lambda name, index: [(1, 3, 8, 8), (1, 3, 8, 8), (4, 3, 64, 64)],
        )
        return engine if deserializes else None

    trt = SimpleNamespace(
        Logger=SimpleNamespace(WARNING=1),
        Runtime=lambda logger: SimpleNamespace(deserialize_cuda_engine=deserialize),
        TensorIOMode=SimpleNamespace(INPUT="in"),
    )
    trt.Logger = lambda level: None
    trt.Logger.WARNING = 1
    monkeypatch.setattr(tensorrt_runtime, "import_tensorrt", lambda: trt)
    monkeypatch.setattr(tensorrt_runtime, "tensorrt_version", lambda: "10.0")
    monkeypatch.setattr(tensorrt_runtime, "current_gpu", lambda index: H100)
    monkeypatch.setattr(tensorrt_runtime, "read_engine", lambda path, gpu, version: ({}, b"engine"))
    monkeypatch.setattr(tensorrt_runtime, "make_buffers", lambda kind, index: Buffers())
    return tensorrt_runtime.TensorRTEngine, device, context


def test_the_engine_loads_and_runs_on_its_own_gpu(monkeypatch):
    """TensorRT binds an engine and its context to the device current when they are made: both happen, and every
    run, with the engine's GPU current (device 1 here, while the caller's is 0), which is restored afterwards."""
    engine_class, device, context = _fake_engine(monkeypatch)
    with engine_class("x2.engine", buffers="numpy", device=1) as engine:
        outputs = engine.infer({"lr": np.zeros((2, 3, 8, 8), np.float32)})
    assert device["loaded_on"] == 1 and context.runs == [1] and device["current"] == 0
    assert outputs["sr"].shape == (2, 3, 16, 16) and device["closed"]


def test_a_refused_tensor_address_is_an_error_and_a_failed_load_closes_the_buffers(monkeypatch):
    engine_class, device, _ = _fake_engine(monkeypatch, accept_addresses=False)
    with pytest.raises(RuntimeError, match="TensorRT refused address 0x1000 for tensor 'lr'"):
        engine_class("x2.engine", device=1).infer({"lr": np.zeros((1, 3, 8, 8), np.float32)})
    engine_class, device, _ = _fake_engine(monkeypatch, deserializes=False)
    with pytest.raises(StaleEngineError, match="could not deserialize"):
        engine_class("x2.engine", device=1)
    assert device["closed"]


def test_tensorrt_types_map_to_numpy_and_torch_dtypes():
    assert dtype_name(SimpleNamespace(name="HALF")) == "float16"  # a tensorrt.DataType is read by its name
    with pytest.raises(TypeError, match="TensorRT type FP8 cannot be fed"):
        dtype_name(SimpleNamespace(name="FP8"))
    for name in DTYPE_NAMES.values():
        assert array_dtype_name(torch.empty(1, dtype=getattr(torch, name))) == name
        if name != "bfloat16":
            assert array_dtype_name(np.empty(1, numpy_dtype(name))) == name
    with pytest.raises(TypeError, match="numpy has no bfloat16.*buffers='torch'"):
        numpy_dtype("bfloat16")


def test_precisions_are_checked_against_the_gpu():
    check_precision_supported("fp16", T4)
    check_precision_supported("int8", T4)
    check_precision_supported("bf16", H100)
    bf16_on_t4 = "bf16 engines need compute capability 8.0 or newer, and Tesla T4 has 7.5: export the model in fp16"
    with pytest.raises(ValueError, match=bf16_on_t4):
        check_precision_supported("bf16", T4)
    with pytest.raises(ValueError, match="Tesla P4 has compute capability 6.1; TensorRT 10\\+ needs 7.5.*onnxruntime"):
        check_precision_supported("fp32", GpuInfo("Tesla P4", (6, 1)))
    with pytest.raises(ValueError, match="unknown precision 'fp8'; choose one of fp32, fp16, bf16, int8"):
        check_precision_supported("fp8", H100)


def _relu_onnx(tmp_path) -> Path:
    """A one-node fp32 ONNX file with fastgan's precision metadata."""
    graph = helper.make_graph(
        [helper.make_node("Relu", ["lr"], ["sr"])],
        "relu",
        [helper.make_tensor_value_info("lr", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("sr", TensorProto.FLOAT, ["n", 3, "h", "w"])],
    )
    model = helper.make_model(graph)
    helper.set_model_props(model, {"fastgan.precision": "fp32"})
    path = tmp_path / "relu.onnx"
    onnx.save(model, path)
    return path


def test_the_asked_precision_must_be_the_onnx_files(tmp_path):
    """TensorRT builds strongly typed networks in the file's own precision, so a mislabelled request is refused
    (before TensorRT is needed) rather than cached under the wrong key."""
    path = _relu_onnx(tmp_path)
    with pytest.raises(ValueError, match="is a fp32 model, not fp16.*--precision fp16"):
        engine_for(path, "fp16", PROFILE, tmp_path / "engines", gpu=H100)
    with pytest.raises(FileNotFoundError, match="python -m fastgan.export onnx"):
        engine_for(tmp_path / "missing.onnx", "fp32", PROFILE, tmp_path / "engines", gpu=H100)


def test_each_gpu_model_and_tensorrt_version_keeps_its_own_timing_cache(tmp_path, monkeypatch):
    """Builds for two GPU models sharing an engine folder read and write different timing caches (one file made each
    build discard the other GPU's timings); without a timing cache none is passed."""
    timings = []

    def build(onnx_path, profile, timing_cache_path, workspace_bytes) -> bytes:  # stands in for TensorRT's builder
        timings.append(timing_cache_path)
        return b"engine %d" % len(timings)

    monkeypatch.setattr(tensorrt_build, "build_serialized_engine", build)
    monkeypatch.setattr(tensorrt_build, "tensorrt_version", lambda: "10.13.0")
    path, folder = _relu_onnx(tmp_path), tmp_path / "engines"
    for gpu in (H100, T4):
        engine_for(path, "fp32", PROFILE, folder, gpu=gpu)
    engine_for(
        path, "fp32", ShapeProfile.for_images("lr", 3, (1, 1, 1), (8, 8, 8)), folder, gpu=H100, timing_cache=False
    )
    assert timings == [
        folder / "timing-NVIDIA-H100-80GB-HBM3-sm90-trt10.13.0.cache",
        folder / "timing-Tesla-T4-sm75-trt10.13.0.cache",
        None,
    ]


def test_the_tensorrt_runtime_imports_without_torch():
    """Deployments without torch use the cuda-python buffers: the runtime's import chain must not pull torch in."""
    code = "import sys, fastgan.export.tensorrt_runtime, fastgan.export.tensorrt_build; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


def _tiny_upscaler(tmp_path):
    """A ×2 conv + pixel-shuffle model and its ONNX file (input ``lr``, output ``sr``; N, H, W dynamic)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 12, 3, padding=1),
        torch.nn.PixelShuffle(2),
    ).eval()
    path = tmp_path / "tiny-x2.onnx"
    dynamic = torch.export.Dim.DYNAMIC
    torch.onnx.export(
        model,
        (torch.rand(2, 3, 16, 24),),
        path,
        dynamo=True,
        input_names=["lr"],
        output_names=["sr"],
        dynamic_shapes=({0: dynamic, 2: dynamic, 3: dynamic},),
    )
    return model, path


@pytest.mark.cuda
@pytest.mark.skipif(not (HAS_GPU and HAS_TENSORRT), reason="needs an NVIDIA GPU with TensorRT installed")
@pytest.mark.parametrize("buffers", ["torch", "cuda-python"])
def test_engine_builds_caches_and_matches_torch(tmp_path, buffers):
    from fastgan.export.engine_cache import StaleEngineError, sidecar_path
    from fastgan.export.tensorrt_runtime import TensorRTEngine

    model, onnx_path = _tiny_upscaler(tmp_path)
    engine = engine_for(onnx_path, "fp32", PROFILE, tmp_path / "engines")
    (timings,) = (tmp_path / "engines").glob("timing-*-trt*.cache")  # this GPU model's and TensorRT version's
    assert timings.stat().st_size > 0 and sidecar_path(engine).is_file()
    built = engine.stat().st_mtime_ns
    assert engine_for(onnx_path, "fp32", PROFILE, tmp_path / "engines") == engine  # from the cache
    assert engine.stat().st_mtime_ns == built

    runtime = TensorRTEngine(engine, buffers=buffers)
    assert runtime.input_names == ("lr",) and runtime.output_names == ("sr",)
    assert runtime.dtypes == {"lr": "float32", "sr": "float32"}
    lr = torch.rand(2, 3, 32, 40)
    with torch.no_grad():
        expected = model(lr)
    if buffers == "torch":
        out = runtime.infer({"lr": lr.cuda()})["sr"].cpu()
    else:
        out = torch.from_numpy(runtime.infer({"lr": lr.numpy()})["sr"])
    torch.testing.assert_close(out, expected, rtol=1e-3, atol=1e-3)

    for shape, advice in (((1, 3, 4, 40), "a smaller --min-tile"), ((1, 3, 8, 80), "a larger --tile/--batch")):
        outside = torch.rand(shape)  # 4 rows < the profile's 8, or 80 columns > its 64
        with pytest.raises(ValueError, match=f"outside the engine's profile.*{advice}"):
            runtime.infer({"lr": outside.cuda() if buffers == "torch" else outside.numpy()})
    with pytest.raises(ValueError, match="must be float32"):
        runtime.infer({"lr": lr.half().cuda() if buffers == "torch" else lr.half().numpy()})
    runtime.close()

    record = json.loads(sidecar_path(engine).read_text())  # the same engine, claimed for another GPU
    record["key"]["gpu"] = {**dataclasses.asdict(T4), "compute_capability": [7, 5]}
    sidecar_path(engine).write_text(json.dumps(record))
    with pytest.raises(StaleEngineError, match="built for Tesla T4 .*python -m fastgan.export trt"):
        TensorRTEngine(engine, buffers=buffers)
