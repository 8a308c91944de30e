"""The LAG family for the training core: generator, critic, EMA generator, optimisers and one WGAN-GP iteration,
optionally grown stage by stage (`fastgan.train.progressive`).

Batches come from `fastgan.data.sr_loader` in [0, 1] and are mapped to [-1, 1], LAG's range. One iteration is a
critic step (Eq. 8: C(G(y, z), d) − C(x, 0) + λ_GP·L_∇) and a generator step (Eq. 7: −C(G(y, z), d) +
λ_centre·‖P(x, 0) − P(G(y, 0), d)‖²), d = |y − round_r(H(·))|/r the conditioning of Eq. 10.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from fastgan.data.sr_loader import degrade
from fastgan.eval.sr_metrics import logged_psnr
from fastgan.losses_lag import centre_loss, critic_loss, gradient_penalty, lr_conditioning
from fastgan.models.lag import LAGCritic, LAGGenerator
from fastgan.profiling import phase
from fastgan.train.checkpoint import CheckpointError, averaged_generator, load_checkpoint
from fastgan.train.config import Config, merge
from fastgan.train.core import as_floats, load_optimizer_state, placed
from fastgan.train.ema import WeightEMA
from fastgan.train.progressive import growth_schedule, stage_target, warn_if_still_growing, warn_if_too_short
from fastgan.train.sr_step import held_out_crops


def build_lag(config: Config) -> tuple[LAGGenerator, LAGCritic]:
    """The generator and critic that `config.lag` describes."""
    lag = config.lag
    generator = LAGGenerator(lag.scale, lag.channels, lag.blocks, lag.noise_dim, lag.min_channels, lag.bicubic_skip)
    return generator, LAGCritic(lag.scale, lag.channels, lag.critic_blocks, lag.min_channels)


def conditioning_reference(y: torch.Tensor, real: torch.Tensor, full_resolution: bool, method: str) -> torch.Tensor:
    """What a sample's down-scaled image is compared with in the critic's conditioning (Eq. 10): the input y itself
    once the network works at full resolution (`full_resolution`: the last stage, faded in); before that, the real
    stage image down-scaled and quantised as y was made (a deliberate departure from the paper, which defines H at
    full scale only): H of a box-averaged HR image is not y for bicubic H, so the real image, always conditioned
    with 0, would not land on y either, and a perfect sample would be told it misses its input.

    Args:
        y: (N, 3, h, w) the inputs in [-1, 1].
        real: (N, 3, f·h, f·w) the stage's real images in [-1, 1] (`stage_target`).
        full_resolution: whether `real` is the HR image itself.
        method: H, "bicubic" or "area".

    Returns:
        (N, 3, h, w) in [-1, 1], 8-bit quantised.
    """
    if full_resolution:
        return y
    return degrade((real + 1) / 2, real.shape[-1] // y.shape[-1], method) * 2 - 1


class LAGSampler(nn.Module):
    """A trained LAG generator as an upscaler of images in [0, 1]: (N, 3, h, w) -> (N, 3, s·h, s·w) in [0, 1]
    (unclamped), with one fixed z for every image and tile (zeros: the centre G(y, 0)).

    Args:
        generator: the LAG generator.
        z: (Z,) noise vector, or None for zeros.
    """

    def __init__(self, generator: LAGGenerator, z: torch.Tensor | None = None):
        super().__init__()
        self.generator, self.scale = generator, generator.scale
        if z is not None and z.shape != (generator.noise_dim,):
            raise ValueError(
                f"z must be one ({generator.noise_dim},) noise vector for this generator, got {tuple(z.shape)}"
            )
        z = torch.zeros(generator.noise_dim) if z is None else z.detach().float()
        self.register_buffer("z", z)

    def forward(self, lr: torch.Tensor) -> torch.Tensor:
        """(N, 3, h, w) in [0, 1] -> (N, 3, scale·h, scale·w)."""
        z = self.z.to(lr.dtype).expand(lr.shape[0], -1)
        return (self.generator(lr * 2 - 1, z) + 1) / 2


def lag_generator_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[LAGGenerator, Config]:
    """The trained LAG generator of a run (the EMA one once averaging has started), in eval mode, and its config."""
    checkpoint = load_checkpoint(path)
    config = merge(Config(), checkpoint["config"])
    if config.model.name != "lag":
        raise CheckpointError(f"{path} is a {config.model.name} run, not a LAG one")
    generator = averaged_generator(build_lag(config)[0], checkpoint["family"])
    warn_if_still_growing(path, config, generator.stages, int(checkpoint["family"].get("images_seen", 0)))
    return generator.to(device).eval(), config


class LAGFamily:
    """LAG's networks, optimisers and iteration for `fastgan.train.core.Trainer`.

    Args:
        config: the run configuration (model.name = lag; lag.*, progressive.*, train.*).
        held_out: (name, uint8 (3, H, W)) images never trained on; their centre crops fill the sample grid.
        device: where everything runs.
    """

    def __init__(self, config: Config, held_out: list[tuple[str, torch.Tensor]], device: torch.device):
        self.config, self.device = config, device
        t, lag = config.train, config.lag
        generator, critic = build_lag(config)
        self.generator, self.critic = placed(generator, device, config), placed(critic, device, config)
        self.stages = generator.stages
        self.schedule = growth_schedule(config, self.stages)
        warn_if_too_short(config, self.schedule)
        self.generator_ema = WeightEMA(self.generator, t.ema_decay)
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr_g, betas=t.betas)
        self.opt_d = torch.optim.Adam(self.critic.parameters(), lr=t.lr_d, betas=t.betas)
        self.noise = torch.Generator().manual_seed(t.seed)  # z and ρ, on the CPU so a run resumes on any device
        self.images_seen = 0
        self.sample_columns = lag.samples + 3
        self.sample_hr = held_out_crops(held_out, lag.scale).to(device) * 2 - 1  # (K, 3, S, S) in [-1, 1]
        fixed = torch.Generator().manual_seed(t.seed + 1)
        self.sample_z = torch.randn(lag.samples, lag.noise_dim, generator=fixed).to(device)

    def _draw(self, *shape: int) -> tuple[torch.Tensor, torch.Tensor]:
        """z (N, Z) ~ N(0, I) and ρ (N,) ~ U(0, 1) from the family's own generator."""
        z = torch.randn(*shape, generator=self.noise)
        rho = torch.rand(shape[0], generator=self.noise)
        return z.to(self.device, non_blocking=True), rho.to(self.device, non_blocking=True)  # no wait on the GPU

    @contextlib.contextmanager
    def _frozen_critic(self):
        self.critic.requires_grad_(False)
        try:
            yield
        finally:
            self.critic.requires_grad_(True)

    def train_step(self, loader, step: int) -> dict[str, float]:
        """One critic update and one generator update at the schedule's stage and α, then the EMA update."""
        t, lag, method = self.config.train, self.config.lag, self.config.sr.degrade
        growth = self.schedule.at(self.images_seen)
        stage, alpha = growth.stage, growth.alpha
        for group in self.opt_g.param_groups:
            group["lr"] = t.lr_g * growth.lr_scale
        for group in self.opt_d.param_groups:
            group["lr"] = t.lr_d * growth.lr_scale
        with phase("data"):
            lr, hr = loader.next_batch(growth.batch_size)
        y = lr * 2 - 1  # (N, 3, h, w)
        real = stage_target(hr * 2 - 1, stage, self.stages, alpha)  # (N, 3, 2^stage·h, 2^stage·w)
        factor, n = 2**stage, y.shape[0]
        reference = conditioning_reference(y, real, stage == self.stages and alpha >= 1.0, method)
        z, rho = self._draw(n, lag.noise_dim)
        zero = torch.zeros_like(y)

        def critic(images: torch.Tensor, conditioning: torch.Tensor) -> torch.Tensor:
            return self.critic(images, conditioning, stage, alpha)

        with phase("d_step"):
            with torch.no_grad():
                fake = self.generator(y, z, stage, alpha)
            real_scores = critic(real, zero)
            fake_scores = critic(fake, lr_conditioning(reference, fake, factor, method))
            penalty = gradient_penalty(
                lambda x: critic(x, lr_conditioning(reference, x, factor, method)), real, fake, rho
            )
            wasserstein = critic_loss(real_scores, fake_scores)
            d_loss = wasserstein + lag.gp_weight * penalty + lag.drift_weight * real_scores.square().mean()
            self.opt_d.zero_grad(set_to_none=True)
            d_loss.backward()
            with phase("optimizer_d"):
                self.opt_d.step()
        with phase("g_step"), self._frozen_critic():
            both = self.generator(torch.cat([y, y]), torch.cat([z, torch.zeros_like(z)]), stage, alpha)
            conditioning = lr_conditioning(torch.cat([reference, reference]), both, factor, method)
            latent = self.critic.project(both, conditioning, stage, alpha)
            with torch.no_grad():
                real_latent = self.critic.project(real, zero, stage, alpha)
            adversarial = -self.critic.score(latent[:n]).mean()
            centre = centre_loss(real_latent, latent[n:])
            pixel = F.mse_loss(both[n:], real)
            g_loss = lag.adversarial_weight * adversarial + lag.center_weight * centre + lag.pixel_weight * pixel
            self.opt_g.zero_grad(set_to_none=True)
            g_loss.backward()
            with phase("optimizer_g"):
                self.opt_g.step()
        if step >= t.ema_start:
            with phase("ema"):
                self.generator_ema.update_parameters(self.generator)
        self.images_seen += n
        centre_images = (both[n:].detach().clamp(-1, 1) + 1) / 2
        bicubic = F.interpolate(lr, scale_factor=factor, mode="bicubic", align_corners=False).clamp(0, 1)
        return as_floats(  # one host synchronisation
            {
                "d_loss": d_loss,
                "w_distance": -wasserstein,
                "gp": penalty,
                "g_loss": g_loss,
                "g_adv": adversarial,
                "centre": centre,
                "psnr_centre": logged_psnr(centre_images, (real + 1) / 2, factor),
                "psnr_bicubic": logged_psnr(bicubic, (real + 1) / 2, factor),
                "stage": float(stage),
                "alpha": alpha,
            }
        )

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """One row per held-out crop: bicubic | G(y, 0) | G(y, z_k) for the fixed z_1..z_K | HR, at the current stage
        (up-sampled nearest to HR size): (K·(samples + 3), 3, S, S) in [-1, 1]."""
        averaged = int(self.generator_ema.n_averaged) > 0
        model = self.generator_ema.module if averaged else self.generator
        growth = self.schedule.at(self.images_seen)
        hr, scale = self.sample_hr, self.config.lag.scale
        y = degrade((hr + 1) / 2, scale, self.config.sr.degrade) * 2 - 1  # 8-bit, as training inputs are
        was_training = model.training
        model.eval()
        try:
            panels = [F.interpolate(y, scale_factor=scale, mode="bicubic")]
            for z in [None, *self.sample_z]:
                zs = None if z is None else z.expand(y.shape[0], -1)
                out = model(y, zs, growth.stage, growth.alpha)
                panels.append(F.interpolate(out, size=hr.shape[-2:], mode="nearest"))
        finally:
            model.train(was_training)
        rows = torch.stack([*panels, hr], dim=1).clamp(-1, 1)  # (K, samples + 3, 3, S, S)
        return rows.flatten(0, 1)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "critic": self.critic.state_dict(),
            "generator_ema": self.generator_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "noise": self.noise.get_state(),
            "images_seen": self.images_seen,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.generator.load_state_dict(state["generator"])
        self.critic.load_state_dict(state["critic"])
        self.generator_ema.load_state_dict(state["generator_ema"])
        load_optimizer_state(self.opt_g, state["opt_g"])
        load_optimizer_state(self.opt_d, state["opt_d"])
        self.noise.set_state(state["noise"])
        self.images_seen = int(state["images_seen"])
