"""Per block and per step, eager vs fused: a ResBlockUp, the generator and the discriminator forward+backward, one
HRGAN iteration.

The model is the one each machine trains: HRGAN-128 at the paper's widths and batches on CUDA, the shipped
embedded-64 preset on a CPU. Both are also measured compiled by torch.compile as the trainer compiles them
(`train.compile`): the eager model ("compiled") and the fused one ("compiled-fused": TorchInductor fuses the ops'
arithmetic; G's conv variant still convolves by phases and D's pooled convolutions still run strided).
"""

from __future__ import annotations

import warnings

import pytest
import torch
from torch._dynamo.utils import counters

from bench.common import (
    DEVICE,
    ON_CUDA,
    PROVIDERS,
    device_seconds,
    peak_allocated_bytes,
    record,
    run_interleaved,
    run_timed,
    saved_activation_bytes,
)
from fastgan.data.loader import InMemoryLoader
from fastgan.models.blocks import ResBlockUp
from fastgan.models.hrgan import generator_channels
from fastgan.ops import backend
from fastgan.train.config import Config, load_config, merge
from fastgan.train.core import compile_in_place, placed
from fastgan.train.hrgan_step import HRGANFamily
from fastgan.train.run import load_image_set

PAPER_128 = {"model": {"resolution": 128}, "train": {"batch_size_d": 64, "batch_size_g": 128}}
SMOKE_MODEL = {"model": {"resolution": 64, "g_channels": 16, "d_channels": 16, "z_dim": 32}}
PROVIDER_IDS = ["eager", "fused", "compiled", "compiled-fused"]
#: The iteration also runs replayed from CUDA graphs: eager and fused (`train.cuda_graphs`), and the compiled
#: models in torch.compile's own CUDA-graph mode ("reduce-overhead").
ITERATION_PROVIDER_IDS = [*PROVIDER_IDS, "compiled-graphs", "compiled-fused-graphs", "eager-graphs", "fused-graphs"]


def _compile_mode(provider: str) -> str:
    """`train.compile` for `provider`: off, default ("compiled…"), reduce-overhead ("compiled…-graphs")."""
    if not provider.startswith("compiled"):
        return "off"
    return "reduce-overhead" if provider.endswith("-graphs") else "default"


def _config(smoke: bool, cache_dir: str, provider: str) -> Config:
    """The model each machine trains; `train.fused`, `train.cuda_graphs` and `train.compile` set as for a run with
    `provider`, so the trainer lays out (`fastgan.train.core.placed`) and compiles the networks."""
    base = load_config(None, []) if ON_CUDA else load_config("embedded-64")
    model = SMOKE_MODEL if smoke else PAPER_128 if ON_CUDA else {}
    batches = {"batch_size_d": 4, "batch_size_g": 4} if smoke else {}
    updates = {
        "data": {"source": "embedded", "num_images": 256},
        "train": {
            "device": DEVICE.type,
            "ema_start": 0,
            "fused": "fused" in provider,
            "cuda_graphs": provider in ("eager-graphs", "fused-graphs"),
            "compile": _compile_mode(provider),
            **batches,
        },
        "output": {"cache_dir": cache_dir, "samples_per_class": 1},
    }
    return merge(merge(base, model), updates)


def _skip_unless_available(provider: str, smoke: bool) -> None:
    if provider.endswith("-graphs") and not ON_CUDA:
        pytest.skip("CUDA graphs need a CUDA device")
    if provider.startswith("compiled") and smoke:
        pytest.skip(
            "compiling takes minutes (seconds to minutes a graph): measured by the full bench, not the smoke run"
        )


def _scope(provider: str):
    return backend(PROVIDERS["fused"] if "fused" in provider else "torch")


def _family(smoke: bool, cache_dir: str, provider: str) -> tuple[HRGANFamily, InMemoryLoader, Config]:
    """The family, its loader and config as the trainer builds them for `provider` (seeded: same weights); for a
    compiled provider the compiled code of earlier cases is dropped, so each case compiles afresh within Dynamo's
    recompile limit."""
    config = _config(smoke, cache_dir, provider)
    if config.train.compile != "off":
        torch._dynamo.reset()
    torch.manual_seed(0)
    image_set = load_image_set(config.data)
    return HRGANFamily(config, image_set, DEVICE), InMemoryLoader(image_set, 0, True, DEVICE), config


@pytest.fixture
def family_and_loader(request, tmp_path):
    smoke = request.node.get_closest_marker("smoke") is not None
    provider = request.node.callspec.params["provider"]
    _skip_unless_available(provider, smoke)
    return _family(smoke, str(tmp_path / "cache"), provider)


def _case(config: Config) -> str:
    """The case label: resolution, generator widths, D width, D/G batch sizes."""
    m, t = config.model, config.train
    widths = m.g_widths or [m.g_channels, *generator_channels(m.resolution, m.g_channels)]
    return f"HRGAN-{m.resolution} G{'/'.join(map(str, widths))} D{m.d_channels} B{t.batch_size_d}/{t.batch_size_g}"


def _measure(benchmark, config: Config, what: str, provider: str, step, saving, parameters, **info) -> None:
    """Time `step()`; record activation bytes kept by `saving()` (not counting `parameters`; None: not measured)
    and, on CUDA, the GPU's busy time and the peak memory of one step — not for the CUDA-graph providers, whose
    replays run in the graphs' private pools, memory the allocator's peak of a replayed step does not count."""
    benchmark.group = f"train {what}"
    skips_before = counters["inductor"]["cudagraph_skips"]
    seconds = run_timed(benchmark, step)
    info |= {"op": what, "case": _case(config), "provider": provider, "mode": "full"}
    if provider.startswith("compiled") and provider.endswith("-graphs"):  # Inductor only logs when it skips graphs
        info["cudagraph_skips"] = counters["inductor"]["cudagraph_skips"] - skips_before
        if info["cudagraph_skips"]:
            warnings.warn(f"{provider}: Inductor ran graphs without CUDA graphs (TORCH_LOGS=cudagraphs)", stacklevel=2)
    if saving is not None:
        info["saved_bytes"] = saved_activation_bytes(saving, parameters)
    peak = None if provider.endswith("-graphs") else peak_allocated_bytes(step)
    if peak is not None:
        info["peak_allocated_bytes"] = peak
    kernels = None if seconds is None else device_seconds(step, rounds=3)
    record(benchmark, info, seconds, kernel_seconds=kernels)


@pytest.mark.parametrize("provider", PROVIDER_IDS)
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_res_block_up(benchmark, provider, size, family_and_loader):
    """The generator's last (largest-activation) ResBlockUp, forward + backward."""
    family, _, config = family_and_loader
    forward, step, block, shape = _res_block_up_case(family, config, provider)
    _measure(benchmark, config, "ResBlockUp", provider, step, forward, block.parameters(), shape=shape)


def _forward_and_step(family: HRGANFamily, provider: str, network, *inputs):
    """(forward, step): `network(*inputs)` under `provider`'s backend and the family's autocast; step = forward +
    backward of the mean output."""

    def forward():
        with _scope(provider), family._autocast():
            return network(*inputs)

    def step():
        forward().float().mean().backward()

    return forward, step


def _res_block_up_case(family: HRGANFamily, config: Config, provider: str):
    """(forward, step, block, input shape) for a fresh copy of the generator's last ResBlockUp (seeded) at its input
    size, in the trainer's layout; step = forward + backward of the mean output."""
    last = [m for m in family.generator.modules() if isinstance(m, ResBlockUp)][-1]
    torch.manual_seed(1)
    block = placed(ResBlockUp(last.conv1.in_channels, last.conv1.out_channels, family.num_classes), DEVICE, config)
    nhwc = block.conv1.weight.is_contiguous(memory_format=torch.channels_last)  # activations follow the weights
    compile_in_place(block, DEVICE, config)
    side = config.model.resolution // 2
    batch = config.train.batch_size_g
    x = torch.randn(batch, last.conv1.in_channels, side, side, device=DEVICE)
    x = x.contiguous(memory_format=torch.channels_last if nhwc else torch.contiguous_format).requires_grad_()
    y = torch.randint(family.num_classes, (batch,), device=DEVICE)

    return (*_forward_and_step(family, provider, block, x, y), block, list(x.shape))


def _generator_case(family: HRGANFamily, config: Config, provider: str):
    """(forward, step): G(z, y) at the G batch (seeded z, y); step = forward + backward of the mean output."""
    batch = config.train.batch_size_g
    torch.manual_seed(2)
    z = torch.randn(batch, config.model.z_dim, device=DEVICE)
    y = torch.randint(family.num_classes, (batch,), device=DEVICE)

    return _forward_and_step(family, provider, family.generator, z, y)


def _discriminator_case(family: HRGANFamily, config: Config, provider: str):
    """(forward, step): D on 2·batch_size_d seeded 32×32 images that take gradients, as D's loss sends them back."""
    batch = 2 * config.train.batch_size_d
    torch.manual_seed(3)
    images = torch.randn(batch, 3, 32, 32, device=DEVICE).contiguous(memory_format=torch.channels_last)
    images.requires_grad_()
    y = torch.randint(family.num_classes, (batch,), device=DEVICE)

    return _forward_and_step(family, provider, family.discriminator, images, y)


#: network -> its (forward, step) case: G(z, y) at the G batch; D(x, y) on a D step's batch (real and generated)
NETWORK_CASES = {"generator": _generator_case, "discriminator": _discriminator_case}


@pytest.mark.parametrize("provider", PROVIDER_IDS)
@pytest.mark.parametrize("network", list(NETWORK_CASES))
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_network_forward_backward(benchmark, network, provider, size, family_and_loader):
    """The generator or the discriminator, forward + backward of the mean output (`NETWORK_CASES`)."""
    family, _, config = family_and_loader
    forward, step = NETWORK_CASES[network](family, config, provider)
    _measure(benchmark, config, network, provider, step, forward, getattr(family, network).parameters())


@pytest.mark.parametrize("provider", ITERATION_PROVIDER_IDS)
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_training_iteration(benchmark, provider, size, family_and_loader):
    """One HRGAN iteration: n_dis D steps, the G step with the MobileNet-score loss, the EMA update (graphed
    providers: the D and G updates replayed from CUDA graphs, captured during the warm-up rounds; their activation
    bytes are not measured — a replay keeps none for autograd)."""
    family, loader, config = family_and_loader
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
        with _scope(provider):
            family.train_step(loader, step=1)

    return iteration


def _interleaved_step(what: str, family: HRGANFamily, loader: InMemoryLoader, config: Config, provider: str):
    """The step of case `what` for `provider`, as the separate cases time it."""
    if what == "ResBlockUp":
        return _res_block_up_case(family, config, provider)[1]
    if what in NETWORK_CASES:
        return NETWORK_CASES[what](family, config, provider)[1]
    return _iteration_case(family, loader, provider)


#: Interleaved pairs: (baseline, fused) providers and the provider name their result goes under.
INTERLEAVED = {"interleaved": ("eager", "fused"), "interleaved-compiled": ("compiled", "compiled-fused")}


@pytest.mark.parametrize("what", ["ResBlockUp", "generator", "discriminator", "HRGAN iteration"])
@pytest.mark.parametrize("pair", list(INTERLEAVED))
@pytest.mark.parametrize("size", [pytest.param("model", id="model"), pytest.param("smoke", marks=pytest.mark.smoke)])
def test_interleaved(benchmark, what, pair, size, tmp_path):
    """The baseline's and the fused provider's steps of case `what` alternated in one process (order swapped every
    round), so a shared machine's drift between separate cases cannot fake a ratio: eager vs fused, and the two
    models compiled. Their medians go in extra_info (``eager_ms``, ``fused_ms``); the benchmark's own time is one
    pair."""
    _skip_unless_available(INTERLEAVED[pair][0], size == "smoke")
    steps = {}
    for role, provider in zip(("eager", "fused"), INTERLEAVED[pair], strict=True):
        family, loader, config = _family(size == "smoke", str(tmp_path / "cache"), provider)
        steps[role] = _interleaved_step(what, family, loader, config, provider)
    benchmark.group = f"train {what} {pair}"
    seconds, medians = run_interleaved(benchmark, steps)  # ~24 iteration pairs on 2 cores
    info = {"op": what, "case": _case(config), "provider": pair, "mode": "full"}
    info |= {f"{role}_ms": ms for role, ms in medians.items()}
    record(benchmark, info, seconds)
