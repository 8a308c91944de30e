"""Train the MobileNetV3-small evaluator that ships with fastgan for its embedded dataset.

    python -m fastgan.eval.train_evaluator --out fastgan/eval/weights/embedded_mobilenet_v3_small.pt [--device cuda]

Trains torchvision's MobileNetV3-small from scratch on high-resolution renders of the embedded
procedural set (the resolution the evaluator judges at), reports held-out accuracy on scenes from
another seed, and writes a fastgan evaluator file (fp16 weights plus resolution and normalisation), atomically.
"""

from __future__ import annotations

import argparse
import logging
import math
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from tqdm import tqdm

from fastgan.atomic import atomic_write, unwritable_reason
from fastgan.cli_types import positive_finite, positive_int
from fastgan.data.procedural import CLASS_NAMES, NUM_CLASSES, render, sample_scenes
from fastgan.eval.evaluator import EVALUATOR_FORMAT, IMAGENET_MEAN, IMAGENET_STD
from fastgan.train.config import ConfigError
from fastgan.train.run import resolve_device

log = logging.getLogger("fastgan.eval.train_evaluator")


#: Training steps between loss readings in the progress bar (each reading waits for the device).
LOSS_EVERY = 20


def _normalise(images: torch.Tensor) -> torch.Tensor:
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(1, 3, 1, 1)
    return (images - mean) / std


@torch.no_grad()
def accuracy(network: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int = 500) -> float:
    """Top-1 accuracy of `network` on (N, 3, R, R) images in [0, 1]."""
    network.eval()
    correct = 0
    for start in range(0, len(labels), batch_size):
        logits = network(_normalise(images[start : start + batch_size]))
        correct += (logits.argmax(1).cpu() == labels[start : start + batch_size]).sum().item()
    return correct / len(labels)


def augment(x: torch.Tensor) -> torch.Tensor:
    """Flip, blur a third of the batch (half-resolution round trip) and add Gaussian noise: (B, 3, R, R) in [0, 1].

    Blur and noise make the evaluator judge shapes rather than pixel-exact edges, so the gradients it
    hands the generator are smoother and harder to satisfy with high-frequency patterns.
    """
    b, _, h, w = x.shape
    x = torch.where(torch.rand(b, 1, 1, 1, device=x.device) < 0.5, x.flip(-1), x)
    low = F.interpolate(F.avg_pool2d(x, 2), size=(h, w), mode="bilinear", align_corners=False)
    x = torch.where(torch.rand(b, 1, 1, 1, device=x.device) < 1 / 3, low, x)
    return (x + torch.randn_like(x) * torch.rand(b, 1, 1, 1, device=x.device) * 0.08).clamp(0.0, 1.0)


def train(
    resolution: int,
    train_images: int,
    heldout_images: int,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device | str = "cpu",
) -> tuple[torch.nn.Module, dict[str, float]]:
    """Train from scratch on `device` (the renders are moved there once); returns the network, on the CPU, and its
    held-out accuracies (sharp, and 32×32 up-sampled). Seeds torch's generators with `seed` for the run and restores
    the caller's state after."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        train_scenes = sample_scenes(train_images, seed=seed)
        heldout_scenes = sample_scenes(heldout_images, seed=seed + 1_000_003)
        log.info(
            "rendering %d training and %d held-out scenes at %d×%d",
            train_images,
            heldout_images,
            resolution,
            resolution,
        )
        x_train, y_train = render(train_scenes, resolution).to(device), train_scenes.labels.to(device)
        x_heldout, y_heldout = render(heldout_scenes, resolution), heldout_scenes.labels
        x_heldout_low = F.interpolate(render(heldout_scenes, 32), size=resolution, mode="bilinear", align_corners=False)

        network = torchvision.models.mobilenet_v3_small(num_classes=NUM_CLASSES).to(device)
        optimizer = torch.optim.AdamW(network.parameters(), lr=lr, weight_decay=0.01)
        steps = epochs * math.ceil(train_images / batch_size)
        schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=steps)
        progress = tqdm(total=steps, desc="evaluator", unit="step")
        for epoch in range(epochs):
            network.train()
            order = torch.randperm(train_images).to(device)
            for step, start in enumerate(range(0, train_images, batch_size)):
                idx = order[start : start + batch_size]
                x = augment(x_train[idx])
                loss = F.cross_entropy(network(_normalise(x)), y_train[idx], label_smoothing=0.05)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                schedule.step()
                progress.update()
                if step % LOSS_EVERY == 0:
                    progress.set_postfix(epoch=epoch, loss=f"{loss.item():.3f}")
        progress.close()
        scores = {
            "heldout_accuracy": accuracy(network, x_heldout.to(device), y_heldout),
            "heldout_accuracy_from_32": accuracy(network, x_heldout_low.to(device), y_heldout),
        }
        return network.cpu(), scores


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="evaluator file to write")
    parser.add_argument("--resolution", type=positive_int, default=64, help="side of the renders the evaluator judges")
    parser.add_argument("--train-images", type=positive_int, default=20000)
    parser.add_argument("--heldout-images", type=positive_int, default=2000)
    parser.add_argument("--epochs", type=positive_int, default=6)
    parser.add_argument("--batch-size", type=positive_int, default=128)
    parser.add_argument("--lr", type=positive_finite, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    args = parser.parse_args(argv)
    reason = unwritable_reason(args.out.expanduser().parent)  # checked before the training, not after it
    if reason is not None:
        parser.error(f"--out {args.out}: {reason}; choose another")
    try:
        device = resolve_device(args.device)
    except ConfigError as error:
        parser.error(str(error))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    started = time.time()
    network, scores = train(
        args.resolution,
        args.train_images,
        args.heldout_images,
        args.epochs,
        args.batch_size,
        args.lr,
        args.seed,
        device,
    )
    payload = {
        "format": EVALUATOR_FORMAT,
        "state_dict": {k: v.half() if v.is_floating_point() else v for k, v in network.state_dict().items()},
        "num_classes": NUM_CLASSES,
        "class_names": list(CLASS_NAMES),
        "resolution": args.resolution,
        "mean": list(IMAGENET_MEAN),
        "std": list(IMAGENET_STD),
        "dataset": "fastgan-embedded",
        "training": {k: v for k, v in vars(args).items() if k not in ("out", "device")},
        **scores,
    }
    atomic_write(args.out.expanduser(), lambda file: torch.save(payload, file))
    log.info(
        "wrote %s in %.0f s: held-out accuracy %.4f (sharp %d×%d renders), %.4f (32×32 renders up-sampled)",
        args.out,
        time.time() - started,
        scores["heldout_accuracy"],
        args.resolution,
        args.resolution,
        scores["heldout_accuracy_from_32"],
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
