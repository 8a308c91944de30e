"""python -m fastgan.eval: score upscalers (sr), LAG's sample spread (spread) and HRGAN generators (table), and
draw sample sheets (sheets).

Examples:
    python -m fastgan.eval sr --checkpoint runs/srresnet-x2                  # the run's held-out images
    python -m fastgan.eval sr --checkpoint runs/srresnet-x2 --images ~/photos --out runs/srresnet-x2/eval
    python -m fastgan.eval sr --checkpoint runs/srresnet-x2 --onnx runs/srresnet-x2/export/upscaler-int8.onnx
    python -m fastgan.eval spread --checkpoint runs/lag-x4                   # LAG: how samples differ across z
    python -m fastgan.eval table runs/hrgan-32 runs/hrgan-32-no-ms runs/embedded-64 --samples 5000 --out table.md
    python -m fastgan.eval table runs/cifar10-64 --inception-weights ~/weights/pt_inception-2015-12-05-6726825d.pth
    python -m fastgan.eval sheets --checkpoint runs/embedded-64
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from fastgan.atomic import atomic_path, unwritable_reason, write_bytes_atomically
from fastgan.cli_types import names_folder, positive_finite, positive_int
from fastgan.data.sources import DataSourceError
from fastgan.data.sr_loader import center_crops, degrade
from fastgan.data.sr_sources import folder_images, game_frames, held_out_game_frames, skimage_photos
from fastgan.data.video_sources import video_frames
from fastgan.eval.precision import exact_fp32
from fastgan.eval.scores import PRECISION_NEIGHBOURS
from fastgan.eval.sr_compare import baseline_upscale, comparison_image, evaluate, markdown_table
from fastgan.eval.trained_generator import GENERATOR_WEIGHTS, STANDING_HELP, WEIGHTS_HELP, generator_from_checkpoint
from fastgan.train.checkpoint import CheckpointError, run_directory
from fastgan.train.run import load_sr_images, resolve_device
from fastgan.train.upscalers import upscaler_from_checkpoint, upscaler_name, upscaler_scale
from fastgan.video_files import is_video


def _images(source: str, config) -> list[tuple[str, torch.Tensor]]:
    if source == "held-out":
        return load_sr_images(config.sr)[1]
    if source == "skimage":
        return skimage_photos()
    if source == "doom":
        scenario, count = config.sr.doom_scenario, config.sr.doom_frames
        return held_out_game_frames(scenario, count, training=game_frames(scenario, count, seed=0))
    if is_video(source):
        return video_frames(source, config.sr.video_every, config.sr.video_frames)
    return folder_images(source)


def _distinct_names(paths: tuple[str, ...]) -> list[str]:
    """Each file's shortest trailing path without suffix that no other file shares (`upscaler-fp32` alone, else
    `run-a/export/upscaler-fp32` beside `run-b/export/upscaler-fp32`): the table's rows are keyed by name.

    Raises:
        ValueError: a file given twice.
    """
    resolved = [Path(path).resolve() for path in paths]
    twice = sorted({str(path) for path in resolved if resolved.count(path) > 1})
    if twice:
        raise ValueError(f"--onnx names {', '.join(twice)} more than once; give each file once")
    parts = [path.with_suffix("").parts for path in resolved]
    for depth in range(1, max(map(len, parts), default=1) + 1):
        names = ["/".join(p[-depth:]) for p in parts]
        if len(set(names)) == len(names):
            return names
    return [str(path) for path in resolved]


def _tiled(path: str, name: str, tile: int, device: str = "auto"):
    """(B, 3, h, w) → (B, 3, s·h, s·w) in [0, 1] by an exported upscaler in onnxruntime, tile by tile, and the row
    name. Overlap = its receptive radius and zero borders, the network's own padding: the whole-image output to
    rounding, so that the row differs from the torch model's only by what the export changed."""
    from fastgan.export.onnx_export import onnxruntime_device
    from fastgan.upscale.backends import load_upscaler
    from fastgan.upscale.tiling import TiledUpscaler

    model = load_upscaler(path, "onnxruntime", onnxruntime_device(device))
    r = model.receptive_radius
    tiled = TiledUpscaler(model.tiles, model.scale, r, tile=tile, overlap=r, border="zero", device=model.device)
    row = f"{name}: {model.description}, tiles ≤ {tile}"
    return row, lambda lr: torch.stack([tiled(image) for image in lr]).clamp(0, 1)


def evaluate_sr(
    checkpoint: str, images: str, out: Path, device: str = "auto", onnx: tuple[str, ...] = (), tile: int = 128
) -> str:
    """Evaluate the run's generator on `images` (and each exported `onnx` file, tiled, in onnxruntime); write
    OUT/sr_eval.md and OUT/sr_comparison.png; return the table."""
    onnx_names = _distinct_names(onnx)
    generator, config = upscaler_from_checkpoint(checkpoint, resolve_device(device))
    scale, ours = upscaler_scale(config), upscaler_name(config)
    named = _images(images, config)
    pairs = []
    for (name, _), hr in zip(named, center_crops(named, scale), strict=True):
        pairs.append((name, degrade(hr, scale, config.sr.degrade), hr))

    @torch.no_grad()
    def fastgan_upscale(lr: torch.Tensor) -> torch.Tensor:
        lr = lr.to(next(generator.parameters()).device)
        with exact_fp32(lr.device.type):  # the table must not depend on the GPU generation (TF32)
            return generator(lr).clamp(0, 1).cpu()

    upscalers = {
        "bicubic": lambda lr: baseline_upscale(lr, scale, "bicubic"),
        "lanczos": lambda lr: baseline_upscale(lr, scale, "lanczos"),
        ours: fastgan_upscale,
    }
    upscalers |= dict(_tiled(path, name, tile, device) for path, name in zip(onnx, onnx_names, strict=True))
    table = markdown_table(evaluate(upscalers, pairs, scale))
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out / "sr_eval.md", table.encode())
    name, lr, hr = pairs[0]
    side = min(hr.shape[-2:]) // 2
    crop = ((hr.shape[-2] - side) // 2, (hr.shape[-1] - side) // 2, side)
    shown = ("bicubic", ours)
    outputs = {method: upscale(lr) for method, upscale in upscalers.items() if method in shown}
    with atomic_path(out / "sr_comparison.png", keep_suffix=True) as temporary:
        comparison_image(lr, outputs, hr, crop=crop).save(temporary)
    return table


def hrgan_table(runs: list[str], args) -> None:
    """Score every run (Inception metrics when weights are at hand), print the paper's tables and write them and
    every score to `--out` (`table_paths`)."""
    import json

    from fastgan.eval.hrgan_report import evaluate_run, markdown
    from fastgan.eval.inception import InceptionWeightsError, load_inception

    device = resolve_device(args.device)
    try:
        inception = load_inception(args.inception_weights, args.resize, device)
    except InceptionWeightsError as error:
        if args.inception_weights:
            raise
        logging.getLogger("fastgan.eval").warning("%s — scoring without IS/FID (evaluator metrics only)", error)
        if args.resize != "bilinear":
            logging.getLogger("fastgan.eval").warning("--resize %s applies to Inception: not used", args.resize)
        inception = None
    rows, cache = [], {}  # the true renders, and the real images of runs on the same data, featurised once
    for run in runs:
        rows += evaluate_run(
            run,
            args.samples,
            args.splits,
            inception,
            args.evaluator_weights,
            args.seed,
            args.batch_size,
            device,
            cache,
            args.weights,
            args.standing_stats,
        )
    table = markdown(rows)
    print(table)  # before the files: a write that fails loses no scores
    if args.out:
        markdown_path, json_path = table_paths(args.out)
        write_bytes_atomically(markdown_path, table.encode())
        write_bytes_atomically(json_path, json.dumps(rows, indent=1).encode())
        print(f"wrote {markdown_path} and {json_path}")


def table_paths(out: str) -> tuple[Path, Path]:
    """Where `table --out OUT` writes the table and the scores: OUT/hrgan_table.md and .json for a folder (one that
    exists, or a path ending in a separator), else OUT itself and OUT with the other suffix of .md / .json."""
    path = Path(out).expanduser()
    if names_folder(out):
        path = path / "hrgan_table.md"
    if path.suffix == ".json":
        return path.with_suffix(".md"), path
    return path, path.with_suffix(".json")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m fastgan.eval", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    sr = commands.add_parser("sr", help="evaluate an SRResNet/SRGAN or LAG run")
    sr.add_argument("--checkpoint", required=True, help="run directory or checkpoint file")
    sr.add_argument(
        "--images",
        default="held-out",
        help="held-out (the run's, default), skimage, doom, a folder of images or a video file",
    )
    sr.add_argument("--out", type=Path, help="where to write sr_eval.md and sr_comparison.png (default: RUN/eval)")
    sr.add_argument("--device", default="auto")
    sr.add_argument("--onnx", nargs="*", default=[], help="exported upscalers to evaluate too (onnxruntime, tiled)")
    sr.add_argument("--tile", type=positive_int, default=128, help="tile side for the --onnx files")
    table = commands.add_parser("table", help="score HRGAN runs; the paper's Tables 1–2 layout")
    table.add_argument("runs", nargs="+", help="run directories or checkpoint files (any resolutions, λ_MS 0 or not)")
    table.add_argument("--samples", type=positive_int, default=50_000, help="generated (and real) samples per run")
    table.add_argument("--splits", type=positive_int, default=10, help="splits of the Inception and MobileNet scores")
    table.add_argument("--inception-weights", help="pytorch-fid's pt_inception-2015-12-05-6726825d.pth")
    table.add_argument(
        "--resize",
        choices=("bilinear", "bicubic", "nearest"),
        default="bilinear",
        help="how samples are resized to Inception's 299×299",
    )
    table.add_argument("--evaluator-weights", help="default: each run's own evaluator")
    table.add_argument("--seed", type=int, default=0)
    table.add_argument("--batch-size", type=positive_int, default=250)
    table.add_argument("--device", default="auto")
    table.add_argument(
        "--out", help="also write the table (.md) and every score (.json) there; a folder gets hrgan_table.md/.json"
    )
    spread = commands.add_parser(
        "spread", help="LAG runs: spread of samples across z, PSNR of G(y, 0) and bicubic, a sample sheet (PNG)"
    )
    spread.add_argument("--checkpoint", required=True)
    spread.add_argument("--images", default="held-out", help="held-out (default), skimage, doom, a folder or a video")
    spread.add_argument("--samples", type=positive_int, default=16, help="z draws per image")
    spread.add_argument("--seed", type=int, default=0)
    spread.add_argument(
        "--noise-scale", type=positive_finite, default=1.0, help="σ of the z draws, N(0, σ²I) (1: the training prior)"
    )
    spread.add_argument("--out", type=Path, help="default: RUN/eval (writes spread.md, spread.png)")
    spread.add_argument("--device", default="auto", help="where G draws the samples: auto, cpu, cuda or cuda:N")
    sheets = commands.add_parser("sheets", help="per-class sample sheet and latent interpolations (PNG)")
    sheets.add_argument("--checkpoint", required=True)
    sheets.add_argument("--out", type=Path, help="default: RUN/eval")
    sheets.add_argument("--per-class", type=positive_int, default=10)
    sheets.add_argument("--steps", type=positive_int, default=8)
    sheets.add_argument("--seed", type=int, default=0)
    for command in (table, sheets):
        command.add_argument("--weights", choices=GENERATOR_WEIGHTS, default="ema", help=WEIGHTS_HELP)
        command.add_argument("--standing-stats", type=int, default=0, metavar="N", help=STANDING_HELP)
    args = parser.parse_args(argv)
    if args.command == "table" and args.samples < max(args.splits, PRECISION_NEIGHBOURS + 1):
        parser.error(
            f"table: --samples ({args.samples}) must be at least --splits ({args.splits}) and more than the "
            f"{PRECISION_NEIGHBOURS} nearest neighbours of precision/recall"
        )
    if args.command == "table" and args.out:
        reason = unwritable_reason(table_paths(args.out)[0].parent)
        if reason is not None:  # refused now, not after the scoring
            parser.error(f"table: --out {args.out}: {reason}; choose another output")
    if args.command == "spread" and args.samples < 2:
        parser.error("spread: --samples must be at least 2 (a spread is the samples' standard deviation)")
    if args.command in ("sr", "spread", "sheets"):  # where they write, checked before the work, not after it
        args.out = args.out or run_directory(args.checkpoint) / "eval"
        reason = unwritable_reason(args.out)
        if reason is not None:
            parser.error(f"{args.command}: --out {args.out}: {reason}; choose another output")
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    if args.command == "sr" and not args.onnx and args.tile != sr.get_default("tile"):
        logging.getLogger("fastgan.eval").warning("--tile applies to the --onnx files; without them it is not used")
    if args.command == "spread":
        return _spread_command(args)
    if args.command != "sr":
        return _generator_command(args)
    checkpoint, out = Path(args.checkpoint).expanduser(), args.out
    try:
        print(evaluate_sr(str(checkpoint), args.images, out, args.device, tuple(args.onnx), args.tile))
    except (CheckpointError, DataSourceError, OSError, ValueError) as exc:  # also a missing --onnx
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {out / 'sr_eval.md'} and {out / 'sr_comparison.png'}")
    return 0


def _spread_command(args) -> int:
    from fastgan.eval.sample_spread import draw_samples, markdown, sample_spread, spread_sheet
    from fastgan.train.lag_step import lag_generator_from_checkpoint

    run, out = Path(args.checkpoint).expanduser(), args.out
    try:
        generator, config = lag_generator_from_checkpoint(run, resolve_device(args.device))
        images = _images(args.images, config)
        draws = draw_samples(generator, images, args.samples, args.seed, config.sr.degrade, args.noise_scale)
        results = sample_spread(draws, config.lag.scale)
    except (CheckpointError, DataSourceError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = markdown(results, config.lag.scale, args.samples, args.noise_scale)
    out.mkdir(parents=True, exist_ok=True)
    write_bytes_atomically(out / "spread.md", table.encode())
    with atomic_path(out / "spread.png", keep_suffix=True) as temporary:
        spread_sheet(draws).save(temporary)
    print(table + f"wrote {out / 'spread.md'} and {out / 'spread.png'}")
    return 0


def _generator_command(args) -> int:
    from fastgan.eval.evaluator import EvaluatorWeightsError
    from fastgan.eval.inception import InceptionWeightsError
    from fastgan.eval.sheets import write_sheets

    try:
        if args.command == "table":
            hrgan_table(args.runs, args)
        else:
            generator, _ = generator_from_checkpoint(args.checkpoint, args.weights, args.standing_stats)
            for path in write_sheets(generator, args.out, args.per_class, args.steps, args.seed):
                print(f"wrote {path}")
    except (CheckpointError, DataSourceError, EvaluatorWeightsError, InceptionWeightsError, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
