"""Folders decoded by DALI on the CPU: the PIL readers' images; corrupt files skipped with a warning by both."""

import logging
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch
from PIL import Image

pytest.importorskip("nvidia.dali", reason="NVIDIA DALI is not installed (pip install nvidia-dali-cuda120)")

from fastgan.data.dali_sources import dali_folder_image_set, dali_folder_images  # noqa: E402
from fastgan.data.sources import DataSourceError, folder_image_set  # noqa: E402
from fastgan.data.sr_sources import folder_images  # noqa: E402


def _save(path, array, **kwargs):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, **kwargs)


def _rgb(h, w, seed):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _corrupt_folder(root):
    """Two classes of good images plus a truncated PNG, a truncated JPEG, text named .png and an empty .jpg."""
    for i in range(3):
        _save(root / "a" / f"{i}.png", _rgb(32, 32, i))
        _save(root / "b" / f"{i}.jpg", _rgb(48, 40, 10 + i), quality=95)
    whole_png, whole_jpg = (root / "a" / "0.png").read_bytes(), (root / "b" / "0.jpg").read_bytes()
    (root / "a" / "cut.png").write_bytes(whole_png[: len(whole_png) // 2])
    (root / "b" / "cut.jpg").write_bytes(whole_jpg[: len(whole_jpg) // 2])
    (root / "b" / "text.png").write_text("not an image at all")
    (root / "b" / "empty.jpg").write_bytes(b"")
    (root / "b" / "notes.txt").write_text("not an image suffix: never read")
    return ["a/cut.png", "b/cut.jpg", "b/text.png", "b/empty.jpg"]


def test_decoded_folder_matches_pil_reader(tmp_path):
    _save(tmp_path / "x" / "rgb.png", _rgb(32, 32, 0))  # at the training size: decoded bit for bit
    _save(tmp_path / "x" / "grey.png", _rgb(32, 32, 1)[..., 0])
    ramp = np.linspace(0, 65535, 32 * 32).round().astype(np.uint16).reshape(32, 32)
    _save(tmp_path / "x" / "deep.png", ramp)  # 16-bit, every level scaled like read_rgb
    _save(tmp_path / "y" / "rgba.png", np.dstack([_rgb(32, 32, 2), np.full((32, 32), 7, np.uint8)]))
    smooth = np.asarray(Image.fromarray(_rgb(12, 18, 3)).resize((90, 60), Image.BILINEAR))
    _save(tmp_path / "y" / "wide.png", smooth)  # centre-cropped to 60×60 and resized to 32×32
    dali, pil = dali_folder_image_set(tmp_path), folder_image_set(tmp_path)
    assert dali.class_names == pil.class_names == ("x", "y") and torch.equal(dali.labels, pil.labels)
    assert torch.equal(dali.images[:4], pil.images[:4])
    resized_error = (dali.images[4].float() - pil.images[4].float()).abs()
    assert resized_error.mean() < 1.0 and resized_error.max() <= 8  # DALI's linear anti-aliased resize vs torch's


def test_exif_rotated_jpeg_is_kept_and_cropped_as_decoded(tmp_path):
    """A phone photo's EXIF orientation 6 (rotate 90°) names swapped sides: both readers ignore it and crop the
    stored pixels, so the file is neither dropped nor cropped off its image."""
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation
    smooth = np.asarray(Image.fromarray(_rgb(8, 6, 4)).resize((40, 48), Image.BILINEAR))  # stored 48 high, 40 wide
    _save(tmp_path / "p" / "phone.jpg", smooth, quality=95, exif=exif.tobytes())
    _save(tmp_path / "p" / "plain.png", _rgb(32, 32, 5))
    dali, pil = dali_folder_image_set(tmp_path), folder_image_set(tmp_path)
    assert dali.images.shape == pil.images.shape == (2, 3, 32, 32)
    assert torch.equal(dali.images[1], pil.images[1])
    error = (dali.images[0].float() - pil.images[0].float()).abs()
    assert error.mean() < 2.0  # the same centre crop (a swapped one would differ everywhere), JPEG decoders apart


def test_corrupt_files_are_skipped_with_a_warning_each_and_a_count(tmp_path, caplog):
    bad = _corrupt_folder(tmp_path)
    caplog.set_level(logging.WARNING, logger="fastgan.data.dali_sources")
    with ThreadPoolExecutor(1) as pool:  # a hang fails the test instead of stalling the suite
        image_set = pool.submit(dali_folder_image_set, tmp_path).result(timeout=120)
    assert image_set.images.shape == (6, 3, 32, 32) and image_set.labels.tolist() == [0, 0, 0, 1, 1, 1]
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in bad:
        assert sum(str(tmp_path / name) in message for message in warnings) == 1, name
    assert "4 of 10 image files skipped" in warnings[-1]
    caplog.clear()
    caplog.set_level(logging.WARNING, logger="fastgan.data.sources")
    pil = folder_image_set(tmp_path)  # the torch fallback's reader skips the same files
    assert torch.equal(pil.labels, image_set.labels) and torch.equal(pil.images[:3], image_set.images[:3])
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    for name in bad:
        assert sum(str(tmp_path / name) in message for message in warnings) == 1, name
    assert "4 of 10 image files skipped" in warnings[-1]


def test_upscaler_folder_skips_corrupt_files_and_keeps_names_and_sizes(tmp_path, caplog):
    bad = _corrupt_folder(tmp_path)
    caplog.set_level(logging.WARNING, logger="fastgan.data.dali_sources")
    images = dali_folder_images(tmp_path)
    (tmp_path / "a" / "cut.png").unlink()
    for name in bad[1:]:
        (tmp_path / name).unlink()
    expected = folder_images(tmp_path)
    assert [name for name, _ in images] == [name for name, _ in expected] == ["a/0", "a/1", "a/2", "b/0", "b/1", "b/2"]
    for (_, dali), (_, pil) in zip(images, expected, strict=True):
        assert dali.shape == pil.shape
        if dali.shape[-1] == 32:  # PNGs: lossless, equal; JPEGs: decoders may differ by a level or two
            assert torch.equal(dali, pil)
        else:
            assert (dali.float() - pil.float()).abs().mean() < 1.0
    assert "4 of 10 image files skipped" in caplog.records[-1].getMessage()


def test_an_image_over_pils_pixel_limit_is_skipped_by_both_readers(tmp_path, monkeypatch, caplog):
    _save(tmp_path / "a" / "small.png", _rgb(8, 8, 0))
    _save(tmp_path / "a" / "huge.png", _rgb(32, 32, 1))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 200)  # 1 024 pixels > 2 · 200: a "decompression bomb" to PIL
    caplog.set_level(logging.WARNING)
    for reader in (dali_folder_images, folder_images):
        assert [name for name, _ in reader(tmp_path)] == ["a/small"], reader
    assert len(dali_folder_image_set(tmp_path)) == len(folder_image_set(tmp_path)) == 1
    skipped = [r.getMessage() for r in caplog.records if "huge.png" in r.getMessage()]
    assert len(skipped) == 4 and all("decompression bomb" in message for message in skipped), skipped


def test_a_class_without_a_readable_image_is_an_error(tmp_path):
    _save(tmp_path / "good" / "0.png", _rgb(32, 32, 0))
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "0.png").write_text("garbage")
    for reader in (dali_folder_image_set, folder_image_set):
        with pytest.raises(DataSourceError, match="bad.*no readable image"):
            reader(tmp_path)


def test_gifs_which_dali_cannot_decode_are_read_by_pil_whatever_their_suffix(tmp_path):
    """The format is the header's: a GIF saved as .png (DALI skipped it, PIL read it) is read by PIL in both."""
    _save(tmp_path / "x" / "a.png", _rgb(32, 32, 0))
    _save(tmp_path / "x" / "b.gif", _rgb(32, 32, 1)[..., 0])  # grey GIF: exact through the palette
    _save(tmp_path / "x" / "c.png", _rgb(32, 32, 2)[..., 0], format="GIF")
    dali, pil = dali_folder_image_set(tmp_path), folder_image_set(tmp_path)
    assert len(dali) == len(pil) == 3 and torch.equal(dali.images, pil.images)
    names = [name for name, _ in dali_folder_images(tmp_path)]
    assert names == [name for name, _ in folder_images(tmp_path)] == ["x/a", "x/b", "x/c"]


def test_tiffs_keep_the_same_files_and_pixels_as_the_pil_reader(tmp_path, caplog):
    """A float TIFF (range unknown) is skipped by both readers, a 32-bit integer one scaled alike; DALI's own TIFF
    decoder clipped the first to white and refused the second."""
    Image.fromarray(np.linspace(0, 255, 32 * 32, dtype=np.float32).reshape(32, 32), mode="F").save(tmp_path / "f.tif")
    Image.fromarray(np.array([[0, 70000, 140000]] * 4, dtype=np.int32), mode="I").save(tmp_path / "i.tif")
    _save(tmp_path / "a.png", _rgb(4, 3, 0))
    with caplog.at_level(logging.WARNING):
        dali, pil = dali_folder_images(tmp_path), folder_images(tmp_path)
    assert [name for name, _ in dali] == [name for name, _ in pil] == ["a", "i"]
    assert all(torch.equal(a, b) for (_, a), (_, b) in zip(dali, pil, strict=True))
    assert dali[1][1][0, 0].tolist() == [0, 128, 255] and "f.tif" in caplog.text
