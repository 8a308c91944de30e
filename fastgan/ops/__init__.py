"""Fused ops: each has an eager reference (`<op>_ref`; `nearest_upsample`, a helper they share, needs none) and a
fused form — autograd Functions whose kernels are torch
arithmetic or Triton, or for `conv_avgpool` a cheaper convolution; `backend` / `set_backend` choose which runs (see
`fastgan.ops.backends`)."""

from fastgan.ops.backends import BACKENDS, backend, current_backend, fused_backend_for, set_backend
from fastgan.ops.cbn_relu_upsample import cbn_relu_upsample, cbn_relu_upsample_conv
from fastgan.ops.conv_avgpool import conv_avgpool
from fastgan.ops.mobilenet_score import mobilenet_score
from fastgan.ops.nearest_upsample import nearest_upsample
from fastgan.ops.pixel_shuffle_prelu import pixel_shuffle_prelu

__all__ = [
    "BACKENDS",
    "backend",
    "cbn_relu_upsample",
    "cbn_relu_upsample_conv",
    "conv_avgpool",
    "current_backend",
    "fused_backend_for",
    "mobilenet_score",
    "nearest_upsample",
    "pixel_shuffle_prelu",
    "set_backend",
]
