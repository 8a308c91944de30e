"""WeightEMA: AveragedModel's EMA arithmetic and checkpoint keys, with no host↔device transfer per update."""

import pytest
import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from fastgan.train.ema import WeightEMA


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 4, 3)), nn.BatchNorm2d(4), nn.ReLU())


def _train(model: nn.Module) -> None:
    """One step that changes parameters and buffers (BatchNorm statistics, spectral norm's u and v)."""
    model.train()
    loss = model(torch.randn(2, 3, 6, 6)).square().mean()
    loss.backward()
    with torch.no_grad():
        for p in model.parameters():
            p -= 0.1 * p.grad
            p.grad = None


def test_weight_ema_averages_as_averaged_model_and_keeps_its_checkpoint_keys():
    model = _model()
    ours = WeightEMA(model, 0.9)
    theirs = AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(0.9), use_buffers=True)
    for _ in range(4):
        _train(model)
        ours.update_parameters(model)
        theirs.update_parameters(model)
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert list(mine) == list(reference) and int(mine["n_averaged"]) == 4
    for key, value in reference.items():
        if value.is_floating_point():
            torch.testing.assert_close(mine[key], value, msg=key)
    assert int(mine["module.1.num_batches_tracked"]) == int(model[1].num_batches_tracked)  # integers: the live value
    restored = WeightEMA(_model(), decay=0.0)
    restored.load_state_dict(reference)  # checkpoints written with AveragedModel load
    assert torch.equal(
        restored.module[0].parametrizations.weight.original, theirs.module[0].parametrizations.weight.original
    )


def test_the_first_update_copies_and_decay_is_checked():
    model = _model()
    ema = WeightEMA(model, 0.999)
    _train(model)
    ema.update_parameters(model)
    for mine, live in zip(ema.module.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(mine, live)
    with pytest.raises(ValueError, match=r"decay must lie in \[0, 1\)"):
        WeightEMA(model, 1.0)


def test_updates_move_no_tensor_between_devices(monkeypatch):
    """AveragedModel copied its CPU step counter to the parameters' device on every update: on a GPU a blocking copy,
    which makes the host wait for the whole training step before it can queue the EMA."""
    model, moved = _model(), []
    ema = WeightEMA(model, 0.9)
    to = torch.Tensor.to
    monkeypatch.setattr(torch.Tensor, "to", lambda tensor, *a, **k: moved.append((a, k)) or to(tensor, *a, **k))
    for _ in range(2):
        _train(model)
        ema.update_parameters(model)
    assert moved == []
