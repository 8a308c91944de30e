"""Scores of a class-conditional generator: MobileNet score, Inception score, FID, intra-class FID,
precision/recall, and — for the embedded set, whose scenes render at any resolution — high-resolution fidelity:
how close the generator's 64/128 outputs are to true 64/128 renders, in the evaluator's feature space.

Samples are drawn with balanced labels from a seeded generator, in batches, and only their features are kept.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable

import torch
import torch.nn.functional as F

from fastgan.data.procedural import render, sample_scenes
from fastgan.eval.precision import exact_fp32
from fastgan.eval.scores import frechet_distance_of_features, precision_recall, split_score

log = logging.getLogger(__name__)

#: images in [-1, 1] → (features (N, D), logits (N, K))
Extractor = Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]
FIDELITY_SEED = 2_000_003  # scenes never used in training (training uses config.data.seed)


def balanced_labels(count: int, num_classes: int) -> torch.Tensor:
    return torch.arange(count) % num_classes


@torch.no_grad()
def extract(
    batches, extractors: dict[str, Extractor], device: torch.device | str = "cpu"
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Run every extractor over an iterable of image batches ((B, 3, R, R) in [-1, 1]); features kept on the CPU.

    The extractors run in true fp32 (`exact_fp32`: no autocast, no TF32), so scores do not depend on the caller's
    autocast or on the GPU generation."""
    parts: dict[str, list[tuple[torch.Tensor, torch.Tensor]]] = {name: [] for name in extractors}
    for images in batches:
        images = images.to(device)
        for name, extractor in extractors.items():
            with exact_fp32(images.device.type):
                feats, logits = extractor(images.float())
            parts[name].append((feats.float().cpu(), logits.float().cpu()))
    return {name: (torch.cat([f for f, _ in p]), torch.cat([lg for _, lg in p])) for name, p in parts.items()}


def as_saved(images: torch.Tensor) -> torch.Tensor:
    """(N, 3, H, W) in [-1, 1] rounded to the 256 levels an 8-bit image file holds, as the field scores samples
    (pytorch-fid reads PNGs, torch-fidelity takes uint8): real images arrive 8-bit, generated ones the same way."""
    return ((images.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def seeded_noise(count: int, z_dim: int, seed: int) -> torch.Tensor:
    """(count, z_dim) N(0, 1) latents drawn at once on the CPU from `seed`: sample i's z depends on neither the batch
    size nor the device."""
    return torch.randn(count, z_dim, generator=torch.Generator().manual_seed(seed))


def generated_batches(
    generator: torch.nn.Module,
    labels: torch.Tensor,
    seed: int = 0,
    batch_size: int = 250,
    transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
):
    """G(z, y) for `labels` in batches, z = `seeded_noise` (the same samples on every device and for any
    `batch_size`); `transform` post-processes each batch (e.g. the bicubic up-scaling of the baseline), and the
    result is rounded to 8 bits (`as_saved`)."""
    noise = seeded_noise(len(labels), generator.z_dim, seed)
    device = next(generator.parameters()).device
    for start in range(0, len(labels), batch_size):
        y, z = labels[start : start + batch_size], noise[start : start + batch_size]
        with torch.no_grad():
            images = generator(z.to(device), y.to(device)).float()
        yield as_saved(images if transform is None else transform(images))


def bicubic_to(resolution: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """The naive baseline's up-scaling: bicubic to `resolution`, clamped to [-1, 1]."""
    return lambda images: F.interpolate(images, size=(resolution, resolution), mode="bicubic").clamp(-1, 1)


def true_renders(resolution: int, count: int, seed: int = FIDELITY_SEED, batch_size: int = 250):
    """(batches of (B, 3, R, R) in [-1, 1], 8-bit levels, labels (N,)) of unseen embedded-set scenes rendered at
    `resolution`; the batches are rendered lazily, so 50 000 renders at 128×128 never sit in memory at once."""
    scenes = sample_scenes(count, seed)

    def batches():
        for start in range(0, count, batch_size):
            part = dataclasses.replace(
                scenes,
                **{f.name: getattr(scenes, f.name)[start : start + batch_size] for f in dataclasses.fields(scenes)},
            )
            yield as_saved(render(part, resolution) * 2 - 1)  # 8-bit, as the samples are scored

    return batches(), scenes.labels


class TooFewSamplesError(ValueError):
    """No class has the two real and two generated samples a covariance needs."""


def intra_class_fid(real: tuple[torch.Tensor, torch.Tensor], fake: tuple[torch.Tensor, torch.Tensor]) -> float:
    """Mean over classes of the Fréchet distance between the real and generated features of that class, over the
    classes with at least two samples on both sides (a covariance needs two; the others are counted in a warning).

    Args:
        real, fake: (features (N, D), labels (N,)).

    Raises:
        ValueError: the pairs are not (features (N, D), labels (N,)).
        TooFewSamplesError: no class has two real and two generated samples.
    """
    for side, (features, labels) in (("real", real), ("fake", fake)):
        if features.dim() != 2 or labels.shape != features.shape[:1]:
            raise ValueError(
                f"intra-class FID takes (features (N, D), labels (N,)) pairs; the {side} pair is "
                f"{tuple(features.shape)}, {tuple(labels.shape)}"
            )
    distances = []
    classes = real[1].unique()
    for label in classes:
        a, b = real[0][real[1] == label], fake[0][fake[1] == label]
        if len(a) >= 2 and len(b) >= 2:
            distances.append(frechet_distance_of_features(a, b))
    if not distances:
        raise TooFewSamplesError(
            "intra-class FID needs two real and two generated samples of some class: raise --samples (to at least "
            "twice the number of classes)"
        )
    if len(distances) < len(classes):
        log.warning("intra-class FID over %d of %d classes (the others have < 2 samples)", len(distances), len(classes))
    return sum(distances) / len(distances)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """Top-1 accuracy of (N, K) logits against (N,) labels."""
    if logits.dim() != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(
            f"accuracy takes (N, K) logits and (N,) labels, got {tuple(logits.shape)}, {tuple(labels.shape)}"
        )
    return float((logits.argmax(dim=1) == labels).double().mean())


def score_samples(
    fake: dict[str, tuple[torch.Tensor, torch.Tensor]],
    fake_labels: torch.Tensor,
    real: dict[str, tuple[torch.Tensor, torch.Tensor]] | None,
    real_labels: torch.Tensor | None,
    splits: int,
    with_accuracy: bool = True,
) -> dict[str, float]:
    """Scores of one sample set: `ms` (evaluator logits), `is` (Inception logits), and against `real`: `fid`,
    `intra_fid`, `precision`, `recall` per feature space (`…_inception` or `…_evaluator`), and `accuracy` unless
    `with_accuracy` is false (an evaluator of other classes than the generator's)."""
    scores: dict[str, float] = {}
    evaluator_logits = fake["evaluator"][1]
    scores["ms"], scores["ms_std"] = split_score(evaluator_logits, splits)
    if with_accuracy:
        scores["accuracy"] = accuracy(evaluator_logits, fake_labels)
    if "inception" in fake:
        scores["is"], scores["is_std"] = split_score(fake["inception"][1], splits)
    for space in fake if real is not None else ():
        real_feats, fake_feats = real[space][0], fake[space][0]
        samples, dims = min(len(real_feats), len(fake_feats)), real_feats.shape[1]
        if samples <= dims:
            log.warning(
                "FID in the %s space from %d samples, no more than its %d dimensions: the covariances are "
                "rank-deficient and FID is biased upwards; compare it only with FIDs of as many samples (--samples)",
                space,
                samples,
                dims,
            )
        scores[f"fid_{space}"] = frechet_distance_of_features(real_feats, fake_feats)
        try:
            scores[f"intra_fid_{space}"] = intra_class_fid((real_feats, real_labels), (fake_feats, fake_labels))
        except TooFewSamplesError as error:  # the other scores stand
            log.warning("no intra-class FID in the %s space: %s", space, error)
        cap = 5000  # k-NN precision/recall is quadratic: a fixed subset keeps it cheap
        scores[f"precision_{space}"], scores[f"recall_{space}"] = precision_recall(real_feats[:cap], fake_feats[:cap])
    return scores
