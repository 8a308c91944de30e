"""The HRGAN model family for the training core: its networks, optimisers and one iteration (Algorithm 1)."""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import torch

from fastgan.data.image_set import ImageSet
from fastgan.eval.evaluator import Evaluator, default_evaluator_weights, load_evaluator
from fastgan.eval.real_score import cached_real_score
from fastgan.losses import discriminator_hinge_loss, generator_loss
from fastgan.models.hrgan import TRAINING_RESOLUTION, Discriminator, Generator, downsample_to_training
from fastgan.profiling import phase
from fastgan.train.config import CUDA_GRAPH_COMPILE_MODES, Config
from fastgan.train.core import Loader, as_floats, compile_in_place, load_optimizer_state, placed
from fastgan.train.cuda_graphs import GraphedUpdate, Update
from fastgan.train.ema import WeightEMA

log = logging.getLogger(__name__)


def bf16_autocast_available(device: torch.device, amp: bool) -> bool:
    """Whether G and D train under bf16 autocast: `train.amp` on a CUDA device with native bf16 (compute
    capability 8.0 or newer). On an older GPU (V100, T4) bf16 is emulated or, in the Triton kernels, not built:
    the run trains in fp32 and says so."""
    if not amp or device.type != "cuda":
        return False
    capability = torch.cuda.get_device_capability(device)
    if capability >= (8, 0):
        return True
    log.warning(
        "train.amp: %s has no native bf16 (compute capability %d.%d < 8.0); training in fp32 "
        "(--set train.amp=false silences this)",
        torch.cuda.get_device_name(device),
        *capability,
    )
    return False


def warn_if_target_out_of_reach(target: float, num_classes: int, batch_size: int) -> None:
    """Warn when L_MS's target exceeds the most a generator batch can score: min(K, B), reached only by B images
    each certain of a different class. L_MS = λ·max(0, log target − log MS_fake) then never reaches 0, so its hinge
    never switches off and it acts as "maximise MS" (HRGAN Eq. 4 scores MS_fake over batches of 128, where the
    ceiling is K). Real data's own batch score sits below the whole-set MS_real as well, the more the smaller B."""
    ceiling = min(num_classes, batch_size)
    if target >= ceiling:
        log.warning(
            "L_MS target MS_real·√HR = %.2f is beyond the most a batch of %d images over %d classes can score (%d): "
            "L_MS never reaches 0 and keeps pushing MS_fake up. Raise train.batch_size_g, use an evaluator with more "
            "classes, or keep loss.lambda_ms small",
            target,
            batch_size,
            num_classes,
            ceiling,
        )


def _first_names(names: list[str], shown: int = 6) -> str:
    return ", ".join(names[:shown]) + (f", … ({len(names)} in all)" if len(names) > shown else "")


def check_same_data(saved: dict[str, str] | None, current: dict[str, str]) -> None:
    """Refuse to resume on other classes or labels (`ImageSet.identity`): the same number of images with other class
    folders would reassign the conditioning unseen. Pixels alone differing is a warning: another decoder of the same
    files (nvJPEG against libjpeg, say) may round some levels apart. Checkpoints without an identity pass."""
    if saved is None:
        return
    if saved["classes"] != current["classes"]:
        was, now = (_first_names(names.split("\n")) for names in (saved["classes"], current["classes"]))
        raise ValueError(
            f"this checkpoint was trained on the classes {was}; this run's data has {now}: resume with the data it "
            "was trained on (data.path), or start a new run"
        )
    if saved["labels_sha256"] != current["labels_sha256"]:
        raise ValueError(
            "this checkpoint was trained on the same classes but other images or another order of them (labels "
            f"sha256 {saved['labels_sha256'][:12]}, now {current['labels_sha256'][:12]}): resume with the data it was "
            "trained on (data.path), or start a new run"
        )
    if saved["sha256"] != current["sha256"]:
        log.warning(
            "the training images' pixels differ from those this checkpoint was trained on (sha256 %s, now %s), "
            "though their classes and labels match: another decoder of the same files, or edited images",
            saved["sha256"][:12],
            current["sha256"][:12],
        )


class HRGANFamily:
    """G, D, the EMA generator, the evaluator and their optimisers, and the HRGAN iteration.

    Args:
        config: the run configuration.
        image_set: the 32×32 real training images.
        device: where everything runs.
    """

    def __init__(self, config: Config, image_set: ImageSet, device: torch.device):
        if image_set.resolution != TRAINING_RESOLUTION:
            raise ValueError(
                f"HRGAN trains on {TRAINING_RESOLUTION}×{TRAINING_RESOLUTION} images, "
                f"{image_set.name} has {image_set.resolution}×{image_set.resolution}"
            )
        if config.train.cuda_graphs and device.type != "cuda":
            raise ValueError(
                f"train.cuda_graphs replays CUDA graphs: it needs a CUDA device, not {device}; train (or resume) on "
                "CUDA, or add --set train.cuda_graphs=false"
            )
        self.config, self.device = config, device
        self.bf16 = bf16_autocast_available(device, config.train.amp)
        self.num_classes = image_set.num_classes
        self.data_identity = image_set.identity()
        self.hr = config.model.resolution // TRAINING_RESOLUTION
        m, t = config.model, config.train
        generator = Generator(m.resolution, self.num_classes, m.z_dim, m.g_channels, m.g_widths)
        self.generator = placed(generator, device, config)
        self.discriminator = placed(Discriminator(self.num_classes, m.d_channels), device, config)
        self.generator_ema = WeightEMA(self.generator, t.ema_decay)  # a copy of the eager generator: compiling follows
        compile_in_place(self.generator, device, config)
        compile_in_place(self.discriminator, device, config)
        capturable = t.cuda_graphs  # graph-safe Adam: its step count lives on the device
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=t.lr_g, betas=t.betas, capturable=capturable)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=t.lr_d, betas=t.betas, capturable=capturable)
        self.noise = torch.Generator().manual_seed(t.seed)  # on the CPU, so a run resumes on any device
        self.evaluator: Evaluator | None = None
        self.ms_real = float("nan")
        if config.loss.lambda_ms > 0:
            weights = default_evaluator_weights(config.loss.evaluator_weights, config.data.source)
            self.evaluator = placed(load_evaluator(weights, device), device, config)
            self.ms_real = cached_real_score(
                self.evaluator, image_set, config.output.cache_dir, config.loss.ms_real_batch_size
            )
            compile_in_place(
                self.evaluator, device, config
            )  # for the generator's batches, after the one-off real score
            log.info("MS_real = %.4f; L_MS target MS_real·√HR = %.4f", self.ms_real, self.ms_real * self.hr**0.5)
            warn_if_target_out_of_reach(self.ms_real * self.hr**0.5, self.evaluator.spec.num_classes, t.batch_size_g)
        fixed = torch.Generator().manual_seed(t.seed + 1)
        per_class = self.sample_columns = config.output.samples_per_class
        self.sample_z = torch.randn(self.num_classes * per_class, m.z_dim, generator=fixed).to(device)
        self.sample_y = torch.arange(self.num_classes).repeat_interleave(per_class).to(device)
        self._graph_updates()

    def _graph_updates(self) -> None:
        """The D and G updates as called by the steps: graphed (`train.cuda_graphs`, captured afresh) or eager."""

        def graphed(update: Update) -> Update:
            return GraphedUpdate(update, self.device) if self.config.train.cuda_graphs else update

        self._update_d, self._update_g = graphed(self._discriminator_update), graphed(self._generator_update)

    def _autocast(self) -> contextlib.AbstractContextManager:
        if not self.bf16:
            return contextlib.nullcontext()
        # no cast cache under graphs: cached bf16 weights would outlive the captured region
        return torch.autocast("cuda", dtype=torch.bfloat16, cache_enabled=not self.config.train.cuda_graphs)

    def _noise(self, batch: int) -> torch.Tensor:
        """(batch, z_dim) standard normal noise from the run's CPU generator (so a run resumes on any device)."""
        return torch.randn(batch, self.config.model.z_dim, generator=self.noise)

    @phase("d_step")
    def discriminator_step(self, loader: Loader) -> dict[str, torch.Tensor]:
        """One D update on a real batch and a generated batch with the real labels (Algorithm 1, lines 4–8);
        returns its () loss tensors on the device (graphed: valid until the next D update)."""
        with phase("data"):
            real, labels = loader.next_batch(self.config.train.batch_size_d)
        return self._update_d(real, labels, self._noise(len(labels)))

    def _discriminator_update(
        self, real: torch.Tensor, labels: torch.Tensor, z: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Device work of a D step (capturable): real (B, 3, 32, 32), labels (B,), z (B, z_dim) -> loss tensors."""
        z = z.to(self.device, non_blocking=True)
        with torch.no_grad(), self._autocast():
            fake = downsample_to_training(self.generator(z, labels))
        with self._autocast():  # one forward over real and fake: one spectral-norm power iteration per D step
            scores = self.discriminator(torch.cat([real, fake.to(real.dtype)]), torch.cat([labels, labels])).float()
        real_scores, fake_scores = scores.split(len(labels))
        loss = discriminator_hinge_loss(real_scores, fake_scores, self.config.loss.hinge_margin)
        self.opt_d.zero_grad(set_to_none=True)
        loss.backward()
        with phase("optimizer_d"):
            self.opt_d.step()
        return {"d_loss": loss.detach(), "d_real": real_scores.detach().mean(), "d_fake": fake_scores.detach().mean()}

    def _evaluator_logits(self, images: torch.Tensor) -> torch.Tensor | None:
        """The evaluator's logits of the generated images (B, 3, R, R) -> (B, classes), or None without L_MS.

        In fp32 even under autocast: L_MS compares MS_fake with MS_real, which the evaluator scored in fp32. Unlike
        MS_real (`exact_fp32`), TF32 stays as the device has it: its rounding (~1e-3 relative) is far below the
        batch score's own bias against the whole-set MS_real, and full-precision convolutions would slow every G
        step (forward and backward through the evaluator) on Ampere and newer."""
        if self.evaluator is None:
            return None
        with phase("evaluator"), torch.autocast(self.device.type, enabled=False):
            return self.evaluator(images.float())

    @phase("g_step")
    def generator_step(self) -> dict[str, torch.Tensor]:
        """One G update with the adversarial and MobileNet-score terms (Algorithm 1, lines 10–16); returns its ()
        loss tensors on the device (graphed: valid until the next G update)."""
        batch = self.config.train.batch_size_g
        labels = torch.randint(self.num_classes, (batch,), generator=self.noise)
        return self._update_g(labels, self._noise(batch))

    def _generator_update(self, labels: torch.Tensor, z: torch.Tensor) -> dict[str, torch.Tensor]:
        """Device work of a G step (capturable): labels (B,), z (B, z_dim) -> loss tensors."""
        labels, z = labels.to(self.device, non_blocking=True), z.to(self.device, non_blocking=True)
        self.discriminator.requires_grad_(False)
        try:
            with self._autocast():
                images = self.generator(z, labels)  # (B, 3, R, R)
                scores = self.discriminator(downsample_to_training(images), labels).float()
                logits = self._evaluator_logits(images)
            loss, parts = generator_loss(scores, logits, self.ms_real, self.hr, self.config.loss.lambda_ms)
            self.opt_g.zero_grad(set_to_none=True)
            loss.backward()
            with phase("optimizer_g"):
                self.opt_g.step()
        finally:
            self.discriminator.requires_grad_(True)
        return {"g_loss": loss.detach(), **parts}

    def train_step(self, loader: Loader, step: int) -> dict[str, float]:
        """One iteration: n_dis D updates, one G update, then the EMA update (from train.ema_start on); the last D
        update's and the G update's losses as floats, read with one host synchronisation."""
        metrics: dict[str, torch.Tensor] = {}
        if self.config.train.compile in CUDA_GRAPH_COMPILE_MODES:
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: the last one's replay outputs are done with
        for _ in range(self.config.train.n_dis):
            metrics = self.discriminator_step(loader)
        metrics.update(self.generator_step())
        if step >= self.config.train.ema_start:
            with phase("ema"):
                self.generator_ema.update_parameters(self.generator)
        return as_floats(metrics)

    @torch.no_grad()
    def sample_grid(self) -> torch.Tensor:
        """Fixed-noise samples of the EMA generator (the live one before EMA starts): (C·k, 3, R, R) in [-1, 1]."""
        averaged = int(self.generator_ema.n_averaged) > 0
        model = self.generator_ema.module if averaged else self.generator
        was_training = model.training
        model.eval()
        try:
            with torch.compiler.set_stance("force_eager"):  # a rare call: no eval-mode graph is compiled for it
                return model(self.sample_z, self.sample_y).float()
        finally:
            model.train(was_training)

    def state_dict(self) -> dict[str, Any]:
        return {
            "generator": self.generator.state_dict(),
            "discriminator": self.discriminator.state_dict(),
            "generator_ema": self.generator_ema.state_dict(),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "noise": self.noise.get_state(),
            "ms_real": self.ms_real,
            "evaluator_sha256": self.evaluator.spec.fingerprint if self.evaluator is not None else "",
            "data": self.data_identity,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        current = self.evaluator.spec.fingerprint if self.evaluator is not None else ""
        if state["evaluator_sha256"] != current:
            raise ValueError(
                "this checkpoint was trained with another evaluator (weights sha256 "
                f"{state['evaluator_sha256'][:12] or 'none'}, now {current[:12] or 'none'}): resume with the same "
                "--evaluator-weights, or start a new run"
            )
        check_same_data(state.get("data"), self.data_identity)  # absent from checkpoints of older versions
        self.ms_real = float(state["ms_real"])
        self.generator.load_state_dict(state["generator"])
        self.discriminator.load_state_dict(state["discriminator"])
        self.generator_ema.load_state_dict(state["generator_ema"])
        t = self.config.train
        for optimizer, name, rate in ((self.opt_g, "opt_g", t.lr_g), (self.opt_d, "opt_d", t.lr_d)):
            load_optimizer_state(optimizer, state[name], t.cuda_graphs)
            for group in optimizer.param_groups:
                group["lr"] = rate  # this run's: a resumed run may lower it

        self.noise.set_state(state["noise"])
        self._graph_updates()  # graphs captured before would replay into the replaced optimiser state
