"""Upscale images, folders of images or videos with a trained upscaler, tile by tile, without seams.

    python -m fastgan.upscale --model runs/srresnet-x2 --input frames/ --output frames-x2/
    python -m fastgan.upscale --model runs/srresnet-x2/export/upscaler-fp32.onnx --backend onnxruntime \
        --input clip.mp4 --output clip-x2.mp4
    python -m fastgan.upscale --model upscaler-fp16.onnx --backend tensorrt --tile 512 --batch 4 ...
"""

from __future__ import annotations

import argparse
import logging

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
    p.add_argument("--device", default="auto", help="torch backend: auto, cpu or cuda[:N]")
    p.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32", help="torch backend's dtype")
    p.add_argument("--fused", action="store_true", help="torch backend: fused ops (Triton kernels on CUDA)")
    p.add_argument("--tile", type=int, default=256, help="largest tile side the model sees")
    p.add_argument("--overlap", type=int, default=None, help="context pixels per tile side (default: receptive radius)")
    p.add_argument("--feather", type=int, default=None, help="blend half-width (default: exact when possible)")
    p.add_argument("--window", choices=WINDOWS, default="cosine")
    p.add_argument("--batch", type=int, default=8, help="tiles per model call")
    p.add_argument("--border", choices=("reflect", "zero"), default="reflect")
    p.add_argument("--alpha", choices=ALPHA_MODES, default="model", help="how an alpha channel is upscaled")
    p.add_argument("--engine-cache", default=None, help="TensorRT engine cache folder (default: beside the model)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        model = load_upscaler(
            args.model, args.backend, args.device, args.precision, args.fused, args.tile, args.batch, args.engine_cache
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
        source = open_frames(args.input)
        log.info(
            "%s ×%d, receptive radius %d; tiles ≤ %d, overlap %d, feather %d (%s); %d frames (%s)",
            model.description,
            model.scale,
            model.receptive_radius,
            args.tile,
            overlap,
            tiled.feather,
            "exact" if tiled.exact else "not exact: overlap < radius + feather",
            len(source),
            source.kind,
        )
        with open_sink(args.output, source) as sink:
            speed = upscale_frames(source, sink.write, tiled, args.alpha, total=len(source))
    except (FileNotFoundError, FrameError, ValueError, RuntimeError) as error:
        log.error("%s", error)
        return 1
    skipped = getattr(source, "skipped", [])
    log.info(
        "%d frames in %.2f s: %.2f frames/s, %.2f input MP/s%s",
        speed.frames,
        speed.seconds,
        speed.fps,
        speed.megapixels_per_second,
        f"; skipped {len(skipped)} unreadable: {', '.join(skipped)}" if skipped else "",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
