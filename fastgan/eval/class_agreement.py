"""How often the evaluator recognises the class a conditional generator was asked for.

    python -m fastgan.eval.class_agreement runs/embedded-64 [--per-class 100] [--evaluator-weights FILE]
        [--weights ema|live] [--standing-stats N]

A direct measure of "recognisable class-conditional images": for each class y, generate samples
G(z, y) with the EMA (or live) generator and count how often argmax E(G(z, y)) = y. Chance is 1/num_classes.
"""

from __future__ import annotations

import argparse
import sys

import torch

from fastgan.eval.evaluator import Evaluator, EvaluatorWeightsError, default_evaluator_weights, load_evaluator
from fastgan.eval.generator_eval import as_saved, seeded_noise
from fastgan.eval.trained_generator import (
    GENERATOR_WEIGHTS,
    STANDING_HELP,
    WEIGHTS_HELP,
    class_names,
    generator_from_state,
)
from fastgan.models.hrgan import Generator
from fastgan.train.checkpoint import CheckpointError, load_checkpoint


@torch.no_grad()
def class_agreement(
    generator: Generator, evaluator: Evaluator, per_class: int = 100, seed: int = 0, batch_size: int = 250
) -> torch.Tensor:
    """Per-class fraction of samples G(z, y), rounded to 8 bits as saved, that the evaluator classifies as y:
    (num_classes,) in [0, 1]."""
    if per_class < 1:
        raise ValueError(f"class agreement needs at least one sample per class (--per-class), got {per_class}")
    if evaluator.spec.num_classes != generator.num_classes:
        raise ValueError(
            f"the evaluator knows {evaluator.spec.num_classes} classes, the generator "
            f"{generator.num_classes}: use the evaluator of the generator's dataset"
        )
    evaluator_device = evaluator.mean.device
    generator_device = next((p.device for p in generator.parameters()), evaluator_device)  # each on its own device
    labels = torch.arange(generator.num_classes).repeat_interleave(per_class)
    noise = seeded_noise(len(labels), generator.z_dim, seed)
    hits = torch.zeros(generator.num_classes)
    for start in range(0, len(labels), batch_size):
        y, z = labels[start : start + batch_size], noise[start : start + batch_size]
        images = as_saved(generator(z.to(generator_device), y.to(generator_device)))
        predicted = evaluator(images.to(evaluator_device)).argmax(1).cpu()
        hits.index_add_(0, y, (predicted == y).float())
    return hits / per_class


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="run directory or checkpoint file")
    parser.add_argument("--per-class", type=int, default=100, help="samples per class (≥ 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--evaluator-weights", help="default: the run's evaluator (the shipped one for embedded)")
    parser.add_argument("--weights", choices=GENERATOR_WEIGHTS, default="ema", help=WEIGHTS_HELP)
    parser.add_argument("--standing-stats", type=int, default=0, metavar="N", help=STANDING_HELP)
    args = parser.parse_args(argv)
    try:
        state = load_checkpoint(args.checkpoint)
        generator, config = generator_from_state(state, args.checkpoint, args.weights, args.standing_stats)
        weights = default_evaluator_weights(args.evaluator_weights or config.loss.evaluator_weights, config.data.source)
        scores = class_agreement(generator, load_evaluator(weights), args.per_class, args.seed)
    except (CheckpointError, EvaluatorWeightsError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    names = class_names(state, generator.num_classes)
    width = max(10, *map(len, names))
    for name, score in zip(names, scores.tolist(), strict=True):
        print(f"{name:>{width}s}  {score:.3f}")
    chance = f"chance {1 / len(scores):.3f}, {args.per_class} samples per class"
    print(f"{'mean':>{width}s}  {scores.mean().item():.3f}  ({chance})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
