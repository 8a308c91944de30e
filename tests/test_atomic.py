"""Atomic writes: the old file or the new one, never a partial one; new files get the umask's permissions."""

import os

import pytest

from fastgan.atomic import atomic_path, write_bytes_atomically


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    write_bytes_atomically(target, b"old")
    with pytest.raises(RuntimeError, match="half-way"), atomic_path(target) as temporary:
        temporary.write_bytes(b"new, but cut off")
        raise RuntimeError("stopped half-way")
    assert target.read_bytes() == b"old" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]
    write_bytes_atomically(target, b"new")
    assert target.read_bytes() == b"new" and [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def test_the_temporary_path_keeps_the_suffix_and_the_file_gets_the_umask_mode(tmp_path):
    umask = os.umask(0o027)
    try:
        with atomic_path(tmp_path / "deeper" / "clip.mp4") as temporary:
            assert temporary.parent == tmp_path / "deeper" and temporary.suffix == ".mp4"
            temporary.write_bytes(b"frames")
    finally:
        os.umask(umask)
    assert (tmp_path / "deeper" / "clip.mp4").stat().st_mode & 0o777 == 0o640  # not mkstemp's 0o600
