"""Atomic file writes: readers see the old file or the new one, never a partial write (and no torch import, so the
torch-free TensorRT runtime can use it)."""

from __future__ import annotations

import contextlib
import glob
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import BinaryIO


def _umask() -> int:
    umask = os.umask(0)  # read once, at import: setting it is process-wide
    os.umask(umask)
    return umask


#: The permissions `open()` gives a new file under the process's umask (mkstemp's own are owner-only).
_NEW_FILE_MODE = 0o666 & ~_umask()


def _sync_folder(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); filesystems that cannot sync a folder are left to their own."""
    if not hasattr(os, "O_DIRECTORY"):
        return
    try:
        descriptor = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:  # e.g. EINVAL on some network and FUSE mounts: the file itself is already synced
        pass
    finally:
        os.close(descriptor)


@contextlib.contextmanager
def atomic_path(path: str | Path, keep_suffix: bool = False) -> Iterator[Path]:
    """A temporary path in `path`'s folder to write the file to: a hidden name ending in ``.tmp`` (or, with
    `keep_suffix`, in `path`'s suffix, for writers that pick a format by it, such as OpenCV's video writer). When
    the block succeeds the file is fsynced, given `path`'s permissions (a new file's under the umask if it does
    not exist yet), renamed over `path` and the rename made durable; if anything fails it is removed and `path` is
    left as it was."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = f".tmp{path.suffix}" if keep_suffix else ".tmp"
    descriptor, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=suffix)
    os.close(descriptor)
    temporary = Path(name)
    try:
        yield temporary
        with temporary.open("rb+") as file:
            os.fsync(file.fileno())
        temporary.chmod(path.stat().st_mode & 0o7777 if path.is_file() else _NEW_FILE_MODE)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(path.parent)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], None]) -> Path:
    """Call `write(file)` on a temporary file in `path`'s folder, then move it over `path` (`atomic_path`)."""
    with atomic_path(path) as temporary, temporary.open("wb") as file:
        write(file)
    return Path(path)


def write_bytes_atomically(path: str | Path, data: bytes) -> None:
    """Write `data` to `path` atomically."""
    atomic_write(path, lambda file: file.write(data))


def unwritable_reason(folder: str | Path) -> str | None:
    """Why files could not be written in `folder` (made if missing), checked before a long job writes there: its
    nearest existing part is a file, or a folder this process may not write in; None when they could."""
    existing = Path(folder).absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"this process may not write in {existing}"
    return None


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Delete the temporaries `atomic_path` left beside `path` for writers that were killed before they could remove
    them (SIGKILL, the out-of-memory killer, a power cut), and return them. Only for a file no other process is
    writing: a run directory's checkpoint when its run starts."""
    path = Path(path)
    stale = sorted(path.parent.glob(f".{glob.escape(path.stem)}.*.tmp*"))
    for temporary in stale:
        temporary.unlink(missing_ok=True)
    return stale
