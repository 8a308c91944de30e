"""Generator evaluation: the FID Inception's architecture and weight errors, sheets, and the fidelity experiment
and table on tiny runs (scores finite, deterministic under a seed, baselines present)."""

import logging
import types

import pytest
import torch
import torchvision

from fastgan.data.image_set import ImageSet
from fastgan.eval import __main__ as eval_cli
from fastgan.eval.generator_eval import TooFewSamplesError, as_saved, extract, intra_class_fid
from fastgan.eval.hrgan_report import _real_batches, evaluate_run, markdown
from fastgan.eval.inception import InceptionFeatures, InceptionWeightsError, fid_inception_network, load_inception
from fastgan.eval.precision import PER_OPERATOR, exact_fp32
from fastgan.eval.sheets import slerp
from fastgan.train.config import merge
from fastgan.train.run import train


def _fp32_settings():
    """The per-operator float32 settings exact_fp32 controls: CUDA and oneDNN matrix products, cuDNN and oneDNN
    convolutions, cuDNN RNNs."""
    return [getattr(getattr(torch.backends, backend), operator) for backend, operator in PER_OPERATOR]


def _effective_fp32(operators=PER_OPERATOR):
    """What each of those settings resolves to: its own value, else its backend's, else torch's, else IEEE."""
    resolved = set()
    for backend, operator in operators:
        chain = (getattr(getattr(torch.backends, backend), operator), getattr(torch.backends, backend), torch.backends)
        values = [level.fp32_precision for level in chain if hasattr(level, "fp32_precision")]
        resolved.add(next((value for value in values if value != "none"), "ieee"))
    return resolved


def test_features_are_extracted_in_true_fp32_whatever_the_caller_runs_under():
    """No autocast (a caller's bf16 autocast gave bf16 Inception features, 1.8 % off) and no TF32 (PyTorch's default
    for cuDNN convolutions, the caller's for matrix products); both restored after."""
    seen = []

    def extractor(images):  # TorchInductor reads the legacy flags: they must still read inside
        legacy = torch.get_float32_matmul_precision(), torch.backends.cudnn.allow_tf32
        seen.append((torch.is_autocast_enabled("cpu"), legacy))
        features = torch.nn.functional.linear(images.flatten(1), torch.ones(2, 12))
        return features, features

    torch.set_float32_matmul_precision("high")  # a caller's TF32 matrix products
    try:
        before = [setting.fp32_precision for setting in _fp32_settings()]
        with torch.autocast("cpu", dtype=torch.bfloat16):
            features, _ = extract([torch.rand(3, 3, 2, 2)], {"probe": extractor})["probe"]
        assert torch.get_float32_matmul_precision() == "high"  # restored, every setting as it was:
        assert [setting.fp32_precision for setting in _fp32_settings()] == before  # the next call takes this path
    finally:
        torch.set_float32_matmul_precision("highest")
    assert seen == [(False, ("highest", False))] and features.dtype == torch.float32
    assert torch.backends.cudnn.allow_tf32  # PyTorch's default, restored


@pytest.mark.parametrize(
    "caller",
    [
        ("fp32_precision", None, "tf32"),  # torch.backends.fp32_precision: every operator
        ("cudnn", "conv", "tf32"),
        ("cuda", "matmul", "tf32"),
        ("mkldnn", "matmul", "bf16"),
        ("mkldnn", "conv", "tf32"),
        ("mkldnn", "rnn", "bf16"),
    ],
    ids=["everything", "cudnn-conv", "cuda-matmul", "mkldnn-matmul", "mkldnn-conv", "mkldnn-rnn"],
)
def test_exact_fp32_works_beside_the_per_operator_tf32_api(caller):
    """After a caller sets TF32 (or oneDNN's bf16) through torch ≥ 2.9's per-operator API, the legacy API raises or
    no longer reaches every operator; the context still runs each in IEEE fp32 and restores the caller's settings."""
    settings = _fp32_settings()
    saved = [setting.fp32_precision for setting in settings], torch.backends.fp32_precision
    backend, operator, value = caller
    if operator is None:
        torch.backends.fp32_precision = value
    else:
        getattr(getattr(torch.backends, backend), operator).fp32_precision = value
    try:
        before = [setting.fp32_precision for setting in settings]
        assert _effective_fp32() != {"ieee"}
        with exact_fp32("cpu"):
            inside = _effective_fp32() | _effective_fp32([(backend, operator)] if operator else [])
        assert inside == {"ieee"} and [setting.fp32_precision for setting in settings] == before  # the caller's too
    finally:
        for setting, value in zip(settings, saved[0], strict=True):
            setting.fp32_precision = value
        torch.backends.fp32_precision = saved[1]


def _average_without_padding(x):
    return torch.nn.functional.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)


#: The port's pool branches (pytorch-fid's FIDInception blocks): padding left out of the averages, max in Mixed_7c.
FID_POOLS = {
    **dict.fromkeys(["Mixed_5b", "Mixed_5c", "Mixed_5d"], _average_without_padding),
    **dict.fromkeys(["Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"], _average_without_padding),
    "Mixed_7b": _average_without_padding,
    "Mixed_7c": lambda x: torch.nn.functional.max_pool2d(x, kernel_size=3, stride=1, padding=1),
}


@torch.no_grad()
def test_fid_inception_differs_from_torchvision_only_in_its_pooling(tmp_path):
    """With one random state dict in both: every Mixed block is torchvision's with its pool branch pooled as the port
    pools it (which changes the block's output), every other layer torchvision's; images resized to 299×299
    bilinearly, pool3 the 8×8 mean, the logits pool3 times the final layer's weights without its bias."""
    torch.manual_seed(0)
    images = torch.rand(1, 3, 75, 75) * 2 - 1
    resized = torch.nn.functional.interpolate(images, size=(299, 299), mode="bilinear", align_corners=False)
    fid = fid_inception_network().train()
    for module in fid.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.momentum = None  # running statistics: the mean of the batches seen
            module.weight.uniform_(0.5, 1.5)
    fid(resized)  # normalised by these images' statistics: no activation decays into slow subnormal floats
    fid.eval().fc.bias.fill_(1.0)  # left out of the logits
    plain = torchvision.models.Inception3(num_classes=1008, aux_logits=False, init_weights=False).eval()
    assert fid.state_dict().keys() == plain.state_dict().keys()  # the same parameters, torchvision's names
    plain.load_state_dict(fid.state_dict())
    x, changed = resized, []
    for name, layer in plain.named_children():
        if name == "avgpool":
            break
        if name in FID_POOLS:
            branches = layer._forward(x)  # torchvision's, its pool branch averaging zero padding in
            torchvision_out = torch.cat(branches, 1)
            branches[-1] = layer.branch_pool(FID_POOLS[name](x))
            expected = torch.cat(branches, 1)
            torch.testing.assert_close(getattr(fid, name)(x), expected, msg=name)
            if not torch.allclose(torchvision_out, expected):
                changed.append(name)
            x = expected
        else:
            x = layer(x)
    assert changed == list(FID_POOLS)  # every Mixed block's pooling matters, so a wrong one would show
    pool, logits = InceptionFeatures(fid)(images)
    torch.testing.assert_close(pool, x.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, pool @ plain.fc.weight.T)
    torch.save(fid.state_dict(), tmp_path / "w.pth")
    torch.testing.assert_close(load_inception(tmp_path / "w.pth")(images)[0], pool)


def test_missing_or_foreign_inception_weights_say_where_to_put_them(tmp_path):
    with pytest.raises(InceptionWeightsError, match="pt_inception-2015-12-05-6726825d.pth"):
        load_inception(tmp_path / "missing.pth")
    torch.save({"fc.weight": torch.zeros(3)}, tmp_path / "foreign.pth")
    with pytest.raises(InceptionWeightsError, match="not the FID InceptionV3"):
        load_inception(tmp_path / "foreign.pth")


def _angle(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    return torch.arccos((u @ v / (u.norm() * v.norm())).clamp(-1, 1))


def test_slerp_keeps_the_endpoints_and_walks_the_great_circle_at_constant_speed():
    """Endpoints kept; between endpoints of one norm every point keeps that norm (a straight line cuts inside the
    shell) and lies at t·Ω from a and (1 − t)·Ω from b, Ω the angle between them. fp64: arccos is exact enough."""
    a, b = torch.randn(2, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    t = torch.linspace(0, 1, 5, dtype=torch.float64)
    path = slerp(a, b, t)
    torch.testing.assert_close(path[0], a)
    torch.testing.assert_close(path[-1], b)
    b = b * a.norm() / b.norm()
    path, omega = slerp(a, b, t), _angle(a, b)
    assert 0.5 < omega < 2.5  # far from the straight-line fallback of (anti)parallel endpoints
    torch.testing.assert_close(path.norm(dim=1), a.norm().expand(5))
    torch.testing.assert_close(torch.stack([_angle(p, a) for p in path]), t * omega)
    torch.testing.assert_close(torch.stack([_angle(p, b) for p in path]), (1 - t) * omega)


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two tiny finished embedded runs: HRGAN-32 with L_MS, HRGAN-64 without."""
    from fastgan.train.config import Config

    runs = []
    for resolution, lambda_ms in ((32, 1.0), (64, 0.0)):
        out = tmp_path_factory.mktemp("hrgan") / f"r{resolution}"
        config = merge(
            Config(),
            {
                "model": {"resolution": resolution, "g_channels": 16, "d_channels": 16, "z_dim": 32},
                "data": {"num_images": 200},
                "loss": {"lambda_ms": lambda_ms},
                "train": {"iterations": 2, "batch_size_d": 8, "batch_size_g": 8, "ema_start": 1, "device": "cpu"},
                "output": {
                    "out_dir": str(out),
                    "checkpoint_every": 2,
                    "sample_every": 2,
                    "tensorboard": False,
                    "cache_dir": str(tmp_path_factory.mktemp("cache")),
                },
            },
        )
        train(config)
        runs.append(out)
    return runs


def test_fidelity_experiment_scores_runs_and_the_bicubic_baseline(tiny_runs):
    rows = evaluate_run(tiny_runs[0], samples=40, splits=2, batch_size=20)
    assert [r["model"] for r in rows] == ["HRGAN-32", "HRGAN-32 + bicubic ×2", "HRGAN-32 + bicubic ×4"]
    assert [r["resolution"] for r in rows] == [32, 64, 128]
    for row in rows:
        for key in ("ms", "fid_evaluator", "intra_fid_evaluator", "precision_evaluator", "hr_fid", "hr_accuracy"):
            assert torch.isfinite(torch.tensor(row[key])), key
        assert 1 <= row["ms"] <= 10 and row["truth_accuracy"] > 0.9  # the shipped evaluator knows true renders
    assert evaluate_run(tiny_runs[0], samples=40, splits=2, batch_size=20) == rows  # deterministic under a seed
    assert evaluate_run(tiny_runs[0], samples=40, splits=2, batch_size=20, seed=1)[0]["ms"] != rows[0]["ms"]


def test_runs_on_the_same_data_share_their_real_features(tiny_runs, monkeypatch):
    """A table of several runs on one data set featurises its real images once, with the same scores."""
    from fastgan.eval import hrgan_report

    drawn, real_batches = [], hrgan_report._real_batches
    monkeypatch.setattr(hrgan_report, "_real_batches", lambda *args: drawn.append(args[1:]) or real_batches(*args))
    cache = {}
    alone = evaluate_run(tiny_runs[1], samples=40, splits=2, batch_size=20)
    shared = [evaluate_run(run, samples=40, splits=2, batch_size=20, cache=cache) for run in tiny_runs]
    assert shared[1] == alone and len(drawn) == 2  # one draw for `alone`, one for both runs of the table
    evaluate_run(tiny_runs[0], samples=40, splits=2, batch_size=20, cache=cache, seed=1)
    assert len(drawn) == 3  # another draw of real images


def test_samples_are_scored_as_8_bit_images_and_accuracy_needs_the_generators_classes(tiny_runs, tmp_path, caplog):
    """Generated images are rounded to 8 bits as saved files are (real ones are 8-bit); an evaluator of other
    classes (an ImageNet MobileNet beside a 10-class generator) gives no accuracy, only scores that stay valid."""
    from fastgan.eval.generator_eval import generated_batches
    from fastgan.eval.trained_generator import generator_from_checkpoint

    generator, _ = generator_from_checkpoint(tiny_runs[0])
    (images,) = generated_batches(generator, torch.arange(20) % 10, batch_size=20)
    levels = (images + 1) * 127.5
    assert torch.allclose(levels, levels.round(), atol=1e-4) and images.min() >= -1 and images.max() <= 1
    expected = torch.tensor([-1.0, -1.0, 128 / 127.5 - 1, 1.0, 1.0])  # 0 is level 127.5, rounded to 128
    torch.testing.assert_close(as_saved(torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0])), expected)
    imagenet = tmp_path / "imagenet_mobilenet.pt"
    torch.save(torchvision.models.mobilenet_v3_small(num_classes=1000).state_dict(), imagenet)
    with caplog.at_level("WARNING"):
        (row, *_) = evaluate_run(tiny_runs[0], samples=40, splits=2, batch_size=20, evaluator_weights=imagenet)
    assert "evaluator knows 1000 classes, the generator 10" in caplog.text
    assert "FID in the evaluator space from 40 samples, no more than its 576 dimensions" in caplog.text
    assert not {"accuracy", "hr_accuracy", "truth_accuracy"} & set(row) and "fid_evaluator" in row and "hr_fid" in row


def test_table_cli_writes_the_papers_layout_and_sheets(tiny_runs, tmp_path, capsys):
    out = tmp_path / "table.md"
    args = ["table", *map(str, tiny_runs), "--samples", "40", "--splits", "2", "--batch-size", "20", "--out", str(out)]
    assert eval_cli.main(args) == 0
    text = out.read_text()
    assert "| HRGAN-64 | w/o |" in text and "| HRGAN-32 | with |" in text
    assert "| model | MobileNet score without L_MS | MobileNet score with L_MS | improvement |" in text
    assert out.with_suffix(".json").is_file()
    assert eval_cli.main([*args[:-1], str(tmp_path / "live.md"), "--weights", "live"]) == 0
    assert "| HRGAN-64 (live G) | w/o |" in (tmp_path / "live.md").read_text()
    assert eval_cli.main(["sheets", "--checkpoint", str(tiny_runs[1]), "--out", str(tmp_path / "sheets")]) == 0
    assert (tmp_path / "sheets" / "class_sheet.png").stat().st_size > 1000
    assert (tmp_path / "sheets" / "interpolation.png").stat().st_size > 1000
    assert eval_cli.main(["table", str(tiny_runs[0]), "--inception-weights", str(tmp_path / "nope.pth")]) == 2
    assert "pt_inception" in capsys.readouterr().err


def test_table_out_takes_a_folder_or_either_suffix_and_is_checked_before_scoring(tiny_runs, tmp_path, capsys, caplog):
    """An existing folder got IsADirectoryError after the scoring and `--out t.json` overwrote the table with the
    scores; an --out under a file is refused before anything is scored. Too few samples per class for intra-FID
    (10 over 10 classes) leave that column empty instead of aborting after every other score."""
    folder = tmp_path / "tables"
    folder.mkdir()
    args = ["table", str(tiny_runs[1]), "--samples", "10", "--splits", "2", "--batch-size", "20"]
    with caplog.at_level("WARNING"):
        assert eval_cli.main([*args, "--out", str(folder)]) == 0
    assert "no intra-class FID in the evaluator space" in caplog.text
    printed = capsys.readouterr().out
    table = (folder / "hrgan_table.md").read_text()
    assert table in printed and "| HRGAN-64 | w/o |" in table
    assert "intra_fid_evaluator" not in (folder / "hrgan_table.json").read_text()
    assert eval_cli.main([*args, "--out", str(tmp_path / "scores.json")]) == 0
    assert (tmp_path / "scores.md").read_text() == table and (tmp_path / "scores.json").read_text().startswith("[")
    assert eval_cli.main([*args, "--out", f"{tmp_path / 'new'}/"]) == 0
    assert (tmp_path / "new" / "hrgan_table.md").read_text() == table
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([*args, "--out", str(tmp_path / "a-file" / "t.md")])
    assert exit_info.value.code == 2 and "a-file is a file, not a folder" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["sr", "spread", "sheets"])
def test_an_unwritable_out_is_refused_before_the_checkpoint_is_read(tmp_path, capsys, command):
    """`sr` and `spread` evaluated everything, then failed on an --out under a file with a traceback; the check
    comes first now (the checkpoint named here does not even exist)."""
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as exit_info:
        eval_cli.main([command, "--checkpoint", str(tmp_path / "no-run"), "--out", str(tmp_path / "a-file" / "e")])
    assert exit_info.value.code == 2 and "a-file is a file, not a folder" in capsys.readouterr().err


def test_samples_do_not_depend_on_the_batch_size():
    """z is drawn for all samples at once: drawn per batch, batches of 3 × 5 latents gave other numbers than one
    draw of 10 × 5 (torch's normal sampler works in blocks of 16), and so other scores per --batch-size."""
    from fastgan.eval.generator_eval import generated_batches, seeded_noise

    class Echo(torch.nn.Module):
        z_dim = 5

        def __init__(self):
            super().__init__()
            self.gain = torch.nn.Parameter(torch.tensor(0.25))

        def forward(self, z, y):  # (B, 5) -> (B, 3, 5, 5)
            return (self.gain * z).view(len(z), 1, 1, 5).expand(-1, 3, 5, 5)

    labels = torch.arange(10)
    by_size = {size: torch.cat(list(generated_batches(Echo(), labels, seed=3, batch_size=size))) for size in (3, 10)}
    assert torch.equal(by_size[3], by_size[10])
    assert torch.equal(by_size[10][:, 0, 0], as_saved(0.25 * seeded_noise(10, 5, seed=3)))


def test_the_runs_own_evaluator_named_by_path_brings_no_class_order_warning(tiny_runs, caplog):
    from fastgan.eval.evaluator import embedded_evaluator_path

    with caplog.at_level("WARNING"):
        own = str(embedded_evaluator_path())
        evaluate_run(tiny_runs[1], samples=40, splits=2, batch_size=20, evaluator_weights=own)
    assert "assumes its classes" not in caplog.text


def test_real_images_are_a_seeded_draw_across_a_class_sorted_set(monkeypatch, caplog):
    """A class folder is stored class by class: its first 30 images would be three classes; a draw covers them."""
    labels = torch.arange(10).repeat_interleave(10)
    images = labels.to(torch.uint8).view(-1, 1, 1, 1).expand(100, 3, 32, 32).contiguous()  # pixel value = label
    names = tuple(f"c{i}" for i in range(10))
    monkeypatch.setattr("fastgan.train.run.load_image_set", lambda data: ImageSet(images, labels, names, "sorted"))
    run = types.SimpleNamespace(data=None)  # the run config: only its data section is passed on
    batches, drawn = _real_batches(run, 30, 8, seed=0)
    assert len(drawn) == 30 and len(drawn.unique()) >= 8
    pixels = torch.cat(list(batches))[:, 0, 0, 0]
    assert torch.equal(((pixels + 1) * 127.5).round().long(), drawn)  # images and labels stay paired
    assert torch.equal(_real_batches(run, 30, 8, seed=0)[1], drawn)
    assert not torch.equal(_real_batches(run, 30, 8, seed=1)[1], drawn)
    assert len(_real_batches(run, 500, 8, seed=0)[1]) == 100 and "scoring against all of them" in caplog.text


def test_intra_class_fid_skips_classes_without_two_samples(caplog):
    generator = torch.Generator().manual_seed(0)
    features = torch.randn(7, 3, generator=generator)
    real = features, torch.tensor([0, 0, 0, 1, 1, 1, 2])  # class 2 has one real sample
    fake = features + 0.1, torch.tensor([0, 0, 0, 1, 1, 1, 2])
    only_two = intra_class_fid((real[0][:6], real[1][:6]), (fake[0][:6], fake[1][:6]))
    assert intra_class_fid(real, fake) == pytest.approx(only_two) and "over 2 of 3 classes" in caplog.text
    with pytest.raises(TooFewSamplesError, match="--samples"):
        intra_class_fid((features[:2], torch.tensor([0, 1])), (features[:2], torch.tensor([0, 1])))


def test_generator_commands_refuse_other_families_and_bad_counts(tiny_lag_run, capsys):
    assert eval_cli.main(["sheets", "--checkpoint", str(tiny_lag_run)]) == 2
    assert "is a lag run, not an HRGAN one" in capsys.readouterr().err
    assert eval_cli.main(["table", str(tiny_lag_run), "--samples", "100"]) == 2
    for bad in (["--samples", "0"], ["--batch-size", "-1"], ["--samples", "5", "--splits", "10"]):
        with pytest.raises(SystemExit) as exit_info:
            eval_cli.main(["table", str(tiny_lag_run), *bad])
        assert exit_info.value.code == 2
    assert "must be a positive integer" in capsys.readouterr().err


def test_markdown_improvement_column():
    rows = [
        {"model": "HRGAN-64", "resolution": 64, "lambda_ms": lam, "ms": ms, "ms_std": 0.1, "hr_fid": fid}
        for lam, ms, fid in ((0.0, 5.0, 30.0), (1.0, 6.5, 20.0))
    ]
    text = markdown(rows)
    assert "| HRGAN-64 | 5.00 ± 0.10 | 6.50 ± 0.10 | +1.50 |" in text
    assert "| HRGAN-64 | 30.00 | 20.00 | +10.00 |" in text  # lower HR-FID is better


def test_markdown_pairs_runs_on_the_same_data_and_shows_each_lambda():
    """Runs on other data are not compared; several λ_MS > 0 runs each get a line against the run without."""
    rows = [
        {"run": run, "data": data, "model": "HRGAN-64", "resolution": 64, "lambda_ms": lam, "ms": ms}
        for run, data, lam, ms in (("a", "cifar10", 0.0, 5.0), ("b", "embedded", 1.0, 8.0), ("c", "embedded", 2.0, 9.0))
    ]
    rows.append(rows[1] | {"run": "d", "lambda_ms": 0.0, "ms": 7.0})
    text = markdown(rows)
    assert "| HRGAN-64 (cifar10) | 5.00 | – | – |" in text and "| HRGAN-64 (cifar10) | w/o | 5.00 |" in text
    assert "| HRGAN-64 (embedded) λ_MS = 1 | 7.00 | 8.00 | +1.00 |" in text
    assert "| HRGAN-64 (embedded) λ_MS = 2 | 7.00 | 9.00 | +2.00 |" in text


def test_eval_options_that_cannot_work_are_refused_or_named(tiny_lag_run, capsys, caplog):
    """Too few samples for precision/recall or for a spread are refused before anything is drawn; --tile without
    --onnx is named as unused."""
    for bad in (
        ["table", str(tiny_lag_run), "--samples", "3", "--splits", "1"],
        ["spread", "--checkpoint", "x", "--samples", "1"],
    ):
        with pytest.raises(SystemExit) as exit_info:
            eval_cli.main(bad)
        assert exit_info.value.code == 2
    errors = capsys.readouterr().err
    assert "more than the 3 nearest neighbours" in errors and "--samples must be at least 2" in errors
    with caplog.at_level(logging.WARNING):
        eval_cli.main(["sr", "--checkpoint", str(tiny_lag_run / "missing"), "--tile", "64"])
    assert "--tile applies to the --onnx files" in caplog.text
