"""python -m bench.gpu_checks --out DIR [--only STEP ...] | --collect: every check that needs an NVIDIA GPU, in one
run sized for a short loan of one (its steps' time limits add up to 9 minutes).

Steps, in the order their results are needed: the `cuda` tests (the kernels' correctness, before any time of theirs
is trusted); the op cases' forward + backward at the models' shapes, separate and interleaved (issue 3's bandwidth
and MobileNet-score targets); the HRGAN-128 iteration eager, fused, from CUDA graphs and under torch.compile with and
without its CUDA-graph mode (issue 4); the 1080p → 4K frame times (issue 6). Each step is a pytest run of its own
with a time limit: one that overruns it is interrupted like Ctrl-C, so pytest-benchmark still writes the cases it
finished, and the next step starts. DIR gets STEP.log, and for the bench steps STEP.json with its `bench.report`
table and chart (STEP.md, STEP.png). ``--collect`` only counts the cases each step selects, on any machine, so a
renamed case cannot leave a step empty unnoticed (the tests run it).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench import report

ROOT = Path(__file__).resolve().parents[1]
#: Seconds an interrupted step gets to write its results before it is killed.
GRACE_SECONDS = 30


@dataclass(frozen=True)
class Step:
    """One pytest run: its arguments (after ``python -m pytest``), its time limit, and whether it is a bench run
    (JSON and report) or a test run."""

    name: str
    arguments: tuple[str, ...]
    seconds: int
    bench: bool = True


OP_FILES = tuple(
    f"bench/bench_{op}.py" for op in ("cbn_relu_upsample", "pixel_shuffle_prelu", "mobilenet_score", "conv_avgpool")
)
STEPS = (
    Step("cuda-tests", ("tests", "-m", "cuda"), 170, bench=False),
    Step("ops", (*OP_FILES, "--benchmark-only", "-k", "full and not smoke"), 150),
    Step("train", ("bench/bench_train.py", "--benchmark-only", "-k", "iteration and model"), 150),
    Step("upscale", ("bench/bench_upscale.py", "--benchmark-only", "-k", "1080p"), 70),
)


def command(step: Step, out: Path | None) -> list[str]:
    """The pytest command line of `step`; with `out`, its bench results go to out/STEP.json."""
    line = [sys.executable, "-m", "pytest", *step.arguments, "-p", "no:cacheprovider"]
    if out is not None and step.bench:
        line += ["--benchmark-json", str(out / f"{step.name}.json")]
    return line


def run_step(step: Step, out: Path) -> tuple[int | None, float]:
    """Run `step` with its output in out/STEP.log; returns (exit status or None when it overran its time limit, and
    seconds spent). An overrunning step is interrupted (`_interrupt`); so is the running one on Ctrl-C here."""
    start = time.monotonic()
    with open(out / f"{step.name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command(step, out),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,  # its compile workers too are stopped with it
        )
        try:
            status: int | None = process.wait(timeout=step.seconds)
        except subprocess.TimeoutExpired:
            status = None
            _interrupt(process)
        except KeyboardInterrupt:
            _interrupt(process)
            raise
    return status, time.monotonic() - start


def _interrupt(process: subprocess.Popen) -> None:
    """SIGINT to the step's process group, as Ctrl-C (pytest then finishes its session and pytest-benchmark saves
    what it measured), then SIGKILL after GRACE_SECONDS."""
    os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(timeout=GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def write_report(step: Step, out: Path) -> bool:
    """STEP.md and STEP.png from STEP.json, when the step measured something; whether it did."""
    results = out / f"{step.name}.json"
    try:
        if not json.loads(results.read_text(encoding="utf-8"))["benchmarks"]:
            return False
    except (OSError, ValueError):  # not written, or cut short by SIGKILL
        return False
    return report.main([str(results), "--out", str(out / step.name)]) == 0


class _Count:
    """pytest plugin: the number of cases left after selection."""

    cases = 0

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.cases = len(session.items)


def collected(step: Step) -> int:
    """How many cases `step` selects here (pytest --collect-only, in this process, run from the repository root)."""
    count, here = _Count(), Path.cwd()
    os.chdir(ROOT)
    try:
        pytest.main([*step.arguments, "--collect-only", "-p", "no:cacheprovider", "-p", "no:terminal"], [count])
    finally:
        os.chdir(here)
    return count.cases


def main(argv: list[str] | None = None) -> int:
    names = [step.name for step in STEPS]
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the logs and results (needed unless --collect)")
    parser.add_argument("--only", nargs="+", choices=names, default=names, metavar="STEP", help=", ".join(names))
    parser.add_argument("--collect", action="store_true", help="only count the cases each step selects")
    args = parser.parse_args(argv)
    if not args.collect and args.out is None:
        parser.error("give --out DIR: the folder for the logs and results")
    steps = [step for step in STEPS if step.name in args.only]
    if args.collect:
        counts = {step.name: collected(step) for step in steps}
        for name, count in counts.items():
            print(f"{name}: {count} cases")
        return 0 if all(counts.values()) else 1
    if not torch.cuda.is_available():
        message = "error: no CUDA device here; these checks need one (--collect checks their selection anywhere)"
        print(message, file=sys.stderr)
        return 2
    args.out = args.out.resolve()  # the steps run from the repository root
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    for step in steps:
        status, seconds = run_step(step, args.out)
        reported = step.bench and write_report(step, args.out)
        outcome = "overran its limit: interrupted" if status is None else f"exit status {status}"
        print(f"{step.name}: {outcome} after {seconds:.0f} s (limit {step.seconds} s)" + (", reported" * reported))
        failed |= status != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
