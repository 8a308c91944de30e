"""The training core: loop, checkpoints, resume, samples, metrics, signals and non-finite-loss guard.

A model family supplies `device`, `sample_columns`, `train_step(loader, step) -> metrics`, `sample_grid()`,
`state_dict()` and `load_state_dict()`; a loader supplies `next_batch`, `state_dict()` and `load_state_dict()`;
everything else about a run lives here.
"""

from __future__ import annotations

import logging
import math
import signal
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import torch
import torchvision.utils
import yaml
from filelock import FileLock, Timeout
from tqdm import tqdm

from fastgan.atomic import atomic_path, remove_stale_temporaries, write_bytes_atomically
from fastgan.ops.backends import cpu_compiler_available
from fastgan.ops.pixel_shuffle_prelu import PixelShufflePReLU
from fastgan.profiling import StepProfiler, phase
from fastgan.train.checkpoint import CHECKPOINT_NAME, CheckpointError, save_checkpoint
from fastgan.train.config import CUDA_GRAPH_COMPILE_MODES, Config, ConfigError, TrainConfig, unread_keys
from fastgan.train.cuda_graphs import WARMUP_CALLS
from fastgan.train.metrics import MetricsLog

log = logging.getLogger(__name__)


def profiled_after(train: TrainConfig) -> int:
    """Iterations before a run's steady state, which `--profile` leaves out: `train.cuda_graphs`' eager warm-up
    calls and capture (each update runs at least once an iteration), or torch.compile's compiling and CUDA-graph
    recording (graph modes: two); none otherwise."""
    if train.cuda_graphs:
        return WARMUP_CALLS + 1
    return 2 if train.compile in CUDA_GRAPH_COMPILE_MODES else 0


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or infinite; the last good checkpoint is left untouched."""


class TrainingInterrupted(RuntimeError):
    """SIGINT/SIGTERM stopped the run after writing a checkpoint."""


class Loader(Protocol):
    """Training batches with a checkpointable position (`InMemoryLoader`, `SRPatchLoader`, and their DALI
    counterparts `DALIImageLoader`, `DALIPatchLoader`; `fastgan.data.factory` picks one)."""

    def next_batch(self, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class ModelFamily(Protocol):
    device: torch.device
    sample_columns: int  # images per row of the sample grid

    def train_step(self, loader: Loader, step: int) -> dict[str, float]: ...

    def sample_grid(self) -> torch.Tensor:
        """(N, 3, H, W) in [-1, 1], `sample_columns` per row."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def placed(network: torch.nn.Module, device: torch.device, config: Config) -> torch.nn.Module:
    """`network` moved to `device`, its convolution weights in channels-last (NHWC) layout when
    `train.channels_last` is on (the same maths; faster convolutions on CPUs and tensor cores) — except, under
    `--fused` on CUDA, networks with pixel-shuffle + PReLU stages, whose Triton kernel reads and writes NCHW
    planes (the CBN kernels have channels-last twins)."""
    planes_only = config.train.fused and torch.device(device).type == "cuda" and _has_pixel_shuffle_prelu(network)
    nhwc = config.train.channels_last and not planes_only
    return network.to(device, memory_format=torch.channels_last if nhwc else torch.contiguous_format)


def compile_in_place(network: torch.nn.Module, device: torch.device, config: Config) -> None:
    """Compile `network` in place by torch.compile in `train.compile`'s mode unless that is off (its state_dict
    keys stay as they were). Compilation happens on the first calls, one static-shape graph per kind of call (the
    batches of a run are fixed); TorchInductor needs a C++ compiler for CPUs."""
    mode = config.train.compile
    if mode == "off":
        return
    if torch.device(device).type == "cpu" and not cpu_compiler_available():
        raise ConfigError(
            "train.compile on a CPU needs a C++ compiler for TorchInductor ($CXX, g++ or c++ on the PATH): install "
            "one, or set train.compile=off"
        )
    network.compile(mode=mode, dynamic=False)


def _has_pixel_shuffle_prelu(network: torch.nn.Module) -> bool:
    return any(isinstance(module, PixelShufflePReLU) for module in network.modules())


def load_optimizer_state(optimizer: torch.optim.Optimizer, state: dict[str, Any], capturable: bool = False) -> None:
    """`optimizer.load_state_dict(state)`, then every per-parameter state tensor (Adam's moments) in its
    parameter's memory layout, so a run resumed with another `train.channels_last` keeps the foreach update.

    `capturable` is what this run needs (CUDA-graph-safe Adam: step counts on the parameters' device), whatever
    the checkpoint was saved with: a run resumes with or without `train.cuda_graphs`, on either device.
    """
    optimizer.load_state_dict(state)
    for group in optimizer.param_groups:
        if "capturable" in group:
            group["capturable"] = capturable
        for parameter in group["params"]:
            slots = optimizer.state.get(parameter, {})
            for key, value in slots.items():
                if key == "step" and torch.is_tensor(value):
                    slots[key] = value.to(parameter.device if capturable else "cpu", torch.float32)
                elif torch.is_tensor(value) and value.shape == parameter.shape and value.stride() != parameter.stride():
                    slots[key] = torch.empty_like(parameter, dtype=value.dtype).copy_(value)


def as_floats(metrics: dict[str, torch.Tensor | float]) -> dict[str, float]:
    """{name: () tensor or float} -> {name: float}, the tensors read with one host synchronisation (a `.item()` per
    metric would stall the GPU once each)."""
    tensors = {name: value for name, value in metrics.items() if torch.is_tensor(value)}
    shaped = [name for name, value in tensors.items() if value.dim() != 0]
    if shaped:
        raise ValueError(f"metrics must be scalars (0-d tensors or floats): {', '.join(shaped)} are not")
    values = torch.stack([value.detach().float() for value in tensors.values()]).tolist() if tensors else []
    floats = dict(zip(tensors, values, strict=True))
    return {name: floats[name] if name in floats else float(value) for name, value in metrics.items()}


def _rng_state(device: torch.device) -> dict[str, Any]:
    """torch's global CPU generator and, when training on CUDA, that GPU's (the families draw their own noise from
    checkpointed generators). Only the training GPU's: a run resumes where fewer or other GPUs are visible."""
    state = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if device.type != "cuda" or cuda is None:
        return
    if isinstance(cuda, list):  # checkpoints before 2026-11-30: every visible GPU's, by index
        index = torch.cuda.current_device() if device.index is None else device.index
        if index >= len(cuda):
            return
        cuda = cuda[index]
    torch.cuda.set_rng_state(cuda, device)


def _float_tensors(tree: Any, prefix: str = ""):
    """(name, tensor) for every floating-point tensor in a nested dict/list state."""
    if isinstance(tree, torch.Tensor):
        if tree.is_floating_point():
            yield prefix, tree
    elif isinstance(tree, dict):
        for key, value in tree.items():
            yield from _float_tensors(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(tree, (list, tuple)):
        for i, value in enumerate(tree):
            yield from _float_tensors(value, f"{prefix}.{i}")


@contextmanager
def _stop_on_signals():
    """Turn SIGINT/SIGTERM into a flag the loop checks after each step, so a checkpoint can be written."""
    received: list[int] = []

    def on_signal(signum, frame):
        if received:  # a second signal stops at once, unwinding (a checkpoint being written is not left half-done);
            signal.signal(signum, signal.SIG_DFL)  # a third kills a process stuck in C code, which never unwinds
            raise KeyboardInterrupt(f"signal {signum} again")
        received.append(signum)

    handlers = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield received
    finally:
        for sig, handler in handlers.items():
            signal.signal(sig, handler)


#: The lock file a training process holds in its run directory.
RUN_LOCK = ".run.lock"

#: Metrics that say where a run is (a progressive run's stage and fade-in α): logged as of the record's step, not
#: averaged over its window.
STATE_METRICS = ("stage", "alpha")


def _rates_read(config: Config) -> list[str]:
    """The learning rates a run reads (SRResNet's pixel-loss stage has no discriminator)."""
    rates = ["train.lr_g", "train.lr_d"]
    unread = unread_keys(config, rates)
    return [rate for rate in rates if rate not in unread]


def _recovery(config: Config, run_dir: Path, resumed_from: Path | None) -> str:
    """What to do after a non-finite loss or weights: resume the last good checkpoint (the run's, else the one it
    resumed) with lower learning rates — a resume may change them — to the same step, or start again."""
    again = f"--iterations {config.train.iterations} " + " ".join(f"--set {rate}=…" for rate in _rates_read(config))
    checkpoint = run_dir / CHECKPOINT_NAME
    if checkpoint.exists():
        return (
            f"Last good checkpoint: {checkpoint} (untouched). Resume from it with lower learning rates: "
            f"python -m fastgan.train --resume {run_dir} {again}"
        )
    if resumed_from is not None:
        return (
            f"This run has written no checkpoint; the one it resumed, in {resumed_from}, is untouched. Resume it "
            f"with lower learning rates: python -m fastgan.train --resume {resumed_from} --out {run_dir} {again}"
        )
    return f"No checkpoint written yet: start again with lower learning rates ({', '.join(_rates_read(config))})."


class Trainer:
    """Runs a model family for `config.train.iterations` steps in `config.output.out_dir`.

    Args:
        config: the run configuration (saved beside the checkpoints).
        family: the model family.
        loader: the real-data loader (its position is checkpointed).
        start_state: a loaded checkpoint to resume from, or None for a fresh run.
        resumed_from: the run directory `start_state` was loaded from, when given (its metrics log is the history
            this run continues, and its checkpoint what to resume again after a failure before this run writes one).
    """

    def __init__(
        self,
        config: Config,
        family: ModelFamily,
        loader: Loader,
        start_state: dict[str, Any] | None = None,
        resumed_from: Path | None = None,
    ):
        self.config, self.family, self.loader = config, family, loader
        self.resumed_from = resumed_from
        self.run_dir = Path(config.output.out_dir).expanduser()
        self.checkpoint_path = self.run_dir / CHECKPOINT_NAME
        self.step = 0
        self.window: dict[str, list[float]] = {}  # metrics since the last log record (checkpointed with the run)
        if start_state is not None:
            loader.load_state_dict(start_state["loader"])  # first: other data (more classes) fails here, by name
            try:
                family.load_state_dict(start_state["family"])
            except KeyError as exc:  # a part the family expects is missing
                raise CheckpointError(f"the checkpoint lacks {exc} for this kind of run; start a new run") from exc
            except RuntimeError as exc:  # load_state_dict's missing keys and shape mismatches; nothing else
                if not str(exc).startswith("Error(s) in loading state_dict"):
                    raise
                first = " ".join(line.strip() for line in str(exc).splitlines()[:2])[:300]  # the network, 1st key
                raise CheckpointError(
                    f"this run's networks do not match the checkpoint's ({first}): resume "
                    "with the data (number of classes) and model settings it was trained with, or start a new run"
                ) from exc
            _set_rng_state(start_state["rng"], family.device)
            self.step = int(start_state["step"])
            self.window = start_state.get("metrics_window", {})  # absent from checkpoints of older versions
        self.run_dir.mkdir(parents=True, exist_ok=True)

    @phase("checkpoint")
    def save(self) -> Path:
        """Write the checkpoint; refuses (NonFiniteLossError) if any network or optimiser tensor is NaN/inf."""
        family_state = self.family.state_dict()
        bad = [name for name, value in _float_tensors(family_state) if not torch.isfinite(value).all()]
        if bad:
            raise NonFiniteLossError(
                f"non-finite weights at step {self.step} ({', '.join(bad[:3])}); nothing was checkpointed. "
                f"{_recovery(self.config, self.run_dir, self.resumed_from)}"
            )
        state = {
            "step": self.step,
            "config": self.config.to_dict(),
            "family": family_state,
            "loader": self.loader.state_dict(),
            "rng": _rng_state(self.family.device),
            "metrics_window": self.window,
        }
        return save_checkpoint(state, self.checkpoint_path)

    @phase("samples")
    def save_samples(self) -> Path:
        path = self.run_dir / "samples" / f"step_{self.step:07d}.png"
        grid = self.family.sample_grid()
        with atomic_path(path, keep_suffix=True) as temporary:  # an interrupted write leaves no broken PNG
            torchvision.utils.save_image(
                grid, temporary, nrow=self.family.sample_columns, normalize=True, value_range=(-1, 1)
            )
        return path

    def _check_finite(self, metrics: dict[str, float]) -> None:
        bad = {k: v for k, v in metrics.items() if not math.isfinite(v)}
        if bad:
            advice = _recovery(self.config, self.run_dir, self.resumed_from)
            raise NonFiniteLossError(f"non-finite loss at step {self.step + 1}: {bad}. {advice}")

    def run(self) -> None:
        """Train to `train.iterations`; raises NonFiniteLossError or TrainingInterrupted, or ConfigError when another
        process trains in the run directory (`RUN_LOCK`; the partial checkpoints a killed process left are removed
        once it is held).

        With `output.profile_steps` > 0, after the CUDA-graph warm-up iterations (`profiled_after`) one iteration
        is a profiler warm-up and the next `profile_steps` are traced to `run_dir/profile/`
        (fastgan.profiling.StepProfiler).
        """
        lock = FileLock(self.run_dir / RUN_LOCK, timeout=0, is_singleton=True)  # one per path in this process
        try:
            lock.acquire()
        except Timeout:
            raise ConfigError(
                f"another process is training in {self.run_dir} (it holds {RUN_LOCK}); wait for it, or stop it first"
            ) from None
        try:  # the run's config is written only by the process that trains in the directory
            config_text = yaml.safe_dump(self.config.to_dict(), sort_keys=False)
            write_bytes_atomically(self.run_dir / "config.yaml", config_text.encode())
            stale = remove_stale_temporaries(self.checkpoint_path)
            if stale:
                log.warning("removed %d partial checkpoint(s) a killed run left in %s", len(stale), self.run_dir)
            self._train()
        finally:
            lock.release()

    def _train(self) -> None:
        out, total = self.config.output, self.config.train.iterations
        # a window carried in the checkpoint holds the steps of the earlier run's last, off-cadence record (if it
        # ended there): when steps follow, the next record averages them again, so that record is dropped
        redo_last = bool(self.window) and self.step < total
        history = None if self.resumed_from is None else self.resumed_from / "metrics.jsonl"
        metrics_log = MetricsLog(self.run_dir, out.tensorboard, self.step, redo_last, history)
        window_start, timed = time.perf_counter(), 0  # this process's iterations in the window, for it/s
        progress = tqdm(total=total, initial=self.step, desc="train", unit="it", dynamic_ncols=True)
        skip = profiled_after(self.config.train)
        profiler = StepProfiler(self.run_dir, out.profile_steps, self.family.device, first_step=self.step, skip=skip)
        try:
            with _stop_on_signals() as received, profiler:
                while self.step < total:
                    with phase("iteration"):
                        metrics = self.family.train_step(self.loader, self.step)
                        self._check_finite(metrics)
                        self.step += 1
                        for name, value in metrics.items():
                            self.window.setdefault(name, []).append(value)
                        timed += 1
                        progress.update()
                        if self.step % out.log_every == 0 or self.step == total:
                            window = self.window.items()
                            record = {k: v[-1] if k in STATE_METRICS else sum(v) / len(v) for k, v in window}
                            record["it_per_s"] = timed / (time.perf_counter() - window_start)
                            metrics_log.write(self.step, record)
                            progress.set_postfix(
                                {k: f"{record[k]:.3f}" for k in ("d_loss", "g_loss", "ms_fake") if k in record}
                            )
                            if self.step % out.log_every == 0:  # the last record, off the cadence, keeps its
                                # window: a longer resumed run then logs what an uninterrupted one would
                                self.window, window_start, timed = {}, time.perf_counter(), 0
                        if self.step % out.sample_every == 0 or self.step == total:
                            self.save_samples()
                        if self.step % out.checkpoint_every == 0 or self.step == total:
                            self.save()
                    profiler.step()
                    if received and self.step < total:  # a signal during the last step: the run is complete
                        on_cadence = self.step % out.checkpoint_every == 0  # written just now
                        path = self.checkpoint_path if on_cadence else self.save()
                        raise TrainingInterrupted(
                            f"stopped by signal {received[0]} at step {self.step}; checkpoint written to {path}. "
                            f"Continue with: python -m fastgan.train --resume {self.run_dir}"
                        )
        finally:
            progress.close()
            metrics_log.close()
