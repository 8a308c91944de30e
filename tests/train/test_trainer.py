import json
import math
import os
import shutil
import signal
from pathlib import Path

import filelock
import pytest
import torch
from PIL import Image

from fastgan.data.image_set import ImageSet
from fastgan.data.sources import embedded_image_set
from fastgan.eval.evaluator import embedded_evaluator_path
from fastgan.ops import fused_backend_for
from fastgan.train import __main__ as cli
from fastgan.train.checkpoint import load_checkpoint
from fastgan.train.config import ConfigError, load_config, merge
from fastgan.train.core import RUN_LOCK, NonFiniteLossError, TrainingInterrupted, _recovery
from fastgan.train.hrgan_step import check_same_data, warn_if_target_out_of_reach
from fastgan.train.run import build_trainer, resume, resume_config, train


def _metrics(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_checkpoint_samples_and_metrics(tiny_config):
    trainer = train(tiny_config)
    run = trainer.run_dir
    assert load_checkpoint(run)["step"] == 4
    records = _metrics(run)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert {"d_loss", "g_loss", "g_adv", "ms_fake", "l_ms", "it_per_s"} <= set(records[0])
    assert 1.0 <= records[-1]["ms_fake"] <= 10.0
    grid = Image.open(run / "samples" / "step_0000004.png")
    rows, cols = 10, tiny_config.output.samples_per_class  # one row per class
    assert grid.size == (cols * (64 + 2) + 2, rows * (64 + 2) + 2)


def test_fused_run_follows_the_eager_run(tiny_config, tmp_path, caplog):
    """--fused on a CPU: the fused torch-arithmetic ops train the same model as eager, up to rounding."""
    eager = train(tiny_config)
    fused_config = merge(tiny_config, {"train": {"fused": True}, "output": {"out_dir": str(tmp_path / "fused")}})
    with caplog.at_level("INFO", logger="fastgan.train.run"):
        fused = train(fused_config)
    assert f"ops backend: {fused_backend_for(torch.device('cpu'))}" in caplog.text
    for a, b in zip(_metrics(eager.run_dir), _metrics(fused.run_dir), strict=True):
        for key in ("d_loss", "g_loss", "ms_fake"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), (a["step"], key)


def test_channels_last_trains_the_same_model_as_nchw(tiny_config, tmp_path):
    """train.channels_last (the default) changes the memory layout of G's and D's convolutions, not the maths."""
    nhwc = train(tiny_config)
    family = nhwc.family
    for network in (family.generator, family.discriminator, family.generator_ema.module):
        weights = [p for p in network.parameters() if p.dim() == 4]
        assert weights and all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
    nchw_config = merge(tiny_config, {"train": {"channels_last": False}, "output": {"out_dir": str(tmp_path / "nchw")}})
    nchw = train(nchw_config)
    assert all(p.is_contiguous() for p in nchw.family.generator.parameters())
    for a, b in zip(_metrics(nhwc.run_dir), _metrics(nchw.run_dir), strict=True):
        for key in ("d_loss", "g_loss", "ms_fake"):
            assert a[key] == pytest.approx(b[key], rel=1e-3, abs=1e-4), (a["step"], key)


def _moments_follow_parameters(optimizer):
    for parameter, slots in optimizer.state.items():
        for value in slots.values():
            if value.shape == parameter.shape:
                assert value.stride() == parameter.stride()


def test_resume_may_switch_layout_and_the_optimizer_state_follows(tiny_config, tmp_path):
    """A channels-last run continued in NCHW: parameters and Adam's moments are NCHW, the run goes on."""
    half = merge(tiny_config, {"train": {"iterations": 2}})
    train(half)
    resumed = resume(half.output.out_dir, {"train": {"iterations": 3, "channels_last": False}})
    family = resumed.family
    assert all(p.is_contiguous() for p in family.generator.parameters())
    for optimizer in (family.opt_g, family.opt_d):
        _moments_follow_parameters(optimizer)
    assert load_checkpoint(resumed.run_dir)["step"] == 3


def test_checkpoint_from_before_channels_last_resumes_in_nchw(tiny_config, tmp_path):
    """Checkpoints written before train.channels_last existed were trained in NCHW, and continue so."""
    from fastgan.train.checkpoint import save_checkpoint

    trainer = train(merge(tiny_config, {"train": {"iterations": 2, "channels_last": False}}))
    state = load_checkpoint(trainer.run_dir)
    del state["config"]["train"]["channels_last"]
    save_checkpoint(state, trainer.checkpoint_path)
    resumed = resume(trainer.run_dir, {"train": {"iterations": 3}})
    assert resumed.config.train.channels_last is False
    assert all(p.is_contiguous() for p in resumed.family.generator.parameters())


def test_profile_writes_a_chrome_trace_of_the_phases(tiny_config, caplog):
    """--profile 2 on a 4-iteration run: iteration 1 warms up, 2 and 3 are traced, 4 trains unprofiled."""
    with caplog.at_level("INFO", logger="fastgan.profiling"):
        trainer = train(merge(tiny_config, {"output": {"profile_steps": 2}}))
    assert load_checkpoint(trainer.run_dir)["step"] == 4
    traces = list((trainer.run_dir / "profile").glob("*.json"))
    assert [t.name for t in traces] == ["trace_step3.json"]
    assert str(traces[0]) in caplog.text
    events = json.loads(traces[0].read_text())["traceEvents"]
    names = [e.get("name") for e in events]
    for phase in ("iteration", "data", "d_step", "optimizer_d", "g_step", "evaluator", "optimizer_g", "ema"):
        assert names.count(f"fastgan/{phase}") == 2, phase  # once in each traced iteration
    assert "fastgan/checkpoint" in names and "fastgan/samples" in names  # step 2 saves both


def _assert_states_equal(a, b, where="state") -> None:
    """Nested state dicts (tensors, numbers, lists, dicts) equal bit for bit."""
    if isinstance(a, dict):
        assert isinstance(b, dict), where
        assert a.keys() == b.keys(), where
        for key in a:
            _assert_states_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, list | tuple):
        assert type(a) is type(b) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _assert_states_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    else:
        assert a == b, where


def test_resume_continues_exactly(tiny_config, tmp_path):
    """Bit for bit: networks, spectral-norm vectors, batch-norm statistics, the EMA (decay 0.5, so an update in the
    wrong place would show), both optimisers' moments and step counts, the noise generator; two D steps per G step."""
    config = merge(tiny_config, {"train": {"n_dis": 2, "ema_decay": 0.5}})
    straight = train(config)
    half = merge(config, {"train": {"iterations": 2}, "output": {"out_dir": str(tmp_path / "resumed")}})
    train(half)
    resumed = resume(tmp_path / "resumed", {"train": {"iterations": 4}})
    a, b = _metrics(straight.run_dir), _metrics(resumed.run_dir)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b, strict=True):
        for key in ("d_loss", "g_loss", "ms_fake", "d_real"):
            assert ra[key] == rb[key], (ra["step"], key)
    a_state, b_state = straight.family.state_dict(), resumed.family.state_dict()
    assert int(a_state["generator_ema"]["n_averaged"]) == 3  # the EMA was running across the resume
    assert int(a_state["opt_d"]["state"][0]["step"]) == 8 and int(a_state["opt_g"]["state"][0]["step"]) == 4
    _assert_states_equal(a_state, b_state)


def test_each_update_changes_only_its_own_network(tiny_config):
    """The D step moves every D parameter and no G parameter (G's batch-norm statistics may follow its forward); the
    G step moves G, not D, adds nothing to D's gradients and leaves the frozen evaluator untouched."""
    trainer = build_trainer(tiny_config)
    family = trainer.family

    def snapshot(module):
        return {name: p.detach().clone() for name, p in module.named_parameters()}

    def changed(before, module):
        return {name for name, p in module.named_parameters() if not torch.equal(before[name], p)}

    g, d = snapshot(family.generator), snapshot(family.discriminator)
    evaluator = {k: v.clone() for k, v in family.evaluator.state_dict().items()}
    family.discriminator_step(trainer.loader)
    assert not changed(g, family.generator) and changed(d, family.discriminator) == set(d)
    g, d = snapshot(family.generator), snapshot(family.discriminator)
    d_grads = [p.grad.clone() for p in family.discriminator.parameters()]  # the D step's, kept until the next one
    family.generator_step()
    assert not changed(d, family.discriminator) and changed(g, family.generator)
    assert all(torch.equal(a, p.grad) for a, p in zip(d_grads, family.discriminator.parameters(), strict=True))
    assert all(p.requires_grad for p in family.discriminator.parameters())  # unfrozen for the next D step
    _assert_states_equal(evaluator, family.evaluator.state_dict())


def test_an_unreachable_ms_target_is_warned(caplog):
    """The shipped preset's target 7.7·√2 = 10.9 is beyond what a batch of 16 over 10 classes can score (10)."""
    with caplog.at_level("WARNING"):
        warn_if_target_out_of_reach(9.9, num_classes=10, batch_size=128)
    assert not caplog.records
    with caplog.at_level("WARNING"):
        warn_if_target_out_of_reach(10.9, num_classes=10, batch_size=128)
        warn_if_target_out_of_reach(7.7, num_classes=1000, batch_size=4)
    assert [r.getMessage().count("L_MS never reaches 0") for r in caplog.records] == [1, 1]
    assert "over 10 classes can score (10)" in caplog.records[0].getMessage()


@pytest.mark.cuda
@pytest.mark.parametrize("fused", [False, True], ids=["eager", "fused"])
def test_cuda_run_trains_under_bf16_autocast_and_resumes_on_the_cpu(tiny_config, tmp_path, fused):
    """On CUDA (eager, and --fused: the compiled Triton kernels): bf16 autocast, fp32 weights, finite losses; its
    checkpoint continues on the CPU, eager (noise on the CPU)."""
    cuda = train(merge(tiny_config, {"train": {"device": "cuda", "iterations": 2, "fused": fused}}))
    assert all(p.is_cuda and p.dtype == torch.float32 for p in cuda.family.generator.parameters())
    assert all(math.isfinite(r[k]) for r in _metrics(cuda.run_dir) for k in ("d_loss", "g_loss", "ms_fake"))
    resumed = resume(cuda.run_dir, {"train": {"device": "cpu", "iterations": 4, "fused": False}})  # no CPU compile
    assert [r["step"] for r in _metrics(resumed.run_dir)] == [1, 2, 3, 4]
    assert not next(resumed.family.generator.parameters()).is_cuda


def test_the_evaluator_scores_generated_images_in_fp32_under_autocast(tiny_config, monkeypatch):
    """MS_fake in L_MS is compared with MS_real, scored in fp32: under bf16 autocast (CPU autocast standing in for
    CUDA's) the G step still runs the evaluator in fp32, while G and D compute in bf16."""
    from fastgan.train.hrgan_step import HRGANFamily

    trainer = build_trainer(tiny_config)
    family = trainer.family
    monkeypatch.setattr(HRGANFamily, "_autocast", lambda self: torch.autocast("cpu", dtype=torch.bfloat16))
    seen = {}
    for name, network in (("evaluator", family.evaluator), ("generator", family.generator)):
        network.register_forward_hook(lambda module, args, out, name=name: seen.update({name: out.dtype}) and None)
    family.generator_step()
    assert seen == {"evaluator": torch.float32, "generator": torch.bfloat16}


def test_bf16_autocast_only_where_the_gpu_has_native_bf16(monkeypatch, caplog):
    """train.amp trains G and D under bf16 autocast on CUDA GPUs with native bf16; an older one (T4 here, faked) trains
    in fp32 and says why; a CPU never autocasts."""
    from fastgan.train.hrgan_step import bf16_autocast_available

    capabilities = {0: (7, 5), 1: (9, 0)}  # a T4 beside an H100: the training GPU's own capability decides
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device: capabilities[device.index])
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device: "Tesla T4")
    assert bf16_autocast_available(torch.device("cuda", 1), amp=True)
    assert not bf16_autocast_available(torch.device("cuda", 1), amp=False)
    assert not bf16_autocast_available(torch.device("cpu"), amp=True)
    with caplog.at_level("WARNING", logger="fastgan.train.hrgan_step"):
        assert not bf16_autocast_available(torch.device("cuda", 0), amp=True)
    assert "Tesla T4 has no native bf16 (compute capability 7.5 < 8.0); training in fp32" in caplog.text


def test_resume_refuses_another_evaluator(tiny_config, tmp_path):
    import torchvision

    weights = tmp_path / "evaluator.pt"
    shutil.copy(embedded_evaluator_path(), weights)
    train(merge(tiny_config, {"train": {"iterations": 1}, "loss": {"evaluator_weights": str(weights)}}))
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=10).state_dict(), weights)  # same path, new weights
    with pytest.raises(ValueError, match="another evaluator"):
        resume(tiny_config.output.out_dir, {"train": {"iterations": 2}})


def test_resume_refuses_other_classes_or_labels_and_warns_of_other_pixels(tiny_config, caplog):
    train(merge(tiny_config, {"train": {"iterations": 1}}))
    saved = load_checkpoint(tiny_config.output.out_dir)["family"]["data"]
    data = embedded_image_set(200, 0)
    assert saved == data.identity()
    renamed = ImageSet(data.images, data.labels, ("kitten", *data.class_names[1:]), "renamed")
    with pytest.raises(ValueError, match="trained on the classes disc, ring, .*; this run's data has kitten, ring"):
        check_same_data(saved, renamed.identity())
    shuffled = ImageSet(data.images, data.labels.roll(1), data.class_names, "shuffled")
    with pytest.raises(ValueError, match="same classes but other images or another order"):
        check_same_data(saved, shuffled.identity())
    check_same_data(saved, ImageSet(data.images ^ 1, data.labels, data.class_names, "re-decoded").identity())
    assert "pixels differ" in caplog.text
    check_same_data(None, renamed.identity())  # a checkpoint from before the check


def test_non_finite_loss_stops_and_keeps_the_last_good_checkpoint(tiny_config):
    trainer = build_trainer(tiny_config)
    real_step = trainer.family.train_step
    calls = {"n": 0}

    def step_then_nan(loader, step):
        calls["n"] += 1
        metrics = real_step(loader, step)
        return {**metrics, "d_loss": math.nan} if calls["n"] == 3 else metrics

    trainer.family.train_step = step_then_nan
    with pytest.raises(NonFiniteLossError, match="step 3.*untouched"):
        trainer.run()
    assert load_checkpoint(trainer.run_dir)["step"] == 2


def test_non_finite_weights_are_never_checkpointed(tiny_config):
    trainer = build_trainer(tiny_config)
    real_step = trainer.family.train_step

    def step_then_corrupt(loader, step):
        metrics = real_step(loader, step)
        if step == 3:  # finite loss, but the weights went bad before the step-4 checkpoint
            with torch.no_grad():
                next(trainer.family.generator.parameters()).fill_(float("inf"))
        return metrics

    trainer.family.train_step = step_then_corrupt
    with pytest.raises(NonFiniteLossError, match="non-finite weights"):
        trainer.run()
    assert load_checkpoint(trainer.run_dir)["step"] == 2


def _sigterm_during_the_first_step(trainer):
    """Make `trainer` receive SIGTERM while it runs its first step."""
    real_step = trainer.family.train_step

    def step_then_signal(loader, step):
        metrics = real_step(loader, step)
        if step == 0:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    trainer.family.train_step = step_then_signal


def test_sigterm_writes_a_checkpoint_and_stops(tiny_config):
    trainer = build_trainer(tiny_config)
    _sigterm_during_the_first_step(trainer)
    with pytest.raises(TrainingInterrupted, match="--resume"):
        trainer.run()
    assert load_checkpoint(trainer.run_dir)["step"] == 1


@pytest.mark.parametrize("signalled_step", [1, 3])  # a checkpoint step (every 2 of 4), the last one
def test_sigterm_on_a_checkpoint_step_writes_once_and_on_the_last_step_finishes(tiny_config, signalled_step):
    trainer = build_trainer(tiny_config)
    real_step, real_save, saved = trainer.family.train_step, trainer.save, []

    def step_then_signal(loader, step):
        metrics = real_step(loader, step)
        if step == signalled_step:
            os.kill(os.getpid(), signal.SIGTERM)
        return metrics

    def counted_save():
        saved.append(trainer.step)
        return real_save()

    trainer.family.train_step, trainer.save = step_then_signal, counted_save
    if signalled_step == 3:
        trainer.run()  # complete: no "continue with --resume" for a finished run
    else:
        with pytest.raises(TrainingInterrupted, match="at step 2"):
            trainer.run()
    assert saved == [2, 4][: signalled_step // 2 + 1] and load_checkpoint(trainer.run_dir)["step"] == saved[-1]


def test_non_finite_advice_resumes_a_checkpoint_that_exists_to_the_same_step(tmp_path):
    """The command given resumes the run's checkpoint, else the one it resumed, with the rates the run reads and its
    --iterations (a finished run extended by --resume --iterations N holds the shorter count in its checkpoint)."""
    run, source = tmp_path / "run", tmp_path / "source"
    run.mkdir()
    for overrides, rates in (([], ["train.lr_g", "train.lr_d"]), (["model.name=srgan"], ["train.lr_g"])):
        config = load_config(None, [*overrides, "train.iterations=70"])
        assert "No checkpoint written yet: start again" in _recovery(config, run, None)
        resumed = _recovery(config, run, source)
        assert f"the one it resumed, in {source}, is untouched" in resumed
        assert f"--resume {source} --out {run} --iterations 70 --set" in resumed
        (run / "checkpoint.pt").touch()
        advice = _recovery(config, run, source)
        assert (
            f"Last good checkpoint: {run / 'checkpoint.pt'}" in advice and f"--resume {run} --iterations 70" in advice
        )
        assert [setting.split("=")[0] for setting in advice.split("--set ")[1:]] == rates
        resume_config({"config": config.to_dict()}, {"train": dict.fromkeys((r[6:] for r in rates), 1e-5)})
        (run / "checkpoint.pt").unlink()


def test_non_finite_weights_before_any_checkpoint_say_to_start_again(tiny_config):
    trainer = build_trainer(merge(tiny_config, {"output": {"checkpoint_every": 100}}))
    real_step = trainer.family.train_step

    def step_then_corrupt(loader, step):
        metrics = real_step(loader, step)
        if step == 3:  # the last step: its loss was finite, the final checkpoint is the first
            with torch.no_grad():
                next(trainer.family.generator.parameters()).fill_(float("inf"))
        return metrics

    trainer.family.train_step = step_then_corrupt
    with pytest.raises(NonFiniteLossError, match="non-finite weights at step 4 .*No checkpoint written yet"):
        trainer.run()  # once it named a checkpoint to resume that was never written
    assert not trainer.checkpoint_path.exists()


def test_a_run_resumed_into_another_directory_continues_its_own_metrics(tiny_config, tmp_path):
    train(merge(tiny_config, {"train": {"iterations": 2}}))
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "metrics.jsonl").write_text('{"step": 1, "d_loss": 99.0}\n')  # left by a failed, unrelated run
    resumed = resume(tiny_config.output.out_dir, {"train": {"iterations": 4}, "output": {"out_dir": str(elsewhere)}})
    copied, own = _metrics(resumed.run_dir), _metrics(Path(tiny_config.output.out_dir))
    assert [r["step"] for r in copied] == [1, 2, 3, 4] and copied[:2] == own


def test_interrupted_run_resumes_with_the_same_log_averages(tiny_config, tmp_path):
    """The metrics since the last log record travel in the checkpoint: interrupted after step 1 of a 4-step log
    window, the resumed run logs the same step-4 averages as an uninterrupted one."""
    config = merge(tiny_config, {"output": {"log_every": 4}})
    straight = train(merge(config, {"output": {"out_dir": str(tmp_path / "straight")}}))
    trainer = build_trainer(config)
    _sigterm_during_the_first_step(trainer)
    with pytest.raises(TrainingInterrupted):
        trainer.run()
    resumed = resume(trainer.run_dir)
    (a,), (b,) = _metrics(straight.run_dir), _metrics(resumed.run_dir)
    assert a["step"] == b["step"] == 4
    for key in ("d_loss", "g_loss", "ms_fake", "d_real"):
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key


def test_extending_a_finished_run_logs_what_a_longer_run_would(tiny_config, tmp_path):
    """A run's last record, off the log cadence, keeps its window in the checkpoint: extended with --resume
    --iterations, the next record averages the same steps as an uninterrupted run's."""
    config = merge(tiny_config, {"output": {"log_every": 3}})
    straight = train(merge(config, {"output": {"out_dir": str(tmp_path / "straight")}}))
    train(merge(config, {"train": {"iterations": 2}}))
    assert [r["step"] for r in _metrics(resume(config.output.out_dir).run_dir)] == [2]  # nothing to run: kept
    resumed = resume(config.output.out_dir, {"train": {"iterations": 4}})
    a, b = _metrics(straight.run_dir), _metrics(resumed.run_dir)
    assert [r["step"] for r in a] == [r["step"] for r in b] == [3, 4]  # the short run's last record (2) is dropped
    for ra, rb in zip(a, b, strict=True):
        for key in ("d_loss", "g_loss", "ms_fake", "d_real"):
            assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)


def test_a_checkpoint_of_other_networks_is_a_checkpoint_error(tiny_config, tmp_path):
    from fastgan.train.checkpoint import CheckpointError
    from fastgan.train.core import Trainer

    train(merge(tiny_config, {"train": {"iterations": 1}}))
    other = build_trainer(merge(tiny_config, {"model": {"g_channels": 8}, "output": {"out_dir": str(tmp_path / "o")}}))
    with pytest.raises(CheckpointError, match="networks do not match the checkpoint's .*size mismatch"):
        Trainer(other.config, other.family, other.loader, load_checkpoint(tiny_config.output.out_dir))


def test_a_second_signal_stops_at_once_through_the_cleanup(tmp_path):
    """The first SIGINT/SIGTERM asks for a checkpoint; a second raises KeyboardInterrupt where the process is, so an
    atomic write in progress removes its temporary file (the OS default would kill the process mid-write)."""
    from fastgan.atomic import atomic_write
    from fastgan.train.core import _stop_on_signals

    def write_then_signal(file):
        file.write(b"half a checkpoint")
        os.kill(os.getpid(), signal.SIGINT)
        file.write(b" and the rest")

    with _stop_on_signals() as received:
        os.kill(os.getpid(), signal.SIGTERM)
        assert received == [signal.SIGTERM]
        with pytest.raises(KeyboardInterrupt):
            atomic_write(tmp_path / "checkpoint.pt", write_then_signal)
        assert signal.getsignal(signal.SIGINT) is signal.SIG_DFL  # a third signal kills a process stuck in C code
    assert list(tmp_path.iterdir()) == []


def test_an_unwritable_run_directory_or_ms_real_cache_is_refused_before_any_data_is_read(
    tiny_config, tmp_path, monkeypatch
):
    """A cache_dir under a file failed with "[Errno 20] Not a directory ...; choose another --out", blaming --out."""
    monkeypatch.setattr("fastgan.train.run.load_image_set", lambda *args: pytest.fail("data read before the check"))
    (tmp_path / "a-file").write_text("")
    for section, key in (("output", "cache_dir"), ("output", "out_dir")):
        config = merge(tiny_config, {section: {key: str(tmp_path / "a-file" / "x")}})
        with pytest.raises(ConfigError, match=f"output.{key}.*a-file is a file, not a folder; choose another"):
            build_trainer(config)


def test_cli_reports_os_errors_and_a_second_signal_without_traceback(monkeypatch, capsys):
    def no_space(config):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(cli, "train", no_space)
    assert cli.main([]) == 1
    assert "No space left on device; check that path (free space" in capsys.readouterr().err
    monkeypatch.setattr(cli, "train", lambda config: (_ for _ in ()).throw(KeyboardInterrupt()))
    assert cli.main([]) == 130
    assert "stopped at once" in capsys.readouterr().err
    from fastgan.eval.evaluator import EvaluatorWeightsError

    monkeypatch.setattr(cli, "train", lambda config: (_ for _ in ()).throw(EvaluatorWeightsError("no weights at /x")))
    assert cli.main([]) == 2  # a FileNotFoundError of its own kind, not a disk problem
    assert capsys.readouterr().err == "error: no weights at /x\n"


def test_a_run_directory_another_process_trains_in_is_refused(tiny_config):
    trainer = build_trainer(merge(tiny_config, {"train": {"iterations": 1}}))
    (trainer.run_dir / "config.yaml").write_text("the config of the run training there\n")
    with filelock.FileLock(trainer.run_dir / RUN_LOCK):  # another holder of the lock, as another process would be
        with pytest.raises(ConfigError, match="another process is training in"):
            trainer.run()
    assert not trainer.checkpoint_path.exists()
    assert (trainer.run_dir / "config.yaml").read_text() == "the config of the run training there\n"  # not ours
    trainer.run()  # free again
    assert load_checkpoint(trainer.run_dir)["step"] == 1


def test_resume_takes_the_same_evaluator_from_another_path(tiny_config, tmp_path):
    weights = tmp_path / "evaluator.pt"
    shutil.copy(embedded_evaluator_path(), weights)
    train(merge(tiny_config, {"train": {"iterations": 1}, "loss": {"evaluator_weights": str(weights)}}))
    moved = tmp_path / "moved.pt"
    weights.rename(moved)
    killed_write = Path(tiny_config.output.out_dir) / ".checkpoint.k1ll3d.tmp"  # what a SIGKILLed save leaves
    killed_write.write_bytes(b"half a checkpoint")
    resumed = resume(
        tiny_config.output.out_dir, {"train": {"iterations": 2}, "loss": {"evaluator_weights": str(moved)}}
    )
    assert resumed.step == 2 and load_checkpoint(resumed.run_dir)["config"]["loss"]["evaluator_weights"] == str(moved)
    assert not killed_write.exists()


def test_resume_may_lower_learning_rates_but_not_overwrite_another_run(tiny_config, tmp_path):
    run = tiny_config.output.out_dir
    train(merge(tiny_config, {"train": {"iterations": 2}}))
    other = tmp_path / "other"
    train(merge(tiny_config, {"train": {"iterations": 1}, "output": {"out_dir": str(other)}}))
    with pytest.raises(ConfigError, match="holds another run's checkpoint"):
        resume(run, {"train": {"iterations": 3}, "output": {"out_dir": str(other)}})
    assert load_checkpoint(other)["step"] == 1
    with pytest.raises(ConfigError, match="past train.iterations=1"):
        resume(run, {"train": {"iterations": 1}})
    snapshot = Path(run) / "step2.pt"
    shutil.copy(Path(run) / "checkpoint.pt", snapshot)
    resumed = resume(run, {"train": {"iterations": 3, "lr_g": 1e-5, "lr_d": 3e-5}})
    assert [g["lr"] for g in resumed.family.opt_g.param_groups] == [1e-5]
    assert [g["lr"] for g in resumed.family.opt_d.param_groups] == [3e-5]
    assert load_checkpoint(run)["config"]["train"]["lr_g"] == 1e-5
    metrics = (Path(run) / "metrics.jsonl").read_text()
    with pytest.raises(ConfigError, match="step2.pt \\(step 2\\) in .* would overwrite .*checkpoint.pt"):
        resume(snapshot, {"train": {"iterations": 4}})  # once: the step-3 checkpoint and log cut back to step 2
    assert load_checkpoint(run)["step"] == 3 and (Path(run) / "metrics.jsonl").read_text() == metrics


def test_resume_warns_that_edits_to_config_yaml_are_not_read(tiny_config, caplog):
    """A resumed run reads its checkpoint's config: an edited config.yaml was ignored and overwritten unmentioned."""
    import yaml

    run = Path(train(merge(tiny_config, {"train": {"iterations": 2}})).run_dir)
    edited = yaml.safe_load((run / "config.yaml").read_text())
    edited["train"] |= {"iterations": 8, "lr_g": 5e-5}
    edited["model"]["g_widths"] = [16, 16, 16, 16, 8]
    (run / "config.yaml").write_text(yaml.safe_dump(edited))
    with caplog.at_level("WARNING", logger="fastgan.train.run"):
        resume(run, {"train": {"iterations": 3}})
    warning = next(r.getMessage() for r in caplog.records if "config.yaml differs" in r.getMessage())
    assert "in model.g_widths, train.lr_g and" in warning and "train.iterations" not in warning  # --iterations given
    assert "to change train.lr_g, resume with --set train.lr_g=5.0e-05" in warning
    assert "model.g_widths cannot change in a resumed run" in warning
    assert yaml.safe_load((run / "config.yaml").read_text())["train"]["lr_g"] == tiny_config.train.lr_g


def test_existing_run_is_not_overwritten(tiny_config):
    train(tiny_config)
    with pytest.raises(ConfigError, match="--resume"):
        build_trainer(tiny_config)


def test_cli_trains_the_shipped_preset_as_its_flags_say(tmp_path):
    """`main` end to end: the embedded-64 preset at 32×32, shrunk by --set to two 16-channel iterations, trains and
    checkpoints a run of the config its flags asked for, the preset's other values kept."""
    run = tmp_path / "run"
    flags = "--config embedded-64 --model hrgan --resolution 32 --iterations 2 --seed 3 --lambda-ms 0.5 --device cpu"
    tiny = ["model.g_widths=[16, 16, 16, 16]", "model.d_channels=16", "data.num_images=100", "train.batch_size_d=4"]
    tiny += ["train.batch_size_g=4", "output.samples_per_class=1", "output.tensorboard=false"]
    tiny += [f"output.cache_dir={tmp_path / 'cache'}"]
    argv = [*flags.split(), "--evaluator-weights", str(embedded_evaluator_path()), "--out", str(run)]
    assert cli.main([*argv, *(arg for override in tiny for arg in ("--set", override))]) == 0
    checkpoint = load_checkpoint(run)
    model, train_, loss = (checkpoint["config"][section] for section in ("model", "train", "loss"))
    assert checkpoint["step"] == 2 and _metrics(run)[-1]["step"] == 2
    assert (model["name"], model["resolution"], model["g_widths"]) == ("hrgan", 32, (16,) * 4)
    assert (train_["iterations"], train_["seed"], train_["device"]) == (2, 3, "cpu")
    assert (loss["lambda_ms"], loss["evaluator_weights"]) == (0.5, str(embedded_evaluator_path()))
    preset = (train_["lr_d"], train_["ema_decay"], checkpoint["config"]["data"]["source"])
    assert preset == (4e-4, 0.995, "embedded")  # embedded-64's values, not the defaults (2e-4, 0.9999)
    assert Image.open(run / "samples" / "step_0000002.png").size == (1 * (32 + 2) + 2, 10 * (32 + 2) + 2)


def test_cli_reports_bad_input_without_traceback(tmp_path, capsys):
    assert cli.main(["--set", "train.bogus=1", "--out", str(tmp_path / "r")]) == 2
    assert "unknown config key train.bogus" in capsys.readouterr().err
    assert cli.main(["--data", "cifar10", "--data-path", str(tmp_path / "none"), "--out", str(tmp_path / "r")]) == 2
    assert "batches.meta" in capsys.readouterr().err
    assert cli.main(["--resume", str(tmp_path / "nothing")]) == 2
    assert "no checkpoint" in capsys.readouterr().err


def test_layout_rule_keeps_only_pixel_shuffle_networks_nchw_under_fused_cuda(tiny_config):
    """`placed` on CUDA under --fused decides per network: those with pixel-shuffle stages (SRResNet, the LAG
    generator), whose kernel reads NCHW planes, go NCHW; HRGAN's (the CBN kernels have NHWC twins) and the
    discriminators stay channels-last. The move is recorded, not made: no GPU needed."""
    from fastgan.models.hrgan import Generator
    from fastgan.models.srgan import SRDiscriminator, SRResNet
    from fastgan.train.config import load_config
    from fastgan.train.core import placed
    from fastgan.train.lag_step import build_lag

    fused = merge(tiny_config, {"train": {"fused": True}})
    cuda = torch.device("cuda")

    def layout_on(network, config, device):
        moved = []
        network.to = lambda device, memory_format: moved.append(memory_format) or network
        placed(network, device, config)
        return moved[0]

    lag_generator, lag_critic = build_lag(load_config("lag-x4"))
    assert layout_on(Generator(64, 10, 32, 16), fused, cuda) == torch.channels_last
    assert layout_on(SRResNet(2, channels=8, blocks=1), fused, cuda) == torch.contiguous_format
    assert layout_on(lag_generator, fused, cuda) == torch.contiguous_format
    for network in (SRDiscriminator(), lag_critic):  # no fused op inside: channels-last like eager
        assert layout_on(network, fused, cuda) == torch.channels_last
    assert layout_on(SRResNet(2, channels=8, blocks=1), tiny_config, cuda) == torch.channels_last
    assert layout_on(SRResNet(2, channels=8, blocks=1), fused, torch.device("cpu")) == torch.channels_last


def test_a_failed_sample_write_leaves_the_earlier_grid_and_no_partial_file(tiny_config, monkeypatch):
    trainer = build_trainer(tiny_config)
    first = trainer.save_samples()
    before = first.read_bytes()

    def broken(grid, path, **kwargs):
        Path(path).write_bytes(b"\x89PNG partial")
        raise OSError("disk full")

    monkeypatch.setattr("torchvision.utils.save_image", broken)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_samples()
    assert first.read_bytes() == before and sorted(p.name for p in first.parent.iterdir()) == [first.name]
