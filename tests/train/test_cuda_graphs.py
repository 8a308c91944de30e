"""`train.cuda_graphs`: HRGAN's D and G updates replayed from CUDA graphs train the model the eager loop trains."""

import json

import pytest
import torch

from fastgan.train import __main__ as cli
from fastgan.train.config import Config, ConfigError, merge
from fastgan.train.core import load_optimizer_state
from fastgan.train.cuda_graphs import GraphedUpdate
from fastgan.train.run import build_trainer, resume, train


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def _assert_adam_steps(family, steps: int, device: str) -> None:
    """Every Adam step count of G and D (n_dis = 1) equals `steps`, fp32, on `device`."""
    for optimizer in (family.opt_g, family.opt_d):
        for state in optimizer.state.values():
            assert state["step"].item() == steps and state["step"].dtype == torch.float32
            assert state["step"].device.type == device


def test_cuda_graphs_need_a_cuda_device(tiny_config):
    with pytest.raises(ValueError, match="needs a CUDA device"):
        build_trainer(merge(tiny_config, {"train": {"cuda_graphs": True}}))
    with pytest.raises(ValueError, match="need a CUDA device"):
        GraphedUpdate(lambda: {}, torch.device("cpu"))


@pytest.mark.cuda
def test_graphed_update_runs_once_per_call_and_follows_its_inputs():
    """Two warm-up calls, a capturing call, replays: the update's side effect happens exactly once per call and its
    output follows each call's (CPU) input through the static buffer."""
    counter = torch.zeros((), device="cuda")

    def update(x: torch.Tensor) -> dict[str, torch.Tensor]:
        counter.add_(1)
        return {"twice_sum": 2 * x.to("cuda").sum()}

    graphed = GraphedUpdate(update, torch.device("cuda"), warmup_calls=2)
    for call in range(1, 7):
        assert graphed(torch.full((3,), float(call)))["twice_sum"].item() == 6 * call
        assert counter.item() == call
        assert graphed.captured == (call >= 3)
    with pytest.raises(ValueError, match="keep their shapes"):
        graphed(torch.ones(4))
    with pytest.raises(ValueError, match="warmup_calls must be >= 1"):
        GraphedUpdate(update, torch.device("cuda"), warmup_calls=0)


def test_cuda_graphs_are_for_hrgan_only():
    with pytest.raises(ConfigError, match="train.cuda_graphs is for model.name=hrgan"):
        merge(Config(), {"model": {"name": "srgan"}, "train": {"cuda_graphs": True}})
    assert cli._flag_updates(cli._parser().parse_args(["--cuda-graphs"])) == {"train": {"cuda_graphs": True}}


@pytest.mark.parametrize("capturable", [False, True])
def test_optimizer_state_loads_for_the_run_it_resumes(capturable):
    """A checkpoint's Adam state loads into a graphed run (step counts on the parameters' device, capturable) and
    into an eager one (step counts on the CPU), whichever it was saved from: the step count and both moments as
    saved."""
    generator = torch.Generator().manual_seed(0)
    parameter = torch.nn.Parameter(torch.randn(3, 4, generator=generator))
    saved = torch.optim.Adam([parameter], capturable=not capturable)
    if not capturable:  # a capturable Adam only steps on CUDA: give its state by hand
        saved.state[parameter] = {
            "step": torch.tensor(5.0),
            "exp_avg": torch.randn(3, 4, generator=generator),
            "exp_avg_sq": torch.rand(3, 4, generator=generator),
        }
    else:
        for _ in range(3):
            parameter.grad = torch.randn(3, 4, generator=generator)
            saved.step()
    expected = {key: value.clone() for key, value in saved.state[parameter].items()}
    resumed = torch.nn.Parameter(torch.randn(4, 3).T)  # another memory layout, as with another channels_last
    optimizer = torch.optim.Adam([resumed])
    load_optimizer_state(optimizer, saved.state_dict(), capturable)
    [group] = optimizer.param_groups
    [state] = optimizer.state.values()
    assert group["capturable"] is capturable
    assert state["step"].dtype == torch.float32 and state["step"].device == group["params"][0].device
    assert state["step"].item() == (3 if capturable else 5)
    for key in ("exp_avg", "exp_avg_sq"):
        assert torch.equal(state[key], expected[key]) and state[key].stride() == resumed.stride(), key


@pytest.mark.cuda
@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
def test_graphed_run_follows_the_eager_run_and_resumes(tiny_config, tmp_path, fused):
    """Eight graphed iterations (three warm-up calls, a capture, replays) give the eager loop's losses; a graphed run
    resumed from its step-4 checkpoint warms up and captures again, and ends where the straight one does; its
    checkpoint continues on the CPU, eager."""
    cuda = {"device": "cuda", "iterations": 8, "fused": fused, "amp": False}
    eager = train(merge(tiny_config, {"train": cuda, "output": {"out_dir": str(tmp_path / "eager")}}))
    graphed_config = merge(tiny_config, {"train": {**cuda, "cuda_graphs": True}})
    graphed = train(graphed_config)
    assert graphed.family._update_d.captured and graphed.family._update_g.captured
    _assert_adam_steps(graphed.family, 8, "cuda")  # no update skipped or repeated by warm-up, capture or replay
    for a, b in zip(_metrics(eager.run_dir), _metrics(graphed.run_dir), strict=True):
        for key in ("d_loss", "d_real", "g_loss", "ms_fake"):
            assert a[key] == pytest.approx(b[key], rel=1e-2, abs=1e-3), (a["step"], key)

    half = merge(graphed_config, {"train": {"iterations": 4}, "output": {"out_dir": str(tmp_path / "half")}})
    train(half)
    resumed = resume(tmp_path / "half", {"train": {"iterations": 8}})
    assert resumed.family._update_d.captured and resumed.family._update_g.captured  # again after loading the state
    _assert_adam_steps(resumed.family, 8, "cuda")
    for a, b in zip(_metrics(graphed.run_dir), _metrics(resumed.run_dir), strict=True):
        for key in ("d_loss", "g_loss"):
            assert a[key] == pytest.approx(b[key], rel=1e-2, abs=1e-3), (a["step"], key)

    on_cpu = resume(
        tmp_path / "half", {"train": {"device": "cpu", "iterations": 10, "fused": False, "cuda_graphs": False}}
    )
    assert [r["step"] for r in _metrics(on_cpu.run_dir)][-2:] == [9, 10]
    _assert_adam_steps(on_cpu.family, 10, "cpu")
