"""Upscale images, folders of images or videos with a trained upscaler, tile by tile, without seams.

    python -m fastgan.upscale --model runs/srresnet-x2 --input frames/ --output frames-x2/
    python -m fastgan.upscale --model runs/srresnet-x2/export/upscaler-fp32.onnx --backend onnxruntime \
        --input clip.mp4 --output clip-x2.mp4 [--codec libx265 --crf 22]
    python -m fastgan.upscale --model upscaler-fp16.onnx --backend tensorrt --tile 512 --batch 4 ...
    python -m fastgan.upscale --model runs/lag-x4 --samples 4 --input lr/ --output sr/   # + sr-sample1/ … sr-sample4/
"""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

import torch

from fastgan.cli_types import positive_finite, positive_int
from fastgan.upscale.backends import BACKENDS, load_upscaler
from fastgan.upscale.frames import FrameError, open_frames, open_sink
from fastgan.upscale.pipeline import ALPHA_MODES, upscale_frames
from fastgan.upscale.tiling import WINDOWS, TiledUpscaler

log = logging.getLogger("fastgan.upscale")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m fastgan.upscale", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", required=True, help="training run / checkpoint (torch) or exported .onnx file")
    p.add_argument("--input", required=True, help="image file, folder of images, or video file")
    p.add_argument("--output", required=True, help="output file or folder (same kind as the input)")
    p.add_argument("--backend", choices=BACKENDS, default="torch")
    p.add_argument(
        "--device", default="auto", help="auto, cpu or cuda[:N]: the torch model's, onnxruntime's or TensorRT's device"
    )
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="torch backend's dtype")
    p.add_argument("--fused", action="store_true", help="torch backend: fused ops (Triton kernels on CUDA)")
    p.add_argument("--tile", type=positive_int, default=256, help="largest tile side the model sees")
    p.add_argument("--overlap", type=int, default=None, help="context pixels per tile side (default: receptive radius)")
    p.add_argument("--feather", type=int, default=None, help="blend half-width (default: exact when possible)")
    p.add_argument("--window", choices=WINDOWS, default="cosine")
    p.add_argument("--batch", type=positive_int, default=8, help="tiles per model call")
    p.add_argument("--border", choices=("reflect", "zero"), default="reflect")
    p.add_argument("--alpha", choices=ALPHA_MODES, default="model", help="how an alpha channel is upscaled")
    p.add_argument(
        "--codec",
        default=None,
        help="video encoder (FFmpeg's name through PyAV: libx264, libx265, libvpx-vp9, libsvtav1, ffv1 (lossless), "
        "mjpeg, h264_nvenc, ...); default: libx264 for .mp4/.mov/.mkv, libvpx-vp9 for .webm, mjpeg for .avi",
    )
    p.add_argument(
        "--crf",
        type=int,
        default=None,
        help="video quality, the encoder's constant-rate factor (lower: better, larger; 0 is lossless for libx264); "
        "default 18 for libx264, 20 libx265, 31 libvpx-vp9, 30 AV1",
    )
    p.add_argument("--engine-cache", default=None, help="TensorRT engine cache folder (default: beside the model)")
    p.add_argument(
        "--min-tile", type=positive_int, default=1, help="TensorRT: smallest tile side (as given to export trt)"
    )
    p.add_argument(
        "--workspace-gb", type=positive_finite, default=4.0, help="TensorRT: builder workspace (as to export trt)"
    )
    p.add_argument(
        "--samples",
        type=int,
        default=0,
        help="LAG runs: also write K samples G(y, z_k) beside the centre G(y, 0), to OUTPUT-sample1 … OUTPUT-sampleK",
    )
    p.add_argument("--seed", type=int, default=0, help="seeds the z of --samples")
    p.add_argument(
        "--noise-scale",
        type=positive_finite,
        default=1.0,
        help="standard deviation σ of the z of --samples (LAG's temperature; 1 draws from the training prior, "
        "smaller stays closer to the centre)",
    )
    return p


def sample_output(output: str, k: int) -> str:
    """Where sample k goes: the output's stem with -sample{k} (a file keeps its suffix; a folder gets a sibling)."""
    path = Path(output).expanduser().resolve()  # "." names the folder it is, not an empty name
    if not path.name:
        raise FrameError(f"--samples writes beside the output, and {output} has nothing beside it; name a folder")
    return str(path.with_name(f"{path.stem}-sample{k}{path.suffix}"))


def noise_draws(samples: int, noise_dim: int, seed: int, scale: float = 1.0) -> list[torch.Tensor | None]:
    """None (the centre), then `samples` (Z,) noise vectors drawn from `seed`, from N(0, scale²·I)."""
    g = torch.Generator().manual_seed(seed)
    return [None, *(scale * torch.randn(samples, noise_dim, generator=g))]


def _upscale(args: argparse.Namespace, z: torch.Tensor | None, output: str, radius: int | None = None):
    """Upscale args.input to `output` with noise `z` (LAG) or the model as it is, given the receptive `radius` if it
    was measured before; -> (source, speed, radius). The input and output are checked before the model loads (a
    TensorRT engine may first have to be built)."""
    source = open_frames(args.input)
    sink = open_sink(output, source, args.codec, args.crf)
    model = load_upscaler(
        args.model,
        args.backend,
        args.device,
        args.precision,
        args.fused,
        args.tile,
        args.batch,
        args.engine_cache,
        z,
        min_tile=args.min_tile,
        workspace_bytes=int(args.workspace_gb * 2**30),
        radius=radius,
    )
    overlap = model.receptive_radius if args.overlap is None else args.overlap
    tiled = TiledUpscaler(
        model.tiles,
        model.scale,
        model.receptive_radius,
        args.tile,
        overlap,
        args.feather,
        args.window,
        args.batch,
        args.border,
        model.device,
    )
    log.info(
        "%s ×%d, receptive radius %d; tiles ≤ %d, overlap %d, feather %d (%s); %d frames (%s) → %s",
        model.description,
        model.scale,
        model.receptive_radius,
        args.tile,
        overlap,
        tiled.feather,
        "exact" if tiled.exact else "not exact: overlap < radius + feather",
        len(source),
        source.kind,
        output,
    )
    with sink:
        speed = upscale_frames(source, sink.write, tiled, args.alpha, total=len(source))
    return source, speed, model.receptive_radius


def _warn_unused(args: argparse.Namespace) -> None:
    """Warn about options given (not at their defaults) that the chosen backend does not read."""
    defaults = parser()
    unused = {
        "torch": ("engine_cache", "min_tile", "workspace_gb"),
        "onnxruntime": ("precision", "fused", "engine_cache", "min_tile", "workspace_gb"),
        "tensorrt": ("precision", "fused"),
    }[args.backend]
    given = ["--" + name.replace("_", "-") for name in unused if getattr(args, name) != defaults.get_default(name)]
    if given:
        log.warning(
            "%s: not used by the %s backend (an ONNX file runs in its own precision; the engine options are "
            "TensorRT's)",
            ", ".join(given),
            args.backend,
        )


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    _warn_unused(args)
    if args.samples < 0:
        log.error("--samples must be >= 0, got %d", args.samples)
        return 1
    if not args.samples and (args.seed != 0 or args.noise_scale != 1):
        log.warning("--seed and --noise-scale draw the z of --samples; without --samples only the centre is written")
    try:
        draws: list[torch.Tensor | None] = [None]
        if args.samples:
            if args.backend != "torch":
                raise ValueError("--samples draws LAG samples with the torch backend (ONNX files hold the centre)")
            from fastgan.train.upscalers import run_config

            config = run_config(args.model)
            if config.model.name != "lag":
                raise ValueError(f"--samples needs a LAG run; {args.model} is a {config.model.name} run")
            draws = noise_draws(args.samples, config.lag.noise_dim, args.seed, args.noise_scale)
        outputs = [args.output, *(sample_output(args.output, k) for k in range(1, len(draws)))]  # before any work
        radius = None  # measured for the centre, the same for every sample
        for z, output in zip(draws, outputs, strict=True):
            source, speed, radius = _upscale(args, z, output, radius)
            skipped = getattr(source, "skipped", [])
            if speed.frames == 0:
                raise FrameError(f"no frame of {args.input} could be read ({len(skipped)} unreadable): nothing written")
            log.info(
                "%s: %d frames in %.2f s: %.2f frames/s, %.2f input MP/s%s",
                output,
                speed.frames,
                speed.seconds,
                speed.fps,
                speed.megapixels_per_second,
                f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else "",
            )
    except (OSError, FrameError, ValueError, RuntimeError) as error:  # OSError: missing input, unwritable output
        log.error("%s", error)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
