import pytest
import torch

from fastgan.train import checkpoint as ckpt
from fastgan.train import core


def test_roundtrip_and_run_directory_lookup(tmp_path):
    ckpt.save_checkpoint({"step": 3, "w": torch.ones(2)}, tmp_path / ckpt.CHECKPOINT_NAME)
    state = ckpt.load_checkpoint(tmp_path)
    assert state["step"] == 3 and torch.equal(state["w"], torch.ones(2))
    assert not list(tmp_path.glob("*.tmp"))


def test_failed_write_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    ckpt.save_checkpoint({"step": 1}, path)

    def crash(obj, f):
        f.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.torch, "save", crash)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint({"step": 2}, path)
    monkeypatch.undo()
    assert ckpt.load_checkpoint(path)["step"] == 1
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_corrupt_and_foreign_files_are_clear_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="no checkpoint"):
        ckpt.load_checkpoint(tmp_path)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ckpt.CheckpointError, match="cannot read"):
        ckpt.load_checkpoint(tmp_path)
    torch.save({"weights": 1}, tmp_path / "other.pt")
    with pytest.raises(ckpt.CheckpointError, match="not a fastgan training checkpoint"):
        ckpt.load_checkpoint(tmp_path / "other.pt")


@pytest.fixture
def recorded_cuda_rng(monkeypatch):
    """torch.cuda's per-device RNG calls recorded (no GPU needed): {"get": [devices], "set": [(state, device)]}."""
    calls = {"get": [], "set": []}
    monkeypatch.setattr(torch.cuda, "get_rng_state", lambda device: calls["get"].append(device) or f"rng of {device}")
    monkeypatch.setattr(torch.cuda, "set_rng_state", lambda state, device: calls["set"].append((state, device)))
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    return calls


def test_checkpoints_keep_only_the_training_gpus_rng(recorded_cuda_rng):
    """A run on cuda:1 saves and restores cuda:1's generator only, so it resumes where fewer GPUs are visible (all of
    them were saved once, and restoring them there raised IndexError)."""
    gpu = torch.device("cuda", 1)
    state = core._rng_state(gpu)
    assert state["cuda"] == "rng of cuda:1" and recorded_cuda_rng["get"] == [gpu]
    core._set_rng_state(state, gpu)
    assert recorded_cuda_rng["set"] == [("rng of cuda:1", gpu)]
    assert "cuda" not in core._rng_state(torch.device("cpu"))


def test_older_checkpoints_restore_their_training_gpus_rng(recorded_cuda_rng):
    """Checkpoints before 2026-11-30 hold every visible GPU's state by index: the training GPU's is restored, none when
    that GPU's index was not saved, and none on a CPU."""
    every_gpu = {"torch": torch.get_rng_state(), "cuda": ["rng 0", "rng 1"]}
    core._set_rng_state(every_gpu, torch.device("cuda", 1))
    core._set_rng_state(every_gpu, torch.device("cuda"))  # the current device, 0 here
    core._set_rng_state(every_gpu, torch.device("cuda", 2))
    core._set_rng_state(every_gpu, torch.device("cpu"))
    assert recorded_cuda_rng["set"] == [("rng 1", torch.device("cuda", 1)), ("rng 0", torch.device("cuda"))]


def test_metrics_are_read_as_floats_and_must_be_scalars():
    assert core.as_floats(
        {"loss": torch.tensor(1.5), "stage": 2, "psnr": torch.tensor(30.25, dtype=torch.bfloat16)}
    ) == {
        "loss": 1.5,
        "stage": 2.0,
        "psnr": 30.25,
    }
    assert core.as_floats({"alpha": 0.5}) == {"alpha": 0.5}
    with pytest.raises(ValueError, match="metrics must be scalars.*: per_image are not"):
        core.as_floats({"per_image": torch.ones(3)})
