"""Reading torch files of tensors (checkpoints, weights) with errors that say what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch


def load_tensors(path: str | Path, error: type[Exception], what: str, advice: str) -> Any:
    """`torch.load(path)` of tensors and plain containers only, onto the CPU.

    Raises:
        error: the file cannot be opened (the system's reason) or read ("a truncated file or not a torch file;
            {advice}"). Torch's own text for the latter, whose advice to set weights_only=False does not apply to
            a damaged or foreign file, is kept in the chained cause.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except OSError as exc:  # permissions, a folder, a file removed meanwhile
        raise error(f"cannot read {what} {path}: {exc.strerror or exc}; {advice}") from exc
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise error(
            f"cannot read {what} {path} ({type(exc).__name__}): a truncated file or not a torch file; {advice}"
        ) from exc
