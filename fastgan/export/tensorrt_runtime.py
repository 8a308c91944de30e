"""Run a serialized TensorRT engine (TensorRT 10+ named-tensor API) with torch or torch-free device buffers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastgan.export.cuda_buffers import DTYPE_NAMES, make_buffers
from fastgan.export.engine_cache import StaleEngineError, check_engine
from fastgan.export.gpu import current_gpu
from fastgan.export.tensorrt_build import import_tensorrt, tensorrt_version


class TensorRTEngine:
    """An engine checked against this GPU and TensorRT version before it is deserialized.

    Args:
        engine_path: an engine written by `fastgan.export` (with its sidecar).
        buffers: "torch" (torch CUDA tensors in and out), "cuda-python" or "pycuda" (numpy in and out).
        device: CUDA device index.
    """

    def __init__(self, engine_path: str | Path, buffers: str = "torch", device: int = 0):
        trt = import_tensorrt()
        check_engine(engine_path, current_gpu(device), tensorrt_version())
        self.buffers = make_buffers(buffers, device)
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise StaleEngineError(
                f"TensorRT could not deserialize {engine_path}; rebuild it with python -m fastgan.export trt"
            )
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        is_input = {name: self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self.input_names = [name for name in names if is_input[name]]
        self.output_names = [name for name in names if not is_input[name]]
        self.dtypes = {name: DTYPE_NAMES[self.engine.get_tensor_dtype(name).name] for name in names}

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """{input name: array (torch tensor or numpy, per the buffers)} → {output name: array}, synchronised."""
        if set(inputs) != set(self.input_names):
            raise ValueError(f"the engine takes inputs {self.input_names}, got {sorted(inputs)}")
        keep = {}
        for name in self.input_names:
            device_array = self.buffers.upload(inputs[name])
            if device_array.dtype != self.dtypes[name]:
                raise ValueError(f"input {name!r} must be {self.dtypes[name]}, got {device_array.dtype}")
            if not self.context.set_input_shape(name, device_array.shape):
                raise ValueError(
                    f"input {name!r} shape {device_array.shape} lies outside the engine's profile; "
                    "rebuild it with a larger --tile/--batch"
                )
            self.context.set_tensor_address(name, device_array.ptr)
            keep[name] = device_array
        outputs = {}
        for name in self.output_names:
            outputs[name] = self.buffers.empty(tuple(self.context.get_tensor_shape(name)), self.dtypes[name])
            self.context.set_tensor_address(name, outputs[name].ptr)
        if not self.context.execute_async_v3(self.buffers.stream):
            raise RuntimeError("TensorRT execution failed; its log above says why")
        self.buffers.synchronize()
        return {name: self.buffers.download(array) for name, array in outputs.items()}
