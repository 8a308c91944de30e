"""pytest-benchmark suites, fused vs eager per op, block and training step: `pytest bench/ --benchmark-only`."""
