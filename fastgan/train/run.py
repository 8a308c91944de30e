"""Assemble a run from a config: device, data, model family, trainer; fresh or resumed."""

from __future__ import annotations

import logging
import shlex
from pathlib import Path
from typing import Any

import torch
import yaml

from fastgan.atomic import unwritable_reason
from fastgan.data.factory import (
    class_folder_image_set,
    image_folder,
    image_loader,
    patch_loader,
    resolve_loader,
    video,
)
from fastgan.data.image_set import ImageSet
from fastgan.data.sources import cifar_image_set, embedded_image_set
from fastgan.data.sr_sources import game_frames, held_out_game_frames, skimage_photos, split_held_out
from fastgan.data.video_sources import split_video_tail
from fastgan.ops.backends import backend, fused_backend_for
from fastgan.train.checkpoint import CHECKPOINT_NAME, load_checkpoint, run_directory
from fastgan.train.config import (
    Config,
    ConfigError,
    DataConfig,
    SRConfig,
    changed_keys,
    load_config,
    merge,
    named_by,
    refuse_unused_keys,
    run_kind,
    unread_keys,
    unread_reasons,
)
from fastgan.train.core import Loader, Trainer
from fastgan.train.hrgan_step import HRGANFamily
from fastgan.train.lag_step import LAGFamily
from fastgan.train.sr_step import SRFamily
from fastgan.video_files import is_video

log = logging.getLogger(__name__)
# what a resumed run may change: length, output, and how (not what) it computes
RESUMABLE_CHANGES = (
    "train.iterations",
    "train.lr_g",  # e.g. lowered after a non-finite loss
    "train.lr_d",
    "train.lr_decay_at",  # SRGAN: e.g. a decay added when extending a run
    "train.lr_decay_factor",
    "sr.vgg_weights",  # where the VGG19 file lives (e.g. on another machine)
    "loss.evaluator_weights",  # likewise; the checkpoint's evaluator fingerprint must still match
    "data.path",  # where the data lives; the loader's image count and seed must still match
    "sr.images",  # a folder or video file moved: the same kind, and the same images' names and sizes
    "train.fused",
    "train.channels_last",
    "train.cuda_graphs",
    "train.compile",
    "train.device",
    "output.",
)


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA without a GPU is an error, not a silent CPU run."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ConfigError(f"unknown device {name!r} (train.device or --device): use auto, cpu, cuda or cuda:N") from exc
    if device.type not in ("cpu", "cuda"):
        raise ConfigError(f"fastgan runs on cpu or cuda, not {name!r} (train.device or --device)")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for (train.device, or --device), but no CUDA device is available; use cpu or auto"
        )
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ConfigError(
            f"device {name!r} asked for (train.device, or --device), but this machine has "
            f"{torch.cuda.device_count()} CUDA device(s): use cuda or cuda:0 to cuda:{torch.cuda.device_count() - 1} "
            "(a resumed run takes --device too)"
        )
    return device


def load_image_set(data: DataConfig, loader: str = "torch", device: torch.device | str = "cpu") -> ImageSet:
    """The 32×32 training images named by the data config; a folder is decoded by the `loader` kind's reader."""
    if data.source == "embedded":
        return embedded_image_set(data.num_images, data.seed)
    if data.source == "folder":
        return class_folder_image_set(loader, data.path, device)
    return cifar_image_set(data.path, data.source)


def resume_config(checkpoint: dict[str, Any], updates: dict[str, Any]) -> Config:
    """The checkpoint's config with `updates` applied; only `RESUMABLE_CHANGES` may differ, and only keys the run
    reads (an HRGAN run has no learning-rate decay, SRResNet's pixel-loss stage no discriminator rate); sr.images
    only from a folder to a folder or a video file to a video file (whose images the loader then checks)."""
    stored = checkpoint["config"]
    if "channels_last" not in stored.get("train", {}):  # written before train.channels_last existed: NCHW
        stored = {**stored, "train": {**stored.get("train", {}), "channels_last": False}}
    saved = merge(Config(), stored)
    config = merge(saved, updates)
    changed = changed_keys(saved, config)
    frozen = [k for k in changed if not named_by(k, RESUMABLE_CHANGES)]
    if frozen:
        raise ConfigError(f"a resumed run cannot change {', '.join(frozen)}; start a new run (--out) instead")
    moved_from, moved_to = _images_kind(saved.sr.images), _images_kind(config.sr.images)
    moved = "sr.images" in changed and config.model.name != "hrgan"  # HRGAN: unread, refused below
    if moved and not (moved_from == moved_to and moved_to in ("folder", "video")):
        raise ConfigError(
            f"a resumed run may move sr.images from one folder (or video file) to another holding the same images, "
            f"not from {saved.sr.images} ({moved_from}) to {config.sr.images} ({moved_to}); start a new run instead"
        )
    unread = unread_keys(config, changed)
    if unread:
        raise ConfigError(
            f"{', '.join(unread)}: not read by this {run_kind(config)} run{unread_reasons(config, unread)}; leave them "
            "as they were"
        )
    return config


def _images_kind(images: str) -> str:
    """What sr.images names: the bundled photos ("skimage"), ViZDoom frames ("doom"), a "video" file or a "folder"."""
    return images if images in ("skimage", "doom") else "video" if is_video(images) else "folder"


def ops_backend(config: Config) -> str:
    """The `fastgan.ops` backend a run uses: eager torch, or with train.fused the fused ops for its device."""
    return fused_backend_for(resolve_device(config.train.device)) if config.train.fused else "torch"


def _describe(name: str) -> str:
    return {
        "torch": "torch (eager ops)",
        "triton": "triton (fused Triton kernels)",
        "fused-torch": "fused-torch (fused autograd ops with torch arithmetic; Triton kernels need a CUDA device)",
        "fused-compiled": "fused-compiled (fused autograd ops, torch arithmetic compiled by TorchInductor; Triton "
        "kernels need a CUDA device; compiling takes about a minute on first use)",
    }[name]


def _run(trainer: Trainer, config: Config) -> Trainer:
    with backend(ops_backend(config)):
        trainer.run()
    return trainer


def build_trainer(
    config: Config, checkpoint: dict[str, Any] | None = None, resumed_from: Path | None = None
) -> Trainer:
    """Everything a run needs, restored from `checkpoint` (loaded from the run directory `resumed_from`) when given."""
    run_dir = Path(config.output.out_dir).expanduser()
    if checkpoint is None and (run_dir / CHECKPOINT_NAME).exists():
        raise ConfigError(
            f"{run_dir} already holds a checkpoint: continue it with --resume {run_dir}, "
            "or choose another output directory (--out)"
        )
    if checkpoint is None:
        refuse_unused_keys(config)
    _refuse_unwritable_folders(config)
    device = resolve_device(config.train.device)
    torch.manual_seed(config.train.seed)
    loader_state = None if checkpoint is None else checkpoint["loader"]
    if config.model.name == "srgan":
        family, loader = _sr_family_and_loader(config, device, loader_state)
    elif config.model.name == "lag":
        family, loader = _lag_family_and_loader(config, device, loader_state)
    else:
        family, loader = _hrgan_family_and_loader(config, device, loader_state)
    return Trainer(config, family, loader, checkpoint, resumed_from)


def _loader_kind(config: Config, file_based: bool, device: torch.device, loader_state: dict | None) -> str:
    """data.loader resolved to "dali" or "torch" (a resumed run keeps its checkpoint's kind)."""
    try:
        return resolve_loader(config.data.loader, file_based, device, loader_state)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc


def _hrgan_family_and_loader(
    config: Config, device: torch.device, loader_state: dict | None
) -> tuple[HRGANFamily, Loader]:
    kind = _loader_kind(config, config.data.source == "folder", device, loader_state)
    image_set = load_image_set(config.data, kind, device)
    log.info(
        "data: %s, %d images, %d classes, %s loader; device: %s; ops backend: %s; torch.compile: %s",
        image_set.name,
        len(image_set),
        image_set.num_classes,
        kind,
        device,
        _describe(ops_backend(config)),
        config.train.compile,
    )
    family = HRGANFamily(config, image_set, device)
    data = config.data
    return family, image_loader(kind, image_set, data.seed, data.flip, device, data.color_jitter)


def load_sr_images(
    sr: SRConfig, loader: str = "torch", device: torch.device | str = "cpu"
) -> tuple[list[tuple[str, torch.Tensor]], list[tuple[str, torch.Tensor]]]:
    """(training, held-out) HR images named by sr.images: skimage's photos or a folder (held out by the names in
    sr.held_out; decoded by the `loader` kind's reader), ViZDoom frames (training: seed 0; held out: seed 1, less
    near-copies of training frames), or a
    video's frames (held out: its last eighth, less near-copies; decoded by the `loader` kind's reader)."""
    if is_video(sr.images):
        return split_video_tail(video(loader, sr.images, sr.video_every, sr.video_frames, device))
    if sr.images == "doom":  # held out: frames of another seeded run, no near-copies (sr.held_out does not apply)
        training = game_frames(sr.doom_scenario, count=sr.doom_frames, seed=0)
        return training, held_out_game_frames(sr.doom_scenario, max(1, sr.doom_frames // 8), training)
    if sr.images == "skimage":
        images = skimage_photos()
    else:
        images = image_folder(loader, sr.images, device)
    return split_held_out(images, list(sr.held_out))


def _upscaler_data(config: Config, device: torch.device, loader_state: dict | None):
    """An upscaler run's loader kind ("dali" or "torch") and its (training, held-out) images."""
    kind = _loader_kind(config, config.sr.images not in ("skimage", "doom"), device, loader_state)
    return (kind, *load_sr_images(config.sr, kind, device))


def _patch_loader(config: Config, kind: str, images, scale: int, device: torch.device) -> Loader:
    sr, data = config.sr, config.data
    return patch_loader(kind, images, sr.crop, scale, data.seed, data.flip, sr.degrade, device, data.color_jitter)


def _sr_family_and_loader(config: Config, device: torch.device, loader_state: dict | None) -> tuple[SRFamily, Loader]:
    sr = config.sr
    kind, train_images, held_out = _upscaler_data(config, device, loader_state)
    family = SRFamily(config, held_out, device, resuming=loader_state is not None)
    log.info(
        "SR data: %s, %d training and %d held-out images, %s loader; SRResNet ×%d, %d channels, %d blocks (%.0f "
        "kFLOP per output pixel), stage %s; device: %s; ops backend: %s",
        sr.images,
        len(train_images),
        len(held_out),
        kind,
        sr.scale,
        sr.channels,
        sr.blocks,
        family.generator.flops_per_output_pixel() / 1e3,
        sr.stage,
        device,
        _describe(ops_backend(config)),
    )
    return family, _patch_loader(config, kind, train_images, sr.scale, device)


def _growth(config: Config) -> str:
    p = config.progressive
    if not p.enabled:
        return "not grown"
    return f"grown ×2 first: {p.stable_images} images per stage, fades of {p.fade_images}"


def _lag_family_and_loader(config: Config, device: torch.device, loader_state: dict | None) -> tuple[LAGFamily, Loader]:
    sr, lag = config.sr, config.lag
    kind, train_images, held_out = _upscaler_data(config, device, loader_state)
    family = LAGFamily(config, held_out, device)
    log.info(
        "LAG data: %s, %d training and %d held-out images, %d×%d crops, %s loader; LAG ×%d (%s), generator %.2f M "
        "and critic %.2f M parameters; device: %s; ops backend: %s",
        sr.images,
        len(train_images),
        len(held_out),
        sr.crop,
        sr.crop,
        kind,
        lag.scale,
        _growth(config),
        sum(p.numel() for p in family.generator.parameters()) / 1e6,
        sum(p.numel() for p in family.critic.parameters()) / 1e6,
        device,
        _describe(ops_backend(config)),
    )
    return family, _patch_loader(config, kind, train_images, lag.scale, device)


def _warn_of_edited_config(path: Path, stored: dict[str, Any], updates: dict[str, Any]) -> None:
    """Warn when the run's config.yaml (written when it started) says otherwise than its checkpoint about keys this
    resume does not set: a resumed run reads the checkpoint's config, and writes config.yaml anew from it, so edits
    there are lost. The warning names each key with the `--set` that changes it, or says that it cannot change."""
    if not path.is_file():
        return
    try:
        edited = load_config(str(path))
    except ConfigError as error:
        log.warning("%s is not read by a resumed run, which reads its checkpoint's config (%s)", path, error)
        return
    given = {f"{section}.{key}" for section, values in updates.items() for key in values}
    saved = merge(edited, stored)  # keys older checkpoints lack take config.yaml's values: no difference
    differing = [key for key in changed_keys(saved, edited) if key not in given]
    if not differing:
        return
    values = edited.to_dict()

    def setting(key: str) -> str:
        section, name = key.split(".")
        value = yaml.safe_dump(values[section][name], default_flow_style=True).removesuffix("...\n").strip()
        return f"--set {shlex.quote(f'{key}={value}')}"

    resumable = [key for key in differing if named_by(key, RESUMABLE_CHANGES)]
    frozen = [key for key in differing if key not in resumable]
    advice = [f"to change {', '.join(resumable)}, resume with {' '.join(map(setting, resumable))}"] if resumable else []
    advice += [f"{', '.join(frozen)} cannot change in a resumed run (start a new one)"] if frozen else []
    log.warning(
        "%s differs from the checkpoint's config in %s and is rewritten from it: a resumed run reads only its "
        "checkpoint's config and the flags given; %s",
        path,
        ", ".join(differing),
        "; ".join(advice),
    )


def _refuse_unwritable_folders(config: Config) -> None:
    """Refuse, before any data is read, a run directory or MS_real cache (HRGAN with λ_MS > 0) that could not be
    written: under a file, or in a folder this process may not write in."""
    folders = {"output.out_dir (--out)": config.output.out_dir}
    if config.model.name == "hrgan" and config.loss.lambda_ms > 0:
        folders["output.cache_dir"] = config.output.cache_dir
    for key, folder in folders.items():
        reason = unwritable_reason(Path(folder).expanduser())
        if reason is not None:
            raise ConfigError(f"{key} {folder}: {reason}; choose another")


def train(config: Config) -> Trainer:
    """Run a fresh training job to completion."""
    return _run(build_trainer(config), config)


def resume(run_dir: str | Path, updates: dict[str, Any] | None = None) -> Trainer:
    """Continue the run in `run_dir` (or at a checkpoint file) exactly where its checkpoint left it."""
    checkpoint = load_checkpoint(run_dir)
    updates = dict(updates or {})
    path = Path(run_dir).expanduser()
    output = updates.setdefault("output", {})
    output.setdefault("out_dir", str(run_directory(path)))
    output.setdefault("profile_steps", 0)  # profiling is per invocation: --profile again to trace a resumed run
    config = resume_config(checkpoint, updates)
    source, target = run_directory(path), Path(config.output.out_dir).expanduser()
    _warn_of_edited_config(source / "config.yaml", checkpoint["config"], updates)
    if target.resolve() != source.resolve() and (target / CHECKPOINT_NAME).exists():
        raise ConfigError(
            f"{target} holds another run's checkpoint: resume {source} into its own directory or a new one (--out)"
        )
    current = target / CHECKPOINT_NAME
    if path.is_file() and current.exists() and not current.samefile(path):
        raise ConfigError(
            f"resuming {path} (step {checkpoint['step']}) in {target} would overwrite {current} and cut the run's "
            f"metrics back to that step: resume it into a new directory (--out), or copy it over {current} first "
            "to roll the run back on purpose"
        )
    if config.train.iterations < checkpoint["step"]:
        raise ConfigError(
            f"{source} is at step {checkpoint['step']}, past train.iterations={config.train.iterations}: pass "
            f"--iterations above {checkpoint['step']} to train on"
        )
    return _run(build_trainer(config, checkpoint, source), config)
