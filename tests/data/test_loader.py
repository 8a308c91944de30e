import pytest
import torch

from fastgan.data.loader import InMemoryLoader
from fastgan.data.sources import embedded_image_set


def test_epochs_cover_every_sample_once_across_batch_boundaries():
    s = embedded_image_set(50, seed=0)
    loader = InMemoryLoader(s, seed=1, flip=False)
    images = torch.cat([loader.next_batch(7)[0] for _ in range(15)])  # 105 = 2 epochs + 5
    expected = s.images.float().div(127.5).sub(1)

    def contents(batch: torch.Tensor) -> list[bytes]:
        return sorted(img.numpy().tobytes() for img in batch)

    assert contents(images[:50]) == contents(images[50:100]) == contents(expected)
    assert loader.epoch == 2 and loader.position == 5


def test_state_dict_resumes_the_same_batches():
    s = embedded_image_set(30, seed=0)
    a = InMemoryLoader(s, seed=2)
    for _ in range(5):
        a.next_batch(8)
    b = InMemoryLoader(s, seed=2)
    b.load_state_dict(a.state_dict())
    for _ in range(4):
        xa, ya = a.next_batch(8)
        xb, yb = b.next_batch(8)
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_output_range_labels_and_flips():
    s = embedded_image_set(20, seed=0)
    x, y = InMemoryLoader(s, seed=0).next_batch(20)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert sorted(y.tolist()) == sorted(s.labels.tolist())
    x_noflip, _ = InMemoryLoader(s, seed=0, flip=False).next_batch(20)
    assert not torch.equal(x, x_noflip)


def test_resuming_with_other_data_is_refused():
    a = InMemoryLoader(embedded_image_set(20, seed=0), seed=0)
    b = InMemoryLoader(embedded_image_set(21, seed=0), seed=0)
    try:
        b.load_state_dict(a.state_dict())
    except ValueError as exc:
        assert "same data" in str(exc)
    else:
        raise AssertionError("expected ValueError")


def test_a_damaged_position_and_an_empty_batch_are_refused():
    """A position past the epoch once made batches longer than asked for; a batch of 0 failed to unpack."""
    loader = InMemoryLoader(embedded_image_set(10, seed=0), seed=0)
    state = loader.state_dict()
    for damaged in ({"position": 12}, {"position": -1}, {"epoch": -1}):
        with pytest.raises(ValueError, match="loader position .* outside epochs of 10 samples"):
            InMemoryLoader(embedded_image_set(10, seed=0), seed=0).load_state_dict({**state, **damaged})
    with pytest.raises(ValueError, match="at least one sample, got 0"):
        loader.next_batch(0)
