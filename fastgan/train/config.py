"""Typed training configuration: dataclass defaults, YAML files and `section.key=value` overrides.

Unknown sections or keys, and values of the wrong type, are errors that name the offending key.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from fastgan.data.color_jitter import check_amplitudes
from fastgan.data.factory import LOADERS
from fastgan.models.hrgan import check_widths
from fastgan.models.vgg import VGG19_RELU
from fastgan.video_files import is_video

MODELS = ("hrgan", "srgan", "lag")
DATA_SOURCES = ("embedded", "cifar10", "cifar100", "folder")
#: train.compile: off, or a torch.compile mode
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
#: the modes in which TorchInductor replays its kernels from CUDA graphs (on CUDA)
CUDA_GRAPH_COMPILE_MODES = ("reduce-overhead", "max-autotune")


class ConfigError(ValueError):
    """An invalid configuration: unknown key, wrong type or out-of-range value."""


@dataclass
class ModelConfig:
    name: str = "hrgan"
    resolution: int = 64  # generator output side: 32, 64 or 128 (training images are 32×32)
    z_dim: int = 128
    g_channels: int = 256
    g_widths: tuple[int, ...] | None = None  # explicit generator widths: 4×4 projection, then each block
    d_channels: int = 128

    def __post_init__(self) -> None:
        if self.name not in MODELS:
            raise ConfigError(f"model.name must be one of {MODELS}, got {self.name!r}")
        if self.resolution not in (32, 64, 128):
            raise ConfigError(f"model.resolution must be 32, 64 or 128, got {self.resolution}")
        if min(self.z_dim, self.g_channels, self.d_channels, *(self.g_widths or (1,))) < 1:
            raise ConfigError("model.z_dim, g_channels, d_channels and g_widths must be positive")
        if self.name == "hrgan" and self.g_widths is not None:
            try:
                check_widths(self.resolution, self.g_widths)
            except ValueError as exc:
                raise ConfigError(
                    f"model.g_widths: {exc}; give them all in one command (--set 'model.g_widths=[...]'), or "
                    "model.g_widths=null for the default"
                ) from None


def _check_finite(key: str, *values: float) -> None:
    """Weights and rates must be finite numbers (∞ passes a `> 0` check, NaN fails every comparison)."""
    if not all(math.isfinite(v) for v in values):
        raise ConfigError(f"{key} must be finite, got {', '.join(map(str, values))}")


def _check_seed(seed: int, key: str) -> None:
    """Seeds derive generator seeds (e.g. seed · 1 000 003 + epoch) that must stay within 64 bits."""
    if not 0 <= seed < 2**32:
        raise ConfigError(f"{key} must be in [0, 2^32), got {seed}")


@dataclass
class DataConfig:
    source: str = "embedded"  # embedded | cifar10 | cifar100 | folder
    path: str | None = None  # CIFAR pickle folder or class-folder root
    num_images: int = 50000  # size of the embedded set
    seed: int = 0  # embedded scenes and loader order
    flip: bool = True
    loader: str = "auto"  # auto | dali | torch (fastgan.data.factory; auto: DALI for folders and on CUDA, if installed)
    # colour jitter: (brightness, contrast, saturation) amplitudes a, each in [0, 1), 0 for none; each image gets
    # factors 1 + U(-a, a) (fastgan.data.color_jitter; applied in the DALI pipeline or by the torch loader)
    color_jitter: tuple[float, ...] = (0.0, 0.0, 0.0)

    def __post_init__(self) -> None:
        try:
            self.color_jitter = check_amplitudes(self.color_jitter)
        except ValueError as exc:
            raise ConfigError(f"data.color_jitter: {exc}") from None
        if self.source not in DATA_SOURCES:
            raise ConfigError(f"data.source must be one of {DATA_SOURCES}, got {self.source!r}")
        if self.source != "embedded" and not self.path:
            raise ConfigError(f"data.source={self.source} needs data.path (--data-path)")
        if self.loader not in LOADERS:
            raise ConfigError(f"data.loader must be one of {LOADERS}, got {self.loader!r}")
        if self.num_images < 1:
            raise ConfigError(f"data.num_images (the embedded set's size) must be >= 1, got {self.num_images}")
        _check_seed(self.seed, "data.seed")


@dataclass
class LossConfig:
    hinge_margin: float = 1.0  # K of the generalized hinge loss (Eq. 2)
    lambda_ms: float = 1.0  # weight of L_MS (Eq. 3); 0 trains without the evaluator
    evaluator_weights: str | None = None  # None: shipped evaluator (embedded) or torchvision's cache
    ms_real_batch_size: int = 250

    def __post_init__(self) -> None:
        if not (self.hinge_margin > 0 and self.lambda_ms >= 0):  # also rejects NaN
            raise ConfigError("loss.hinge_margin must be > 0 and loss.lambda_ms >= 0")
        _check_finite("loss.hinge_margin and loss.lambda_ms", self.hinge_margin, self.lambda_ms)
        if self.ms_real_batch_size < 1:
            raise ConfigError(f"loss.ms_real_batch_size must be >= 1, got {self.ms_real_batch_size}")


@dataclass
class TrainConfig:
    iterations: int = 100_000  # generator updates
    n_dis: int = 1  # discriminator updates per generator update
    batch_size_d: int = 64
    batch_size_g: int = 128
    lr_d: float = 2e-4
    lr_g: float = 1e-4
    betas: tuple[float, float] = (0.0, 0.99)
    ema_decay: float = 0.9999
    ema_start: int = 1000
    amp: bool = True  # HRGAN: bf16 autocast of G and D on CUDA GPUs with native bf16 (ignored on CPU)
    fused: bool = False  # fused ops: Triton kernels on CUDA, fused torch arithmetic on CPU (fastgan.ops.backends)
    channels_last: bool = True  # the networks convolve in NHWC memory layout (faster on CPUs and tensor cores)
    cuda_graphs: bool = False  # HRGAN on CUDA: replay each D and G update from a CUDA graph (no host launch cost)
    compile: str = "off"  # HRGAN, SRResNet/SRGAN: torch.compile the networks in this mode (COMPILE_MODES); off: eager
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    lr_decay_at: int = 0  # SRResNet/SRGAN: both rates × lr_decay_factor from this iteration on (0: never)
    lr_decay_factor: float = 0.1

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        if min(self.iterations, self.n_dis, self.batch_size_d, self.batch_size_g) < 1:
            raise ConfigError("train.iterations, n_dis and batch sizes must be positive")
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas) or not 0.0 <= self.ema_decay < 1.0:
            raise ConfigError(
                f"train.betas must be two numbers in [0, 1) and train.ema_decay in [0, 1), got {list(self.betas)} "
                f"and {self.ema_decay}"
            )
        if self.compile not in COMPILE_MODES:
            raise ConfigError(f"train.compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.compile != "off" and self.cuda_graphs:
            raise ConfigError(
                "train.cuda_graphs captures the eager updates; a compiled run gets CUDA graphs from "
                "train.compile=reduce-overhead instead: set one of the two"
            )
        if not (self.lr_d > 0 and self.lr_g > 0):  # also rejects NaN
            raise ConfigError(f"train.lr_d and train.lr_g must be positive, got {self.lr_d} and {self.lr_g}")
        _check_finite("train.lr_d and train.lr_g", self.lr_d, self.lr_g)
        if self.lr_decay_at < 0 or not 0 < self.lr_decay_factor <= 1:  # also rejects NaN
            raise ConfigError(
                f"train.lr_decay_at must be >= 0 (0: no decay) and train.lr_decay_factor in (0, 1], got "
                f"{self.lr_decay_at} and {self.lr_decay_factor}"
            )
        _check_seed(self.seed, "train.seed")


@dataclass
class SRConfig:
    """The SRResNet / SRGAN family (model.name = srgan); train.* gives its iterations, batch and optimiser."""

    scale: int = 4  # 2 or 4
    channels: int = 64
    blocks: int = 16
    batch_norm: bool = True  # False for the light real-time preset
    bicubic_skip: bool = False  # add the bicubic up-sampled input to the output (the light preset)
    stage: str = "srresnet"  # srresnet: pixel loss only | srgan: VGG content + adversarial loss
    pixel_loss: str = "mse"  # mse | l1 (srresnet stage)
    perceptual_layer: str = "relu5_4"  # VGG19 layer of the content loss (relu5_4 = the paper's VGG54)
    vgg_weights: str | None = None  # torchvision VGG19 state dict; None: torchvision's cache
    adversarial_weight: float = 1e-3
    relativistic: bool = False  # relativistic-average BCE instead of the standard one
    init_from: str | None = None  # an srresnet-stage checkpoint (or run dir) to start the generator from
    images: str = "skimage"  # skimage (bundled photos) | doom (ViZDoom frames) | a folder of images | a video file
    held_out: tuple[str, ...] = ("astronaut", "coffee", "chelsea")  # names kept for evaluation (not doom or video)
    video_every: int = 4  # a video source keeps one frame in video_every
    video_frames: int = 256  # ... and at most this many (0: all); its last eighth is held out
    doom_frames: int = 64  # frames rendered when images = doom
    doom_scenario: str = "deadly_corridor"  # a ViZDoom scenario bundled with vizdoom
    crop: int = 96  # HR training crop side (a multiple of scale)
    degrade: str = "bicubic"  # how LR is made: bicubic | area

    def __post_init__(self) -> None:
        if self.scale not in (2, 4):
            raise ConfigError(f"sr.scale must be 2 or 4, got {self.scale}")
        if self.stage not in ("srresnet", "srgan") or self.pixel_loss not in ("mse", "l1"):
            raise ConfigError("sr.stage must be srresnet or srgan, sr.pixel_loss mse or l1")
        if self.degrade not in ("bicubic", "area"):
            raise ConfigError(f"sr.degrade must be bicubic or area, got {self.degrade!r}")
        if self.video_every < 1 or self.video_frames < 0:
            raise ConfigError("sr.video_every must be >= 1 and sr.video_frames >= 0 (0: every kept frame)")
        if min(self.channels, self.doom_frames) < 1:
            raise ConfigError("sr.channels and sr.doom_frames must be >= 1")
        if self.blocks < 0 or not self.adversarial_weight >= 0:
            raise ConfigError("sr.blocks and sr.adversarial_weight must be >= 0")
        _check_finite("sr.adversarial_weight", self.adversarial_weight)


@dataclass
class LAGConfig:
    """The LAG family (model.name = lag). Its images come from sr.images / sr.held_out / sr.crop / sr.degrade (the
    crop a multiple of lag.scale); train.* gives iterations, batch, learning rates, betas and the EMA."""

    scale: int = 4  # 2, 4, 8, 16 or 32
    channels: int = 64  # width at the input resolution (halved per ×2 stage, down to min_channels)
    min_channels: int = 16
    blocks: int = 8  # generator residual blocks at the input resolution
    critic_blocks: int = 4  # critic conv layers at the input resolution after the one merging the conditioning
    noise_dim: int = 16  # length of z
    bicubic_skip: bool = True  # the generator adds bicubic(y): an untrained G(y, z) is the bicubic image
    adversarial_weight: float = 1.0  # weight of −C(G(y, z), d) in the generator loss (1 in the paper)
    center_weight: float = 10.0  # weight of the centre loss (Eq. 6) in the generator loss
    gp_weight: float = 10.0  # weight of the gradient penalty (Eq. 5) in the critic loss
    drift_weight: float = 0.0  # ε·E[C(x, 0)²] in the critic loss: keeps scores near 0 (Karras et al.'s 0.001)
    pixel_weight: float = 0.0  # MSE of G(y, 0) against the real image (not in the paper, whose LAG has none)
    samples: int = 3  # z samples per row of the sample grid (beside bicubic, z = 0 and the real image)

    def __post_init__(self) -> None:
        if self.scale not in (2, 4, 8, 16, 32):
            raise ConfigError(f"lag.scale must be 2, 4, 8, 16 or 32, got {self.scale}")
        if min(self.channels, self.min_channels, self.noise_dim, self.samples) < 1:
            raise ConfigError("lag.channels, min_channels, noise_dim and samples must be >= 1")
        if (
            min(self.blocks, self.critic_blocks) < 0
            or not min(
                self.adversarial_weight, self.center_weight, self.gp_weight, self.drift_weight, self.pixel_weight
            )
            >= 0
        ):
            raise ConfigError("lag.blocks, critic_blocks and the lag.*_weight values must be >= 0")
        _check_finite(
            "lag.adversarial_weight, center_weight, gp_weight, drift_weight and pixel_weight",
            self.adversarial_weight,
            self.center_weight,
            self.gp_weight,
            self.drift_weight,
            self.pixel_weight,
        )


@dataclass
class ProgressiveConfig:
    """Progressive growing of an upscaler (LAG, or SRResNet at sr.scale = 4): fastgan.train.progressive."""

    enabled: bool = False  # --progressive
    stable_images: int = 20000  # images per stage once faded in (stage ×2 from the start)
    fade_images: int = 20000  # images over which each later stage fades in
    batch_sizes: tuple[int, ...] = ()  # one per ×2 stage; empty: train.batch_size_g
    lr_scales: tuple[float, ...] = ()  # learning-rate multipliers, one per ×2 stage; empty: 1

    def __post_init__(self) -> None:
        self.batch_sizes, self.lr_scales = tuple(self.batch_sizes), tuple(self.lr_scales)
        if self.stable_images < 0 or self.fade_images < 1:
            raise ConfigError("progressive.stable_images must be >= 0 and progressive.fade_images >= 1")
        if any(b < 1 for b in self.batch_sizes) or not all(s > 0 for s in self.lr_scales):
            raise ConfigError("progressive.batch_sizes and lr_scales must be positive")
        _check_finite("progressive.lr_scales", *self.lr_scales)


@dataclass
class OutputConfig:
    out_dir: str = "runs/hrgan"
    checkpoint_every: int = 1000
    sample_every: int = 1000
    log_every: int = 50
    samples_per_class: int = 8
    tensorboard: bool = True
    cache_dir: str = "~/.cache/fastgan"  # MS_real cache
    profile_steps: int = 0  # iterations traced by torch.profiler after a warm-up one (0: no trace; --profile)

    def __post_init__(self) -> None:
        if min(self.checkpoint_every, self.sample_every, self.log_every, self.samples_per_class) < 1:
            raise ConfigError("output.checkpoint_every, sample_every, log_every and samples_per_class must be >= 1")
        if self.profile_steps < 0:
            raise ConfigError(f"output.profile_steps must be >= 0 (0 disables profiling), got {self.profile_steps}")


@dataclass
class Config:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sr: SRConfig = field(default_factory=SRConfig)
    lag: LAGConfig = field(default_factory=LAGConfig)
    progressive: ProgressiveConfig = field(default_factory=ProgressiveConfig)
    output: OutputConfig = field(default_factory=OutputConfig)

    def __post_init__(self) -> None:
        if self.model.name == "hrgan":
            return
        if self.train.cuda_graphs:
            raise ConfigError(f"train.cuda_graphs is for model.name=hrgan; {self.model.name} trains without graphs")
        if self.train.compile != "off" and (self.model.name == "lag" or self.progressive.enabled):
            raise ConfigError(
                "train.compile is for HRGAN and SRResNet/SRGAN without progressive growing (its networks change at "
                f"every fade step); this {self.model.name} run trains eagerly: set train.compile=off"
            )
        key, scale = ("lag.scale", self.lag.scale) if self.model.name == "lag" else ("sr.scale", self.sr.scale)
        if self.sr.crop <= 2 * scale or self.sr.crop % scale:  # PSNR trims `scale` pixels off each side
            raise ConfigError(f"sr.crop={self.sr.crop} must be a multiple of {key}={scale} and >= {3 * scale}")
        if self.model.name == "srgan" and self.sr.stage == "srgan":
            self._check_vgg_fits()
        if self.model.name == "lag" and self.sr.init_from:
            raise ConfigError("sr.init_from starts an SRResNet/SRGAN generator; a LAG run starts fresh: unset it")
        if self.train.n_dis != 1:
            raise ConfigError(
                f"train.n_dis is HRGAN's; {self.model.name} takes one discriminator (critic) step per generator step"
            )
        if self.progressive.enabled and self.sr.init_from:
            raise ConfigError(
                "progressive.enabled grows the network from ×2 with fresh stage heads, sr.init_from starts from a "
                "trained one: use one or the other"
            )

    def _check_vgg_fits(self) -> None:
        """The content loss's VGG19 layer must exist, and its max pools (one per block before it) must leave at least
        one pixel of the smallest image trained on: the crop, or its first progressive stage's."""
        layer = self.sr.perceptual_layer
        if layer not in VGG19_RELU:
            raise ConfigError(
                f"sr.perceptual_layer: unknown VGG19 layer {layer!r}; choose one of {', '.join(VGG19_RELU)}"
            )
        stages = self.sr.scale.bit_length() - 1  # ×2 stages of a progressive run
        smallest = self.sr.crop // 2 ** (stages - 1) if self.progressive.enabled else self.sr.crop
        needed = 2 ** (int(layer[4]) - 1)  # relu{i}_j follows i − 1 max pools
        if smallest < needed:
            where = f"sr.crop={self.sr.crop}" + (", its first progressive stage" if self.progressive.enabled else "")
            raise ConfigError(
                f"sr.perceptual_layer={layer} needs images of at least {needed}×{needed} pixels, but this run trains "
                f"on {smallest}×{smallest} ({where}): raise sr.crop or choose an earlier layer"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


#: What a new run of an upscaler family starts from, over the dataclass defaults (HRGAN's), by model.name (and
#: sr.stage for srgan): its authors' optimiser and schedule. SRResNet/SRGAN (Ledig et al. 2017, §3.2): Adam
#: β1 = 0.9, batch 16, rate 1e-4 for both networks; 10⁶ SRResNet iterations; 2·10⁵ SRGAN ones, the rate ÷10 after
#: the first 10⁵. LAG (google-research/lag): batch 16, the weight average at 0.999 from the start.
#: Only keys the family reads (the pixel-loss stage has no discriminator rate), so that `refuse_unused_keys` can
#: compare with the dataclass defaults.
_SR_OPTIMISER = {"batch_size_g": 16, "lr_g": 1e-4, "betas": (0.9, 0.999)}
FAMILY_DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "srgan/srresnet": {"train": {**_SR_OPTIMISER, "iterations": 1_000_000}},
    "srgan/srgan": {"train": {**_SR_OPTIMISER, "lr_d": 1e-4, "iterations": 200_000, "lr_decay_at": 100_000}},
    "lag": {"train": {"batch_size_g": 16, "ema_decay": 0.999, "ema_start": 0}},
}


def family_defaults(name: str, sr_stage: str = "srresnet") -> Config:
    """The defaults a new run of model `name` (and, for srgan, `sr_stage`) starts from: `FAMILY_DEFAULTS` over the
    dataclasses'."""
    return merge(Config(), FAMILY_DEFAULTS.get(f"{name}/{sr_stage}" if name == "srgan" else name, {}))


#: SRResNet/SRGAN's step decay, which HRGAN and LAG do not read.
_LR_DECAY = ("train.lr_decay_at", "train.lr_decay_factor")
#: Settings only HRGAN reads.
_HRGAN_ONLY = ("model.resolution", "model.z_dim", "model.g_channels", "model.g_widths", "model.d_channels")
_HRGAN_ONLY += ("data.source", "data.path", "data.num_images", "loss.", "train.batch_size_d", "train.amp")
_HRGAN_ONLY += ("output.samples_per_class",)
#: Settings a model family leaves unread, by key or section prefix.
_UNUSED_BY = {
    "hrgan": ("sr.", "lag.", "progressive.", *_LR_DECAY),
    "srgan": (*_HRGAN_ONLY, "lag.", "train.ema_decay", "train.ema_start"),
    "lag": (*_HRGAN_ONLY, "sr.scale", "sr.channels", "sr.blocks", "sr.batch_norm", "sr.bicubic_skip", "sr.stage")
    + ("sr.pixel_loss", "sr.perceptual_layer", "sr.vgg_weights", "sr.adversarial_weight", "sr.relativistic")
    + _LR_DECAY,
}
#: What SRResNet's pixel-loss stage leaves unread (SRGAN's adversarial stage reads it).
_UNUSED_BY_SRRESNET_STAGE = ("sr.adversarial_weight", "sr.relativistic", "sr.perceptual_layer", "sr.vgg_weights")


def named_by(key: str, names: tuple[str, ...]) -> bool:
    """Whether `names` holds `key` ("section.key") or its section ("section.")."""
    return any(key == name or (name.endswith(".") and key.startswith(name)) for name in names)


def changed_keys(old: Config, new: Config) -> list[str]:
    """The `section.key` names whose values differ between two configs."""
    a, b = old.to_dict(), new.to_dict()
    return [f"{section}.{key}" for section in b for key in b[section] if a[section][key] != b[section][key]]


def refuse_unused_keys(config: Config) -> None:
    """Raise ConfigError for settings changed from their defaults that the run would not read (LAG's scale is
    lag.scale, not sr.scale; an upscaler has no λ_MS, ...): a new run's, so that a user who sets them learns it.
    Saved configs of earlier runs, which may hold them, still load for resuming and evaluation."""
    name = config.model.name
    if name == "hrgan" and config.progressive.enabled:
        raise ConfigError(
            "progressive.enabled grows an upscaler (model.name=lag, or srgan at sr.scale=4); HRGAN trains at one "
            "resolution: drop --progressive"
        )
    ignored = unread_keys(config, changed_keys(Config(), config))  # FAMILY_DEFAULTS sets only keys read
    if ignored:
        raise ConfigError(
            f"{', '.join(ignored)}: not read by a {run_kind(config)} run (an upscaler's networks and data "
            f"come from sr.* or lag.*, HRGAN's from model.*, data.* and loss.*){unread_reasons(config, ignored)}; "
            "leave them unset or use the family or source they belong to"
        )


def unread_keys(config: Config, keys: list[str]) -> list[str]:
    """Those of the `section.key` names in `keys` that a run of `config`'s model family (and SR stage) never reads."""
    name = config.model.name
    unused = _UNUSED_BY[name] + tuple(_unread_by_sources(config))
    if name == "srgan" and config.sr.stage == "srresnet":
        unused += (*_UNUSED_BY_SRRESNET_STAGE, "train.lr_d")
    elif name == "srgan":
        unused += ("sr.pixel_loss",)  # the adversarial stage's content loss is VGG's
    return [key for key in keys if named_by(key, unused)]


def _unread_by_sources(config: Config) -> dict[str, str]:
    """The settings the run's data source or λ_MS leaves unread, each with why: the embedded set has no path (a
    --data-path without --data would otherwise train on it unawares); λ_MS = 0 scores no real images in training
    (its evaluator weights are still what evaluation takes); of sr.*'s sources, video and ViZDoom frames have their
    own settings and hold out no named images."""
    if config.model.name == "hrgan":
        unread = {}
        if config.data.source == "embedded":
            unread["data.path"] = "data.path is read with data.source cifar10, cifar100 or folder (--data)"
        if config.loss.lambda_ms == 0:
            unread["loss.ms_real_batch_size"] = "loss.lambda_ms=0 computes no MS_real"
        return unread
    images = config.sr.images
    video, doom = is_video(images), images == "doom"
    unread = {} if video else dict.fromkeys(("sr.video_every", "sr.video_frames"), "sr.video_* apply to a video file")
    if not doom:
        unread |= dict.fromkeys(("sr.doom_frames", "sr.doom_scenario"), "sr.doom_* apply with sr.images=doom")
    if video or doom:
        unread["sr.held_out"] = f"sr.images={images} holds out frames of its own, not named images"
    return unread


def unread_reasons(config: Config, keys: list[str]) -> str:
    """Why the run's data source or λ_MS leaves `keys` unread, as "; reason" clauses ("" when they say nothing)."""
    reasons = _unread_by_sources(config)
    return "".join(f"; {why}" for why in dict.fromkeys(reasons[k] for k in keys if k in reasons))


def run_kind(config: Config) -> str:
    """The run's model.name and, for SRResNet/SRGAN, its sr.stage, as text: what decides which keys it reads."""
    stage = f", sr.stage={config.sr.stage}" if config.model.name == "srgan" else ""
    return f"model.name={config.model.name}{stage}"


def _coerce(value: Any, annotation: Any, key: str) -> Any:
    """Check `value` against a field annotation (int, float, bool, str, optional, 2-tuple)."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(annotation)
        if value is None and type(None) in options:
            return None
        return _coerce(value, next(a for a in options if a is not type(None)), key)
    if origin is tuple and typing.get_args(annotation)[1:] == (Ellipsis,):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key} must be a list, got {value!r}")
        return tuple(_coerce(v, typing.get_args(annotation)[0], key) for v in value)
    if origin is tuple:
        items = typing.get_args(annotation)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise ConfigError(f"{key} must be a list of {len(items)} values, got {value!r}")
        return tuple(_coerce(v, a, key) for v, a in zip(value, items, strict=True))
    if annotation is float and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:  # YAML 1.1 reads 2e-4 (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{key} must be a number, got {value!r}") from None
    if annotation is bool and not isinstance(value, bool):
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if annotation is int and (isinstance(value, bool) or not isinstance(value, int)):
        raise ConfigError(f"{key} must be an integer, got {value!r}")
    if not isinstance(value, annotation):
        raise ConfigError(f"{key} must be of type {annotation.__name__}, got {value!r}")
    return value


def _section_fields(section_type: type) -> dict[str, Any]:
    return typing.get_type_hints(section_type)


def merge(base: Config, updates: dict[str, Any]) -> Config:
    """A new Config with nested `updates` ({section: {key: value}}) applied; unknown keys are errors."""
    sections = _section_fields(Config)
    merged = base.to_dict()
    for section, values in updates.items():
        if section not in sections:
            raise ConfigError(f"unknown config section {section!r}; known: {', '.join(sections)}")
        if not isinstance(values, dict):
            raise ConfigError(f"config section {section!r} must be a mapping, got {values!r}")
        known = _section_fields(sections[section])
        for key, value in values.items():
            if key not in known:
                raise ConfigError(f"unknown config key {section}.{key}; known: {', '.join(known)}")
            merged[section][key] = _coerce(value, known[key], f"{section}.{key}")
    return Config(**{name: sections[name](**merged[name]) for name in sections})


class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2's booleans: only true/false. YAML 1.1 also reads yes/no/on/off as
    booleans, which made `train.compile: off` (a mode's name) the boolean false."""


_Loader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


def parse_override(text: str) -> dict[str, Any]:
    """'section.key=value' (value in YAML syntax) -> {section: {key: value}}."""
    name, sep, raw = text.partition("=")
    section, dot, key = name.strip().partition(".")
    if not sep or not dot or not key:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. train.iterations=500")
    try:
        return {section: {key: yaml.load(raw, Loader=_Loader)}}
    except yaml.YAMLError as exc:
        problem = getattr(exc, "problem", None) or exc
        raise ConfigError(f"override {text!r}: its value is not valid YAML ({problem}); quote or fix it") from exc


def parse_overrides(texts: list[str], updates: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """`section.key=value` strings added to `updates` (a later one wins for its key): {section: {key: value}}."""
    updates = {} if updates is None else updates
    for text in texts:
        for section, values in parse_override(text).items():
            updates.setdefault(section, {}).update(values)
    return updates


def preset_path(name: str) -> Path:
    """A config file path, or the name of a preset shipped in fastgan/configs/ (without .yaml)."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    configs = Path(str(resources.files("fastgan") / "configs"))
    shipped = configs / f"{name}.yaml"
    if path.name == name and shipped.is_file():
        return shipped
    presets = sorted(p.stem for p in configs.glob("*.yaml"))
    raise ConfigError(f"config {name!r} is neither a file nor a shipped preset ({', '.join(presets)})")


def _read_config_file(path: str) -> dict[str, Any]:
    file = preset_path(path)
    try:
        loaded = yaml.load(file.read_text(encoding="utf-8"), Loader=_Loader) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {file} is not valid UTF-8 YAML: {exc}") from exc
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {file} must be a mapping of sections")
    return loaded


def load_config(
    path: str | None = None, overrides: list[str] = (), updates: dict[str, dict[str, Any]] | None = None
) -> Config:
    """A new run's config: the defaults of the model family that the file and overrides name (`family_defaults`),
    then the YAML file or preset `path`, then `updates` ({section: {key: value}}, e.g. the CLI's flags), then the
    `overrides` strings (a later one wins over an earlier one of the same key), checked together: keys that must
    agree may change in one call.

    Raises:
        ConfigError: an unknown key or bad value, or a key given in `updates` or `overrides` that another setting
            switches off (`_refuse_keys_a_switch_leaves_unread`).
    """
    if isinstance(overrides, str):
        raise TypeError(f"overrides is a list of 'section.key=value' strings, got the string {overrides!r}")
    loaded = _read_config_file(path) if path is not None else {}
    changes = parse_overrides(list(overrides), copy.deepcopy(updates) if updates else {})

    def layered(base: Config) -> Config:
        config = merge(base, loaded) if loaded else base
        return merge(config, changes) if changes else config

    named = layered(Config())
    config = layered(family_defaults(named.model.name, named.sr.stage))
    _refuse_keys_a_switch_leaves_unread(config, [f"{section}.{key}" for section in changes for key in changes[section]])
    return config


def _refuse_keys_a_switch_leaves_unread(config: Config, given: list[str]) -> None:
    """Raise ConfigError for settings given with the flags or --set that another setting switches off: an upscaler's
    progressive.* without progressive.enabled, HRGAN's data.num_images for a data set other than the embedded one.
    Only the caller's own keys: a preset may hold them (lag-x4 --set progressive.enabled=false trains ungrown)."""
    unread = {}
    if config.model.name != "hrgan" and not config.progressive.enabled:
        reason = "progressive.* apply with progressive.enabled"
        unread |= {f"progressive.{key}": reason for key in ("stable_images", "fade_images", "batch_sizes", "lr_scales")}
    if config.model.name == "hrgan" and config.data.source != "embedded":
        unread["data.num_images"] = f"data.num_images sizes the embedded set; {config.data.source} is used whole"
    ignored = [key for key in given if key in unread]
    if ignored:
        reasons = "; ".join(dict.fromkeys(unread[key] for key in ignored))
        raise ConfigError(f"{', '.join(ignored)}: not read by this run ({reasons}); leave them unset")
