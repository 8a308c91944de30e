"""pytest plugin: a benchmark case cut short by Ctrl-C (SIGINT) is marked failed, so pytest-benchmark leaves it out
of the saved results instead of saving a partial one, or failing to save any (a case interrupted in its first timed
round has no times yet). The bench's conftest loads it; `python -m bench.gpu_checks` relies on it."""

from __future__ import annotations

import pytest


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        return (yield)
    except KeyboardInterrupt:
        fixture = getattr(item, "funcargs", {}).get("benchmark")
        if fixture is not None:
            fixture.has_error = True
        raise
