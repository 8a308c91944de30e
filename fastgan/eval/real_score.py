"""MS_real: the MobileNet score of a whole real dataset, computed once and cached on disk."""

from __future__ import annotations

import hashlib
import json
import logging
import math
from pathlib import Path

import torch

from fastgan.atomic import write_bytes_atomically
from fastgan.data.image_set import ImageSet
from fastgan.eval.evaluator import Evaluator
from fastgan.eval.precision import exact_fp32

log = logging.getLogger(__name__)


@torch.no_grad()
def dataset_mobilenet_score(evaluator: Evaluator, image_set: ImageSet, batch_size: int = 250) -> float:
    """exp(H(mean_x p(y|x)) − mean_x H(p(y|x))) over every image, streamed in batches.

    This equals Eq. 5 with p(y) the marginal over the whole set, without holding all probabilities. The evaluator
    runs in true fp32 (no autocast, no TF32), so the cached value does not depend on the device that computed it.
    """
    device = evaluator.mean.device
    prob_sum = torch.zeros(evaluator.spec.num_classes, dtype=torch.float64, device=device)
    neg_entropy_sum = torch.zeros((), dtype=torch.float64, device=device)
    for start in range(0, len(image_set), batch_size):
        images = image_set.images[start : start + batch_size].to(device).float().div_(127.5).sub_(1.0)
        with exact_fp32(device.type):
            logits = evaluator(images)
        log_p = torch.log_softmax(logits.double(), dim=1)
        prob_sum += log_p.exp().sum(0)
        neg_entropy_sum += (log_p.exp() * log_p).sum()
    marginal = prob_sum / len(image_set)
    marginal_entropy = -(marginal * marginal.clamp_min(1e-300).log()).sum()
    return math.exp((marginal_entropy + neg_entropy_sum / len(image_set)).item())


def cached_real_score(evaluator: Evaluator, image_set: ImageSet, cache_dir: str | Path, batch_size: int = 250) -> float:
    """MS_real for (dataset, evaluator), read from `cache_dir` or computed and stored there.

    The cache key hashes the dataset's pixels and labels and the evaluator's weights file, so a changed
    dataset or evaluator is recomputed, never served stale.
    """
    # "fp32": computed in exact fp32 since 2026-11-30; values cached before (TF32 on some GPUs) are recomputed
    key = hashlib.sha256(f"{image_set.fingerprint()}:{evaluator.spec.fingerprint}:fp32".encode()).hexdigest()[:32]
    path = Path(cache_dir).expanduser() / "ms_real" / f"{key}.json"
    if path.is_file():
        try:
            return float(json.loads(path.read_text())["ms_real"])
        except (ValueError, KeyError) as exc:
            log.warning("ignoring unreadable MS_real cache %s (%s); recomputing", path, exc)
    log.info("computing MS_real over %d images of %s", len(image_set), image_set.name)
    score = dataset_mobilenet_score(evaluator, image_set, batch_size)
    record = {
        "ms_real": score,
        "dataset": image_set.name,
        "images": len(image_set),
        "evaluator_sha256": evaluator.spec.fingerprint,
    }
    write_bytes_atomically(path, json.dumps(record, indent=1).encode())
    return score
