"""The exponential moving average of a generator's weights, which samples and evaluations use (BigGAN, LAG).

The floating-point arithmetic and the checkpoint keys (``module.*`` and ``n_averaged``) of ``AveragedModel(model,
multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)``, whose checkpoints load either way; integer buffers
take the live value (AveragedModel blends and truncates them). Unlike AveragedModel, an update does not make the host
wait: AveragedModel copies its CPU step counter to the GPU on each update (a blocking copy, which waits for every
queued kernel) before the EMA's own launches; here the counter stays on the CPU and the update only queues work.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightEMA(nn.Module):
    """ema ← decay·ema + (1 − decay)·live for every floating-point parameter and buffer; the first update copies.

    Integer buffers (e.g. BatchNorm's batch counts) take the live value. `module` is a deep copy of the model at
    construction, on the model's device; `n_averaged` () counts the updates, on the CPU.
    """

    def __init__(self, model: nn.Module, decay: float):
        super().__init__()
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must lie in [0, 1), got {decay}")
        self.module = copy.deepcopy(model)
        self.decay = decay
        self.register_buffer("n_averaged", torch.tensor(0, dtype=torch.long))

    @torch.no_grad()
    def update_parameters(self, model: nn.Module) -> None:
        """Average `model`'s current weights (same architecture as `module`) in."""
        pairs = list(
            zip(
                [*self.module.parameters(), *self.module.buffers()],
                [*model.parameters(), *model.buffers()],
                strict=True,
            )
        )
        floating = [(ema, live) for ema, live in pairs if ema.is_floating_point()]
        others = [(ema, live) for ema, live in pairs if not ema.is_floating_point()]
        if self.n_averaged.item() == 0:  # a CPU tensor: no device synchronisation
            floating, others = [], pairs
        if floating:
            torch._foreach_lerp_([ema for ema, _ in floating], [live.detach() for _, live in floating], 1 - self.decay)
        for ema, live in others:
            ema.copy_(live.detach())
        self.n_averaged += 1
