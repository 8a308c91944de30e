import pytest
import torch

from fastgan.eval.standing_stats import standing_statistics
from fastgan.models.hrgan import Generator


def test_running_statistics_become_the_mean_of_the_batch_statistics():
    """The first CBN normalises the 4×4 projection of z, which no other statistic affects: its standing mean and
    variance are the averages of those batches' own (unbiased) statistics, for the same draws of z and y."""
    torch.manual_seed(0)
    generator = Generator(64, num_classes=10, z_dim=8, channels=16).eval()
    before = {k: v.clone() for k, v in generator.state_dict().items()}
    standing_statistics(generator, batches=3, batch_size=5, seed=7)
    noise, means, variances = torch.Generator().manual_seed(7), [], []
    with torch.no_grad():
        for _ in range(3):
            z = torch.randn(5, 8, generator=noise)
            torch.randint(10, (5,), generator=noise)  # the labels drawn with each batch
            x = generator.project(z).view(5, -1, 4, 4)
            means.append(x.mean(dim=(0, 2, 3)))
            variances.append(x.var(dim=(0, 2, 3), unbiased=True))
    first = generator.blocks[0].bn1
    torch.testing.assert_close(first.running_mean, torch.stack(means).mean(0))
    torch.testing.assert_close(first.running_var, torch.stack(variances).mean(0))
    assert not generator.training and first.momentum == 0.1 and generator.out_bn.momentum == 0.1
    after = generator.state_dict()
    changed = {k for k in after if not torch.equal(after[k], before[k])}
    assert changed and all(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in changed)


def test_bad_batch_counts_are_refused():
    generator = Generator(32, num_classes=2, z_dim=4, channels=16)
    with pytest.raises(ValueError, match="batches ≥ 1 of ≥ 2 samples"):
        standing_statistics(generator, batches=0, batch_size=8)
