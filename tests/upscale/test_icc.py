"""An input image's ICC colour profile reaches its upscaled output in PNG, JPEG and TIFF (OpenCV drops it)."""

import logging

import cv2
import numpy as np
import pytest
import torch
from PIL import Image, ImageCms

from fastgan.upscale.frames import Frame, read_image, write_image
from fastgan.upscale.icc import _JPEG_CHUNK, read_icc_profile, with_icc_profile

PROFILE = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
GREY_PROFILE = PROFILE[:16] + b"GRAY" + PROFILE[20:]  # what is checked and carried is the header's colour space
CMYK_PROFILE = PROFILE[:16] + b"CMYK" + PROFILE[20:]


def _with_profile(path, mode="RGB", profile=PROFILE):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, len(mode)), dtype=np.uint8).squeeze()
    Image.fromarray(pixels, mode).save(path, icc_profile=profile)
    return path


@pytest.mark.parametrize("source", ["in.png", "in.jpg", "in.tif", "in.webp"])
@pytest.mark.parametrize("target", ["out.png", "out.jpg", "out.tif"])
def test_the_profile_travels_from_any_input_to_png_jpeg_and_tiff(tmp_path, source, target):
    frame = read_image(_with_profile(tmp_path / source))
    assert frame.icc_profile == PROFILE
    upscaled = Frame(torch.nn.functional.interpolate(frame.rgb[None], scale_factor=2)[0], icc_profile=PROFILE)
    write_image(tmp_path / target, upscaled)
    with Image.open(tmp_path / target) as written:
        assert written.info.get("icc_profile") == PROFILE and written.size == (32, 24)
    assert cv2.imread(str(tmp_path / target)).shape == (24, 32, 3)  # still a valid file for OpenCV
    assert read_image(tmp_path / target).icc_profile == PROFILE


def test_grey_tiff_alpha_and_16_bits_keep_the_profile(tmp_path):
    grey = read_image(_with_profile(tmp_path / "grey.png", "L", GREY_PROFILE))
    write_image(tmp_path / "grey.tif", grey)
    assert read_image(tmp_path / "grey.tif").grey and read_image(tmp_path / "grey.tif").icc_profile == GREY_PROFILE
    deep = Frame(torch.rand(3, 6, 5), torch.rand(1, 6, 5), 16, False, "deep", PROFILE)
    write_image(tmp_path / "deep.tif", deep)
    back = read_image(tmp_path / "deep.tif")
    assert back.bit_depth == 16 and back.alpha is not None and back.icc_profile == PROFILE


def test_grey_with_alpha_keeps_its_grey_profile_in_png_or_goes_without_it(tmp_path, caplog):
    """OpenCV writes grey + alpha as RGBA, which a GRAY profile may not describe (libpng drops such a profile)."""
    grey_alpha = read_image(_with_profile(tmp_path / "la.png", "LA", GREY_PROFILE))
    assert grey_alpha.grey and grey_alpha.alpha is not None and grey_alpha.icc_profile == GREY_PROFILE
    write_image(tmp_path / "out.png", grey_alpha)
    with Image.open(tmp_path / "out.png") as written:
        assert written.mode == "LA" and written.info.get("icc_profile") == GREY_PROFILE
    back = read_image(tmp_path / "out.png")
    assert torch.equal(back.rgb, grey_alpha.rgb) and torch.equal(back.alpha, grey_alpha.alpha)
    with caplog.at_level(logging.WARNING):
        write_image(tmp_path / "out.webp", grey_alpha)
    assert "written without it" in caplog.text
    with Image.open(tmp_path / "out.webp") as written:
        assert "icc_profile" not in written.info


def test_a_profile_larger_than_one_jpeg_segment_is_split_and_reassembled(tmp_path):
    large = PROFILE + bytes(2 * _JPEG_CHUNK)  # Pillow joins the segments back whatever they hold
    ok, encoded = cv2.imencode(".jpg", np.zeros((8, 8, 3), np.uint8))
    data = with_icc_profile(encoded.tobytes(), ".jpg", large)
    assert read_icc_profile(data) == large and cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR).shape == (
        8,
        8,
        3,
    )
    with pytest.raises(ValueError, match="not a PNG"):
        with_icc_profile(data, ".png", PROFILE)
    with pytest.raises(ValueError, match="more than 255 JPEG segments"):
        with_icc_profile(encoded.tobytes(), ".jpg", bytes(256 * _JPEG_CHUNK))


def test_a_profile_of_other_colours_or_size_is_left_out_with_a_warning(tmp_path, caplog, monkeypatch):
    """A CMYK JPEG's profile does not describe OpenCV's RGB decoding of it; a profile too large for JPEG goes; a
    picture over Pillow's decompression-bomb limit (about decoding, not headers) keeps its profile."""
    pixels = np.random.default_rng(0).integers(0, 256, (12, 16, 4), dtype=np.uint8)
    Image.fromarray(pixels, "CMYK").save(tmp_path / "print.jpg", icc_profile=CMYK_PROFILE)
    with caplog.at_level(logging.WARNING):
        assert read_image(tmp_path / "print.jpg").icc_profile is None
        write_image(tmp_path / "big.jpg", Frame(torch.rand(3, 4, 4), icc_profile=bytes(256 * _JPEG_CHUNK)))
    assert "its CMYK ICC profile does not describe the decoded pixels" in caplog.text
    assert "more than 255 JPEG segments" in caplog.text and cv2.imread(str(tmp_path / "big.jpg")).shape == (4, 4, 3)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 10)  # the 12×16 pictures are "bombs" now
    assert read_image(_with_profile(tmp_path / "huge.png")).icc_profile == PROFILE and Image.MAX_IMAGE_PIXELS == 10


def test_formats_without_a_profile_say_so_and_files_without_one_carry_none(tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        write_image(tmp_path / "out.bmp", Frame(torch.rand(3, 4, 4), icc_profile=PROFILE))
    assert "without the input's ICC colour profile" in caplog.text
    cv2.imwrite(str(tmp_path / "plain.png"), np.zeros((4, 4, 3), np.uint8))
    assert read_image(tmp_path / "plain.png").icc_profile is None
    assert read_icc_profile(b"not an image") is None and read_icc_profile(b"") is None
