"""The evaluator trainer: a tiny run writes an evaluator file that loads; its pixel work follows the images' device."""

import pytest
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


def test_bad_arguments_are_refused_before_any_training(tmp_path, capsys, monkeypatch):
    """--heldout-images 0 divided by zero after the training, an --out under a file failed after it and lost it;
    --epochs 0, --batch-size 0 and a missing GPU gave tracebacks."""
    monkeypatch.setattr(train_evaluator, "train", lambda *args: pytest.fail("trained before the checks"))
    (tmp_path / "a-file").write_text("")
    out = ["--out", str(tmp_path / "e.pt")]
    for bad, said in (
        (["--heldout-images", "0"], "must be a positive integer"),
        (["--epochs", "0"], "must be a positive integer"),
        (["--batch-size", "-3"], "must be a positive integer"),
        (["--lr", "nan"], "--lr"),
        (["--out", str(tmp_path / "a-file" / "e.pt")], "a-file is a file, not a folder"),
    ):
        with pytest.raises(SystemExit) as exit_info:
            train_evaluator.main([*out, *bad])
        assert exit_info.value.code == 2 and said in capsys.readouterr().err, bad
    if not torch.cuda.is_available():
        with pytest.raises(SystemExit):
            train_evaluator.main([*out, "--device", "cuda"])
        assert "no CUDA device is available" in capsys.readouterr().err
