"""The SRResNet / SRGAN family for the training core: networks, optimisers and one iteration of either stage.

Stage "srresnet" trains the generator alone with a pixel loss; stage "srgan" starts from an srresnet checkpoint
(`sr.init_from`) and trains it with the VGG19 content loss plus `sr.adversarial_weight` × the adversarial loss,
against `SRDiscriminator`. Images are float in [0, 1]; LR batches come from `fastgan.data.sr_loader`.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from fastgan.data.sr_loader import degrade
from fastgan.eval.sr_metrics import logged_psnr
from fastgan.losses_sr import discriminator_loss, generator_adversarial_loss, perceptual_loss, pixel_loss
from fastgan.models.growing import GrowingSRResNet, stage_count
from fastgan.models.srgan import SRDiscriminator, SRResNet
from fastgan.models.vgg import load_vgg_features
from fastgan.profiling import phase
from fastgan.train.checkpoint import CheckpointError, load_checkpoint
from fastgan.train.config import CUDA_GRAPH_COMPILE_MODES, Config, ConfigError, merge
from fastgan.train.core import as_floats, compile_in_place, load_optimizer_state, placed
from fastgan.train.progressive import growth_schedule, stage_target, warn_if_still_growing, warn_if_too_short

log = logging.getLogger(__name__)

#: Side of the held-out HR crops shown in the sample grid (bicubic | SR | HR per row).
SAMPLE_SIDE = 128
_ARCHITECTURE = ("scale", "channels", "blocks", "batch_norm", "bicubic_skip")


def held_out_crops(held_out: list[tuple[str, torch.Tensor]], scale: int, side: int = SAMPLE_SIDE) -> torch.Tensor:
    """The sample grid's images: each held-out image's centre square of min(side, H, W) pixels (rounded down to a
    multiple of `scale`), box-resized to side×side.

    Args:
        held_out: (name, uint8 (3, H, W)) images never trained on.
        scale: the model's up-scaling factor.
        side: the crops' side (a multiple of `scale`).

    Returns:
        (K, 3, side, side) float in [0, 1] on the CPU.
    """
    crops = []
    for name, image in held_out:
        h, w = image.shape[-2:]
        square = min(side, h, w) // scale * scale
        if square == 0:
            raise ConfigError(f"held-out image {name} is {w}×{h}, smaller than the ×{scale} scale: hold out another")
        top, left = (h - square) // 2, (w - square) // 2
        crop = image[:, top : top + square, left : left + square].float().div(255)
        crops.append(F.interpolate(crop[None], size=(side, side), mode="area")[0])
    if not crops:
        raise ConfigError("sr.held_out names no image: keep at least one image out of training for samples")
    return torch.stack(crops)


def build_generator(config: Config) -> SRResNet:
    """The SRResNet that `config.sr` describes."""
    sr = config.sr
    return SRResNet(sr.scale, sr.channels, sr.blocks, sr.batch_norm, sr.bicubic_skip)


def generator_from_checkpoint(path: str | Path, device: torch.device | str = "cpu") -> tuple[SRResNet, Config]:
    """The trained generator of an SR run (checkpoint file or run directory), in eval mode, and its config."""
    checkpoint = load_checkpoint(path)
    config = merge(Config(), checkpoint["config"])
    if config.model.name != "srgan":
        raise CheckpointError(f"{path} is a {config.model.name} run, not an SRResNet/SRGAN one")
    generator = build_generator(config)
    generator.load_state_dict(checkpoint["family"]["generator"])
    warn_if_still_growing(path, config, stage_count(generator.scale), int(checkpoint["family"].get("images_seen", 0)))
    return generator.to(device).eval(), config


class SRFamily:
    """SRResNet (and, in stage "srgan", its discriminator and VGG19 features) and their optimisers.

    With `progressive.enabled` (×4 only) the generator grows ×2 → ×4 (`fastgan.models.growing.GrowingSRResNet`):
    each stage is compared with the HR crop pooled to its size, faded in as `fastgan.train.progressive` schedules.

    Args:
        config: the run configuration (model.name = srgan; sr.*, train.* and progressive.*).
        held_out: (name, uint8 (3, H, W)) images never trained on; their centre crops fill the sample grid.
        device: where everything runs.
        resuming: a checkpoint will restore the weights, so `sr.init_from` is not read.
    """

    def __init__(
        self, config: Config, held_out: list[tuple[str, torch.Tensor]], device: torch.device, resuming: bool = False
    ):
        self.config, self.device = config, device
        sr, t = config.sr, config.train
        self.generator = placed(build_generator(config), device, config)
        if sr.init_from and not resuming:
            self._initialise_from(sr.init_from)
        self.stages = stage_count(self.generator.scale)
        self.schedule = growth_schedule(config, self.stages)
        warn_if_too_short(config, self.schedule)
        self.growing = placed(GrowingSRResNet(self.generator), device, config) if config.progressive.enabled else None
        self.images_seen = 0
        trained = self.growing if self.growing is not None else self.generator
        self.opt_g = torch.optim.Adam(trained.parameters(), lr=t.lr_g, betas=t.betas)
        self.discriminator = self.opt_d = self.vgg = None
        if sr.stage == "srgan":
            self.vgg = placed(load_vgg_features(sr.perceptual_layer, sr.vgg_weights, device), device, config)
            self.discriminator = placed(SRDiscriminator(), device, config)
            self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=t.lr_d, betas=t.betas)
        for network in (self.generator, self.discriminator, self.vgg):  # train.compile: never with growing
            if network is not None:
                compile_in_place(network, device, config)
        self.sample_columns = 3
        self.sample_hr = held_out_crops(held_out, config.sr.scale).to(device)  # (K, 3, S, S) in [0, 1]

    def _initialise_from(self, path: str) -> None:
        generator, source = generator_from_checkpoint(path)
        mismatched = [k for k in _ARCHITECTURE if getattr(source.sr, k) != getattr(self.config.sr, k)]
        if mismatched:
            raise ConfigError(
                f"sr.init_from={path} was trained with a different {', '.join('sr.' + k for k in mismatched)}; "
                "use the same architecture settings"
            )
        self.generator.load_state_dict(generator.state_dict())
        log.info("generator initialised from %s (stage %s)", path, source.sr.stage)

    @contextlib.contextmanager
    def _frozen_discriminator(self):
        self.discriminator.requires_grad_(False)
        try:
            yield
        finally:
            self.discriminator.requires_grad_(True)

    def _generate(self, lr: torch.Tensor, stage: int, alpha: float) -> torch.Tensor:
        if self.growing is None:
            return self.generator(lr)
        return self.growing(lr, stage, alpha)

    def train_step(self, loader, step: int) -> dict[str, float]:
        """One iteration: a pixel-loss G step ("srresnet"), or a D step then a content + adversarial G step."""
        sr_config, t = self.config.sr, self.config.train
        if t.compile in CUDA_GRAPH_COMPILE_MODES:  # TorchInductor's CUDA graphs
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: the last one's replay outputs are done with
        growth = self.schedule.at(self.images_seen)
        decay = t.lr_decay_factor if 0 < t.lr_decay_at <= step else 1.0  # SRGAN: 10⁵ iterations at 1e-4, then 1e-5
        for optimiser, rate in ((self.opt_g, t.lr_g), (self.opt_d, t.lr_d)):
            for group in optimiser.param_groups if optimiser is not None else ():
                group["lr"] = rate * growth.lr_scale * decay
        with phase("data"):
            lr, hr = loader.next_batch(growth.batch_size)
        hr = stage_target(hr, growth.stage, self.stages, growth.alpha)
        self.images_seen += lr.shape[0]
        metrics: dict[str, torch.Tensor | float] = {}
        if self.growing is not None:
            metrics.update(stage=float(growth.stage), alpha=growth.alpha)
        with phase("g_step"):
            sr = self._generate(lr, growth.stage, growth.alpha)  # one forward (one BN update) serves both steps
        if sr_config.stage == "srgan":
            with phase("d_step"):
                d_loss = discriminator_loss(
                    self.discriminator(hr), self.discriminator(sr.detach()), sr_config.relativistic
                )
                self.opt_d.zero_grad(set_to_none=True)
                d_loss.backward()
                with phase("optimizer_d"):
                    self.opt_d.step()
            metrics["d_loss"] = d_loss
        with phase("g_step"):
            if sr_config.stage == "srresnet":
                loss = pixel_loss(sr, hr, sr_config.pixel_loss)
                metrics["pixel"] = loss
            else:
                content = perceptual_loss(self.vgg, sr, hr)
                with self._frozen_discriminator():
                    real_logits = self.discriminator(hr) if sr_config.relativistic else None
                    adversarial = generator_adversarial_loss(
                        real_logits, self.discriminator(sr), sr_config.relativistic
                    )
                loss = content + sr_config.adversarial_weight * adversarial
                metrics.update(content=content, g_adv=adversarial)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            with phase("optimizer_g"):
                self.opt_g.step()
        metrics["g_loss"] = loss
        metrics["psnr"] = logged_psnr(sr.detach().clamp(0, 1), hr, 2**growth.stage)
        return as_floats(metrics)  # one host synchronisation

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Held-out crops, one row each: bicubic | SR (at the current stage, up-sampled nearest) | HR,
        (3K, 3, S, S) in [-1, 1]."""
        scale = self.config.sr.scale
        lr = degrade(self.sample_hr, scale, self.config.sr.degrade)  # as the training inputs are made
        bicubic = F.interpolate(lr, scale_factor=scale, mode="bicubic").clamp(0, 1)
        growth = self.schedule.at(self.images_seen)
        was_training = self.generator.training
        self.generator.eval()
        try:
            with torch.compiler.set_stance("force_eager"):  # a rare call: no eval-mode graph is compiled for it
                sr = self._generate(lr, growth.stage, growth.alpha).clamp(0, 1)
        finally:
            self.generator.train(was_training)
        sr = F.interpolate(sr, size=self.sample_hr.shape[-2:], mode="nearest")
        rows = torch.stack([bicubic, sr, self.sample_hr], dim=1)  # (K, 3 panels, 3, S, S)
        return rows.flatten(0, 1) * 2 - 1

    def state_dict(self) -> dict[str, Any]:
        state = {"generator": self.generator.state_dict(), "opt_g": self.opt_g.state_dict()}
        state["images_seen"] = self.images_seen
        if self.growing is not None:
            state["growing_heads"] = self.growing.heads.state_dict()
        if self.discriminator is not None:
            state.update(discriminator=self.discriminator.state_dict(), opt_d=self.opt_d.state_dict())
            state["vgg_sha256"] = self.vgg.fingerprint
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved_vgg = state.get("vgg_sha256")  # absent from checkpoints of older versions
        if self.vgg is not None and saved_vgg is not None and saved_vgg != self.vgg.fingerprint:
            raise ValueError(
                f"this checkpoint was trained with other VGG19 weights (sha256 {saved_vgg[:12]}, now "
                f"{self.vgg.fingerprint[:12]}): its content loss would change; resume with the same sr.vgg_weights "
                "file, or start a new run"
            )
        self.generator.load_state_dict(state["generator"])
        load_optimizer_state(self.opt_g, state["opt_g"])
        self.images_seen = int(state.get("images_seen", 0))  # absent from runs before progressive growing
        if self.growing is not None:
            self.growing.heads.load_state_dict(state["growing_heads"])
        if self.discriminator is not None:
            self.discriminator.load_state_dict(state["discriminator"])
            load_optimizer_state(self.opt_d, state["opt_d"])
