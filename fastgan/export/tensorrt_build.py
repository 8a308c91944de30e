"""Build TensorRT engines from the ONNX files `fastgan.export` writes, for TensorRT 10 and later.

Networks are strongly typed: the precision is the ONNX file's own (fp32, fp16 or bf16 weights and activations; int8
as explicit Q/DQ pairs from `fastgan.export.quantize`). TensorRT 10 deprecated and TensorRT 11 removed the
weakly-typed route (FP16/INT8 builder flags and int8 calibrators), so none is used here. Each build has one
optimisation profile over batch and tile size, reuses and updates a timing cache, and lands in an `EngineCache`.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastgan.export.engine_cache import EngineCache, EngineKey, ShapeProfile, sha256_file
from fastgan.export.gpu import GpuInfo, current_gpu

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: The lowest compute capability each precision runs at (TensorRT 10 itself needs sm_75).
MIN_CAPABILITY = {"fp32": (7, 5), "fp16": (7, 5), "bf16": (8, 0), "int8": (7, 5)}


def import_tensorrt():
    try:
        import tensorrt as trt
    except ImportError as error:
        raise RuntimeError(
            "TensorRT is not installed: pip install tensorrt (from NVIDIA's package index, with a GPU driver); "
            "the torch and onnxruntime backends work without it"
        ) from error
    return trt


def tensorrt_version() -> str:
    return import_tensorrt().__version__


def check_precision_supported(precision: str, gpu: GpuInfo) -> None:
    """ValueError unless `gpu` runs `precision` engines, naming an alternative."""
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    needed = MIN_CAPABILITY[precision]
    if gpu.compute_capability < needed:
        raise ValueError(
            f"{precision} engines need compute capability {needed[0]}.{needed[1]}+, {gpu.name} has "
            f"{gpu.compute_capability[0]}.{gpu.compute_capability[1]}; export the model in fp16 or fp32 instead"
        )


def build_serialized_engine(
    onnx_path: str | Path,
    profile: ShapeProfile,
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int = 4 << 30,
) -> bytes:
    """Parse `onnx_path`, build a strongly typed engine with one optimisation profile, and return its bytes.

    The timing cache at `timing_cache_path` (if given) seeds the build's kernel timings and is rewritten with the
    new ones afterwards, so later builds for the same GPU are faster.
    """
    trt = import_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}: {errors}")
    inputs = {network.get_input(i).name for i in range(network.num_inputs)}
    named = {name for name, _ in profile.shapes}
    if inputs != named:
        raise ValueError(f"the shape profile names inputs {sorted(named)}, {onnx_path} has {sorted(inputs)}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimization_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes:
        optimization_profile.set_shape(name, low, opt, high)
    config.add_optimization_profile(optimization_profile)
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else None
    seed = timing_cache_path.read_bytes() if timing_cache_path and timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(seed)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(f"TensorRT could not build an engine from {onnx_path}; its log above says why")
    if timing_cache_path:
        timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
        temporary = timing_cache_path.with_name(f".{timing_cache_path.name}.partial")
        temporary.write_bytes(memoryview(config.get_timing_cache().serialize()))
        os.replace(temporary, timing_cache_path)
    return bytes(memoryview(engine))


def engine_for(
    onnx_path: str | Path,
    precision: str,
    profile: ShapeProfile,
    cache_dir: str | Path,
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int = 4 << 30,
    gpu: GpuInfo | None = None,
) -> Path:
    """The cached engine of `onnx_path` for this GPU and TensorRT version, built if absent or unusable."""
    gpu = gpu or current_gpu()
    check_precision_supported(precision, gpu)
    key = EngineKey(sha256_file(onnx_path), precision, profile, gpu, tensorrt_version())
    return EngineCache(cache_dir).get_or_build(
        key, lambda: build_serialized_engine(onnx_path, profile, timing_cache_path, workspace_bytes)
    )
