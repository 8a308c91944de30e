"""SR metrics against scikit-image, and the SR comparison helpers (baselines, table, side-by-side image)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from skimage import data
from skimage.color import rgb2ycbcr
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from fastgan.eval.sr_compare import (
    CAPTION,
    GAP,
    LABEL_BAND,
    baseline_upscale,
    comparison_image,
    evaluate,
    markdown_table,
    quantize,
)
from fastgan.eval.sr_metrics import LOGGED_PSNR_CEILING, logged_psnr, psnr, rgb_to_y, ssim

ATOL = 1e-4


def _tensor(image: np.ndarray) -> torch.Tensor:
    """(H, W, 3) float array → (1, 3, H, W) float32 tensor."""
    return torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None]


def _array(x: torch.Tensor) -> np.ndarray:
    """(1, 3, H, W) tensor → (H, W, 3) float64 array with the same values."""
    return x[0].permute(1, 2, 0).double().numpy()


def _pairs() -> list[tuple[str, torch.Tensor, torch.Tensor]]:
    """(case, pred, target) float32 pairs: random images and real photos with noise / blur / both."""
    rng = np.random.default_rng(0)
    cases = []
    for i, (h, w) in enumerate([(37, 53), (64, 64)]):
        target = rng.random((h, w, 3))
        pred = np.clip(target + rng.normal(0, 0.1 * (i + 1), target.shape), 0, 1)
        cases.append((f"random{h}x{w}", pred, target))
    astronaut = data.astronaut()[100:260, 150:330] / 255.0
    coffee = data.coffee()[50:250, 200:440] / 255.0
    chelsea = data.chelsea()[60:180, 150:310] / 255.0
    cases.append(("astronaut+noise", np.clip(astronaut + rng.normal(0, 0.05, astronaut.shape), 0, 1), astronaut))
    cases.append(("coffee+blur", ndimage.gaussian_filter(coffee, sigma=(1.2, 1.2, 0)), coffee))
    blurred = ndimage.gaussian_filter(chelsea, sigma=(0.8, 0.8, 0))
    cases.append(("chelsea+blur+noise", np.clip(blurred + rng.normal(0, 0.02, chelsea.shape), 0, 1), chelsea))
    cases.append(("astronaut+8bit-noise", np.round(np.clip(astronaut + 0.01, 0, 1) * 255) / 255, astronaut))
    return [(name, _tensor(pred), _tensor(target)) for name, pred, target in cases]


PAIRS = _pairs()


def _skimage_ssim(pred: np.ndarray, target: np.ndarray) -> float:
    channel_axis = 2 if pred.ndim == 3 else None
    return structural_similarity(
        pred,
        target,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
        data_range=1.0,
        channel_axis=channel_axis,
    )


def _reference(pred: torch.Tensor, target: torch.Tensor, border: int, y_channel: bool) -> tuple[float, float]:
    """scikit-image's PSNR and SSIM of the same pair, cropped / converted with scikit-image's own tools."""
    p, t = _array(pred), _array(target)
    if border:
        p, t = p[border:-border, border:-border], t[border:-border, border:-border]
    if y_channel:
        p, t = rgb2ycbcr(p)[..., 0] / 255.0, rgb2ycbcr(t)[..., 0] / 255.0
    return peak_signal_noise_ratio(t, p, data_range=1.0), _skimage_ssim(p, t)


@pytest.mark.parametrize("y_channel", [False, True], ids=["rgb", "y"])
@pytest.mark.parametrize("border", [0, 2, 4])
@pytest.mark.parametrize("case", PAIRS, ids=[name for name, _, _ in PAIRS])
def test_psnr_and_ssim_match_skimage(case, border, y_channel):
    _, pred, target = case
    ref_psnr, ref_ssim = _reference(pred, target, border, y_channel)
    got_psnr = psnr(pred, target, border=border, y_channel=y_channel)
    got_ssim = ssim(pred, target, border=border, y_channel=y_channel)
    assert got_psnr.shape == got_ssim.shape == (1,)
    assert abs(got_psnr.item() - ref_psnr) < ATOL
    assert abs(got_ssim.item() - ref_ssim) < ATOL


def test_ssim_matches_skimage_on_float32_inputs_and_full_photo():
    """skimage computes float32 inputs in float32; we accumulate in float64 and still agree to 1e-4."""
    target = data.astronaut().astype(np.float32) / 255
    pred = ndimage.gaussian_filter(target, sigma=(1.0, 1.0, 0))
    got = ssim(_tensor(pred), _tensor(target), border=4).item()
    ref = _skimage_ssim(pred[4:-4, 4:-4], target[4:-4, 4:-4])
    assert abs(got - ref) < ATOL


def test_batch_gives_one_value_per_image_and_3d_input_is_one_image():
    (_, p1, t1), (_, p2, t2) = PAIRS[2], PAIRS[5]  # both astronaut crops, same size
    pred, target = torch.cat([p1, p2]), torch.cat([t1, t2])
    for metric in (psnr, ssim):
        batched = metric(pred, target, border=2, y_channel=True)
        assert batched.shape == (2,)
        single = [metric(p, t, border=2, y_channel=True).item() for p, t in ((p1, t1), (p2, t2))]
        torch.testing.assert_close(batched, torch.tensor(single, dtype=torch.float64))
        assert metric(p1[0], t1[0]).shape == (1,)


def test_rgb_to_y_matches_skimage_rgb2ycbcr():
    rgb = np.random.default_rng(1).random((9, 11, 3))
    got = rgb_to_y(_tensor(rgb).double())
    assert got.shape == (1, 1, 9, 11)
    np.testing.assert_allclose(got[0, 0].numpy(), rgb2ycbcr(rgb)[..., 0] / 255.0, atol=1e-12)
    corners = rgb_to_y(torch.tensor([0.0, 1.0]).view(2, 1, 1, 1).expand(2, 3, 1, 1))
    torch.testing.assert_close(corners.flatten(), torch.tensor([16 / 255, 235 / 255]))


def test_identical_images_give_infinite_psnr_and_unit_ssim():
    _, _, target = PAIRS[2]
    for y_channel in (False, True):
        assert math.isinf(psnr(target, target.clone(), border=2, y_channel=y_channel).item())
        assert ssim(target, target.clone(), border=2, y_channel=y_channel).item() == pytest.approx(1.0, abs=1e-12)


def test_logged_psnr_caps_an_exact_match():
    """A flat black crop upscaled exactly is +inf dB; the training log averages it as the ceiling instead."""
    target = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    pred = target.clone()
    pred[1] = (pred[1] + 0.1).clamp(0, 1)  # image 0 exact, image 1 not
    expected = (LOGGED_PSNR_CEILING + psnr(pred[1:], target[1:], border=2).item()) / 2
    assert logged_psnr(pred, target, 2) == pytest.approx(expected)


def test_bad_inputs_raise_clear_errors():
    x = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match="same shape"):
        psnr(x, torch.rand(1, 3, 32, 31))
    with pytest.raises(ValueError, match="same shape"):
        ssim(x, torch.rand(2, 3, 32, 32))
    with pytest.raises(ValueError, match="same dtype"):
        psnr(x, x.double())
    with pytest.raises(ValueError, match="same dtype"):
        ssim(x, x.half())
    with pytest.raises(ValueError, match="floating-point"):
        psnr((x * 255).byte(), (x * 255).byte())
    with pytest.raises(ValueError, match="C = 3"):
        ssim(x[:, :1], x[:, :1], y_channel=True)
    with pytest.raises(ValueError, match="11x11"):
        ssim(x, x, border=11)  # 10x10 left
    with pytest.raises(ValueError, match="border"):
        psnr(x, x, border=16)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        rgb_to_y(x[:, :2])


# --- sr_compare ---------------------------------------------------------------------------------------------


def _photo_pair(scale: int, name: str = "coffee") -> tuple[str, torch.Tensor, torch.Tensor]:
    """A real photo crop as HR (a multiple of `scale`) and its PIL-bicubic 8-bit downscale as LR."""
    photo = getattr(data, name)()[:192, :256]
    lr = Image.fromarray(photo).resize((256 // scale, 192 // scale), Image.BICUBIC)
    return name, _tensor(np.asarray(lr) / 255.0), _tensor(photo / 255.0)


@pytest.mark.parametrize("method", ["bicubic", "lanczos", "nearest"])
def test_baseline_upscale_shapes_and_range(method):
    lr = torch.rand(2, 3, 10, 14)
    out = baseline_upscale(lr, 3, method)
    assert out.shape == (2, 3, 30, 42) and out.dtype == torch.float32
    assert out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(out, quantize(out))  # 8-bit values
    if method == "nearest":
        torch.testing.assert_close(out[:, :, ::3, ::3], quantize(lr))


def test_baseline_upscale_rejects_bad_arguments():
    with pytest.raises(ValueError, match="unknown baseline"):
        baseline_upscale(torch.rand(1, 3, 4, 4), 2, "bilinear-ish")
    with pytest.raises(ValueError, match="scale"):
        baseline_upscale(torch.rand(1, 3, 4, 4), 0)
    with pytest.raises(ValueError, match=r"\(N, 3, h, w\)"):
        baseline_upscale(torch.rand(3, 4, 4), 2)


def test_bicubic_beats_nearest_on_a_real_photo():
    _, lr, hr = _photo_pair(2)
    bicubic = psnr(baseline_upscale(lr, 2, "bicubic"), hr, border=2).item()
    nearest = psnr(baseline_upscale(lr, 2, "nearest"), hr, border=2).item()
    assert math.isfinite(bicubic) and bicubic > nearest + 0.5


def _upscalers(scale: int) -> dict:
    return {method: (lambda lr, m=method: baseline_upscale(lr, scale, m)) for method in ("bicubic", "nearest")}


def test_evaluate_rows_and_means():
    scale = 2
    pairs = [_photo_pair(scale, "coffee"), _photo_pair(scale, "astronaut")]
    hrs = iter([hr for _, _, hr in pairs])
    upscalers = {**_upscalers(scale), "oracle": lambda lr: next(hrs)}  # returns the HR image itself
    rows = evaluate(upscalers, pairs, scale)
    assert [(r["image"], r["method"]) for r in rows] == [
        (image, method) for image in ("coffee", "astronaut", "mean") for method in ("bicubic", "nearest", "oracle")
    ]
    for row in rows:
        assert set(row) == {"image", "method", "psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "scale"}
    by = {(r["image"], r["method"]): r for r in rows}
    for key in ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y"):
        mean = (by["coffee", "bicubic"][key] + by["astronaut", "bicubic"][key]) / 2
        assert by["mean", "bicubic"][key] == pytest.approx(mean)
    assert by["mean", "bicubic"]["psnr_y"] > by["mean", "nearest"]["psnr_y"]
    assert math.isinf(by["mean", "oracle"]["psnr_rgb"]) and by["mean", "oracle"]["ssim_y"] == pytest.approx(1.0)
    # the numbers are the metrics of the 8-bit output with a border of `scale` pixels
    _, lr, hr = pairs[0]
    out = baseline_upscale(lr, scale, "bicubic")
    assert by["coffee", "bicubic"]["ssim_y"] == ssim(out, hr, border=scale, y_channel=True).item()


def test_evaluate_rejects_wrong_output_size():
    pair = _photo_pair(2)
    with pytest.raises(ValueError, match="upscaler 'bad' returned"):
        evaluate({"bad": lambda lr: baseline_upscale(lr, 3, "bicubic")}, [pair], 2)
    with pytest.raises(ValueError, match="multiple of the scale"):
        evaluate(_upscalers(3), [pair], 3)
    name, lr, hr = pair
    small = ("tiny", lr[..., :7, :7], hr[..., :14, :14])  # SSIM's 11×11 window does not fit inside the border
    with pytest.raises(ValueError, match=r"image 'tiny' \(HR crop 14×14\): ssim: .* fewer than the 11x11"):
        evaluate(_upscalers(2), [pair, small], 2)


def test_markdown_table_has_caption_and_every_method():
    scale = 2
    rows = evaluate(_upscalers(scale), [_photo_pair(scale)], scale)
    table = markdown_table(rows)
    lines = table.splitlines()
    assert lines[0] == CAPTION.format(border=2)
    assert "PSNR/SSIM on RGB and on Y (BT.601)" in lines[0] and "outputs quantised to 8 bits" in lines[0]
    body = [line for line in lines if line.startswith("| ") and "method" not in line]
    assert len(body) == len(rows) == 4
    for method in ("bicubic", "nearest"):
        assert sum(f"| {method} |" in line for line in body) == 2
    assert sum("**mean**" in line for line in body) == 2


@pytest.mark.parametrize("crop", [None, (8, 16, 40)])
def test_comparison_image_size(crop):
    lr = torch.rand(1, 3, 24, 32)
    hr = torch.rand(1, 3, 48, 64)
    outputs = {"bicubic": baseline_upscale(lr, 2, "bicubic"), "a very long method name": hr[0].clone()}
    image = comparison_image(lr, outputs, hr, crop=crop)
    height, width = (40, 40) if crop else (48, 64)
    panels = len(outputs) + 2
    assert image.mode == "RGB"
    assert image.size == (panels * width + (panels - 1) * GAP, height + LABEL_BAND)
    pixels = np.asarray(image)
    hr_panel = pixels[LABEL_BAND:, -width:]
    top, left = crop[:2] if crop else (0, 0)
    expected = (quantize(hr)[0, :, top : top + height, left : left + width] * 255).round().byte()
    np.testing.assert_array_equal(hr_panel, expected.permute(1, 2, 0).numpy())
    assert (pixels[:LABEL_BAND] < 128).any()  # some label text was drawn


def test_comparison_image_rejects_bad_crop_and_sizes():
    lr, hr = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="does not fit"):
        comparison_image(lr, {}, hr, crop=(10, 0, 8))
    with pytest.raises(ValueError, match="output 'x' has shape"):
        comparison_image(lr, {"x": torch.rand(3, 16, 15)}, hr)


def test_images_on_another_scale_than_0_to_1_are_refused():
    """0–255 float images once gave a plausible but wrong SSIM of 0.989 and a PSNR 48 dB too low."""
    target = torch.rand(1, 3, 16, 16) * 255
    for metric in (psnr, ssim):
        with pytest.raises(ValueError, match=r"not \[0, 1\]; scale the images"):
            metric(target.clone(), target)
        holed = torch.where(target > 100, target / 255, torch.nan)  # NaN passed the range check: a NaN score
        with pytest.raises(ValueError, match="target holds NaN"):
            metric(holed.nan_to_num(), holed)


def test_the_logged_psnr_reads_nothing_back_to_the_host():
    """The SR/LAG steps read their metrics in one host synchronisation: the per-step PSNR must not add one (the
    public psnr's range check of its targets does, which the counter sees)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class ScalarReads(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            self.count += func is torch.ops.aten._local_scalar_dense.default  # .item(), bool(), float() of a tensor
            return func(*args, **(kwargs or {}))

    pred, target = torch.rand(2, 3, 12, 12), torch.rand(2, 3, 12, 12)
    with ScalarReads() as logged:
        logged_psnr(pred, target, border=2)
    with ScalarReads() as public:
        psnr(pred, target, border=2)
    assert logged.count == 0 and public.count > 0
