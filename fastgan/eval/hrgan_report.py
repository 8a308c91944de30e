"""Evaluate HRGAN runs and lay the results out like the paper's Tables 1–2 (with / without L_MS per resolution).

Each run is scored against its real training images (MS, IS, FID, intra-class FID, precision/recall) and, on the
embedded set, against true renders at its own resolution (HR-FID in the evaluator's feature space and the
evaluator's accuracy on the samples). A 32×32 run also yields the naive baseline "HRGAN-32 + bicubic ×2 / ×4".
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from fastgan.data.procedural import CLASS_NAMES
from fastgan.eval.evaluator import default_evaluator_weights, load_evaluator
from fastgan.eval.generator_eval import (
    accuracy,
    balanced_labels,
    bicubic_to,
    extract,
    generated_batches,
    score_samples,
    true_renders,
)
from fastgan.eval.scores import feature_statistics, frechet_distance
from fastgan.eval.trained_generator import generator_from_checkpoint

log = logging.getLogger(__name__)

BASELINE_SCALES = (2, 4)


def _real_batches(run_config, count: int, batch_size: int, seed: int):
    """`count` real training images drawn at random (seeded; all of them when there are fewer), in [-1, 1], in
    batches, with their labels: a draw, not the first `count`, which in a class-sorted folder are the first
    classes only."""
    from fastgan.train.run import load_image_set

    image_set = load_image_set(run_config.data)
    available = len(image_set.labels)
    if count > available:
        log.warning("%s has %d images: scoring against all of them, not %d", image_set.name, available, count)
    chosen = torch.randperm(available, generator=torch.Generator().manual_seed(seed))[:count]  # in random order
    images, labels = image_set.images[chosen], image_set.labels[chosen]
    return (images.float().div(127.5).sub(1).split(batch_size)), labels


def _data_label(data) -> str:
    """What a run trained on, as the tables name it: the source and its path, or for the embedded set its size and
    seed (runs are compared only on the same data)."""
    if data.source == "embedded":
        return f"embedded {data.num_images} images, seed {data.seed}"
    return f"{data.source} {data.path}"


def _extractors(evaluator, inception) -> dict:
    """The feature extractors a run is scored with: its evaluator, and Inception when its weights are at hand."""
    return {"evaluator": evaluator.features} | ({"inception": inception} if inception is not None else {})


def _real_features(config, samples: int, batch_size: int, seed: int, evaluator, inception, device, cache: dict):
    """`extract`'s features of `_real_batches`, and their labels; computed once per (data settings, count, seed,
    extractors) in `cache`, so runs on the same data share them."""
    key = ("real", repr(config.data), samples, seed, evaluator.spec.fingerprint, id(inception))
    if key not in cache:
        images, labels = _real_batches(config, samples, batch_size, seed)
        cache[key] = extract(images, _extractors(evaluator, inception), device), labels
    return cache[key]


def _fidelity(generated_evaluator, labels, resolution, evaluator, samples, batch, cache: dict) -> dict:
    """HR-FID between samples and true `resolution` renders in the evaluator's space, and the evaluator's accuracy
    on the samples and on the renders (left out for an evaluator of other classes than the embedded set's). The
    renders' features are computed once per (resolution, count, evaluator) in `cache`."""
    key = ("renders", resolution, samples, evaluator.spec.fingerprint)
    if key not in cache:
        renders, render_labels = true_renders(resolution, samples, batch_size=batch)
        features = extract(renders, {"evaluator": evaluator.features}, evaluator.mean.device)["evaluator"]
        cache[key] = (feature_statistics(features[0]), features[1], render_labels)
    truth_statistics, render_logits, render_labels = cache[key]
    row = {"hr_fid": frechet_distance(truth_statistics, feature_statistics(generated_evaluator[0]))}
    if evaluator.spec.num_classes == len(CLASS_NAMES):
        row["hr_accuracy"] = accuracy(generated_evaluator[1], labels)
        row["truth_accuracy"] = accuracy(render_logits, render_labels)
    return row


def _same_file(a: str | Path | None, b: str | Path | None) -> bool:
    """Whether two weights paths (None: torchvision's cache) name one file, however each is spelt."""
    if a is None or b is None:
        return a is b
    return Path(a).expanduser().resolve() == Path(b).expanduser().resolve()


def evaluate_run(
    run: str | Path,
    samples: int = 50_000,
    splits: int = 10,
    inception=None,
    evaluator_weights=None,
    seed: int = 0,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
    cache: dict | None = None,
    generator_weights: str = "ema",
    standing_batches: int = 0,
) -> list[dict]:
    """Rows of scores for a run (and, for a 32×32 embedded run, its bicubic baselines) with the generator's
    `generator_weights` ("ema" or "live"), its statistics re-estimated over `standing_batches` batches if not 0;
    pass one `cache` to several calls to featurise the true renders, and the real images of runs on the same data,
    once."""
    cache = {} if cache is None else cache
    generator, config = generator_from_checkpoint(run, generator_weights, standing_batches, device)
    weights = default_evaluator_weights(evaluator_weights or config.loss.evaluator_weights, config.data.source)
    evaluator = load_evaluator(weights, device)
    extractors = _extractors(evaluator, inception)
    labels = balanced_labels(samples, generator.num_classes)
    same_classes = evaluator.spec.num_classes == generator.num_classes
    if not same_classes:
        log.warning(
            "the evaluator knows %d classes, the generator %d: its accuracy on the samples is left out",
            evaluator.spec.num_classes,
            generator.num_classes,
        )
    elif not _same_file(weights, default_evaluator_weights(config.loss.evaluator_weights, config.data.source)):
        log.warning("accuracy with %s assumes its classes are the generator's, in the same order", weights)
    fake = extract(generated_batches(generator, labels, seed, batch_size), extractors, device)
    real, real_labels = _real_features(config, samples, batch_size, seed, evaluator, inception, device, cache)
    resolution = config.model.resolution
    data = _data_label(config.data)
    base = {"run": str(run), "data": data, "generator_weights": generator_weights, "resolution": resolution}
    base |= {"standing_batches": standing_batches, "lambda_ms": config.loss.lambda_ms}
    # the tables compare runs scored with the same weights and statistics
    live = " (live G)" if generator_weights == "live" else ""
    live += f" (standing stats ×{standing_batches})" if standing_batches else ""
    scores = score_samples(fake, labels, real, real_labels, splits, with_accuracy=same_classes)
    rows = [base | {"model": f"HRGAN-{resolution}{live}"} | scores]
    if config.data.source != "embedded":
        return rows
    rows[0] |= _fidelity(fake["evaluator"], labels, resolution, evaluator, samples, batch_size, cache)
    if resolution == 32:
        for scale in BASELINE_SCALES:
            upscaled = extract(
                generated_batches(generator, labels, seed, batch_size, bicubic_to(32 * scale)), extractors, device
            )
            row = base | {"model": f"HRGAN-32{live} + bicubic ×{scale}", "resolution": 32 * scale}
            row |= score_samples(upscaled, labels, real, real_labels, splits, with_accuracy=same_classes)
            fidelity = _fidelity(upscaled["evaluator"], labels, 32 * scale, evaluator, samples, batch_size, cache)
            rows.append(row | fidelity)
    return rows


def _value(row: dict, key: str, fmt: str = ".2f") -> str:
    if key not in row:
        return "–"
    std = row.get(key + "_std")
    return f"{row[key]:{fmt}} ± {std:{fmt}}" if std is not None else f"{row[key]:{fmt}}"


def markdown(rows: list[dict]) -> str:
    """All scores per row, then the paper's layout (without / with L_MS, improvement) for the headline metrics."""
    space = "inception" if any("fid_inception" in r for r in rows) else "evaluator"
    lines = [
        f"| model | L_MS | MS | IS | FID ({space}) | intra-FID ({space}) | precision / recall ({space}) | "
        "HR-FID vs true renders (evaluator) | evaluator accuracy (true renders) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    several_data = len({r.get("data") for r in rows}) > 1
    for r in sorted(rows, key=lambda r: (r["resolution"], r["model"], r.get("data", ""), r["lambda_ms"])):
        name = f"{r['model']} ({r['data']})" if several_data else r["model"]
        pr = f"{r[f'precision_{space}']:.3f} / {r[f'recall_{space}']:.3f}" if f"precision_{space}" in r else "–"
        truth = f" ({r['truth_accuracy']:.3f})" if "truth_accuracy" in r else ""
        lines.append(
            f"| {name} | {'with' if r['lambda_ms'] > 0 else 'w/o'} | {_value(r, 'ms')} | {_value(r, 'is')} | "
            f"{_value(r, f'fid_{space}')} | {_value(r, f'intra_fid_{space}')} | {pr} | {_value(r, 'hr_fid')} | "
            f"{_value(r, 'hr_accuracy', '.3f')}{truth} |"
        )
    for key, title, better in (("is", "Inception score", 1), ("ms", "MobileNet score", 1), ("hr_fid", "HR-FID", -1)):
        if not any(key in r for r in rows):
            continue
        lines += ["", f"| model | {title} without L_MS | {title} with L_MS | improvement |", "|---|---|---|---|"]
        for label, without, with_ms in _pairs([r for r in rows if key in r]):
            gain = f"{better * (with_ms[key] - without[key]):+.2f}" if without and with_ms else "–"
            lines.append(f"| {label} | {_value(without or {}, key)} | {_value(with_ms or {}, key)} | {gain} |")
    return "\n".join(lines) + "\n"


def _pairs(rows: list[dict]) -> list[tuple[str, dict | None, dict | None]]:
    """(label, run without L_MS, run with it) for each model trained on the same data; one line per λ_MS > 0 run.
    The label names the data when the rows come from several data sets, and λ_MS when one model has several."""
    several_data = len({r.get("data") for r in rows}) > 1
    pairs = []
    for data, model in sorted({(r.get("data", ""), r["model"]) for r in rows}, key=lambda g: (g[0], len(g[1]), g[1])):
        group = [r for r in rows if r.get("data", "") == data and r["model"] == model]
        withouts = [r for r in group if r["lambda_ms"] == 0]
        withs = sorted((r for r in group if r["lambda_ms"] > 0), key=lambda r: r["lambda_ms"])
        if len(withouts) > 1:
            log.warning(
                "%s: %d runs without L_MS; the table compares with %s", model, len(withouts), withouts[0]["run"]
            )
        label = f"{model} ({data})" if several_data else model
        for with_ms in withs or [None]:
            lambda_ms = f" λ_MS = {with_ms['lambda_ms']:g}" if len(withs) > 1 else ""
            pairs.append((label + lambda_ms, withouts[0] if withouts else None, with_ms))
    return pairs
