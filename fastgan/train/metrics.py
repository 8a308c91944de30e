"""The run's metrics log: JSON lines (one record per logged step) and, optionally, TensorBoard."""

from __future__ import annotations

import json
from pathlib import Path

from torch.utils.tensorboard import SummaryWriter

from fastgan.atomic import write_bytes_atomically


def _step_of(line: str) -> float:
    """The step of a JSONL record; a line cut short by a crash counts as after any resume point."""
    try:
        return json.loads(line)["step"]
    except (ValueError, KeyError):
        return float("inf")


class MetricsLog:
    """Appends records to `run_dir/metrics.jsonl` and mirrors scalars to TensorBoard under `run_dir/tb`.

    On resume from step S, the log starts as `history` (the resumed run's log; default this one) up to S: records
    after S (written after the checkpoint, before the interruption) are dropped, so the log matches the state the run
    continues from; with `redo_last`, so is the record at S (a finished run's last one, off the log cadence, whose
    steps the checkpoint's window carries into the next record), so an extended run logs what an uninterrupted one
    would. A run resumed into another directory thus continues its own history, not a log left there. A fresh run
    (step 0) also removes the TensorBoard event files an earlier run left in its directory, whose curves would
    otherwise be drawn over its own.
    """

    def __init__(
        self,
        run_dir: Path,
        tensorboard: bool,
        resume_step: int = 0,
        redo_last: bool = False,
        history: Path | None = None,
    ):
        self.path = run_dir / "metrics.jsonl"
        history = history or self.path
        last_kept = resume_step - 1 if redo_last else resume_step
        if resume_step and history.is_file():
            kept = [line for line in history.read_text().splitlines() if _step_of(line) <= last_kept]
            write_bytes_atomically(self.path, "".join(line + "\n" for line in kept).encode())
        elif self.path.exists():
            self.path.unlink()
        if not resume_step:  # a fresh run: no curves of an earlier one in this directory
            for events in (run_dir / "tb").glob("events.out.tfevents.*"):
                events.unlink()
        self.file = self.path.open("a")
        self.writer = (
            SummaryWriter(str(run_dir / "tb"), purge_step=last_kept + 1 if resume_step else None)
            if tensorboard
            else None
        )

    def write(self, step: int, values: dict[str, float]) -> None:
        self.file.write(json.dumps({"step": step, **values}) + "\n")
        self.file.flush()
        if self.writer is not None:
            for name, value in values.items():
                self.writer.add_scalar(name, value, step)

    def close(self) -> None:
        self.file.close()
        if self.writer is not None:
            self.writer.close()
