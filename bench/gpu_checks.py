"""python -m bench.gpu_checks --out DIR [--archive FILE] [--only STEP ...] | --collect: every check that needs an
NVIDIA GPU, in one run sized for a short loan of one (the default steps' time limits add up to 9 min).

Steps, in the order their results are needed: the kernels' `cuda` tests (their correctness, before any time of
theirs is trusted); the op cases' forward + backward at the models' shapes, separate and interleaved (issue 3's
bandwidth and MobileNet-score targets); the HRGAN-128 iteration eager, fused and from CUDA graphs (issue 4); the
1080p → 4K frame times in torch; the iteration under torch.compile with and without its CUDA-graph mode (minutes
of compiling: after the cheaper steps); TensorRT's frame times (issue 6). The other `cuda` tests (training under
torch.compile, engine builds, DALI) are the step `cuda-tests-rest`, run only when named with --only. Each step is
a pytest run of its own, in a process group of its own, with a hard time limit: GRACE_SECONDS before it the step is
interrupted like Ctrl-C, so pytest-benchmark still saves the cases it finished (`bench.interrupts` leaves out the one
cut short), and at the limit it is killed; then the next step starts. DIR gets STEP.log, and for the bench steps
STEP.json with its `bench.report` table (STEP.md; STEP.png for op and training rows; the compile step's compiled
cases are tabled in the rows of the train step's eager and fused ones). ``--collect`` only counts the cases each
step selects, on any machine, and fails when a bench file of a step selects none (the tests run it).

The package must be installed (`pip install --no-deps --no-build-isolation -e .`: a device machine reaches no
package index): `fastgan.kernels` is the repository's `kernels/` folder under the package's name. A device machine
returns few files: `--archive $OUT/gpu.tgz` rewrites one archive of DIR after every step, so a run stopped from
outside still returns the steps it finished.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
import tarfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from bench import report

ROOT = Path(__file__).resolve().parents[1]
#: Seconds before its limit at which a step is interrupted, for pytest-benchmark to save what it measured.
GRACE_SECONDS = 20


@dataclass(frozen=True)
class Step:
    """One pytest run: its arguments (after ``python -m pytest``), its time limit, whether it is a bench run (JSON
    and report) or a test run, and whether it runs without --only naming it."""

    name: str
    arguments: tuple[str, ...]
    seconds: int
    bench: bool = True
    default: bool = True
    reported_with: str | None = None  # an earlier step whose results its report's rows extend

    @property
    def files(self) -> list[str]:
        """The bench or test files it names (not folders)."""
        return [argument for argument in self.arguments if argument.endswith(".py")]


OP_FILES = tuple(
    f"bench/bench_{op}.py" for op in ("cbn_relu_upsample", "pixel_shuffle_prelu", "mobilenet_score", "conv_avgpool")
)
UPSCALE = ("bench/bench_upscale.py", "--benchmark-only", "-k")
ITERATION = ("bench/bench_train.py", "--benchmark-only", "-k")
KERNEL_TESTS = ("tests/ops", "tests/kernels")
STEPS = (
    Step("cuda-tests", (*KERNEL_TESTS, "-m", "cuda"), 120, bench=False),
    Step("ops", (*OP_FILES, "--benchmark-only", "-k", "(full or upsample_conv) and not smoke"), 160),
    Step("train", (*ITERATION, "iteration and model and not compiled"), 100),
    Step("upscale", (*UPSCALE, "1080p and not tensorrt"), 60),
    Step("compile", (*ITERATION, "iteration and model and compiled"), 70, reported_with="train"),
    Step("tensorrt", (*UPSCALE, "1080p and tensorrt"), 30),  # last: an engine build does not stop at Ctrl-C
    Step(
        "cuda-tests-rest",
        ("tests", "-m", "cuda", *(f"--ignore={folder}" for folder in KERNEL_TESTS)),
        300,
        bench=False,
        default=False,
    ),
)


def command(step: Step, out: Path) -> list[str]:
    """The pytest command line of `step`, its bench results going to out/STEP.json."""
    line = [sys.executable, "-m", "pytest", *step.arguments, "-p", "no:cacheprovider"]
    return line + ["--benchmark-json", str(out / f"{step.name}.json")] if step.bench else line


def run_step(step: Step, out: Path) -> tuple[int | None, float]:
    """Run `step` with its output in out/STEP.log; returns (exit status, or None when it reached its time limit, and
    seconds spent). The step is interrupted (SIGINT) GRACE_SECONDS before its limit and killed at it; on Ctrl-C or
    SIGTERM here it is interrupted, then killed if it still runs."""
    start = time.monotonic()
    environment = {name: value for name, value in os.environ.items() if not _changes_the_step(name)}
    with open(out / f"{step.name}.log", "w", encoding="utf-8") as log:
        process = subprocess.Popen(
            command(step, out),
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**environment, "PYTHONUNBUFFERED": "1"},
            preexec_fn=_own_group_with_default_sigint,
        )
        try:
            status: int | None = process.wait(timeout=max(step.seconds - GRACE_SECONDS, 1))
        except subprocess.TimeoutExpired:
            status = None
        finally:
            if process.poll() is None:  # near its limit, or Ctrl-C / SIGTERM here
                _signal(process, signal.SIGINT)
                with contextlib.suppress(KeyboardInterrupt, subprocess.TimeoutExpired):
                    process.wait(timeout=GRACE_SECONDS)
                _signal(process, signal.SIGKILL)  # what is left of its group
                process.wait()
    return status, time.monotonic() - start


def _changes_the_step(variable: str) -> bool:
    """Whether an environment variable of this run would change what a step runs or how (the bench's own settings,
    pytest's extra options and plugins): the step plan alone decides."""
    return variable.startswith("FASTGAN_BENCH_") or variable in ("PYTEST_ADDOPTS", "PYTEST_PLUGINS")


def _own_group_with_default_sigint() -> None:
    """In the step's child before exec: a process group of its own (its compile workers are signalled with it), and
    SIGINT back to its default, which a background job or `nohup` inherits as ignored (Python then never raises
    KeyboardInterrupt, and the step is killed without saving what it measured)."""
    os.setpgrp()
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _signal(process: subprocess.Popen, signal_number: int) -> None:
    """`signal_number` to the step's process group, unless it is gone."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal_number)


def write_report(step: Step, out: Path) -> bool:
    """STEP.md (and STEP.png) from STEP.json, when the step measured something; whether it did. A step reported with
    an earlier one is tabled from both steps' results (written to EARLIER+STEP.json): its cases are columns of the
    earlier one's rows. A report that fails is said on stderr, and the run goes on."""
    results = out / f"{step.name}.json"
    try:
        measured = json.loads(results.read_text(encoding="utf-8"))
        if not measured["benchmarks"]:
            return False
        if step.reported_with is not None:
            with contextlib.suppress(OSError, ValueError, KeyError):  # without them the report says what is missing
                earlier = json.loads((out / f"{step.reported_with}.json").read_text(encoding="utf-8"))["benchmarks"]
                measured["benchmarks"] = earlier + measured["benchmarks"]
            results = out / f"{step.reported_with}+{step.name}.json"
            results.write_text(json.dumps(measured), encoding="utf-8")
        return report.main([str(results), "--out", str(out / step.name)]) == 0
    except (OSError, ValueError):  # not written, or cut short by SIGKILL
        return False
    except Exception as exc:  # noqa: BLE001 (a report is not worth the remaining steps of a GPU loan)
        print(f"error: no report of {results}: {exc!r}", file=sys.stderr, flush=True)
        return False


class _Collected:
    """pytest plugin: the cases left after selection, counted by file (relative to the repository root)."""

    def __init__(self) -> None:
        self.by_file: Counter[str] = Counter()

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        self.by_file.update(item.path.relative_to(ROOT).as_posix() for item in session.items)


def collected(step: Step) -> tuple[int, list[str]]:
    """How many cases `step` selects here, and the problems: a collection error, a named file that selects none
    (pytest --collect-only in this process, from the repository root)."""
    count, here = _Collected(), Path.cwd()
    os.chdir(ROOT)
    try:
        # no:unraisableexception: its clean-up collects garbage five times per run (a second each beside torch)
        options = ["--collect-only", "-p", "no:cacheprovider", "-p", "no:terminal", "-p", "no:unraisableexception"]
        status = pytest.main([*step.arguments, *options], [count])
    finally:
        os.chdir(here)
    problems = [f"{path} selects no case" for path in step.files if not count.by_file[path]]
    if status != pytest.ExitCode.OK:
        problems.insert(0, f"collection ended with {pytest.ExitCode(status).name} (run it with --collect-only to see)")
    return sum(count.by_file.values()), problems


def main(argv: list[str] | None = None) -> int:
    names = [step.name for step in STEPS]
    parser = argparse.ArgumentParser(prog="python -m bench.gpu_checks", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, help="folder for the logs and results (needed unless --collect)")
    defaults = [step.name for step in STEPS if step.default]
    parser.add_argument(
        "--only",
        nargs="+",
        choices=names,
        default=defaults,
        metavar="STEP",
        help=f"{', '.join(names)} (default: all but cuda-tests-rest)",
    )
    parser.add_argument("--archive", type=Path, help="a .tar.gz of the --out folder, rewritten after every step")
    parser.add_argument("--collect", action="store_true", help="only count the cases each step selects")
    args = parser.parse_args(argv)
    if not args.collect and args.out is None:
        parser.error("give --out DIR: the folder for the logs and results")
    steps = [step for step in STEPS if step.name in args.only]
    if args.collect:
        failed = False
        for step in steps:
            cases, problems = collected(step)
            print(f"{step.name}: {cases} cases" + "".join(f"; {problem}" for problem in problems))
            failed |= bool(problems) or not cases
        return 1 if failed else 0
    if not torch.cuda.is_available():
        message = "error: no CUDA device here; these checks need one (--collect checks their selection anywhere)"
        print(message, file=sys.stderr)
        return 2
    if importlib.util.find_spec("fastgan.kernels") is None:
        message = (
            "error: fastgan.kernels cannot be imported: install the package first "
            "(pip install --no-deps --no-build-isolation -e .)"
        )
        print(message, file=sys.stderr)
        return 2
    args.out = args.out.resolve()  # the steps run from the repository root
    args.out.mkdir(parents=True, exist_ok=True)
    failed = False
    on_sigterm = signal.signal(signal.SIGTERM, signal.default_int_handler)  # a stopped run stops its step too
    try:
        for step in steps:
            status, seconds = run_step(step, args.out)
            reported = step.bench and write_report(step, args.out)
            outcome = "reached its limit: interrupted" if status is None else f"exit status {status}"
            limit = f"(limit {step.seconds} s)" + (", reported" * reported)
            print(f"{step.name}: {outcome} after {seconds:.0f} s {limit}", flush=True)
            failed |= status != 0
            if args.archive is not None:
                archive(args.out, args.archive)
    finally:
        signal.signal(signal.SIGTERM, on_sigterm)
    return 1 if failed else 0


def archive(folder: Path, path: Path) -> None:
    """Write `folder`'s files to the gzipped tar `path`, under the folder's name, replacing it only once complete."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    with tarfile.open(partial, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    os.replace(partial, path)


if __name__ == "__main__":
    raise SystemExit(main())
