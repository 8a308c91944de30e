"""Atomic file writes: readers see the old file or the new one, never a partial write (and no torch import, so the
torch-free TensorRT runtime can use it)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _new_file_mode() -> int:
    """The permissions `open()` gives a new file under the process's umask (mkstemp's own are owner-only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write the file to (it ends in `path`'s suffix, for writers that pick
    a format by it, such as OpenCV's video writer). When the block succeeds the file is fsynced, given a new
    file's permissions, renamed over `path` and the rename made durable; if anything fails it is removed and
    `path` is left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}")
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        temporary.chmod(_new_file_mode())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    if hasattr(os, "O_DIRECTORY"):  # POSIX: the rename itself survives a crash once the folder is synced
        folder = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s folder, then move it over `path` (`atomic_path`)."""
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        write(file)
    return Path(path)


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda file: file.write(data))
