"""pytest-benchmark configuration: the header says what "fused" means here; ``--smoke`` (or ``-m smoke``) runs only
the tiny cases; a case cut short by Ctrl-C is left out of the saved results (`bench.interrupts`)."""

from __future__ import annotations

import gc

import pytest
import torch
from _pytest.mark.expression import Expression

from bench.common import BATCH, DTYPE, ON_CUDA, PROVIDERS, device_name
from bench.interrupts import pytest_runtest_call  # noqa: F401  (a hook: a case cut short by Ctrl-C is not saved)


def pytest_addoption(parser):
    parser.addoption(
        "--smoke", action="store_true", help="run only the tiny smoke case of each bench file (used by the tests)"
    )


def pytest_configure(config):
    config.addinivalue_line("markers", "smoke: the tiny case of a bench file that the test suite runs")


def pytest_report_header(config):
    fused = PROVIDERS["fused"]
    what = {
        "triton": "compiled Triton kernels" if ON_CUDA else "Triton kernels, interpreted",
        "fused-compiled": "fused autograd ops with torch arithmetic compiled by torch.compile",
        "fused-torch": "fused autograd ops with torch arithmetic, uncompiled",
    }.get(fused, fused)
    if not ON_CUDA and fused != "triton":
        what += " (no CUDA device: the Triton interpreter is not timed)"
    return [f"fastgan bench on {device_name()}: dtype {DTYPE}, HRGAN batch {BATCH}; provider 'fused' = {what}"]


def _selects_only_smoke(marker_expression: str) -> bool:
    """Whether `-m EXPRESSION` keeps a case marked smoke and drops an unmarked one (`-m smoke`, `-m "smoke and not
    x"`), so that it asks for the smoke cases, which are otherwise left out."""
    if not marker_expression.strip():
        return False
    expression = Expression.compile(marker_expression)
    return expression.evaluate(lambda name, **_: name == "smoke") and not expression.evaluate(lambda name, **_: False)


def pytest_collection_modifyitems(config, items):
    smoke = config.getoption("--smoke") or _selects_only_smoke(config.getoption("-m"))
    keep = [item for item in items if (item.get_closest_marker("smoke") is not None) == smoke]
    config.hook.pytest_deselected(items=[item for item in items if item not in keep])
    items[:] = keep


@pytest.fixture(autouse=True)
def _release_gpu_memory():
    """On CUDA, free what a case held before the next starts: families are reference cycles (bound methods kept as
    attributes), CUDA-graph pools and compiled graphs live until collected and reset."""
    yield
    if ON_CUDA:
        gc.collect()
        torch._dynamo.reset()
        torch.cuda.empty_cache()
