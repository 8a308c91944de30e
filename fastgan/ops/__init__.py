"""Fused ops: each has an eager torch form; fused Triton backends plug in behind the same call."""

from fastgan.ops.cbn_relu_upsample import cbn_relu_upsample
from fastgan.ops.mobilenet_score import mobilenet_score
from fastgan.ops.nearest_upsample import nearest_upsample

__all__ = ["cbn_relu_upsample", "mobilenet_score", "nearest_upsample"]
