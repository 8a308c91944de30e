"""train.compile (``--compile``): G, D and the evaluator compiled by torch.compile train the model eager trains."""

import json
import math

import pytest
import torch
from torch._dynamo.testing import CompileCounterWithBackend

from fastgan.train import __main__ as cli
from fastgan.train.checkpoint import load_checkpoint
from fastgan.train.config import Config, ConfigError, load_config, merge
from fastgan.train.run import resume, resume_config, train


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _follows(run, reference, rel):
    for a, b in zip(_metrics(run.run_dir), _metrics(reference.run_dir), strict=True):
        for key in ("d_loss", "g_loss", "ms_fake"):
            assert a[key] == pytest.approx(b[key], rel=rel, abs=rel / 10), (a["step"], key)


def test_compile_flag_and_modes():
    assert cli._flag_updates(cli._parser().parse_args(["--compile"])) == {"train": {"compile": "default"}}
    parsed = cli._parser().parse_args(["--compile", "max-autotune"])
    assert cli._flag_updates(parsed) == {"train": {"compile": "max-autotune"}}
    assert Config().train.compile == "off"
    with pytest.raises(ConfigError, match="train.compile must be one of off, default"):
        merge(Config(), {"train": {"compile": "fast"}})
    with pytest.raises(ConfigError, match="train.compile=reduce-overhead instead"):
        merge(Config(), {"train": {"compile": "default", "cuda_graphs": True}})
    for refused in ({"model": {"name": "lag"}}, {"model": {"name": "srgan"}, "progressive": {"enabled": True}}):
        with pytest.raises(ConfigError, match="train.compile is for HRGAN and SRResNet/SRGAN without progressive"):
            merge(Config(), refused | {"train": {"compile": "default"}})
    assert merge(Config(), {"model": {"name": "srgan"}, "train": {"compile": "default"}}).train.compile == "default"
    saved = {"config": Config().to_dict()}
    assert resume_config(saved, {"train": {"compile": "default"}}).train.compile == "default"


def test_compile_without_a_cpu_compiler_says_what_to_do(tiny_config, monkeypatch):
    monkeypatch.setattr("fastgan.train.core.cpu_compiler_available", lambda: False)
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        train(merge(tiny_config, {"train": {"compile": "default"}}))


@pytest.fixture
def traced_only(monkeypatch):
    """Module.compile through Dynamo alone (its "eager" backend: no code generation, no C++ compiler needed), whole
    graphs only (a graph break raises), counting the graphs: the trainer's compiled path in seconds. AOTAutograd
    traces G and D in tests/ops/test_compiled_model.py and test_conv_avgpool.py; TorchInductor compiles all three in
    the slow test below. `--fused` outside the compiled modules (sample grids, the real images' score, a run resumed
    without compiling) takes the uncompiled fused arithmetic: "fused-compiled" would build its kernels with
    TorchInductor (40 of this test's 65 s). Dynamo's caches are cleared before and after."""
    original = torch.nn.Module.compile
    counter = CompileCounterWithBackend("eager")
    monkeypatch.setattr(
        torch.nn.Module,
        "compile",
        lambda self, mode, **options: original(self, backend=counter, fullgraph=True, **options),
    )
    monkeypatch.setattr("fastgan.train.core.cpu_compiler_available", lambda: True)
    monkeypatch.setattr("fastgan.train.run.fused_backend_for", lambda device: "fused-torch")
    torch._dynamo.reset()
    yield counter
    torch._dynamo.reset()


def test_compiled_fused_run_follows_the_eager_run_and_resumes_eagerly(tiny_config, tmp_path, caplog, traced_only):
    """--fused --compile: G, D and the evaluator compiled (the EMA copy and the sample grid stay eager), the same
    losses as eager; the checkpoint's keys are the eager modules', so the run resumes without compiling."""
    eager = train(tiny_config)
    compiled_config = merge(
        tiny_config, {"train": {"fused": True, "compile": "default"}, "output": {"out_dir": str(tmp_path / "c")}}
    )
    with caplog.at_level("INFO", logger="fastgan.train.run"):
        compiled = train(compiled_config)
    assert "torch.compile: default" in caplog.text
    family = compiled.family
    assert all(m._compiled_call_impl is not None for m in (family.generator, family.discriminator, family.evaluator))
    # G with and without gradients, D in the D and in the G step, the evaluator: each one graph, traced once
    # (Dynamo's count for torch 2.14.1, the version the set-up pins)
    assert traced_only.frame_count == 5
    assert family.generator_ema.module._compiled_call_impl is None
    _follows(compiled, eager, rel=1e-3)
    assert set(load_checkpoint(compiled.run_dir)["family"]["generator"]) == set(
        family.generator_ema.module.state_dict()
    )
    resumed = resume(compiled.run_dir, {"train": {"iterations": 6, "compile": "off"}})
    assert resumed.family.generator._compiled_call_impl is None
    assert [r["step"] for r in _metrics(resumed.run_dir)] == [1, 2, 3, 4, 5, 6]


def _sr_config(out_dir):
    """SRResNet ×2 light with 8 channels and 1 block on photo crops, 4 iterations, fused."""
    sr = {"channels": 8, "blocks": 1, "crop": 32}
    output = {"out_dir": str(out_dir), "checkpoint_every": 2, "sample_every": 2, "log_every": 1, "tensorboard": False}
    train_keys = {"iterations": 4, "batch_size_g": 4, "device": "cpu", "fused": True}
    return merge(load_config("srresnet-x2-light"), {"sr": sr, "train": train_keys, "output": output})


def test_compiled_srresnet_run_follows_the_eager_run(tmp_path, traced_only):
    """SRResNet (pixel_shuffle_prelu as its reference inside the graph): one compiled graph, the eager losses; the
    sample grid stays eager."""
    eager = train(_sr_config(tmp_path / "eager"))
    compiled = train(merge(_sr_config(tmp_path / "compiled"), {"train": {"compile": "default"}}))
    assert compiled.family.generator._compiled_call_impl is not None
    assert traced_only.frame_count == 1
    for a, b in zip(_metrics(eager.run_dir), _metrics(compiled.run_dir), strict=True):
        for key in ("g_loss", "psnr"):
            assert a[key] == pytest.approx(b[key], rel=1e-4), (a["step"], key)


@pytest.mark.slow
def test_inductor_compiled_fused_run_follows_the_eager_run(tiny_config, tmp_path):
    """TorchInductor's own kernels (about 2.5 minutes of compiling on two CPU cores)."""
    torch._dynamo.reset()
    eager = train(tiny_config)
    compiled_config = merge(
        tiny_config, {"train": {"fused": True, "compile": "default"}, "output": {"out_dir": str(tmp_path / "c")}}
    )
    _follows(train(compiled_config), eager, rel=1e-3)


@pytest.mark.cuda
@pytest.mark.parametrize("mode", ["default", "reduce-overhead"])
def test_cuda_compiled_fused_run_trains_and_resumes_on_the_cpu(tiny_config, mode):
    """On CUDA, TorchInductor's Triton kernels under bf16 autocast, and its CUDA graphs in reduce-overhead mode
    (each iteration marked as a new step): finite losses; the checkpoint continues eagerly on the CPU."""
    torch._dynamo.reset()
    config = merge(tiny_config, {"train": {"device": "cuda", "iterations": 4, "fused": True, "compile": mode}})
    cuda = train(config)
    assert all(math.isfinite(r[k]) for r in _metrics(cuda.run_dir) for k in ("d_loss", "g_loss", "ms_fake"))
    resumed = resume(cuda.run_dir, {"train": {"device": "cpu", "iterations": 6, "fused": False, "compile": "off"}})
    assert [r["step"] for r in _metrics(resumed.run_dir)] == [1, 2, 3, 4, 5, 6]


@pytest.mark.cuda
def test_cuda_compiled_srresnet_run_trains(tmp_path):
    """SRResNet on CUDA under reduce-overhead (TorchInductor's Triton kernels replayed from CUDA graphs): finite
    losses and PSNR every step."""
    torch._dynamo.reset()
    config = merge(_sr_config(tmp_path / "sr"), {"train": {"device": "cuda", "compile": "reduce-overhead"}})
    records = _metrics(train(config).run_dir)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(r[k]) for r in records for k in ("pixel", "g_loss", "psnr"))
