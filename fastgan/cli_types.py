"""argparse value types the command-line tools share: each refuses a bad value with a message argparse prints."""

from __future__ import annotations

import argparse
import math
import os
from pathlib import Path


def positive_int(text: str) -> int:
    """An integer ≥ 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def positive_finite(text: str) -> float:
    """A float > 0 and finite."""
    value = float(text)
    if not 0 < value < math.inf:
        raise argparse.ArgumentTypeError(f"must be a positive, finite number, got {text}")
    return value


def names_folder(out: str) -> bool:
    """Whether an output argument names a folder: one that exists, or one to make, spelt with a trailing separator
    (which pathlib drops, so the text is asked)."""
    return Path(out).expanduser().is_dir() or out.endswith(("/", os.sep))
