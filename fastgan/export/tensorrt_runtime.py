"""Run a serialized TensorRT engine through TensorRT 10+'s named-tensor API, with torch or torch-free buffers.

The engine is checked against this GPU and TensorRT version (`fastgan.export.engine_cache.read_engine`) before it
is deserialized, so a foreign or corrupt engine fails with a message that says how to rebuild it rather than
inside TensorRT.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from fastgan.export.cuda_buffers import DeviceArray, array_dtype_name, dtype_name, make_buffers
from fastgan.export.engine_cache import REBUILD, StaleEngineError, read_engine
from fastgan.export.gpu import current_gpu
from fastgan.export.tensorrt_build import import_tensorrt, tensorrt_version


class TensorRTEngine:
    """An engine built by `fastgan.export`, ready to run on GPU `device` (made current for loading and for every
    run). Not thread-safe (one execution context). A context manager: ``with TensorRTEngine(...) as engine:``
    closes it at the end.

    Args:
        engine_path: an engine written by `fastgan.export` (with its ``.json`` sidecar).
        buffers: "torch" (torch CUDA tensors in and out), "cuda-python" or "pycuda" (numpy in and out).
        device: CUDA device index.

    Raises:
        NoCudaDeviceError: no GPU is visible.
        RuntimeError: TensorRT or the buffers' library is missing.
        FileNotFoundError: no engine at `engine_path`.
        StaleEngineError: the engine was built for another GPU or TensorRT version, has no sidecar, is corrupt, or
            TensorRT cannot deserialize it.
    """

    def __init__(self, engine_path: str | Path, buffers: str = "torch", device: int = 0):
        trt = import_tensorrt()
        version = tensorrt_version()
        _, engine_bytes = read_engine(engine_path, current_gpu(device), version)
        self._buffers = make_buffers(buffers, device)
        try:
            with self._buffers.active():  # TensorRT binds the engine and context to the current device
                self._load(trt, engine_bytes, engine_path, version)
        except BaseException:
            with contextlib.suppress(Exception):  # the load's error is the one to report
                self._buffers.close()
            raise

    def _load(self, trt: Any, engine_bytes: bytes, engine_path: str | Path, version: str) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(engine_bytes)
        if self._engine is None:
            raise StaleEngineError(
                f"TensorRT {version} could not deserialize {engine_path} although its sidecar matches this GPU and "
                f"version (its errors are logged above); {REBUILD}"
            )
        self._context = self._engine.create_execution_context()
        if self._context is None:
            raise RuntimeError(f"TensorRT could not create an execution context for {engine_path} (out of memory?)")
        names = [self._engine.get_tensor_name(index) for index in range(self._engine.num_io_tensors)]
        inputs = {name: self._engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT for name in names}
        self._input_names = tuple(name for name in names if inputs[name])
        self._output_names = tuple(name for name in names if not inputs[name])
        self._dtypes = {name: dtype_name(self._engine.get_tensor_dtype(name)) for name in names}
        self._profiles = {
            name: [tuple(shape) for shape in self._engine.get_tensor_profile_shape(name, 0)]
            for name in self._input_names
        }

    @property
    def input_names(self) -> tuple[str, ...]:
        """The engine's inputs, in TensorRT's order."""
        return self._input_names

    @property
    def output_names(self) -> tuple[str, ...]:
        """The engine's outputs, in TensorRT's order."""
        return self._output_names

    @property
    def dtypes(self) -> dict[str, str]:
        """Each input's and output's dtype name (``"float32"``, ``"float16"``, ``"bfloat16"``, ``"int64"``, ...)."""
        return dict(self._dtypes)

    def _check_input(self, name: str, array: Any) -> tuple[int, ...]:
        shape, dtype = tuple(array.shape), array_dtype_name(array)
        if dtype != self._dtypes[name]:
            raise ValueError(
                f"input {name!r} must be {self._dtypes[name]} (the ONNX file's type: the engine is strongly typed), "
                f"got {dtype}; convert it first"
            )
        low, _, high = self._profiles[name]
        if len(shape) != len(low):
            raise ValueError(f"input {name!r} must have {len(low)} dimensions, got shape {shape}")
        advice = []
        if any(s < a for a, s in zip(low, shape, strict=True)):
            advice.append(
                "below its smallest: rebuild the engine with a smaller --min-tile (1 takes images of any size), or "
                "feed larger tiles"
            )
        if any(s > b for s, b in zip(shape, high, strict=True)):
            advice.append(
                "above its largest: feed smaller tiles or batches, or rebuild the engine with a larger --tile/--batch"
            )
        if advice:
            raise ValueError(
                f"input {name!r} shape {shape} lies outside the engine's profile, {low} to {high} in each "
                f"dimension: {'; '.join(advice)}"
            )
        return shape

    def infer(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """Run the engine once and wait for it.

        Args:
            inputs: ``{input name: array}`` with every input: torch tensors (CPU or CUDA) for "torch" buffers, numpy
                arrays for the others; dtypes as `dtypes` says, shapes within the engine's profile.

        Returns:
            ``{output name: array}``: CUDA tensors for "torch" buffers, numpy arrays for the others.

        Raises:
            ValueError: missing or unknown inputs, a wrong dtype or rank, or a shape outside the profile.
            RuntimeError: TensorRT could not infer the output shapes or run the engine.
        """
        if set(inputs) != set(self._input_names):
            raise ValueError(f"the engine takes inputs {list(self._input_names)}, got {sorted(inputs)}")
        with self._buffers.active():
            return self._run(inputs)

    def _run(self, inputs: dict[str, Any]) -> dict[str, Any]:
        keep: dict[str, DeviceArray] = {}  # inputs stay alive until the engine has run
        for name in self._input_names:
            shape = self._check_input(name, inputs[name])
            if not self._context.set_input_shape(name, shape):
                raise ValueError(f"TensorRT rejected shape {shape} for input {name!r} (its errors are logged above)")
            keep[name] = self._buffers.upload(inputs[name])
            self._set_address(name, keep[name])
        outputs = {}
        for name in self._output_names:
            shape = tuple(self._context.get_tensor_shape(name))
            if any(size < 0 for size in shape):
                raise RuntimeError(f"TensorRT could not infer the shape of output {name!r} (got {shape})")
            outputs[name] = self._buffers.empty(shape, self._dtypes[name])
            self._set_address(name, outputs[name])
        if not self._context.execute_async_v3(self._buffers.stream):
            raise RuntimeError("TensorRT could not run the engine; its errors are logged above")
        self._buffers.synchronize()
        return {name: self._buffers.download(array) for name, array in outputs.items()}

    def _set_address(self, name: str, array: DeviceArray) -> None:
        """Point tensor `name` at `array`; a refused address must not leave the previous run's pointer in place."""
        if not self._context.set_tensor_address(name, array.ptr):
            raise RuntimeError(
                f"TensorRT refused address {array.ptr:#x} for tensor {name!r} (misaligned or on another device; its "
                "errors are logged above)"
            )

    def close(self) -> None:
        """Release the execution context and engine (on their GPU) and the buffers' stream; the engine is unusable
        afterwards."""
        with self._buffers.active():
            self._context = self._engine = None
        self._buffers.close()

    def __enter__(self) -> TensorRTEngine:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()
