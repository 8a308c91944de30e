import importlib

import pytest
import torch

from fastgan.eval.standing_stats import standing_statistics
from fastgan.models.hrgan import Generator

cbn_ops = importlib.import_module("fastgan.ops.cbn_relu_upsample")  # the module (the package exports the function)


def test_every_layers_statistics_become_the_mean_of_its_batch_statistics(monkeypatch):
    """Each batch-norm layer (every block's two CBNs and the output BN) ends with the average over the batches of
    the mean and unbiased variance of the input it normalised (captured at the reference op), momenta restored."""
    torch.manual_seed(0)
    generator = Generator(64, num_classes=10, z_dim=8, channels=16).eval()
    generator.out_bn.running_var.fill_(float("nan"))  # a diverged checkpoint's statistics do not survive
    seen: dict[int, list[tuple[torch.Tensor, torch.Tensor]]] = {}
    reference = cbn_ops.cbn_relu_upsample_ref

    def capture(x, gain, bias, running_mean, *args, **kwargs):
        flat = x.detach().double().transpose(0, 1).flatten(1)  # (C, N·H·W)
        seen.setdefault(id(running_mean), []).append((flat.mean(1), flat.var(1, unbiased=True)))
        return reference(x, gain, bias, running_mean, *args, **kwargs)

    monkeypatch.setattr(cbn_ops, "cbn_relu_upsample_ref", capture)
    standing_statistics(generator, batches=3, batch_size=5, seed=7)
    layers = [m for m in generator.modules() if hasattr(m, "running_mean")]
    assert len(layers) == 2 * len(generator.blocks) + 1 and len(seen) == len(layers)
    for layer in layers:
        means, variances = zip(*seen[id(layer.running_mean)], strict=True)
        assert len(means) == 3 and layer.momentum == 0.1
        torch.testing.assert_close(layer.running_mean, torch.stack(means).mean(0).float())
        torch.testing.assert_close(layer.running_var, torch.stack(variances).mean(0).float())
    assert not generator.training


def test_a_failed_estimate_leaves_the_statistics_as_they_were(monkeypatch):
    generator = Generator(32, num_classes=2, z_dim=4, channels=16)
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    calls = []

    def fail_on_the_second_batch(x, *args, **kwargs):
        calls.append(1)
        if len(calls) > 2 * len(generator.blocks) + 1:
            raise KeyboardInterrupt
        return reference(x, *args, **kwargs)

    reference = cbn_ops.cbn_relu_upsample_ref
    monkeypatch.setattr(cbn_ops, "cbn_relu_upsample_ref", fail_on_the_second_batch)
    with pytest.raises(KeyboardInterrupt):
        standing_statistics(generator, batches=3, batch_size=4)
    after = generator.state_dict()
    assert all(torch.equal(after[k], before[k]) for k in before) and not generator.training
    assert all(m.momentum == 0.1 for m in generator.modules() if hasattr(m, "running_mean"))


def test_bad_batch_counts_are_refused():
    generator = Generator(32, num_classes=2, z_dim=4, channels=16)
    with pytest.raises(ValueError, match="batches ≥ 1 of ≥ 2 samples"):
        standing_statistics(generator, batches=0, batch_size=8)
