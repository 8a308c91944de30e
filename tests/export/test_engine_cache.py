"""Engine cache: keys change with everything an engine depends on; foreign, stale or truncated engines are refused
with what differs and how to rebuild, and the cache rebuilds them rather than using them."""

import dataclasses
import errno
import json
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from fastgan.export import engine_cache
from fastgan.export.engine_cache import (
    EngineCache,
    EngineKey,
    ShapeProfile,
    StaleEngineError,
    check_engine,
    read_engine,
    sidecar_path,
    write_engine,
)
from fastgan.export.gpu import GpuInfo

H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0))
A100 = GpuInfo("NVIDIA A100-SXM4-40GB", (8, 0))
PROFILE = ShapeProfile.for_images("lr", 3, (1, 4, 8), (8, 256, 256))
KEY = EngineKey("ab" * 32, "fp16", PROFILE, H100, "10.13.0", 4 << 30)
ENGINE = b"serialized engine bytes " * 100


def test_key_digest_depends_on_every_field_and_round_trips_through_json():
    variants = [
        dataclasses.replace(KEY, model_sha256="cd" * 32),
        dataclasses.replace(KEY, precision="int8"),
        dataclasses.replace(KEY, profile=ShapeProfile.for_images("lr", 3, (1, 8, 8), (8, 256, 256))),
        dataclasses.replace(KEY, gpu=A100),
        dataclasses.replace(KEY, gpu=dataclasses.replace(H100, compute_capability=(9, 1))),
        dataclasses.replace(KEY, tensorrt_version="11.4.0"),
        dataclasses.replace(KEY, workspace_bytes=1 << 30),  # a smaller workspace may rule tactics out
        dataclasses.replace(KEY, recipe=KEY.recipe + 1),  # the builder asked for other things
    ]
    assert len({KEY.digest(), *(variant.digest() for variant in variants)}) == 1 + len(variants)
    assert [variant.differences(KEY) for variant in variants[:2]] == [["model_sha256"], ["precision"]]
    assert EngineKey.from_json(json.loads(json.dumps(KEY.to_json()))) == KEY
    assert EngineKey.from_json(KEY.to_json()).digest() == KEY.digest()
    older = {name: value for name, value in KEY.to_json().items() if name != "recipe"}  # a sidecar from before it
    assert EngineKey.from_json(older).differences(KEY) == ["recipe"]
    assert H100.tag == "NVIDIA-H100-80GB-HBM3-sm90" and A100.tag == "NVIDIA-A100-SXM4-40GB-sm80"
    assert H100.arch == "sm_90"


def test_profile_shapes_and_validation():
    assert PROFILE.shapes == (("lr", ((1, 3, 8, 8), (4, 3, 256, 256), (8, 3, 256, 256))),)
    two = {"b": [[1], [2], [3]], "a": ((1, 2), (1, 2), (1, 2))}
    assert ShapeProfile(two) == ShapeProfile(dict(reversed(two.items())))  # canonical: sorted, tuples
    assert ShapeProfile(two).input_names == ("a", "b")
    assert ShapeProfile.from_json(PROFILE.to_json()) == PROFILE
    assert PROFILE.describe() == "lr: 1x3x8x8 .. 4x3x256x256 .. 8x3x256x256"
    with pytest.raises(ValueError, match="min ≤ opt ≤ max in every dimension"):
        ShapeProfile.for_images(batch=(4, 1, 8))
    with pytest.raises(ValueError, match="min ≤ opt ≤ max"):
        ShapeProfile({"lr": ((1, 3, 64, 64), (1, 3, 32, 32), (1, 3, 128, 128))})
    with pytest.raises(ValueError, match="mixes ranks"):
        ShapeProfile({"lr": ((1, 3, 8, 8), (1, 3, 8), (1, 3, 8, 8))})
    with pytest.raises(ValueError, match=r"needs \(min, opt, max\) shapes, got 2"):
        ShapeProfile({"lr": ((1, 3, 8, 8), (1, 3, 8, 8))})
    with pytest.raises(ValueError, match="below 1"):
        ShapeProfile.for_images(batch=(0, 1, 2))
    with pytest.raises(ValueError, match="dimensions must be integers"):  # 8.7 was once truncated to 8
        ShapeProfile({"lr": ((1, 3, 8, 8), (1, 3, 8.7, 8), (1, 3, 16, 16))})
    with pytest.raises(ValueError, match="at least one input"):
        ShapeProfile({})
    with pytest.raises(ValueError, match="triples"):
        ShapeProfile.for_images(size=(8, 256))


def test_write_then_check_round_trip(tmp_path):
    path = write_engine(tmp_path / "deep" / "m.engine", ENGINE, KEY)
    assert path.read_bytes() == ENGINE
    record = json.loads(sidecar_path(path).read_text())
    assert record["key"]["gpu"]["compute_capability"] == [9, 0] and len(record["engine_sha256"]) == 64
    assert check_engine(path, H100, "10.13.0") == KEY
    assert read_engine(path, H100, "10.13.0") == (KEY, ENGINE)
    assert sorted(p.name for p in path.parent.iterdir()) == ["m.engine", "m.engine.json"]  # no temporary left


@pytest.mark.parametrize(
    ("gpu", "version", "message"),
    [
        (
            A100,
            "10.13.0",
            r"built for NVIDIA H100 80GB HBM3 \(sm_90\) with TensorRT 10\.13\.0, this is "
            r"NVIDIA A100-SXM4-40GB \(sm_80\) with TensorRT 10\.13\.0; the GPU model and the compute capability differ",
        ),
        (dataclasses.replace(H100, compute_capability=(9, 1)), "10.13.0", r"\(sm_91\).*the compute capability differs"),
        (H100, "11.4.0", r"with TensorRT 10\.13\.0, this is .* with TensorRT 11\.4\.0; the TensorRT version differs"),
    ],
    ids=["other-gpu", "other-compute-capability", "other-tensorrt"],
)
def test_check_engine_refuses_foreign_engines(tmp_path, gpu, version, message):
    path = write_engine(tmp_path / "m.engine", ENGINE, KEY)
    for check in (check_engine, read_engine):
        with pytest.raises(StaleEngineError, match=message) as error:
            check(path, gpu, version)
        assert "python -m fastgan.export trt --onnx" in str(error.value)
        assert "fp16 ONNX file with sha256 abababababab" in str(error.value)


def test_check_engine_refuses_truncated_engines_and_missing_or_broken_sidecars(tmp_path):
    path = write_engine(tmp_path / "m.engine", ENGINE, KEY)
    path.write_bytes(ENGINE[:50])
    for check in (check_engine, read_engine):
        with pytest.raises(StaleEngineError, match="do not match the hash in its sidecar.*fastgan.export trt"):
            check(path, H100, "10.13.0")
    sidecar_path(path).write_text('{"key": {"precision": "fp16"}')
    with pytest.raises(StaleEngineError, match="sidecar m.engine.json is unreadable.*fastgan.export trt"):
        check_engine(path, H100, "10.13.0")
    sidecar_path(path).write_text('{"engine_sha256": "00"}')
    with pytest.raises(StaleEngineError, match="unreadable \\(KeyError"):
        check_engine(path, H100, "10.13.0")
    sidecar_path(path).unlink()
    with pytest.raises(StaleEngineError, match="sidecar m.engine.json is missing.*fastgan.export trt"):
        check_engine(path, H100, "10.13.0")
    with pytest.raises(FileNotFoundError, match="fastgan.export trt"):
        check_engine(tmp_path / "missing.engine", H100, "10.13.0")


def test_an_interrupted_write_leaves_an_engine_that_is_refused(tmp_path, monkeypatch):
    path = write_engine(tmp_path / "m.engine", ENGINE, KEY)
    real_write = engine_cache.write_bytes_atomically

    def crash_on_sidecar(target, data):
        if target.name.endswith(".json"):
            raise KeyboardInterrupt
        real_write(target, data)

    monkeypatch.setattr(engine_cache, "write_bytes_atomically", crash_on_sidecar)
    with pytest.raises(KeyboardInterrupt):
        write_engine(path, b"a newer engine", dataclasses.replace(KEY, precision="int8"))
    assert path.read_bytes() == b"a newer engine"
    with pytest.raises(StaleEngineError, match="missing"):  # the old sidecar cannot vouch for the new bytes
        check_engine(path, H100, "10.13.0")


def test_cache_builds_once_reuses_and_rebuilds_unusable_entries(tmp_path, caplog):
    builds = []

    def build() -> bytes:  # stands in for TensorRT's builder: the cache logic is what is under test
        builds.append(1)
        return b"serialized engine %d" % len(builds)

    cache = EngineCache(tmp_path / "engines")
    path = cache.get_or_build(KEY, build)
    assert cache.get_or_build(KEY, build) == path and len(builds) == 1
    assert path.name == f"abababababab-fp16-NVIDIA-H100-80GB-HBM3-sm90-trt10.13.0-{KEY.digest()[:12]}.engine"
    assert path == cache.path_for(KEY) and check_engine(path, H100, "10.13.0") == KEY

    path.write_bytes(b"garbage")  # corrupt entry: rebuilt, with the reason logged
    with caplog.at_level(logging.WARNING, logger="fastgan.export.engine_cache"):
        assert cache.get_or_build(KEY, build) == path
    assert len(builds) == 2 and path.read_bytes() == b"serialized engine 2"
    assert "rebuilding" in caplog.text and "do not match the hash" in caplog.text

    caplog.clear()  # an entry whose sidecar records another key (here: another precision) is not used either
    write_engine(path, b"an int8 engine", dataclasses.replace(KEY, precision="int8"))
    with caplog.at_level(logging.WARNING, logger="fastgan.export.engine_cache"):
        cache.get_or_build(KEY, build)
    assert len(builds) == 3 and "records another precision" in caplog.text
    assert check_engine(path, H100, "10.13.0") == KEY

    other = cache.get_or_build(dataclasses.replace(KEY, gpu=A100), build)  # another GPU: its own entry
    assert other != path and len(builds) == 4 and cache.get_or_build(KEY, build) == path and len(builds) == 4


def test_concurrent_requests_for_one_key_build_once(tmp_path):
    """Two builders of one key (e.g. one process per GPU of a kind): the second waits and reuses the engine."""
    started, release, builds = threading.Event(), threading.Event(), []

    def build() -> bytes:
        builds.append(1)
        started.set()
        release.wait(10)
        return b"serialized engine"

    cache = EngineCache(tmp_path / "engines")
    with ThreadPoolExecutor(2) as pool:
        first = pool.submit(cache.get_or_build, KEY, build)
        assert started.wait(10)
        second = pool.submit(cache.get_or_build, KEY, build)
        time.sleep(0.2)  # the second request is now waiting on the lock, not building
        release.set()
        assert first.result(10) == second.result(10)
    assert len(builds) == 1 and check_engine(first.result(), H100, "10.13.0") == KEY


def test_built_engines_are_served_from_a_folder_this_process_cannot_write(tmp_path, monkeypatch):
    """A read-only folder of prebuilt engines (an image, a shared store) serves them without taking the build lock;
    a build there says what to do."""
    cache = EngineCache(tmp_path / "engines")
    path = cache.get_or_build(KEY, lambda: b"serialized engine")

    class Unwritable:  # what filelock raises where the lock file cannot be created
        def __init__(self, lock_path):
            pass

        def acquire(self, timeout=None):
            raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(engine_cache, "FileLock", Unwritable)
    assert cache.get_or_build(KEY, lambda: pytest.fail("a usable engine is not rebuilt")) == path
    with pytest.raises(PermissionError, match="cannot build the TensorRT engine in .*make the folder writable"):
        cache.get_or_build(dataclasses.replace(KEY, precision="int8"), lambda: b"another engine")


@pytest.mark.parametrize("outcome", ["raises", "empty"])
def test_a_failed_build_stores_nothing(tmp_path, outcome):
    """Neither a build that raises nor one that returns no bytes (once cached and served as an engine) is stored."""

    def build() -> bytes:
        if outcome == "empty":
            return b""
        raise RuntimeError("TensorRT could not build")

    cache = EngineCache(tmp_path / "engines")
    with pytest.raises(RuntimeError, match="could not build" if outcome == "raises" else "empty engine"):
        cache.get_or_build(KEY, build)
    assert not cache.path_for(KEY).exists() and not sidecar_path(cache.path_for(KEY)).exists()
