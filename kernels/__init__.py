"""Triton kernels and their launchers, installed as `fastgan.kernels`."""
