import pytest
import torch
import torchvision

from fastgan.data.procedural import render, sample_scenes
from fastgan.data.sources import embedded_image_set
from fastgan.eval import real_score
from fastgan.eval.evaluator import EvaluatorWeightsError, embedded_evaluator_path, load_evaluator
from fastgan.ops import mobilenet_score


@pytest.fixture(scope="module")
def shipped():
    return load_evaluator(embedded_evaluator_path())


def test_shipped_evaluator_classifies_unseen_high_resolution_renders(shipped):
    scenes = sample_scenes(300, seed=987_654)  # seeds the evaluator never trained on
    images = render(scenes, 64) * 2 - 1
    with torch.no_grad():
        accuracy = (shipped(images).argmax(1) == scenes.labels).float().mean().item()
    assert accuracy > 0.9
    payload = torch.load(embedded_evaluator_path(), weights_only=True)
    assert payload["heldout_accuracy"] > 0.9 and payload["resolution"] == 64


def test_evaluator_is_frozen_but_passes_gradients_to_its_input(shipped):
    shipped.train()
    assert not shipped.training and not shipped.network.training
    assert all(not p.requires_grad for p in shipped.parameters())
    x = (torch.rand(2, 3, 128, 128) * 2 - 1).requires_grad_()  # any resolution is mapped to the evaluator's
    mobilenet_score(shipped(x)).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0


def test_torchvision_state_dict_loads_with_imagenet_preprocessing(tmp_path):
    path = tmp_path / "mobilenet_v3_small-047dcff4.pth"
    torch.save(torchvision.models.mobilenet_v3_small().state_dict(), path)
    evaluator = load_evaluator(path)
    assert evaluator.spec.num_classes == 1000 and evaluator.spec.resolution == 224
    assert evaluator(torch.zeros(1, 3, 32, 32)).shape == (1, 1000)


def test_missing_and_bad_weights_say_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    with pytest.raises(EvaluatorWeightsError, match="--evaluator-weights.*mobilenet_v3_small-047dcff4.pth"):
        load_evaluator(None)
    with pytest.raises(EvaluatorWeightsError, match="does not exist"):
        load_evaluator(tmp_path / "nope.pt")
    (tmp_path / "bad.pt").write_bytes(b"not torch")
    with pytest.raises(EvaluatorWeightsError, match="cannot read"):
        load_evaluator(tmp_path / "bad.pt")
    torch.save(torchvision.models.resnet18().state_dict(), tmp_path / "resnet.pt")
    with pytest.raises(EvaluatorWeightsError, match="not a MobileNetV3-small"):
        load_evaluator(tmp_path / "resnet.pt")


def test_dataset_score_streams_eq5_over_the_whole_set(shipped):
    image_set = embedded_image_set(60, seed=3)
    streamed = real_score.dataset_mobilenet_score(shipped, image_set, batch_size=25)
    with torch.no_grad():
        logits = shipped(image_set.images.float() / 127.5 - 1)
    assert streamed == pytest.approx(mobilenet_score(logits).item(), rel=1e-4)


def test_real_score_is_cached_per_dataset_and_evaluator(shipped, tmp_path, monkeypatch):
    image_set = embedded_image_set(40, seed=0)
    first = real_score.cached_real_score(shipped, image_set, tmp_path)
    calls = []
    original = real_score.dataset_mobilenet_score
    monkeypatch.setattr(real_score, "dataset_mobilenet_score", lambda *a: calls.append(1) or original(*a))
    assert real_score.cached_real_score(shipped, image_set, tmp_path) == first and not calls
    real_score.cached_real_score(shipped, embedded_image_set(40, seed=1), tmp_path)
    assert calls == [1]  # another dataset is a cache miss


def test_dataset_score_is_true_fp32_under_a_callers_autocast(shipped):
    """MS_real is cached by dataset and evaluator only, so it must not depend on the precision the caller runs in
    (bf16 autocast in training; TF32 on a GPU)."""
    image_set = embedded_image_set(30, seed=2)
    plain = real_score.dataset_mobilenet_score(shipped, image_set, batch_size=30)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert real_score.dataset_mobilenet_score(shipped, image_set, batch_size=30) == plain


@pytest.mark.parametrize(
    "images",
    [torch.full((2, 3, 32, 32), 200, dtype=torch.uint8), torch.rand(2, 1, 32, 32), torch.rand(3, 32, 32)],
    ids=["uint8", "grey", "unbatched"],
)
def test_evaluator_refuses_images_it_would_misread(shipped, images):
    """8-bit images once scored with confidence 1.0, grey ones were broadcast to three channels."""
    with pytest.raises(ValueError, match=r"takes \(N, 3, R, R\) float images in \[-1, 1\]"):
        shipped(images)
