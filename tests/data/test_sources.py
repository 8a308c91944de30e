import logging
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from fastgan.data.image_set import ImageSet
from fastgan.data.sources import DataSourceError, cifar_image_set, embedded_image_set, folder_image_set


def _write_cifar10(root, labels_per_batch=20, bad_label=False):
    root.mkdir()
    with open(root / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": [f"c{i}".encode() for i in range(10)]}, f)
    rng = np.random.default_rng(0)
    for i in range(1, 6):
        labels = list(rng.integers(0, 10, labels_per_batch))
        if bad_label and i == 3:
            labels[0] = 10
        data = rng.integers(0, 256, (labels_per_batch, 3072), dtype=np.uint8)
        with open(root / f"data_batch_{i}", "wb") as f:
            pickle.dump({b"data": data, b"labels": labels}, f)
    return root


def test_cifar10_pickles_load_in_order(tmp_path):
    root = _write_cifar10(tmp_path / "cifar-10-batches-py")
    s = cifar_image_set(root, "cifar10")
    assert s.images.shape == (100, 3, 32, 32) and s.num_classes == 10
    with open(root / "data_batch_1", "rb") as f:
        first = pickle.load(f, encoding="bytes")
    assert torch.equal(s.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert s.labels[0] == first[b"labels"][0]


def test_cifar100_uses_fine_labels(tmp_path):
    root = tmp_path / "cifar-100-python"
    root.mkdir()
    with open(root / "meta", "wb") as f:
        pickle.dump({b"fine_label_names": [f"f{i}".encode() for i in range(100)]}, f)
    with open(root / "train", "wb") as f:
        pickle.dump(
            {b"data": np.zeros((3, 3072), np.uint8), b"fine_labels": [99, 0, 5], b"coarse_labels": [1, 2, 3]}, f
        )
    s = cifar_image_set(root, "cifar100")
    assert s.labels.tolist() == [99, 0, 5] and s.num_classes == 100


def test_cifar_missing_corrupt_and_mislabelled_files_name_the_file(tmp_path):
    with pytest.raises(DataSourceError, match="batches.meta"):
        cifar_image_set(tmp_path / "nowhere", "cifar10")
    root = _write_cifar10(tmp_path / "c10")
    (root / "data_batch_2").write_bytes(b"not a pickle at all")
    with pytest.raises(DataSourceError, match="data_batch_2.*corrupt"):
        cifar_image_set(root, "cifar10")
    (root / "data_batch_2").write_bytes(b"cno_such_module\nthing\n.")  # a damaged GLOBAL opcode
    with pytest.raises(DataSourceError, match="data_batch_2 is corrupt \\(ModuleNotFoundError"):
        cifar_image_set(root, "cifar10")
    bad = _write_cifar10(tmp_path / "c10bad", bad_label=True)
    with pytest.raises(DataSourceError, match="span"):
        cifar_image_set(bad, "cifar10")


@pytest.mark.parametrize(
    "file, content, message",
    [
        ("batches.meta", {b"other": []}, "class names"),
        ("batches.meta", ["a list"], "holds a list"),
        ("batches.meta", {b"label_names": ["str, not bytes"]}, "class names"),
        ("data_batch_4", 7, "holds a int"),
        ("data_batch_4", {b"data": np.zeros((2, 3072), np.uint8), b"labels": None}, "integer labels"),
        ("data_batch_4", {b"data": np.full((2, 3072), 300.7), b"labels": [0, 1]}, "uint8 pixels"),
        ("data_batch_4", {b"data": np.zeros((2, 3072), np.uint8), b"labels": [0]}, "N labels"),
    ],
)
def test_malformed_cifar_pickles_are_data_source_errors(tmp_path, file, content, message):
    root = _write_cifar10(tmp_path / "c10")
    with open(root / file, "wb") as f:
        pickle.dump(content, f)
    with pytest.raises(DataSourceError, match=message):
        cifar_image_set(root, "cifar10")


def _save(path, array, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array, mode=mode).save(path)


def test_folder_converts_modes_and_sizes(tmp_path):
    rng = np.random.default_rng(0)
    _save(tmp_path / "cats" / "rgb.png", rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    _save(tmp_path / "cats" / "grey.jpg", rng.integers(0, 256, (50, 50), dtype=np.uint8))
    _save(tmp_path / "dogs" / "rgba.png", rng.integers(0, 256, (32, 32, 4), dtype=np.uint8))
    _save(tmp_path / "dogs" / "deep.png", np.full((64, 48), 60000, dtype=np.uint16))  # 16-bit grey
    (tmp_path / "dogs" / "notes.txt").write_text("ignored")
    for tools in ("dogs/.ipynb_checkpoints/deep-checkpoint.png", "dogs/._rgba.png", "__MACOSX/dogs/rgba.png"):
        _save(tmp_path / tools, np.zeros((8, 8, 3), np.uint8))  # a notebook's and macOS's copies: no images
    s = folder_image_set(tmp_path)
    assert s.class_names == ("cats", "dogs")
    assert s.images.shape == (4, 3, 32, 32) and s.labels.tolist() == [0, 0, 1, 1]
    deep = s.images[2]  # dogs/deep.png sorts first; 60000/65535 of full scale, not clipped to 255
    assert deep.min() == deep.max() == round(60000 / 65535 * 255)


def test_sixteen_bit_colour_is_rounded_like_grey_and_float_images_are_refused(tmp_path):
    """PIL keeps only the high byte of 16-bit colour (v >> 8); fastgan rounds v·255/65535 as for 16-bit grey. A float
    image's range is unknown: refused, so a folder skips it with a warning instead of training on black."""
    import cv2

    from fastgan.data.sources import read_rgb

    values = np.array([0, 511, 32767, 33023, 65535, 51600], np.uint16)
    rgb = np.stack([values, values[::-1], values], axis=1).reshape(2, 3, 3)
    for suffix in (".png", ".tif"):
        cv2.imwrite(str(tmp_path / f"deep{suffix}"), rgb[..., ::-1])  # OpenCV writes BGR
        expected = np.round(rgb * (255 / 65535)).astype(np.uint8)
        np.testing.assert_array_equal(read_rgb(tmp_path / f"deep{suffix}").permute(1, 2, 0).numpy(), expected)
    cv2.imwrite(str(tmp_path / "float.tif"), np.full((4, 4), 0.5, np.float32))
    with pytest.raises(DataSourceError, match="floating-point"):
        read_rgb(tmp_path / "float.tif")


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        folder_image_set(tmp_path / "missing")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataSourceError, match="a-file is a file, not a folder; point data.path"):
        folder_image_set(tmp_path / "a-file")
    (tmp_path / "empty_root" / ".ipynb_checkpoints").mkdir(parents=True)  # tools' folders are no classes
    (tmp_path / "empty_root" / "__MACOSX").mkdir()
    with pytest.raises(DataSourceError, match="no class subfolders"):
        folder_image_set(tmp_path / "empty_root")
    _save(tmp_path / "set" / "a" / "ok.png", np.zeros((8, 8, 3), np.uint8))
    (tmp_path / "set" / "b").mkdir()
    with pytest.raises(DataSourceError, match="holds no images"):
        folder_image_set(tmp_path / "set")
    (tmp_path / "set" / "b" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    with pytest.raises(DataSourceError, match="b under .* no readable image"):  # broken.png alone is not enough
        folder_image_set(tmp_path / "set")


def test_folder_skips_unreadable_files_with_a_warning_each_and_a_count(tmp_path, caplog):
    rng = np.random.default_rng(1)
    for name in ("a/0.png", "a/1.png", "b/0.png"):
        _save(tmp_path / name, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    whole = (tmp_path / "a" / "0.png").read_bytes()
    (tmp_path / "a" / "cut.png").write_bytes(whole[: len(whole) // 2])
    (tmp_path / "b" / "text.jpg").write_text("not an image")
    caplog.set_level(logging.WARNING, logger="fastgan.data.sources")
    s = folder_image_set(tmp_path)
    assert s.images.shape == (3, 3, 32, 32) and s.labels.tolist() == [0, 0, 1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 3
    assert str(tmp_path / "a" / "cut.png") in warnings[0] and str(tmp_path / "b" / "text.jpg") in warnings[1]
    assert "2 of 5 image files skipped" in warnings[2]


def test_image_set_validates_its_tensors():
    with pytest.raises(ValueError, match="uint8"):
        ImageSet(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.long), ("a",), "t")
    with pytest.raises(ValueError, match="labels span"):
        ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.tensor([0, 2]), ("a", "b"), "t")
    for labels in (torch.tensor([0.0, 1.0]), torch.tensor([False, True])):  # once failed later, in nn.Embedding
        with pytest.raises(ValueError, match="labels must be integers"):
            ImageSet(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), labels, ("a", "b"), "t")


def test_embedded_fingerprint_tracks_content():
    a, b = embedded_image_set(30, seed=0), embedded_image_set(30, seed=1)
    assert a.fingerprint() == embedded_image_set(30, seed=0).fingerprint() != b.fingerprint()
