"""int8 upscalers as explicit Q/DQ ONNX, calibrated on real frames: what TensorRT ≥ 10 builds int8 engines from.

TensorRT 10 deprecated and TensorRT 11 removed implicit int8 (builder flags plus a calibrator); the supported route
is an ONNX graph with QuantizeLinear/DequantizeLinear pairs. onnxruntime's static quantiser writes exactly that:
symmetric int8 activations and per-channel symmetric int8 weights around every convolution (TensorRT's expected
pattern), the activation ranges measured on tiles cut from real frames. The ranges are cached next to the model,
keyed by the fp32 model's hash, the calibration method and the calibration crops' hash, so a rebuild does not
recalibrate and other frames do. The same file runs in
onnxruntime on a CPU, which is how its accuracy is checked here.
"""

from __future__ import annotations

import glob
import hashlib
import json
import logging
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

from fastgan.atomic import atomic_path
from fastgan.export.onnx_export import UPSCALER_INPUT, ExportError, read_metadata
from fastgan.file_hash import sha256_file

log = logging.getLogger(__name__)

CALIBRATION_METHODS = {
    "minmax": CalibrationMethod.MinMax,
    "entropy": CalibrationMethod.Entropy,
    "percentile": CalibrationMethod.Percentile,
}


def _check_calibration_frame(index: int, frame: np.ndarray) -> None:
    """Refuse what would calibrate int8 ranges for other inputs than the model gets: (3, H, W) floats in [0, 1]."""
    if frame.ndim != 3 or frame.shape[0] != 3:
        hint = " (channels last? use frame.transpose(2, 0, 1))" if frame.ndim == 3 and frame.shape[-1] == 3 else ""
        raise ValueError(f"calibration frame {index} has shape {frame.shape}; expected (3, H, W){hint}")
    if not np.issubdtype(frame.dtype, np.floating):
        raise ValueError(
            f"calibration frame {index} is {frame.dtype}; give floats in [0, 1] (divide 8-bit frames by 255, 16-bit "
            "by 65535), as the model sees them"
        )
    if not np.isfinite(frame).all() or frame.min() < 0 or frame.max() > 1:
        raise ValueError(f"calibration frame {index} has values outside [0, 1] (or non-finite); scale it to [0, 1]")


class TileReader(CalibrationDataReader):
    """Batches of random `tile`×`tile` crops of real frames, fed to the model's input while ranges are measured.

    Args:
        frames: (3, H, W) float arrays in [0, 1] (float16 or float32; the crops go in as float32), each at least
            `tile` on both sides.
        tile: crop side.
        count: number of crops in all.
        batch: crops per batch.
        seed: the crops' positions and frames.
    """

    def __init__(self, frames: Sequence[np.ndarray], tile: int, count: int = 64, batch: int = 8, seed: int = 0):
        if min(tile, count, batch) < 1:
            raise ValueError(f"calibration needs tile, count and batch ≥ 1, got {tile}, {count} and {batch}")
        for i, frame in enumerate(frames):
            _check_calibration_frame(i, frame)
        usable = [f for f in frames if f.shape[1] >= tile and f.shape[2] >= tile]
        if not usable:
            raise ValueError(
                f"no calibration frame is at least {tile}×{tile}; give larger frames or a smaller tile "
                "(--calibration-tile)"
            )
        rng = np.random.default_rng(seed)
        crops = []
        for _ in range(count):
            frame = usable[rng.integers(len(usable))]
            y, x = rng.integers(frame.shape[1] - tile + 1), rng.integers(frame.shape[2] - tile + 1)
            crops.append(frame[:, y : y + tile, x : x + tile])
        batches = [np.stack(crops[i : i + batch]).astype(np.float32) for i in range(0, count, batch)]
        digest = hashlib.sha256()
        for array in batches:
            digest.update(array.tobytes())
        self.digest = digest.hexdigest()  # what calibration sees: the cache key of its ranges
        self.batches = iter(batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        batch = next(self.batches, None)
        return None if batch is None else {UPSCALER_INPUT: batch}


def calibration_cache_path(onnx_fp32: str | Path, method: str, crops_digest: str) -> Path:
    """Where the activation ranges of `onnx_fp32` measured with `method` on the crops hashed to `crops_digest`
    (`TileReader.digest`) are cached: beside the model, named by both hashes, so neither a re-exported model nor
    other calibration frames reuse another's ranges."""
    onnx_fp32 = Path(onnx_fp32)
    model = sha256_file(onnx_fp32)[:12]
    return onnx_fp32.with_name(f"{onnx_fp32.stem}-{model}-{method}-{crops_digest[:12]}.calibration.json")


def _only_cache(onnx_fp32: Path, method: str) -> Path | None:
    """The cache of `onnx_fp32`'s ranges measured with `method`, on whatever frames (also one named before the crops'
    hash was part of the name, `…-{method}.calibration.json`); None when there is none.

    Raises:
        ValueError: several caches of other frames: which one is meant is not known.
    """
    prefix = glob.escape(f"{onnx_fp32.stem}-{sha256_file(onnx_fp32)[:12]}-{method}")
    folder = onnx_fp32.parent
    caches = sorted([*folder.glob(f"{prefix}-*.calibration.json"), *folder.glob(f"{prefix}.calibration.json")])
    if len(caches) > 1:
        names = ", ".join(path.name for path in caches)
        raise ValueError(
            f"{len(caches)} {method} calibrations of {onnx_fp32.name} on other frames ({names}): give the frames to "
            "use (--calibration-frames), or delete the caches not meant"
        )
    return caches[0] if caches else None


def _unreadable(cache: Path) -> str | None:
    """Why the ranges cached at `cache` cannot be used (a damaged or emptied file), or None."""
    try:
        ranges = json.loads(cache.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return str(exc)
    return None if isinstance(ranges, dict) and ranges else "no activation ranges in it"


def quantize_int8(
    onnx_fp32: str | Path,
    out: str | Path,
    frames: Sequence[np.ndarray] | None,
    tile: int = 64,
    count: int = 64,
    method: str = "percentile",
) -> Path:
    """Write the int8 Q/DQ version of an fp32 upscaler ONNX file, calibrated on crops of `frames` (or the cache).

    Args:
        onnx_fp32: an upscaler exported by `export_upscaler` in fp32.
        out: the int8 ONNX file to write (atomically).
        frames: (3, H, W) float arrays in [0, 1] from the frames the model will upscale (their ranges are
            cached: the same crops again are not recalibrated); None uses the cached ranges of this model and
            method, and fails if there are none, or several of other frames.
        tile, count: calibration crop side and number of crops.
        method: "percentile" (99.999th percentile of |activation|), "entropy" (TensorRT's classic KL choice) or
            "minmax".
    """
    if method not in CALIBRATION_METHODS:
        raise ValueError(f"unknown calibration method {method!r}; choose {', '.join(CALIBRATION_METHODS)}")
    meta = read_metadata(onnx_fp32)
    if meta["fastgan.kind"] != "upscaler" or meta["fastgan.precision"] != "fp32":
        raise ExportError(
            f"{onnx_fp32} is a {meta['fastgan.precision']} {meta['fastgan.kind']}; quantise an fp32 upscaler"
        )
    if frames is None:
        reader, cache = None, _only_cache(Path(onnx_fp32), method)
        if cache is None:
            raise ValueError(
                f"no {method} calibration cache beside {onnx_fp32}: give real frames to calibrate int8 on "
                "(--calibration-frames)"
            )
        if (damage := _unreadable(cache)) is not None:
            raise ValueError(
                f"the calibration cache {cache} cannot be read ({damage}): delete it and give the frames to calibrate "
                "on again (--calibration-frames)"
            )
    else:
        reader = TileReader(frames, tile, count)
        cache = calibration_cache_path(onnx_fp32, method, reader.digest)
        if cache.is_file() and (damage := _unreadable(cache)) is not None:
            log.warning("calibration cache %s cannot be read (%s); calibrating again, replacing it", cache, damage)
            cache.unlink()
        reader = None if cache.is_file() else reader
    log.info("int8 calibration: %s", f"cached ranges {cache}" if reader is None else f"{count} {tile}² crops, {method}")
    out = Path(out)
    with atomic_path(out) as temporary:
        quantize_static(
            str(onnx_fp32),
            str(temporary),
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=["Conv"],
            per_channel=True,
            activation_type=QuantType.QInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CALIBRATION_METHODS[method],
            extra_options={"ActivationSymmetric": True, "WeightSymmetric": True, "QuantizeBias": False},
            calibration_cache_path=str(cache),
        )
        proto = onnx.load_model(temporary)
        onnx.helper.set_model_props(proto, {**meta, "fastgan.precision": "int8"})
        onnx.save_model(proto, temporary)
    return out
