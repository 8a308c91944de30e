import logging

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from fastgan.data.sources import DataSourceError, read_rgb
from fastgan.data.sr_loader import SRPatchLoader, center_crops, degrade, images_identity
from fastgan.data.sr_sources import (
    DEFAULT_PHOTOS,
    folder_images,
    game_frames,
    near_copies,
    skimage_photos,
    split_held_out,
)


def _rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# ---------------------------------------------------------------- read_rgb


def test_read_rgb_converts_grey_rgba_and_palette(tmp_path):
    rgb = _rgb(5, 7)
    grey = rgb[..., 0]
    Image.fromarray(grey, "L").save(tmp_path / "grey.png")
    Image.fromarray(np.dstack([rgb, np.full((5, 7), 9, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    palette = Image.fromarray(rgb).convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
    palette.save(tmp_path / "palette.png")
    Image.fromarray(rgb).save(tmp_path / "rgb.bmp")

    out = read_rgb(tmp_path / "grey.png")
    assert out.dtype == torch.uint8 and out.shape == (3, 5, 7)
    assert all(torch.equal(out[c], torch.from_numpy(grey)) for c in range(3))
    assert torch.equal(read_rgb(tmp_path / "rgba.png"), torch.from_numpy(rgb).permute(2, 0, 1))  # alpha dropped
    assert torch.equal(read_rgb(tmp_path / "rgb.bmp"), torch.from_numpy(rgb).permute(2, 0, 1))
    expected = torch.from_numpy(np.array(palette.convert("RGB"))).permute(2, 0, 1)
    assert torch.equal(read_rgb(str(tmp_path / "palette.png")), expected)


def test_read_rgb_scales_16_and_32_bit_grey_without_clipping(tmp_path):
    values = np.array([[0, 257, 32896, 65535], [1000, 50000, 128, 65534]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    out = read_rgb(tmp_path / "deep.png")
    expected = torch.from_numpy(np.round(values / 65535 * 255).astype(np.uint8))
    assert out.shape == (3, 2, 4) and all(torch.equal(out[c], expected) for c in range(3))
    assert out[0].tolist()[0] == [0, 1, 128, 255]  # 8-bit scaling, not clipping at 255

    wide = np.array([[0, 70000, 140000]], dtype=np.int32)  # 32-bit "I" beyond 16 bits: scaled by its maximum
    Image.fromarray(wide).save(tmp_path / "wide.tif")
    assert read_rgb(tmp_path / "wide.tif")[0].tolist() == [[0, 128, 255]]


def test_read_rgb_corrupt_truncated_and_missing_files_name_the_file(tmp_path):
    (tmp_path / "junk.png").write_bytes(b"definitely not a png")
    with pytest.raises(DataSourceError, match=r"junk\.png.*remove or replace"):
        read_rgb(tmp_path / "junk.png")
    Image.fromarray(_rgb(64, 64)).save(tmp_path / "whole.png")
    data = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(DataSourceError, match=r"cut\.png"):
        read_rgb(tmp_path / "cut.png")
    with pytest.raises(DataSourceError, match=r"absent\.png"):
        read_rgb(tmp_path / "absent.png")


# ---------------------------------------------------------------- sources


PHOTO_SHAPES = {
    "astronaut": (512, 512), "coffee": (400, 600), "chelsea": (300, 451), "rocket": (427, 640),
    "camera": (512, 512), "hubble_deep_field": (872, 1000), "retina": (1411, 1411),
    "immunohistochemistry": (512, 512), "motorcycle_left": (500, 741), "motorcycle_right": (500, 741),
    "brick": (512, 512), "grass": (512, 512), "gravel": (512, 512),
}  # fmt: skip


def test_skimage_photos_load_offline_as_rgb():
    photos = skimage_photos()
    assert [name for name, _ in photos] == list(DEFAULT_PHOTOS) == list(PHOTO_SHAPES)
    for name, image in photos:
        assert image.dtype == torch.uint8 and image.shape == (3, *PHOTO_SHAPES[name]), name
        assert image.is_contiguous()
    named = dict(photos)
    assert torch.equal(named["camera"][0], named["camera"][2])  # grey repeated to RGB
    assert not torch.equal(named["motorcycle_left"], named["motorcycle_right"])
    assert [name for name, _ in skimage_photos(["rocket", "coffee"])] == ["rocket", "coffee"]


def test_skimage_photos_unknown_name_lists_the_valid_ones():
    with pytest.raises(DataSourceError, match=r"\['lena'\].*astronaut, coffee"):
        skimage_photos(["coffee", "lena"])


def test_folder_images_reads_every_image_recursively_in_order_and_skips_unreadable_ones(tmp_path, caplog):
    (tmp_path / "b").mkdir()
    Image.fromarray(_rgb(6, 8)).save(tmp_path / "b" / "z.png")
    Image.fromarray(_rgb(4, 4)[..., 0], "L").save(tmp_path / "a.png")
    Image.fromarray(_rgb(5, 9)).save(tmp_path / "b" / "c.JPG")
    (tmp_path / "notes.txt").write_text("not an image")
    images = folder_images(tmp_path)
    assert [name for name, _ in images] == ["a", "b/c", "b/z"]
    assert [tuple(image.shape) for _, image in images] == [(3, 4, 4), (3, 5, 9), (3, 6, 8)]
    (tmp_path / "b" / "broken.png").write_bytes(b"\x89PNG broken")
    caplog.set_level(logging.WARNING, logger="fastgan.data.sources")
    assert [name for name, _ in folder_images(tmp_path)] == ["a", "b/c", "b/z"]  # skipped, with a warning naming it
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 2 and str(tmp_path / "b" / "broken.png") in warnings[0]
    assert "1 of 4 image files skipped" in warnings[1]
    for path in (tmp_path / "a.png", tmp_path / "b" / "c.JPG", tmp_path / "b" / "z.png"):
        path.write_bytes(b"junk")
    with pytest.raises(DataSourceError, match="none of the 4 image files .* can be read"):
        folder_images(tmp_path)


def test_folder_images_leave_out_hidden_and_tools_copies(tmp_path):
    for name in ("a.png", "c.png", ".ipynb_checkpoints/c-checkpoint.png", "__MACOSX/._a.png", "b/._c.png"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rgb(4, 4)).save(tmp_path / name)
    train, held = split_held_out(folder_images(tmp_path), ["c"])  # a notebook's copy of c must not be trained on
    assert [name for name, _ in train] == ["a"] and [name for name, _ in held] == ["c"]


def test_folder_images_missing_or_empty_folder(tmp_path):
    with pytest.raises(DataSourceError, match="does not exist"):
        folder_images(tmp_path / "nowhere")
    (tmp_path / "a-file").write_text("")
    with pytest.raises(DataSourceError, match="a-file is a file, not a folder"):
        folder_images(tmp_path / "a-file")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataSourceError, match="holds no images"):
        folder_images(tmp_path / "empty")
    twins = tmp_path / "twins"
    twins.mkdir()
    for suffix in (".png", ".jpg"):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(twins / f"a{suffix}")
    with pytest.raises(DataSourceError, match="a.jpg and a.png share the name 'a'"):
        folder_images(twins)  # sr.held_out=[a] would hold out both, and the tables show two rows named a


def test_game_frames_are_real_reproducible_doom_frames():
    pytest.importorskip("vizdoom")
    first = game_frames("basic", count=3, seed=0, every=4)
    again = game_frames("basic", count=3, seed=0, every=4)
    other = game_frames("basic", count=3, seed=1, every=4)
    assert [name for name, _ in first] == ["basic-0-0000", "basic-0-0001", "basic-0-0002"]
    for (_, a), (_, b) in zip(first, again, strict=True):
        assert a.dtype == torch.uint8 and a.shape == (3, 480, 640)
        assert torch.equal(a, b)
    assert any(not torch.equal(a, b) for (_, a), (_, b) in zip(first, other, strict=True))
    assert not torch.equal(first[1][1], first[2][1])  # kept frames are `every` tics apart
    assert float(first[0][1].float().std()) > 10  # a rendered scene, not a blank screen


def test_game_frames_unknown_scenario():
    with pytest.raises(DataSourceError, match="unknown ViZDoom scenario 'quake'.*basic"):
        game_frames("quake", count=1)


def test_split_held_out_by_name():
    images = [(n, torch.zeros(3, 2, 2, dtype=torch.uint8)) for n in ["a", "b", "c", "d"]]
    train, held = split_held_out(images, ["d", "b"])
    assert [n for n, _ in train] == ["a", "c"] and [n for n, _ in held] == ["b", "d"]
    assert split_held_out(images, [])[0] == images
    with pytest.raises(DataSourceError, match=r"\['x'\] are not among the 4 images"):
        split_held_out(images, ["a", "x"])
    with pytest.raises(DataSourceError, match="all 4 images are held out"):
        split_held_out(images, ["a", "b", "c", "d"])


# ---------------------------------------------------------------- degradation


@pytest.mark.parametrize("scale", [2, 4])
@pytest.mark.parametrize("method", ["bicubic", "area"])
def test_degrade_shapes_range_and_8_bit_quantisation(scale, method):
    hr = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(0))
    lr = degrade(hr, scale, method)
    assert lr.shape == (2, 3, 24 // scale, 32 // scale) and lr.dtype == torch.float32
    assert lr.min() >= 0 and lr.max() <= 1
    assert torch.equal(lr * 255, (lr * 255).round())
    flat = torch.full((1, 3, 16, 16), 100 / 255)  # an 8-bit level survives exactly
    assert torch.equal(degrade(flat, scale, method), torch.full((1, 3, 16 // scale, 16 // scale), 100 / 255))


def test_degrade_area_is_quantised_average_pooling_and_bicubic_antialiased():
    hr = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert torch.equal(degrade(hr, 4, "area"), (F.avg_pool2d(hr, 4) * 255).round() / 255)
    bicubic = F.interpolate(hr, size=(4, 4), mode="bicubic", antialias=True, align_corners=False)
    assert torch.equal(degrade(hr, 4), (bicubic.clamp(0, 1) * 255).round() / 255)


def test_degrade_rejects_bad_sizes_and_methods():
    with pytest.raises(ValueError, match="multiple of the scale 4"):
        degrade(torch.rand(1, 3, 18, 16), 4)
    with pytest.raises(ValueError, match="degradation must be one of"):
        degrade(torch.rand(1, 3, 16, 16), 2, "lanczos")


def test_center_crops_keep_the_largest_centred_multiple_of_scale():
    image = torch.arange(3 * 11 * 14, dtype=torch.int64).reshape(3, 11, 14).remainder(256).to(torch.uint8)
    (crop,) = center_crops([("x", image)], 4)
    assert crop.shape == (1, 3, 8, 12) and crop.dtype == torch.float32
    assert torch.equal(crop[0], image[:, 1:9, 1:13].float() / 255)


# ---------------------------------------------------------------- patch loader


def _coordinate_image(h, w):
    """uint8 (3, h, w) whose red is the row and green the column: every patch reveals where it came from."""
    rows = torch.arange(h).view(h, 1).expand(h, w)
    cols = torch.arange(w).view(1, w).expand(h, w)
    return torch.stack([rows, cols, (rows + cols) % 7]).to(torch.uint8)


def _images():
    return [
        ("wide", _coordinate_image(40, 120)),
        ("tall", _coordinate_image(100, 48)),
        ("sq", _coordinate_image(64, 64)),
    ]


def test_loader_shapes_range_and_lr_from_hr():
    loader = SRPatchLoader(_images(), crop=32, scale=4, seed=0)
    lr, hr = loader.next_batch(5)
    assert lr.shape == (5, 3, 8, 8) and hr.shape == (5, 3, 32, 32)
    assert lr.dtype == hr.dtype == torch.float32 and hr.min() >= 0 and hr.max() <= 1
    assert torch.equal(lr, degrade(hr, 4)) and torch.equal(hr * 255, (hr * 255).round())
    lr_area, hr_area = SRPatchLoader(_images(), crop=32, scale=2, seed=0, method="area").next_batch(2)
    assert lr_area.shape == (2, 3, 16, 16) and torch.equal(lr_area, degrade(hr_area, 2, "area"))


def test_loader_patches_are_crops_and_their_flips_and_rotations():
    images = _images()
    loader = SRPatchLoader(images, crop=16, scale=2, seed=3, augment=False)
    for patch in (loader.next_batch(8)[1] * 255).round().to(torch.uint8):
        top, left = int(patch[0].min()), int(patch[1].min())
        assert any(torch.equal(patch, im[:, top : top + 16, left : left + 16]) for _, im in images)
    loader = SRPatchLoader(images, crop=16, scale=2, seed=3, augment=True)
    seen = set()
    for patch in (loader.next_batch(64)[1] * 255).round().to(torch.uint8):
        top, left = int(patch[0].min()), int(patch[1].min())
        crops = [im[:, top : top + 16, left : left + 16] for _, im in images if im.shape[1] >= top + 16]
        crops = [c for c in crops if c.shape[-1] == 16]
        variants = [(f, k) for f in (False, True) for k in range(4) for c in crops
                    if torch.equal(patch, torch.rot90(c.flip(-1) if f else c, k, dims=(-2, -1)))]  # fmt: skip
        assert variants
        seen.add(variants[0])
    assert len(seen) == 8  # all symmetries of the square occur


def test_loader_is_deterministic_and_resumes_exactly():
    reference = SRPatchLoader(_images(), crop=16, scale=2, seed=7)
    batches = [reference.next_batch(4) for _ in range(5)]
    same = SRPatchLoader(_images(), crop=16, scale=2, seed=7)
    assert all(torch.equal(same.next_batch(4)[1], hr) for _, hr in batches)
    other = SRPatchLoader(_images(), crop=16, scale=2, seed=8)
    assert not torch.equal(other.next_batch(4)[1], batches[0][1])

    interrupted = SRPatchLoader(_images(), crop=16, scale=2, seed=7)
    interrupted.next_batch(4), interrupted.next_batch(4)
    state = interrupted.state_dict()
    assert state == {"batches": 2, "seed": 7, "size": 3, "images_sha256": images_identity(_images())}
    resumed = SRPatchLoader(_images(), crop=16, scale=2, seed=7)
    resumed.load_state_dict(state)
    for lr, hr in batches[2:]:
        lr_k, hr_k = resumed.next_batch(4)
        assert torch.equal(lr_k, lr) and torch.equal(hr_k, hr)


def test_loader_state_mismatch_is_an_error():
    state = SRPatchLoader(_images(), crop=16, scale=2, seed=7).state_dict()
    with pytest.raises(ValueError, match="saw 3 images with seed 7.*has 2 with seed 7"):
        SRPatchLoader(_images()[:2], crop=16, scale=2, seed=7).load_state_dict(state)
    with pytest.raises(ValueError, match="same data and seed"):
        SRPatchLoader(_images(), crop=16, scale=2, seed=1).load_state_dict(state)
    renamed = [(f"other-{name}", image) for name, image in _images()]
    with pytest.raises(ValueError, match="loader saw other images"):
        SRPatchLoader(renamed, crop=16, scale=2, seed=7).load_state_dict(state)
    del state["images_sha256"]  # a checkpoint of an older version: the count and seed alone are checked
    SRPatchLoader(renamed, crop=16, scale=2, seed=7).load_state_dict(state)


def test_loader_rejects_small_images_and_bad_crops():
    with pytest.raises(DataSourceError, match=r"smaller than the 48×48 crop.*wide \(40×120\).*sr\.crop"):
        SRPatchLoader(_images(), crop=48, scale=4, seed=0)
    with pytest.raises(ValueError, match="multiple of the scale 4"):
        SRPatchLoader(_images(), crop=30, scale=4, seed=0)
    with pytest.raises(DataSourceError, match="no training images"):
        SRPatchLoader([], crop=16, scale=2, seed=0)
    with pytest.raises(DataSourceError, match=r"image grey .*uint8 \(3, H, W\)"):
        SRPatchLoader([("grey", torch.zeros(1, 32, 32, dtype=torch.uint8))], crop=16, scale=2, seed=0)


def test_near_copies_are_found_through_the_thumbnail_screen():
    """A frame within 35 dB of a reference of its size is a near-copy; one that differs only in fine detail is not
    one even though its 8×8 thumbnail is identical; images of another size are not compared."""
    base = torch.randint(0, 256, (3, 48, 64), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    noisy = (base.int() + torch.randint(-2, 3, base.shape, generator=torch.Generator().manual_seed(1))).clamp(0, 255)
    clamped = base.clamp(40, 215)
    checker = torch.tensor([[40, -40], [-40, 40]]).repeat(24, 32)  # averages to 0 over every 8×8 block
    detail = (clamped.int() + checker).to(torch.uint8)  # clamped's thumbnail, 16 dB from it
    candidates = [("noisy", noisy.to(torch.uint8)), ("detail", detail), ("small", base[:, :40])]
    assert near_copies(candidates, [("base", base), ("clamped", clamped)]) == [True, False, False]
    assert near_copies(candidates, [("base", base)], psnr=50.0) == [False, False, False]
    edge = torch.randint(0, 236, (3, 64, 84), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))
    brighter = edge.clone()  # 84 columns: the last 8×8 blocks hold 4, which alone differ: 35.3 dB from `edge`
    brighter[..., -4:] += 20
    assert near_copies([("brighter", brighter)], [("edge", edge)]) == [True]
