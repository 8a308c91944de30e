"""Export a training run to ONNX (checked in onnxruntime) or to a TensorRT engine.

python -m fastgan.export onnx --checkpoint runs/srresnet-x2                      # upscaler-fp32.onnx
python -m fastgan.export onnx --checkpoint runs/srresnet-x2 --precision int8     # calibrated on the run's images
python -m fastgan.export onnx --checkpoint runs/embedded-64                       # HRGAN generator
python -m fastgan.export trt --onnx runs/srresnet-x2/export/upscaler-fp16.onnx --tile 512 --batch 4
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import numpy as np
import torch

from fastgan.atomic import atomic_path, unwritable_reason
from fastgan.cli_types import names_folder, positive_finite, positive_int
from fastgan.export.onnx_export import (
    ExportError,
    error_vs_torch,
    export_generator,
    export_upscaler,
    read_metadata,
)
from fastgan.export.quantize import CALIBRATION_METHODS, quantize_int8

log = logging.getLogger("fastgan.export")

#: Most frames kept for int8 calibration (a uniform sample of the source; its crops are drawn from them).
CALIBRATION_FRAMES = 64
#: Most bytes the kept frames may hold, as float16 (activation ranges need no more than its 11 bits): fewer of large
#: frames (1080p: 43, 4K: 10), where 64 float32 4K frames held 6.4 GB for 64 crops of 64².
CALIBRATION_BYTES = 512 << 20
#: Largest difference from torch fp32 an export may show on a smooth check image, by precision, as (statistic,
#: bound): the outputs are images in [0, 1]; fp16 rounds at 2⁻¹¹; int8 quantises every convolution's activations,
#: so its pixels are judged together (RMS 0.05 is a PSNR of 26 dB against torch), not by the worst one.
TOLERANCE = {"fp32": ("max", 1e-3), "fp16": ("max", 5e-2), "int8": ("rms", 0.05)}


def _calibration_frames(source: str | None, config, scale: int) -> list:
    """(3, h, w) arrays in [0, 1]: a seeded uniform sample of the given frames, as they are (what the model will be
    fed; decoded one by one and sampled as they come, so neither a long video nor a container's estimated frame count
    matters), at most `CALIBRATION_FRAMES` and as many of the largest frame as fit `CALIBRATION_BYTES` as float16;
    else the run's training images down-scaled ×scale as in training (float32)."""
    if source:
        from fastgan.upscale.frames import open_frames

        rng, kept, size = np.random.default_rng(0), [], CALIBRATION_FRAMES
        for index, frame in enumerate(open_frames(source)):  # reservoir sampling (Algorithm R)
            pixels = frame.rgb.numpy().astype(np.float16)
            if (fits := max(1, CALIBRATION_BYTES // pixels.nbytes)) < size:  # a larger frame: a smaller reservoir,
                size = fits  # by a uniform subset of the uniform sample so far
                kept = [kept[i] for i in sorted(rng.choice(len(kept), min(size, len(kept)), replace=False))]
            if index < size:
                kept.append(pixels)
            elif (slot := int(rng.integers(index + 1))) < size:
                kept[slot] = pixels
        return kept
    from fastgan.data.sr_loader import degrade
    from fastgan.train.run import load_sr_images

    training, _ = load_sr_images(config.sr)
    crops = [hr[:, : hr.shape[1] // scale * scale, : hr.shape[2] // scale * scale] for _, hr in training]  # uint8
    return [degrade(hr[None].float() / 255, scale, config.sr.degrade)[0].numpy() for hr in crops]


def _smooth_image(height: int = 48, width: int = 40) -> torch.Tensor:
    """(1, 3, H, W) in [0, 1] that varies like a picture, not like noise: the image an export is compared on."""
    coarse = torch.rand(1, 3, height // 8 + 1, width // 8 + 1, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(coarse, size=(height, width), mode="bilinear", align_corners=True)


def _check(path: Path, model: torch.nn.Module, inputs: dict[str, torch.Tensor], precision: str) -> None:
    """Raise ExportError if the file in onnxruntime differs from `model` beyond `TOLERANCE` (a broken export)."""
    statistic, bound = TOLERANCE[precision]
    error = error_vs_torch(path, model, inputs, statistic)
    log.info("onnxruntime vs torch fp32: %s |difference| %.2e (tolerance %g)", statistic, error, bound)
    if not error <= bound:  # also NaN
        raise ExportError(
            f"{path.name} differs from the torch model by {error:.3g} ({statistic}) in onnxruntime, more than "
            f"{bound:g} for {precision}: the export is broken and was not written; report it with the run and the "
            "command"
        )


def export_run(
    checkpoint: str, out: str | Path | None, precision: str, frames: str | None, method: str, tile: int = 64
) -> Path:
    """Export a run's generator: an SRResNet/SRGAN or LAG (its centre G(y, 0)) upscaler (any precision, int8 via
    calibration) or an HRGAN generator (fp32/fp16/bf16); fp32, fp16 and int8 files are checked in onnxruntime
    against torch."""
    from fastgan.train.checkpoint import run_directory
    from fastgan.train.upscalers import run_config

    run = Path(checkpoint).expanduser()
    config = run_config(run)
    family = "upscaler" if config.model.name in ("srgan", "lag") else "generator"
    out = export_destination(out, run_directory(run) / "export", f"{family}-{precision}.onnx")
    if config.model.name in ("srgan", "lag"):
        from fastgan.train.upscalers import upscaler_from_checkpoint, upscaler_scale
        from fastgan.upscale.receptive_field import receptive_radius

        model, config = upscaler_from_checkpoint(run)
        scale = upscaler_scale(config)
        radius = receptive_radius(model, scale)
        with atomic_path(out, keep_suffix=True) as temporary:  # becomes `out` only if the check passes
            if precision == "int8":
                fp32 = export_upscaler(model, out.with_name(out.stem + "-fp32-source.onnx"), scale, radius)
                calibration = _calibration_frames(frames, config, scale)
                quantize_int8(fp32, temporary, calibration, tile=tile, method=method)
            else:
                export_upscaler(model, temporary, scale, radius, precision)
            if precision != "bf16":  # onnxruntime's CPU provider has no bf16 convolutions
                _check(temporary, model, {"lr": _smooth_image()}, precision)
        log.info("×%d upscaler, receptive radius %d → %s", scale, radius, out)
        return out
    if precision == "int8":
        raise ValueError("int8 export is for upscalers; export HRGAN generators in fp32, fp16 or bf16")
    from fastgan.eval.trained_generator import generator_from_checkpoint

    generator, config = generator_from_checkpoint(run)
    num_classes = generator.num_classes
    with atomic_path(out, keep_suffix=True) as temporary:  # becomes `out` only if the check passes
        export_generator(generator, temporary, config.model.z_dim, num_classes, config.model.resolution, precision)
        if precision != "bf16":
            inputs = {"z": torch.randn(4, config.model.z_dim), "y": torch.arange(4) % num_classes}
            _check(temporary, generator, inputs, precision)
    log.info("HRGAN-%d generator (%d classes) → %s", config.model.resolution, num_classes, out)
    return out


def export_destination(out: str | Path | None, folder: Path, name: str) -> Path:
    """Where `export onnx` writes: `out`, the file `name` in it when it is a folder (one that exists, or a path
    ending in a separator), or `name` in the run's export `folder`; checked before anything is exported.

    Raises:
        ValueError: `out` does not end in .onnx (what the upscaler and TensorRT recognise an ONNX file by), or could
            not be written (under a file, in a folder this process may not write in).
    """
    if out is None:
        out = folder / name
    elif names_folder(str(out)):
        out = Path(out).expanduser() / name
    out = Path(out).expanduser()
    if out.suffix.lower() != ".onnx":
        raise ValueError(f"--out {out}: name the ONNX file with the suffix .onnx, which the upscaler recognises it by")
    reason = unwritable_reason(out.parent)
    if reason is not None:
        raise ValueError(f"cannot write {out}: {reason}; choose another --out")
    return out


def build_trt(
    onnx_path: str, tile: int, min_tile: int, batch: int, cache: str | None, workspace_gb: float, device: str
) -> Path:
    """Build (or reuse from the cache) the TensorRT engine of an exported upscaler for GPU `device` (cuda or
    cuda:N)."""
    from fastgan.upscale.backends import upscaler_engine

    meta = read_metadata(onnx_path)
    if meta["fastgan.kind"] != "upscaler":
        raise ValueError(f"{onnx_path} holds a {meta['fastgan.kind']}; TensorRT export here is for upscalers")
    try:
        target = torch.device(device)
    except RuntimeError as error:
        raise ValueError(f"unknown device {device!r}: TensorRT builds on cuda or cuda:N") from error
    if target.type != "cuda":
        raise ValueError(f"TensorRT builds engines on a CUDA device, not {target}: use --device cuda or cuda:N")
    index = target.index if target.index is not None else 0
    folder = Path(cache) if cache else Path(onnx_path).parent / "engines"
    return upscaler_engine(
        onnx_path, meta["fastgan.precision"], tile, batch, folder, index, min_tile, int(workspace_gb * 2**30)
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m fastgan.export", description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    onnx_cmd = sub.add_parser("onnx", help="export a run's generator to ONNX")
    onnx_cmd.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    onnx_cmd.add_argument("--out", default=None, help="ONNX file, or a folder for it (default: <run>/export/...)")
    onnx_cmd.add_argument("--precision", choices=("fp32", "fp16", "bf16", "int8"), default="fp32")
    onnx_cmd.add_argument("--calibration-frames", default=None, help="int8: frames (folder/video) to calibrate on")
    onnx_cmd.add_argument("--calibration-method", choices=CALIBRATION_METHODS, default="percentile")
    onnx_cmd.add_argument(
        "--calibration-tile", type=positive_int, default=64, help="int8: side of the calibration crops"
    )
    trt_cmd = sub.add_parser("trt", help="build the TensorRT engine of an exported upscaler (needs a GPU)")
    trt_cmd.add_argument("--onnx", required=True, help="a file written by `python -m fastgan.export onnx`")
    trt_cmd.add_argument("--tile", type=positive_int, default=256, help="largest (and optimal) tile side")
    trt_cmd.add_argument("--min-tile", type=positive_int, default=1, help="smallest tile side the engine accepts")
    trt_cmd.add_argument("--batch", type=positive_int, default=8, help="largest (and optimal) batch of tiles")
    trt_cmd.add_argument("--cache", default=None, help="engine cache folder (default: <onnx folder>/engines)")
    trt_cmd.add_argument("--workspace-gb", type=positive_finite, default=4.0)
    trt_cmd.add_argument("--device", default="cuda", help="the GPU to build for: cuda (cuda:0) or cuda:N")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for chatty in ("onnxscript", "onnx_ir", "torch.onnx"):  # the exporter's pass-by-pass notes
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        if args.command == "onnx":
            names = ("calibration_frames", "calibration_method", "calibration_tile")
            given = ["--" + n.replace("_", "-") for n in names if getattr(args, n) != onnx_cmd.get_default(n)]
            if args.precision != "int8" and given:
                log.warning("%s: only int8 exports are calibrated", ", ".join(given))
            path = export_run(
                args.checkpoint,
                args.out,
                args.precision,
                args.calibration_frames,
                args.calibration_method,
                args.calibration_tile,
            )
        else:
            path = build_trt(
                args.onnx, args.tile, args.min_tile, args.batch, args.cache, args.workspace_gb, args.device
            )
    except (OSError, ValueError, RuntimeError) as error:  # OSError: missing input, unwritable output
        log.error("%s", error)
        return 1
    print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
