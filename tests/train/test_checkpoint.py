import pytest
import torch

from fastgan.train import checkpoint as ckpt


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
