"""Atomic writes: the old file or the new one, never a partial one; new files get the umask's permissions."""

import signal
import subprocess
import sys

import pytest

from fastgan.atomic import _umask, atomic_path, remove_stale_temporaries, write_bytes_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes_atomically(target, b"old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as temporary:
        temporary.write_bytes(b"new, but cut off")
        raise RuntimeError("stopped half-way")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_temporary_names_and_the_permissions_a_file_gets(tmp_path):
    """Temporaries are hidden and end in .tmp (no reader takes one for an image), or in the target's suffix when a
    writer picks its format by it; a new file gets the umask's mode (not mkstemp's 0o600), a replaced one keeps
    its own."""
    with atomic_path(tmp_path / "deeper" / "a.png") as temporary:
        assert temporary.parent == tmp_path / "deeper" and temporary.name.startswith(".a.")
        assert temporary.suffix == ".tmp"
        temporary.write_bytes(b"pixels")
    with atomic_path(tmp_path / "clip.mp4", keep_suffix=True) as temporary:
        assert temporary.suffix == ".mp4"
        temporary.write_bytes(b"frames")
    assert (tmp_path / "deeper" / "a.png").stat().st_mode & 0o777 == 0o666 & ~_umask()
    (tmp_path / "clip.mp4").chmod(0o640)
    write_bytes_atomically(tmp_path / "clip.mp4", b"new frames")
    assert (tmp_path / "clip.mp4").stat().st_mode & 0o777 == 0o640


def test_a_killed_writers_temporaries_are_removed_and_nothing_else(tmp_path):
    target = tmp_path / "checkpoint.pt"
    write_bytes_atomically(target, b"good")
    killed = subprocess.run(  # a writer killed mid-write leaves its temporary: nothing runs to remove it
        [sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True, text=True, timeout=60
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    (tmp_path / ".config.x1.tmp").write_bytes(b"another file's")
    (stale,) = [p for p in tmp_path.iterdir() if p.name.startswith(".checkpoint.")]
    assert remove_stale_temporaries(target) == [stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".config.x1.tmp", "checkpoint.pt"]
    assert target.read_bytes() == b"good" and remove_stale_temporaries(target) == []


KILLED_WRITER = """
import os, signal, sys
from fastgan.atomic import atomic_path
with atomic_path(sys.argv[1]) as temporary:
    temporary.write_bytes(b"half a checkpoint")
    os.kill(os.getpid(), signal.SIGKILL)
"""
