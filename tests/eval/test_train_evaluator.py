"""The evaluator trainer: a tiny run writes an evaluator file that loads; its pixel work follows the images' device."""

import torch

from fastgan.eval import train_evaluator
from fastgan.eval.evaluator import load_evaluator


def test_augment_and_normalise_stay_on_the_images_device():
    """meta stands in for a GPU: masks and normalisation constants made on the CPU raised a device mismatch there."""
    images = torch.rand(4, 3, 8, 8, device="meta")
    assert train_evaluator.augment(images).device.type == "meta"
    assert train_evaluator._normalise(images).device.type == "meta"


def test_a_tiny_run_writes_a_loadable_evaluator(tmp_path):
    out = tmp_path / "weights" / "tiny.pt"
    arguments = ["--out", str(out), "--resolution", "32", "--train-images", "40", "--heldout-images", "20"]
    state = torch.get_rng_state()
    train_evaluator.main([*arguments, "--epochs", "1", "--batch-size", "20", "--device", "cpu"])
    assert torch.equal(
        torch.get_rng_state(), state
    )  # seeded for the run only: the caller's generator is left as it was
    evaluator = load_evaluator(out)
    assert evaluator.spec.resolution == 32 and evaluator(torch.rand(2, 3, 32, 32) * 2 - 1).shape == (2, 10)
    assert [p.name for p in out.parent.iterdir()] == ["tiny.pt"]  # written atomically: no temporary file left
