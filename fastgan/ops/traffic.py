"""Analytic global-memory traffic of an op: what it must move, what the fused kernels move, what eager moves."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class Traffic:
    """Bytes read plus written by one pass (forward or backward) of an op.

    Attributes:
        minimum: every input read once and every output written once.
        fused: what the fused Triton kernels read and write, launch by launch.
        eager: what the eager reference's kernels read and write, launch by launch.
    """

    minimum: int
    fused: int
    eager: int

    @property
    def fused_overhead(self) -> float:
        """fused / minimum − 1: 0.05 means 5 % above the minimum."""
        return self.fused / self.minimum - 1.0
