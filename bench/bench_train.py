"""Per block and per step, eager vs fused: a ResBlockUp, the generator forward+backward, one HRGAN iteration.

The model is the one each machine trains: HRGAN-128 at the paper's widths and batches on CUDA (where a
torch.compile'd eager model is measured too), the shipped embedded-64 preset on a CPU.
"""

from __future__ import annotations

import statistics
import time

import pytest
import torch

from bench.common import (
    CPU_SECONDS_PER_CASE,
    DEVICE,
    ON_CUDA,
    PROVIDERS,
    device_seconds,
    peak_allocated_bytes,
    record,
    run_timed,
    saved_activation_bytes,
)
from fastgan.data.loader import InMemoryLoader
from fastgan.models.blocks import ResBlockUp
from fastgan.models.hrgan import generator_channels
from fastgan.ops import backend
from fastgan.train.config import Config, load_config, merge
from fastgan.train.core import placed
from fastgan.train.hrgan_step import HRGANFamily
from fastgan.train.run import load_image_set

PAPER_128 = {"model": {"resolution": 128}, "train": {"batch_size_d": 64, "batch_size_g": 128}}
SMOKE_MODEL = {"model": {"resolution": 64, "g_channels": 16, "d_channels": 16, "z_dim": 32}}
PROVIDER_IDS = ["eager", "fused", "compiled"]
#: The iteration also runs replayed from CUDA graphs: eager and fused (`train.cuda_graphs`), and the compiled
#: model in torch.compile's own CUDA-graph mode ("reduce-overhead").
ITERATION_PROVIDER_IDS = [*PROVIDER_IDS, "compiled-graphs", "eager-graphs", "fused-graphs"]


def _config(smoke: bool, cache_dir: str, provider: str) -> Config:
    """The model each machine trains; `train.fused` (and `train.cuda_graphs`) set as the trainer would for
    `provider`, so the networks get the trainer's memory layout (`fastgan.train.core.placed`)."""
    base = load_config(None, []) if ON_CUDA else load_config("embedded-64")
    model = SMOKE_MODEL if smoke else PAPER_128 if ON_CUDA else {}
    batches = {"batch_size_d": 4, "batch_size_g": 4} if smoke else {}
    updates = {
        "data": {"source": "embedded", "num_images": 256},
        "train": {
            "device": DEVICE.type,
            "ema_start": 0,
            "fused": provider.startswith("fused"),
            "cuda_graphs": provider in ("eager-graphs", "fused-graphs"),
            **batches,
        },
        "output": {"cache_dir": cache_dir, "samples_per_class": 1},
    }
    return merge(merge(base, model), updates)


def _skip_unless_available(provider: str) -> None:
    if provider.startswith("compiled") and not ON_CUDA:
        pytest.skip("torch.compile baseline is measured on CUDA only (CPU compile time dwarfs these runs)")
    if provider.endswith("-graphs") and not ON_CUDA:
        pytest.skip("CUDA graphs need a CUDA device")


def _scope(provider: str):
    return backend(PROVIDERS.get(provider.removesuffix("-graphs"), "torch"))


def _family(smoke: bool, cache_dir: str, provider: str) -> tuple[HRGANFamily, InMemoryLoader, Config]:
    """The family, its loader and config as the trainer builds them for `provider` (seeded: same weights)."""
    torch.manual_seed(0)
    config = _config(smoke, cache_dir, provider)
    image_set = load_image_set(config.data)
    return HRGANFamily(config, image_set, DEVICE), InMemoryLoader(image_set, 0, True, DEVICE), config


@pytest.fixture
def family_and_loader(request, tmp_path):
    smoke = request.node.get_closest_marker("smoke") is not None
    provider = request.node.callspec.params["provider"]
    _skip_unless_available(provider)
    return _family(smoke, str(tmp_path / "cache"), provider)


def _maybe_compile(family: HRGANFamily, provider: str) -> None:
    """The torch.compile baselines: default mode ("compiled") and "reduce-overhead" ("compiled-graphs":
    TorchInductor's kernels replayed from CUDA graphs)."""
    if provider.startswith("compiled"):
        mode = "reduce-overhead" if provider == "compiled-graphs" else "default"
        family.generator = torch.compile(family.generator, mode=mode)
        family.discriminator = torch.compile(family.discriminator, mode=mode)


def _case(config: Config) -> str:
    """The case label: resolution, generator widths, D width, D/G batch sizes."""
    m, t = config.model, config.train
    widths = m.g_widths or [m.g_channels, *generator_channels(m.resolution, m.g_channels)]
    return f"HRGAN-{m.resolution} G{'/'.join(map(str, widths))} D{m.d_channels} B{t.batch_size_d}/{t.batch_size_g}"


def _measure(benchmark, config: Config, what: str, provider: str, step, saving, parameters, **info) -> None:
    """Time `step()`; record activation bytes kept by `saving()` (not counting `parameters`; None: not measured)
    and, on CUDA, the GPU's busy time and the peak memory of one step."""
    benchmark.group = f"train {what}"
    seconds = run_timed(benchmark, step)
    info |= {"op": what, "case": _case(config), "provider": provider, "mode": "full"}
    if saving is not None:
        info["saved_bytes"] = saved_activation_bytes(saving, parameters)
    peak = peak_allocated_bytes(step)
    if peak is not None:
        info["peak_allocated_bytes"] = peak
    kernels = None if seconds is None else device_seconds(step, rounds=3)
    record(benchmark, info, seconds, kernel_seconds=kernels)


@pytest.mark.parametrize("provider", PROVIDER_IDS)
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_res_block_up(benchmark, provider, size, family_and_loader):
    """The generator's last (largest-activation) ResBlockUp, forward + backward."""
    _skip_unless_available(provider)
    family, _, config = family_and_loader
    forward, step, block, shape = _res_block_up_case(family, config, provider)
    _measure(benchmark, config, "ResBlockUp", provider, step, forward, block.parameters(), shape=shape)


def _res_block_up_case(family: HRGANFamily, config: Config, provider: str):
    """(forward, step, block, input shape) for a fresh copy of the generator's last ResBlockUp (seeded) at its input
    size, in the trainer's layout; step = forward + backward of the mean output."""
    last = [m for m in family.generator.modules() if isinstance(m, ResBlockUp)][-1]
    torch.manual_seed(1)
    block = placed(ResBlockUp(last.conv1.in_channels, last.conv1.out_channels, family.num_classes), DEVICE, config)
    nhwc = block.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # activations follow the weights
    if provider == "compiled":
        block = torch.compile(block)
    side = config.model.resolution // 2
    batch = config.train.batch_size_g
    x = torch.randn(batch, last.conv1.in_channels, side, side, device=DEVICE)
    x = x.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format).requires_grad_()
    y = torch.randint(family.num_classes, (batch,), device=DEVICE)

    def forward():
        with _scope(provider), family._autocast():
            return block(x, y)

    def step():
        forward().float().mean().backward()

    return forward, step, block, list(x.shape)


@pytest.mark.parametrize("provider", PROVIDER_IDS)
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_generator_forward_backward(benchmark, provider, size, family_and_loader):
    """G(z, y) at the G batch, forward + backward of the mean output."""
    _skip_unless_available(provider)
    family, _, config = family_and_loader
    _maybe_compile(family, provider)
    forward, step = _generator_case(family, config, provider)
    _measure(benchmark, config, "generator", provider, step, forward, family.generator.parameters())


def _generator_case(family: HRGANFamily, config: Config, provider: str):
    """(forward, step): G(z, y) at the G batch (seeded z, y); step = forward + backward of the mean output."""
    batch = config.train.batch_size_g
    torch.manual_seed(2)
    z = torch.randn(batch, config.model.z_dim, device=DEVICE)
    y = torch.randint(family.num_classes, (batch,), device=DEVICE)

    def forward():
        with _scope(provider), family._autocast():
            return family.generator(z, y)

    def step():
        forward().float().mean().backward()

    return forward, step


@pytest.mark.parametrize("provider", ITERATION_PROVIDER_IDS)
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_training_iteration(benchmark, provider, size, family_and_loader):
    """One HRGAN iteration: n_dis D steps, the G step with the MobileNet-score loss, the EMA update (graphed
    providers: the D and G updates replayed from CUDA graphs, captured during the warm-up rounds; their activation
    bytes are not measured — a replay keeps none for autograd)."""
    _skip_unless_available(provider)
    family, loader, config = family_and_loader
    _maybe_compile(family, provider)
    iteration = _iteration_case(family, loader, provider)

    def generator_step():
        with _scope(provider):
            family.generator_step()

    networks = [family.generator, family.discriminator] + ([family.evaluator] if family.evaluator else [])
    parameters = [p for network in networks for p in [*network.parameters(), *network.buffers()]]
    saving = None if provider.endswith("-graphs") else generator_step
    _measure(benchmark, config, "HRGAN iteration", provider, iteration, saving, parameters)


def _iteration_case(family: HRGANFamily, loader: InMemoryLoader, provider: str):
    """One training iteration of `family` under `provider`'s backend."""

    def iteration():
        if provider == "compiled-graphs":
            torch.compiler.cudagraph_mark_step_begin()  # a new iteration: earlier replays' outputs are done with
        with _scope(provider):
            family.train_step(loader, step=1)

    return iteration


def _interleaved_step(what: str, family: HRGANFamily, loader: InMemoryLoader, config: Config, provider: str):
    """The step of case `what` for `provider`, as the separate cases time it."""
    if what == "ResBlockUp":
        return _res_block_up_case(family, config, provider)[1]
    if what == "generator":
        return _generator_case(family, config, provider)[1]
    return _iteration_case(family, loader, provider)


@pytest.mark.parametrize("what", ["ResBlockUp", "generator", "HRGAN iteration"])
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_interleaved(benchmark, what, size, tmp_path):
    """Eager and fused steps of case `what` alternated in one process (order swapped every round), so a shared
    machine's drift between the separate eager and fused cases cannot fake a ratio: their medians go in extra_info
    (``eager_ms``, ``fused_ms``); the benchmark's own time is one pair."""
    steps = {}
    for provider in ("eager", "fused"):
        family, loader, config = _family(size == "smoke", str(tmp_path / "cache"), provider)
        steps[provider] = _interleaved_step(what, family, loader, config, provider)
    times: dict[str, list[float]] = {"eager": [], "fused": []}
    order = ["eager", "fused"]

    def pair():
        for provider in order:
            start = time.perf_counter()
            steps[provider]()
            if ON_CUDA:
                torch.cuda.synchronize(DEVICE)
            times[provider].append(time.perf_counter() - start)
        order.reverse()

    benchmark.group = f"train {what} interleaved"
    seconds = run_timed(benchmark, pair, cpu_seconds=3 * CPU_SECONDS_PER_CASE)  # ~24 iteration pairs on 2 CPU cores
    info = {"op": what, "case": _case(config), "provider": "interleaved", "mode": "full"}
    if seconds is not None:
        timed = len(benchmark.stats.stats.data)
        for provider, spent in times.items():
            info[f"{provider}_ms"] = round(1e3 * statistics.median(spent[-timed:]), 3)
    record(benchmark, info, seconds)
