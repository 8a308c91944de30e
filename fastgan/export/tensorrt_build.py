"""Build TensorRT engines from the ONNX files `fastgan.export` writes, for TensorRT 10 and later.

Networks are strongly typed: the precision is the ONNX file's own (fp32, fp16 or bf16 weights and activations; int8
as explicit QuantizeLinear/DequantizeLinear pairs from `fastgan.export.quantize`). TensorRT 10 deprecated and
TensorRT 11 removed the weakly typed route (FP16/INT8 builder flags, int8 calibrators), so none is used here. Each
build has one optimisation profile over batch and tile size, reuses and updates a timing cache, and lands in an
`EngineCache` keyed by model, precision, profile, GPU and TensorRT version.
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import ModuleType

from filelock import FileLock

from fastgan.atomic import write_bytes_atomically
from fastgan.export.engine_cache import EngineCache, EngineKey, ShapeProfile
from fastgan.export.gpu import GpuInfo, current_gpu
from fastgan.file_hash import sha256_file

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: The oldest GPUs TensorRT 10+ supports (Turing).
TENSORRT_MIN_CAPABILITY = (7, 5)
#: The oldest GPUs each precision's engines run on.
MIN_CAPABILITY = {"fp32": (7, 5), "fp16": (7, 5), "bf16": (8, 0), "int8": (7, 5)}


def import_tensorrt() -> ModuleType:
    """The `tensorrt` module.

    Raises:
        RuntimeError: TensorRT is not installed; the message says how to install it and what works without it.
    """
    try:
        import tensorrt as trt
    except ImportError as error:
        raise RuntimeError(
            "TensorRT is not installed (or cannot load libnvinfer): pip install tensorrt (it comes from NVIDIA's "
            "package index, pypi.nvidia.com, and needs an NVIDIA driver); the torch and onnxruntime backends work "
            "without it"
        ) from error
    return trt


def tensorrt_version() -> str:
    """``tensorrt.__version__``, e.g. ``"10.13.0.35"``.

    Raises:
        RuntimeError: TensorRT is not installed (see `import_tensorrt`).
    """
    return import_tensorrt().__version__


def check_precision_supported(precision: str, gpu: GpuInfo) -> None:
    """Check that `gpu` can run TensorRT engines of `precision`.

    Args:
        precision: one of `PRECISIONS`.
        gpu: the GPU the engine is for.

    Raises:
        ValueError: an unknown precision, a GPU older than TensorRT supports, or a precision the GPU lacks (bf16
            before compute capability 8.0); the message names the GPU and what to use instead.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    major, minor = gpu.compute_capability
    if gpu.compute_capability < TENSORRT_MIN_CAPABILITY:
        raise ValueError(
            f"{gpu.name} has compute capability {major}.{minor}; TensorRT 10+ needs 7.5 (Turing) or newer: use "
            "--backend torch or onnxruntime on this GPU"
        )
    needed = MIN_CAPABILITY[precision]
    if gpu.compute_capability < needed:
        raise ValueError(
            f"{precision} engines need compute capability {needed[0]}.{needed[1]} or newer, and {gpu.name} has "
            f"{major}.{minor}: export the model in fp16 (python -m fastgan.export onnx --precision fp16) instead"
        )


def onnx_precision(onnx_path: str | Path) -> str | None:
    """The precision a `fastgan.export` ONNX file records in its metadata (``fastgan.precision``), or None for
    files written by other tools. Loads the graph without external weight files."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    return {prop.key: prop.value for prop in model.metadata_props}.get("fastgan.precision")


def _check_profile_fits(network, profile: ShapeProfile, onnx_path: Path) -> None:
    """The profile names exactly the network's inputs, with their ranks and their fixed dimensions."""
    inputs = {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        inputs[tensor.name] = tuple(tensor.shape)
    if set(inputs) != set(profile.input_names):
        raise ValueError(
            f"the shape profile is for inputs {list(profile.input_names)}, but {onnx_path} has inputs "
            f"{sorted(inputs)}: name the profile's inputs after the ONNX file's"
        )
    for name, triple in profile.shapes:
        dims = inputs[name]
        for shape in triple:
            if len(shape) != len(dims) or any(d >= 0 and d != s for d, s in zip(dims, shape, strict=True)):
                raise ValueError(
                    f"profile shape {shape} for input {name!r} does not fit its shape {dims} in {onnx_path} "
                    "(-1 marks a dynamic dimension; the others are fixed)"
                )


def _attach_timing_cache(config, timing_cache_path: Path | None) -> tuple[object, bytes]:
    """Give `config` a timing cache seeded from `timing_cache_path` when it holds one recorded on this GPU and
    TensorRT version, else an empty one. Returns the cache (it must outlive the build) and the seed bytes."""
    seed = timing_cache_path.read_bytes() if timing_cache_path and timing_cache_path.is_file() else b""
    if seed:
        cache = config.create_timing_cache(seed)
        if cache is not None and config.set_timing_cache(cache, ignore_mismatch=False):
            return cache, seed
        log.warning(
            "timing cache %s was recorded on another GPU or TensorRT version (or is corrupt): starting a fresh one, "
            "which replaces it after this build",
            timing_cache_path,
        )
    cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache, b""


def _save_timing_cache(config, cache, timing_cache_path: Path, seed: bytes) -> None:
    """Write the build's timing cache back, merged with what another build wrote there meanwhile (under a lock, so
    that two builds finishing together both keep their timings)."""
    with FileLock(timing_cache_path.with_name(f".{timing_cache_path.name}.lock")):
        if timing_cache_path.is_file():
            current = timing_cache_path.read_bytes()
            if current != seed:
                other = config.create_timing_cache(current)
                if other is not None:
                    cache.combine(other, ignore_mismatch=False)
        write_bytes_atomically(timing_cache_path, bytes(memoryview(cache.serialize())))


def timing_cache_path(folder: str | Path, gpu: GpuInfo, version: str) -> Path:
    """``<folder>/timing-<gpu tag>-trt<version>.cache``: one timing cache per GPU model and TensorRT version, so that
    builds for different GPUs sharing a folder do not discard each other's timings."""
    return Path(folder) / f"timing-{gpu.tag}-trt{version}.cache"


def upscaler_profile(input_name: str, tile: int, batch: int, min_tile: int = 1) -> ShapeProfile:
    """The profile of an upscaler engine fed by `fastgan.upscale`: 1 to `batch` tiles (the last batch of an image
    is smaller) of sides `min_tile` to `tile` (an image smaller than a tile goes in whole, down to 1 pixel), both
    optimal at their largest."""
    if not 1 <= min_tile <= tile:
        raise ValueError(f"the engine's tiles need 1 <= --min-tile <= --tile, got --min-tile {min_tile}, --tile {tile}")
    return ShapeProfile.for_images(input_name, 3, batch=(1, batch, batch), size=(min_tile, tile, tile))


def build_serialized_engine(
    onnx_path: str | Path,
    profile: ShapeProfile,
    timing_cache_path: str | Path | None = None,
    workspace_bytes: int = 4 << 30,
) -> bytes:
    """Parse an ONNX file, build a strongly typed engine with one optimisation profile, and serialize it.

    Args:
        onnx_path: the model; its tensors' types set the engine's precision.
        profile: (min, opt, max) shapes of every network input, e.g. `ShapeProfile.for_images`.
        timing_cache_path: a TensorRT timing cache file. When it holds timings from this GPU and TensorRT version
            they seed the build; afterwards it is rewritten (atomically) with the new ones, so later builds are
            faster.
        workspace_bytes: the builder's workspace memory pool limit.

    Returns:
        The serialized engine (runs only on this GPU model with this TensorRT version).

    Raises:
        FileNotFoundError: no file at `onnx_path`.
        RuntimeError: TensorRT is missing, cannot parse the file (every parser error is listed) or cannot build it.
        ValueError: the profile does not match the network's inputs.
    """
    trt = import_tensorrt()
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no ONNX file at {onnx_path}; write one with `python -m fastgan.export onnx`")
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "\n  ".join(str(parser.get_error(index)) for index in range(parser.num_errors))
        raise RuntimeError(f"TensorRT cannot parse {onnx_path}:\n  {errors}")
    _check_profile_fits(network, profile, onnx_path)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, workspace_bytes)
    optimization_profile = builder.create_optimization_profile()
    for name, (low, opt, high) in profile.shapes:
        optimization_profile.set_shape(name, low, opt, high)
    if config.add_optimization_profile(optimization_profile) < 0:
        raise ValueError(f"TensorRT rejected the shape profile {profile.describe()} for {onnx_path}")
    timing_cache_path = Path(timing_cache_path) if timing_cache_path else None
    timing_cache, seed = _attach_timing_cache(config, timing_cache_path)
    log.info(
        "building a TensorRT %s engine from %s (%s); this takes a while", trt.__version__, onnx_path, profile.describe()
    )
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise RuntimeError(
            f"TensorRT could not build an engine from {onnx_path}; the TensorRT errors logged above say why"
        )
    if timing_cache_path:
        _save_timing_cache(config, timing_cache, timing_cache_path, seed)
    return bytes(memoryview(engine))


def engine_for(
    onnx_path: str | Path,
    precision: str,
    profile: ShapeProfile,
    cache_dir: str | Path,
    *,
    timing_cache: bool = True,
    workspace_bytes: int = 4 << 30,
    gpu: GpuInfo | None = None,
) -> Path:
    """The engine of an ONNX file for this GPU and TensorRT version, from `cache_dir` or built into it.

    Args:
        onnx_path: the model.
        precision: its precision (fp32, fp16, bf16 or int8); must agree with the file's ``fastgan.precision``
            metadata when it has some.
        profile: (min, opt, max) shapes of every input.
        cache_dir: the `EngineCache` folder.
        timing_cache: reuse and update the timing cache of this GPU model and TensorRT version in `cache_dir`
            (`timing_cache_path`).
        workspace_bytes: see `build_serialized_engine`.
        gpu: this machine's GPU (default: `current_gpu()`), which builds the engine.

    Returns:
        Path of a checked engine (with its sidecar).

    Raises:
        FileNotFoundError: no file at `onnx_path`.
        NoCudaDeviceError: no GPU is visible.
        RuntimeError: TensorRT is missing, or the build failed.
        ValueError: the precision is unknown, unsupported on this GPU, or not the file's.
    """
    onnx_path = Path(onnx_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"no ONNX file at {onnx_path}; write one with `python -m fastgan.export onnx`")
    gpu = gpu or current_gpu()
    check_precision_supported(precision, gpu)
    recorded = onnx_precision(onnx_path)
    if recorded is not None and recorded != precision:
        raise ValueError(
            f"{onnx_path} is a {recorded} model, not {precision}: TensorRT builds it in the file's own precision. "
            f"Ask for {recorded}, or export a {precision} file with `python -m fastgan.export onnx --precision "
            f"{precision}`"
        )
    version = tensorrt_version()
    key = EngineKey(sha256_file(onnx_path), precision, profile, gpu, version, workspace_bytes)
    timings = timing_cache_path(cache_dir, gpu, version) if timing_cache else None
    return EngineCache(cache_dir).get_or_build(
        key, lambda: build_serialized_engine(onnx_path, profile, timings, workspace_bytes)
    )
