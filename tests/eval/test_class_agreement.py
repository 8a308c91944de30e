import pytest
import torch

from fastgan.data.procedural import CLASS_NAMES, render, sample_scenes
from fastgan.eval import class_agreement as ca
from fastgan.eval.evaluator import embedded_evaluator_path, load_evaluator
from fastgan.eval.trained_generator import class_names, generator_from_checkpoint
from fastgan.train.checkpoint import load_checkpoint
from fastgan.train.run import train


class RenderingGenerator(torch.nn.Module):
    """A perfect 'generator': renders a random scene of the requested class (or of the next class)."""

    num_classes, z_dim = 10, 4

    def __init__(self, shift: int = 0):
        super().__init__()
        self.shift = shift

    def forward(self, z, y):
        scenes = sample_scenes(500, seed=int(z[0, 0].abs() * 1e6))  # 50 per class
        want = (y + self.shift) % self.num_classes
        pick = torch.stack([(scenes.labels == c).nonzero()[i % 50, 0] for i, c in enumerate(want.tolist())])
        images = render(scenes, 64)[pick]
        return images * 2 - 1


def test_agreement_is_high_for_the_right_class_and_low_for_the_wrong_one():
    evaluator = load_evaluator(embedded_evaluator_path())
    right = ca.class_agreement(RenderingGenerator(), evaluator, per_class=10, batch_size=50)
    wrong = ca.class_agreement(RenderingGenerator(shift=1), evaluator, per_class=10, batch_size=50)
    assert right.shape == (10,) and right.mean() > 0.9
    assert wrong.mean() < 0.1
    with pytest.raises(ValueError, match="--per-class"):
        ca.class_agreement(RenderingGenerator(), evaluator, per_class=0)


def test_generator_and_evaluator_each_get_inputs_on_their_own_device():
    """A generator on another device than the evaluator (e.g. an EMA copy on cuda:1 scored by a CPU evaluator) gets
    z and y on its device, and the evaluator its images on its own."""

    class Elsewhere(RenderingGenerator):
        def __init__(self):
            super().__init__()
            self.anchor = torch.nn.Parameter(torch.empty(1, device="meta"))
            self.seen = []

        def forward(self, z, y):
            self.seen.append((z.device.type, y.device.type))
            return super().forward(torch.ones(z.shape), torch.arange(len(y)) % self.num_classes)

    generator = Elsewhere()
    ca.class_agreement(generator, load_evaluator(embedded_evaluator_path()), per_class=2, batch_size=20)
    assert generator.seen == [("meta", "meta")]


def test_cli_reads_a_run_and_reports_per_class_scores(tiny_config, capsys):
    run = train(tiny_config).run_dir
    generator, config = generator_from_checkpoint(run)
    assert not generator.training and config.model.resolution == 64
    assert ca.main([str(run), "--per-class", "3"]) == 0
    out = capsys.readouterr().out
    assert "star" in out and "chance 0.100" in out


def test_mismatched_evaluator_is_refused(tmp_path):
    import torchvision

    path = tmp_path / "imagenet.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    with pytest.raises(ValueError, match="1000 classes"):
        ca.class_agreement(RenderingGenerator(), load_evaluator(path), per_class=1)


def test_live_weights_are_the_networks_not_its_average(tiny_config, capsys):
    """--weights live evaluates the trained network itself (the paper keeps no EMA), not the EMA fastgan samples."""
    run = train(tiny_config).run_dir
    family = load_checkpoint(run)["family"]
    ema, _ = generator_from_checkpoint(run)
    live, _ = generator_from_checkpoint(run, "live")
    for name, tensor in live.state_dict().items():
        assert torch.equal(tensor, family["generator"][name]), name
    pairs = zip(ema.state_dict().values(), live.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)
    with pytest.raises(ValueError, match="ema or live"):
        generator_from_checkpoint(run, "best")
    assert ca.main([str(run), "--per-class", "2", "--weights", "live"]) == 0
    assert "chance 0.100" in capsys.readouterr().out
    standing, _ = generator_from_checkpoint(run, "live", standing_batches=2)
    assert not torch.equal(standing.out_bn.running_var, live.out_bn.running_var)  # re-estimated, weights kept
    assert torch.equal(standing.out_conv.weight, live.out_conv.weight)
    assert ca.main([str(run), "--per-class", "2", "--standing-stats", "2"]) == 0
    assert ca.main([str(run), "--standing-stats", "-1"]) == 2


def test_class_names_come_from_the_checkpoints_data_identity():
    state = {"family": {"data": {"classes": "cat\ndog\nfrog"}}, "config": {"data": {"source": "folder"}}}
    assert class_names(state, 3) == ["cat", "dog", "frog"]
    older = {"family": {}, "config": {"data": {"source": "cifar10"}}}  # a checkpoint of an older version
    assert class_names(older, 2) == ["0", "1"]
    assert class_names(older | {"config": {"data": {"source": "embedded"}}}, 10) == list(CLASS_NAMES)
