"""Serialized TensorRT engines on disk, each with a sidecar saying what it was built from and for.

An engine only runs on the GPU model and TensorRT version that built it, and only means something for the ONNX
file, precision and shape profile it was built from. An `EngineKey` holds all five; the sidecar ``<engine>.json``
records the key and the engine bytes' sha256. `check_engine` refuses a foreign, stale or truncated engine with a
message that says what differs and how to rebuild; `EngineCache` rebuilds such an entry instead of using it. Nothing
here imports TensorRT: the build is a callable handed in.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from fastgan.atomic import write_bytes_atomically
from fastgan.export.gpu import GpuInfo
from fastgan.file_hash import sha256_file

log = logging.getLogger(__name__)

Shape = tuple[int, ...]
#: How to rebuild an engine: said by every refusal.
REBUILD = "rebuild it on this machine with `python -m fastgan.export trt --onnx MODEL.onnx ...`"


class StaleEngineError(RuntimeError):
    """An engine that must not be deserialized here: foreign GPU or TensorRT version, no sidecar, or corrupt."""


def _shape(values: Sequence[int]) -> Shape:
    try:
        return tuple(operator.index(v) for v in values)  # integers only: int(8.7) would truncate silently
    except TypeError as error:
        raise ValueError(f"profile dimensions must be integers, got {tuple(values)}") from error


@dataclass(frozen=True)
class ShapeProfile:
    """A TensorRT optimisation profile: for each input, the (min, opt, max) shapes the engine accepts.

    Build one from a mapping (``ShapeProfile({"lr": ((1, 3, 8, 8), (4, 3, 256, 256), (8, 3, 256, 256))})``) or with
    `for_images`. The mapping is stored as a tuple sorted by input name, so equal profiles compare, hash and digest
    equal.

    Attributes:
        shapes: ``((name, (min, opt, max)), ...)`` sorted by name; every shape a tuple of positive ints.

    Raises:
        ValueError: no inputs, a triple that is not three shapes of one rank, a dimension below 1, or a dimension
            where min ≤ opt ≤ max does not hold.
    """

    shapes: tuple[tuple[str, tuple[Shape, Shape, Shape]], ...]

    def __post_init__(self) -> None:
        items = self.shapes.items() if isinstance(self.shapes, Mapping) else self.shapes
        normalised = []
        for name, triple in sorted(items, key=lambda item: item[0]):
            if name in dict(normalised):
                raise ValueError(f"profile names input {name!r} twice")
            if len(triple) != 3:
                raise ValueError(f"profile for {name!r} needs (min, opt, max) shapes, got {len(triple)} shapes")
            low, opt, high = (_shape(shape) for shape in triple)
            if not len(low) == len(opt) == len(high):
                raise ValueError(f"profile for {name!r} mixes ranks: min {low}, opt {opt}, max {high}")
            if min(low, default=1) < 1:
                raise ValueError(f"profile for {name!r} has a dimension below 1 in min {low}")
            if not all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True)):
                raise ValueError(
                    f"profile for {name!r} needs min ≤ opt ≤ max in every dimension, got min {low}, opt {opt}, "
                    f"max {high}"
                )
            normalised.append((str(name), (low, opt, high)))
        if not normalised:
            raise ValueError("a shape profile needs at least one input")
        object.__setattr__(self, "shapes", tuple(normalised))

    @classmethod
    def for_images(
        cls,
        input_name: str = "lr",
        channels: int = 3,
        batch: Sequence[int] = (1, 4, 8),
        size: Sequence[int] = (64, 256, 512),
    ) -> ShapeProfile:
        """NCHW images with a dynamic batch and dynamic H and W, both within the same (min, opt, max) sizes.

        Args:
            input_name: the network input's name.
            channels: C, fixed.
            batch: (min, opt, max) N.
            size: (min, opt, max) H and W.

        Returns:
            The profile ``{input_name: ((b0, C, s0, s0), (b1, C, s1, s1), (b2, C, s2, s2))}``.
        """
        if len(batch) != 3 or len(size) != 3:
            raise ValueError(f"batch and size are (min, opt, max) triples, got batch={batch}, size={size}")
        return cls({input_name: tuple((b, channels, s, s) for b, s in zip(batch, size, strict=True))})

    @property
    def input_names(self) -> tuple[str, ...]:
        """The profiled inputs, sorted."""
        return tuple(name for name, _ in self.shapes)

    def describe(self) -> str:
        """Short text such as ``lr: 1x3x8x8 .. 4x3x256x256 .. 8x3x256x256``."""
        return "; ".join(
            f"{name}: " + " .. ".join("x".join(map(str, shape)) for shape in triple) for name, triple in self.shapes
        )

    def to_json(self) -> dict[str, list[list[int]]]:
        """``{name: [min, opt, max]}`` with shapes as lists."""
        return {name: [list(shape) for shape in triple] for name, triple in self.shapes}

    @classmethod
    def from_json(cls, data: Mapping[str, Sequence[Sequence[int]]]) -> ShapeProfile:
        """Inverse of `to_json`."""
        return cls(dict(data))


#: The version of what `fastgan.export.tensorrt_build` asks TensorRT's builder for (its flags, typing and profile
#: form): raise it whenever that changes, so that engines built the old way are rebuilt, not served from a cache.
BUILD_RECIPE = 1


@dataclass(frozen=True)
class EngineKey:
    """Everything a serialized engine depends on.

    Attributes:
        model_sha256: sha256 of the ONNX file.
        precision: the ONNX file's precision (fp32, fp16, bf16 or int8): TensorRT builds it strongly typed.
        profile: the optimisation profile.
        gpu: the GPU that builds (and so the only model that runs) the engine: its name and compute capability.
        tensorrt_version: ``tensorrt.__version__`` of the build.
        workspace_bytes: the builder's workspace limit, which bounds the tactics it may choose.
        recipe: `BUILD_RECIPE` of the build.
    """

    model_sha256: str
    precision: str
    profile: ShapeProfile
    gpu: GpuInfo
    tensorrt_version: str
    workspace_bytes: int
    recipe: int = BUILD_RECIPE

    def to_json(self) -> dict[str, Any]:
        """The key as JSON-ready data."""
        return {
            "model_sha256": self.model_sha256,
            "precision": self.precision,
            "profile": self.profile.to_json(),
            "gpu": {"name": self.gpu.name, "compute_capability": list(self.gpu.compute_capability)},
            "tensorrt_version": self.tensorrt_version,
            "workspace_bytes": self.workspace_bytes,
            "recipe": self.recipe,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EngineKey:
        """Inverse of `to_json`.

        Raises:
            KeyError, TypeError, ValueError: `data` is not a key written by `to_json`.
        """
        gpu = data["gpu"]
        major, minor = gpu["compute_capability"]
        return cls(
            str(data["model_sha256"]),
            str(data["precision"]),
            ShapeProfile.from_json(data["profile"]),
            GpuInfo(str(gpu["name"]), (int(major), int(minor))),
            str(data["tensorrt_version"]),
            int(data.get("workspace_bytes", 0)),  # 0: a sidecar from before the limit was recorded, rebuilt
            int(data.get("recipe", 0)),  # 0: from before the recipe was recorded, rebuilt
        )

    def digest(self) -> str:
        """Hex sha256 of the key's canonical JSON (sorted keys, no spaces)."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()

    def differences(self, other: EngineKey) -> list[str]:
        """Names of the fields in which `other` differs from this key."""
        return [field.name for field in fields(self) if getattr(self, field.name) != getattr(other, field.name)]


def sidecar_path(engine_path: str | Path) -> Path:
    """``<engine>.json``: where an engine's key and hash live."""
    engine_path = Path(engine_path)
    return engine_path.with_name(engine_path.name + ".json")


def write_engine(engine_path: str | Path, engine_bytes: bytes, key: EngineKey) -> Path:
    """Store an engine and its sidecar, each atomically.

    Order: drop the old sidecar, write the engine, write the sidecar last. Interrupted anywhere, this leaves the old
    pair, or an engine without a sidecar, which `check_engine` refuses; a sidecar never vouches for bytes it was not
    written for (it also records their hash).

    Args:
        engine_path: where the engine goes (its folder is created).
        engine_bytes: the serialized engine.
        key: what it was built from and for.

    Returns:
        `engine_path` as a Path.
    """
    engine_path = Path(engine_path)
    sidecar = sidecar_path(engine_path)
    sidecar.unlink(missing_ok=True)
    write_bytes_atomically(engine_path, engine_bytes)
    record = {"key": key.to_json(), "engine_sha256": hashlib.sha256(engine_bytes).hexdigest()}
    write_bytes_atomically(sidecar, json.dumps(record, indent=1).encode())
    return engine_path


def _read_record(engine_path: Path) -> tuple[EngineKey, str]:
    if not engine_path.is_file():
        raise FileNotFoundError(
            f"no TensorRT engine at {engine_path}; build one with `python -m fastgan.export trt --onnx MODEL.onnx`"
        )
    sidecar = sidecar_path(engine_path)
    try:
        record = json.loads(sidecar.read_text())
        return EngineKey.from_json(record["key"]), str(record["engine_sha256"])
    except FileNotFoundError as error:
        reason = f"its sidecar {sidecar.name} is missing (an interrupted write, or not written by fastgan.export)"
        raise StaleEngineError(f"refusing {engine_path}: {reason}; {REBUILD}") from error
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"its sidecar {sidecar.name} is unreadable ({type(error).__name__}: {error})"
        raise StaleEngineError(f"refusing {engine_path}: {reason}; {REBUILD}") from error


def _check(engine_path: Path, key: EngineKey, hash_matches: bool, gpu: GpuInfo, tensorrt_version: str) -> None:
    source = f"the {key.precision} ONNX file with sha256 {key.model_sha256[:12]}…, profile {key.profile.describe()}"
    if not hash_matches:
        raise StaleEngineError(
            f"refusing {engine_path}: its bytes do not match the hash in its sidecar (truncated, corrupt or "
            f"overwritten); {REBUILD} ({source})"
        )
    differs = [
        what
        for what, same in (
            ("GPU model", key.gpu.name == gpu.name),
            ("compute capability", key.gpu.compute_capability == gpu.compute_capability),
            ("TensorRT version", key.tensorrt_version == tensorrt_version),
        )
        if not same
    ]
    if differs:
        raise StaleEngineError(
            f"refusing {engine_path}: it was built for {key.gpu.name} ({key.gpu.arch}) with TensorRT "
            f"{key.tensorrt_version}, this is {gpu.name} ({gpu.arch}) with TensorRT {tensorrt_version}; the "
            f"{' and the '.join(differs)} differ{'s' if len(differs) == 1 else ''}. An engine only runs where it was "
            f"built: {REBUILD} ({source})"
        )


def check_engine(engine_path: str | Path, gpu: GpuInfo, tensorrt_version: str) -> EngineKey:
    """The key of an engine that may be deserialized on `gpu` with `tensorrt_version`.

    Args:
        engine_path: an engine written by `write_engine`.
        gpu: the GPU it is to run on.
        tensorrt_version: the TensorRT version that is to run it.

    Returns:
        The key its sidecar records.

    Raises:
        FileNotFoundError: there is no engine at `engine_path`.
        StaleEngineError: the sidecar is missing or unreadable, the engine's bytes do not match its recorded hash, or
            it was built for another GPU model, compute capability or TensorRT version; the message says which and
            how to rebuild.
    """
    engine_path = Path(engine_path)
    key, recorded = _read_record(engine_path)
    _check(engine_path, key, sha256_file(engine_path) == recorded, gpu, tensorrt_version)
    return key


def read_engine(engine_path: str | Path, gpu: GpuInfo, tensorrt_version: str) -> tuple[EngineKey, bytes]:
    """`check_engine` on bytes read once, so the bytes checked are the bytes returned (for deserializing).

    Returns:
        (key, engine bytes).

    Raises:
        FileNotFoundError, StaleEngineError: as `check_engine`.
    """
    engine_path = Path(engine_path)
    key, recorded = _read_record(engine_path)
    engine_bytes = engine_path.read_bytes()
    _check(engine_path, key, hashlib.sha256(engine_bytes).hexdigest() == recorded, gpu, tensorrt_version)
    return key, engine_bytes


class EngineCache:
    """A folder of engines named by their keys; unusable entries are rebuilt, never used.

    Args:
        directory: the folder (created on the first write).
    """

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)

    def path_for(self, key: EngineKey) -> Path:
        """``<dir>/<model sha[:12]>-<precision>-<gpu tag>-trt<version>-<key digest[:12]>.engine``."""
        name = f"{key.model_sha256[:12]}-{key.precision}-{key.gpu.tag}-trt{key.tensorrt_version}-{key.digest()[:12]}"
        return self.directory / f"{name}.engine"

    def get_or_build(self, key: EngineKey, build: Callable[[], bytes]) -> Path:
        """The cached engine for `key`; built and stored when absent, rebuilt (with a warning) when unusable.

        Args:
            key: what the engine must be built from and for; `key.gpu` and `key.tensorrt_version` must be this
                machine's.
            build: makes the serialized engine (called only when the cache cannot serve `key`).

        Returns:
            The engine's path; its sidecar records `key`.

        Processes asking for one key at once build it once: the others wait on a lock file beside the engine. A usable
        engine is served without the lock, so a read-only folder of built engines works.
        """
        path = self.path_for(key)
        if self._serves(path, key, quiet=True):  # no lock to read: a read-only folder of built engines serves
            return path
        lock = FileLock(path.with_name(f".{path.name}.lock"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            try:
                lock.acquire(timeout=0)
            except Timeout:
                log.info("waiting for another process building %s", path.name)
                lock.acquire()
        except OSError as error:
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS):
                raise
            self._serves(path, key, quiet=False)  # says why the engine there (if any) cannot serve
            raise PermissionError(
                error.errno,
                f"cannot build the TensorRT engine in {path.parent} ({error.strerror}): make the folder writable, or "
                "point the engine cache elsewhere (--engine-cache / --cache)",
            ) from error
        try:
            if self._serves(path, key, quiet=False):  # built by the process this one waited for
                return path
            log.info(
                "building TensorRT engine %s (%s, %s; %s)",
                path.name,
                key.precision,
                key.gpu.name,
                key.profile.describe(),
            )
            engine = build()
            if not engine:
                raise RuntimeError(f"the TensorRT build for {path.name} returned an empty engine; nothing was cached")
            return write_engine(path, engine, key)
        finally:
            lock.release()

    @staticmethod
    def _serves(path: Path, key: EngineKey, quiet: bool) -> bool:
        """Whether the engine at `path` is usable for `key`; unless `quiet`, says why not (it is to be rebuilt)."""
        if not path.is_file():
            return False
        try:
            cached = check_engine(path, key.gpu, key.tensorrt_version)
        except StaleEngineError as error:
            if not quiet:
                log.warning("rebuilding the cached TensorRT engine: %s", error)
            return False
        if cached != key:
            if not quiet:
                log.warning("rebuilding %s: its sidecar records another %s", path, ", ".join(cached.differences(key)))
            return False
        log.info("TensorRT engine from the cache: %s", path)
        return True
