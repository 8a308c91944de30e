"""The training core and the per-family steps; `python -m fastgan.train`."""
