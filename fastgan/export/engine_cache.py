"""Serialized TensorRT engines on disk, each with a sidecar saying what it was built from and for.

An engine only runs on the GPU model and TensorRT version that built it, for the ONNX file, precision and shape
profile it was built from. The key of an engine holds all five; its sidecar ``<engine>.json`` records the key and
the engine bytes' hash. `check_engine` refuses a foreign, stale or truncated engine with a message that says how to
rebuild it; `EngineCache` rebuilds such an entry instead of using it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from fastgan.export.gpu import GpuInfo

log = logging.getLogger(__name__)

Shape = tuple[int, ...]


class StaleEngineError(RuntimeError):
    pass


def sha256_file(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class ShapeProfile:
    """TensorRT optimisation profile: input name → (min, opt, max) shapes."""

    shapes: tuple[tuple[str, tuple[Shape, Shape, Shape]], ...]

    def __post_init__(self) -> None:
        for name, (low, opt, high) in self.shapes:
            if not len(low) == len(opt) == len(high) or not all(
                a <= b <= c for a, b, c in zip(low, opt, high, strict=True)
            ):
                raise ValueError(
                    f"profile for {name!r} needs min ≤ opt ≤ max in every dimension, got {low}, {opt}, {high}"
                )

    @classmethod
    def for_images(
        cls, input_name: str = "lr", channels: int = 3, batch: Shape = (1, 4, 8), size: Shape = (64, 256, 512)
    ) -> ShapeProfile:
        """NCHW images with a dynamic batch and square-bounded H, W: (min, opt, max) of each."""
        shapes = tuple((b, channels, s, s) for b, s in zip(batch, size, strict=True))
        return cls(((input_name, shapes),))

    def to_json(self) -> dict[str, list[list[int]]]:
        return {name: [list(shape) for shape in triple] for name, triple in self.shapes}

    @classmethod
    def from_json(cls, data: dict[str, list[list[int]]]) -> ShapeProfile:
        return cls(tuple((name, tuple(tuple(s) for s in triple)) for name, triple in data.items()))


@dataclass(frozen=True)
class EngineKey:
    """Everything an engine depends on."""

    model_sha256: str
    precision: str
    profile: ShapeProfile
    gpu: GpuInfo
    tensorrt_version: str

    def to_json(self) -> dict:
        return {
            "model_sha256": self.model_sha256,
            "precision": self.precision,
            "profile": self.profile.to_json(),
            "gpu": asdict(self.gpu),
            "tensorrt_version": self.tensorrt_version,
        }

    @classmethod
    def from_json(cls, data: dict) -> EngineKey:
        gpu = data["gpu"]
        return cls(
            data["model_sha256"],
            data["precision"],
            ShapeProfile.from_json(data["profile"]),
            GpuInfo(gpu["name"], tuple(gpu["compute_capability"]), gpu["total_memory_bytes"]),
            data["tensorrt_version"],
        )

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.to_json(), sort_keys=True).encode()).hexdigest()


def _sidecar(engine_path: Path) -> Path:
    return engine_path.with_name(engine_path.name + ".json")


def _write_atomically(path: Path, data: bytes) -> None:
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_bytes(data)
    os.replace(temporary, path)


def write_engine(engine_path: str | Path, engine: bytes, key: EngineKey) -> Path:
    """Write the engine, then its sidecar (each atomically): an interrupted write leaves an engine without a sidecar,
    or the previous pair, and `check_engine` rejects the former."""
    engine_path = Path(engine_path)
    engine_path.parent.mkdir(parents=True, exist_ok=True)
    sidecar = _sidecar(engine_path)
    sidecar.unlink(missing_ok=True)
    _write_atomically(engine_path, engine)
    record = {"key": key.to_json(), "engine_sha256": hashlib.sha256(engine).hexdigest()}
    _write_atomically(sidecar, json.dumps(record, indent=1).encode())
    return engine_path


def _arch(gpu: GpuInfo) -> str:
    return f"sm_{gpu.compute_capability[0]}{gpu.compute_capability[1]}"


def check_engine(engine_path: str | Path, gpu: GpuInfo, tensorrt_version: str) -> EngineKey:
    """The key of a usable engine; StaleEngineError (saying what differs and how to rebuild) otherwise."""
    engine_path = Path(engine_path)
    rebuild = "rebuild it with `python -m fastgan.export trt --onnx MODEL.onnx` on this machine"
    if not engine_path.is_file():
        raise FileNotFoundError(f"no TensorRT engine at {engine_path}; build one with `python -m fastgan.export trt`")
    try:
        record = json.loads(_sidecar(engine_path).read_text())
        key = EngineKey.from_json(record["key"])
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise StaleEngineError(
            f"{engine_path} has no readable sidecar {_sidecar(engine_path).name} ({error}); {rebuild}"
        ) from error
    if sha256_file(engine_path) != record["engine_sha256"]:
        raise StaleEngineError(f"{engine_path} does not match its sidecar (truncated or overwritten); {rebuild}")
    built, here = key.gpu, gpu
    if (built.name, built.compute_capability) != (here.name, here.compute_capability):
        raise StaleEngineError(
            f"{engine_path} was built for {built.name} ({_arch(built)}), this is {here.name} ({_arch(here)}); {rebuild}"
        )
    if key.tensorrt_version != tensorrt_version:
        raise StaleEngineError(
            f"{engine_path} was built with TensorRT {key.tensorrt_version}, this is TensorRT {tensorrt_version}; "
            + rebuild
        )
    return key


class EngineCache:
    """A folder of engines named by their keys."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path_for(self, key: EngineKey) -> Path:
        name = f"{key.model_sha256[:12]}-{key.precision}-{key.gpu.tag}-trt{key.tensorrt_version}-{key.digest()[:12]}"
        return self.directory / f"{name}.engine"

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> Path:
        """The cached engine for `key`, built (and stored) when absent, and rebuilt when the entry is unusable."""
        path = self.path_for(key)
        if path.is_file():
            try:
                if check_engine(path, key.gpu, key.tensorrt_version) == key:
                    log.info("TensorRT engine from cache: %s", path)
                    return path
                log.warning("rebuilding %s: its sidecar records another key", path)
            except StaleEngineError as error:
                log.warning("rebuilding: %s", error)
        log.info("building TensorRT engine %s (%s, %s)", path.name, key.precision, key.gpu.name)
        return write_engine(path, build(), key)
