"""Engine cache: keys change with everything an engine depends on; foreign, stale or truncated engines are refused
with a rebuild hint, and the cache rebuilds them rather than using them."""

import dataclasses
import logging

import pytest

from fastgan.export.engine_cache import (
    EngineCache,
    EngineKey,
    ShapeProfile,
    StaleEngineError,
    check_engine,
    write_engine,
)
from fastgan.export.gpu import GpuInfo

H100 = GpuInfo("NVIDIA H100 80GB HBM3", (9, 0), 80 << 30)
A100 = GpuInfo("NVIDIA A100-SXM4-40GB", (8, 0), 40 << 30)
KEY = EngineKey("ab" * 32, "fp16", ShapeProfile.for_images("lr", 3, (1, 4, 8), (8, 256, 256)), H100, "10.13.0")


def test_key_digest_depends_on_every_field():
    variants = [
        dataclasses.replace(KEY, model_sha256="cd" * 32),
        dataclasses.replace(KEY, precision="int8"),
        dataclasses.replace(KEY, profile=ShapeProfile.for_images("lr", 3, (1, 8, 8), (8, 256, 256))),
        dataclasses.replace(KEY, gpu=A100),
        dataclasses.replace(KEY, tensorrt_version="11.4.0"),
    ]
    digests = {KEY.digest(), *(v.digest() for v in variants)}
    assert len(digests) == 6
    assert EngineKey.from_json(KEY.to_json()) == KEY
    assert H100.tag == "NVIDIA-H100-80GB-HBM3-sm90"


def test_profile_needs_ordered_shapes():
    with pytest.raises(ValueError, match="min ≤ opt ≤ max"):
        ShapeProfile.for_images(batch=(4, 1, 8))


def test_check_engine_refuses_foreign_stale_and_truncated_engines(tmp_path):
    path = write_engine(tmp_path / "m.engine", b"engine-bytes" * 100, KEY)
    assert check_engine(path, H100, "10.13.0") == KEY
    with pytest.raises(
        StaleEngineError, match=r"built for NVIDIA H100.*sm_90.*this is NVIDIA A100.*sm_80.*fastgan.export trt"
    ):
        check_engine(path, A100, "10.13.0")
    with pytest.raises(StaleEngineError, match="TensorRT 10.13.0, this is TensorRT 11.4.0"):
        check_engine(path, H100, "11.4.0")
    path.write_bytes(path.read_bytes()[:50])
    with pytest.raises(StaleEngineError, match="truncated"):
        check_engine(path, H100, "10.13.0")
    (tmp_path / "m.engine.json").unlink()
    with pytest.raises(StaleEngineError, match="sidecar"):
        check_engine(path, H100, "10.13.0")
    with pytest.raises(FileNotFoundError, match="fastgan.export trt"):
        check_engine(tmp_path / "missing.engine", H100, "10.13.0")


def test_cache_builds_once_reuses_and_rebuilds_a_corrupt_entry(tmp_path, caplog):
    builds = []

    def build():  # stands in for TensorRT's builder: the cache logic is what is under test
        builds.append(1)
        return b"serialized engine %d" % len(builds)

    cache = EngineCache(tmp_path / "engines")
    path = cache.get_or_build(KEY, build)
    assert cache.get_or_build(KEY, build) == path and len(builds) == 1
    assert path.name.startswith("abababababab-fp16-NVIDIA-H100-80GB-HBM3-sm90-trt10.13.0-")
    path.write_bytes(b"garbage")
    with caplog.at_level(logging.WARNING):
        assert cache.get_or_build(KEY, build) == path
    assert len(builds) == 2 and "rebuilding" in caplog.text and "truncated or overwritten" in caplog.text
    assert path.read_bytes() == b"serialized engine 2"
    other = cache.get_or_build(dataclasses.replace(KEY, gpu=A100), build)  # another GPU: its own entry
    assert other != path and len(builds) == 3
