"""python -m fastgan.train: train an HRGAN, an SRResNet/SRGAN or a LAG upscaler (one core, three families).

Examples:
    python -m fastgan.train --config embedded-64              # the shipped CPU-sized preset
    python -m fastgan.train --data cifar10 --data-path ~/data/cifar-10-batches-py --resolution 128
    python -m fastgan.train --resume runs/embedded-64 --iterations 5000
    python -m fastgan.train --config srresnet-x2-light                  # SRResNet ×2 on real photographs
    python -m fastgan.train --config lag-x4                             # LAG ×4, grown ×2 → ×4
    python -m fastgan.train --model lag --progressive --set lag.scale=8 --out runs/lag-x8
    python -m fastgan.train --config embedded-64 --profile 5  # Chrome trace of 5 iterations in RUN/profile/
    python -m fastgan.train --config embedded-64 --fused --compile     # G, D and evaluator compiled by TorchInductor
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from fastgan.data.sources import DataSourceError
from fastgan.eval.evaluator import EvaluatorWeightsError
from fastgan.models.vgg import VGGWeightsError
from fastgan.train.checkpoint import CheckpointError
from fastgan.train.config import COMPILE_MODES, DATA_SOURCES, MODELS, ConfigError, load_config, parse_overrides
from fastgan.train.core import NonFiniteLossError, TrainingInterrupted
from fastgan.train.run import resume, train

# CLI flag -> config key it overrides
_FLAG_KEYS = {
    "model": "model.name",
    "resolution": "model.resolution",
    "iterations": "train.iterations",
    "data": "data.source",
    "data_path": "data.path",
    "lambda_ms": "loss.lambda_ms",
    "evaluator_weights": "loss.evaluator_weights",
    "out": "output.out_dir",
    "device": "train.device",
    "seed": "train.seed",
    "fused": "train.fused",
    "cuda_graphs": "train.cuda_graphs",
    "compile": "train.compile",
    "profile": "output.profile_steps",
    "progressive": "progressive.enabled",
}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m fastgan.train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--config", help="YAML config file, or a shipped preset name (e.g. embedded-64)")
    p.add_argument("--model", choices=MODELS)
    p.add_argument("--resolution", type=int, choices=(32, 64, 128), help="generator output side")
    p.add_argument("--iterations", type=int, help="generator updates")
    p.add_argument("--data", choices=DATA_SOURCES, help="training data source")
    p.add_argument("--data-path", help="CIFAR pickle folder or class-folder root")
    p.add_argument("--lambda-ms", type=float, help="weight of the MobileNet-score loss (0 disables it)")
    p.add_argument("--evaluator-weights", help="MobileNetV3-small weights file (torchvision or fastgan format)")
    p.add_argument("--out", help="run directory")
    p.add_argument("--device", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--seed", type=int)
    p.add_argument(
        "--fused",
        action="store_true",
        default=None,
        help="fused ops: Triton kernels on CUDA; on a CPU the fused autograd ops with torch arithmetic",
    )
    p.add_argument(
        "--cuda-graphs",
        action="store_true",
        default=None,
        help="HRGAN on CUDA: capture each D and G update in a CUDA graph and replay it (launch-bound steps run "
        "at kernel speed)",
    )
    p.add_argument(
        "--compile",
        nargs="?",
        const="default",
        choices=COMPILE_MODES,
        metavar="MODE",
        help="torch.compile the networks: HRGAN's G, D and evaluator, or the SR generator, discriminator and VGG "
        "(not progressive, not LAG). MODE: default, reduce-overhead, max-autotune, max-autotune-no-cudagraphs, or "
        "off. With --fused the fused ops give TorchInductor their arithmetic and keep the convolution by phases and "
        "the strided pooled convolutions",
    )
    p.add_argument(
        "--profile",
        type=int,
        metavar="STEPS",
        help="trace STEPS iterations (after a warm-up one, and CUDA graphs' warm-up and capture) with torch.profiler "
        "to a Chrome trace in RUN_DIR/profile/",
    )
    p.add_argument(
        "--progressive",
        action="store_true",
        default=None,
        help="grow the upscaler one ×2 stage at a time (LAG, or SRResNet ×4; see the progressive.* keys)",
    )
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its checkpoint")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="SECTION.KEY=VALUE",
        help="override any config key, e.g. --set train.n_dis=2 (repeatable)",
    )
    return p


def _flag_updates(args: argparse.Namespace) -> dict[str, Any]:
    updates: dict[str, Any] = {}
    for flag, key in _FLAG_KEYS.items():
        value = getattr(args, flag)
        if value is not None:
            section, name = key.split(".")
            updates.setdefault(section, {})[name] = value
    return parse_overrides(args.overrides, updates)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        updates = _flag_updates(args)
        if args.resume:
            if args.config:
                raise ConfigError("--resume uses the run's saved config; drop --config")
            trainer = resume(args.resume, updates)
        else:
            trainer = train(load_config(args.config, updates=updates))
    except TrainingInterrupted as exc:
        logging.getLogger("fastgan.train").warning("%s", exc)
        return 130
    except KeyboardInterrupt:  # a second Ctrl-C/SIGTERM, or one before training started
        print("error: stopped at once; the run's last complete checkpoint is kept", file=sys.stderr)
        return 130
    except (
        ConfigError,
        DataSourceError,
        EvaluatorWeightsError,
        VGGWeightsError,
        CheckpointError,
        NonFiniteLossError,
        ValueError,
    ) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # after the errors above, some of which are FileNotFoundErrors: disk full, permissions, ...
        print(
            f"error: {exc}; check that path (free space, permissions, a file where a folder should be); a run's last "
            "complete checkpoint is kept",
            file=sys.stderr,
        )
        return 1
    logging.getLogger("fastgan.train").info("finished %d iterations in %s", trainer.step, trainer.run_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
