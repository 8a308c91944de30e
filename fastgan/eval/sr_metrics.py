"""Super-resolution metrics: PSNR and SSIM on RGB or on the BT.601 luma, with the SR border crop.

Both follow the conventions of the SR literature (SRCNN, SRGAN, BasicSR) and agree with scikit-image:

- `psnr` = ``skimage.metrics.peak_signal_noise_ratio(target, pred, data_range=1.0)`` (MSE over all channels).
- `ssim` = ``skimage.metrics.structural_similarity(pred, target, gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=1.0, channel_axis=...)``: Wang et al. 2004 with an 11×11 Gaussian
  window (σ = 1.5), K1 = 0.01, K2 = 0.03, computed per channel and averaged over channels. scikit-image filters
  with reflect padding and then drops a (11 - 1) // 2 = 5 pixel strip on every side; as the window radius is
  also 5, that equals a "valid" convolution, which is what we compute.

Everything is computed in float64 on the inputs' device. The metrics use the given floats as they are: pass
8-bit-quantised images (``round(x * 255) / 255``, see `fastgan.eval.sr_compare.quantize`) for numbers that are
comparable with published ones. `border` crops that many pixels from every side first (convention: border =
scale); `y_channel` converts RGB to the BT.601 luma Y first (`rgb_to_y`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

SSIM_SIGMA = 1.5
SSIM_RADIUS = 5  # int(3.5 * sigma + 0.5): scikit-image's truncate=3.5 gives an 11-tap window
#: Training logs cap each image's PSNR here (`logged_psnr`).
LOGGED_PSNR_CEILING = 100.0
SSIM_K1, SSIM_K2 = 0.01, 0.03

_Y_WEIGHTS = (65.481 / 255.0, 128.553 / 255.0, 24.966 / 255.0)
_Y_OFFSET = 16.0 / 255.0


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """ITU-R BT.601 luma of [0, 1] RGB, as MATLAB's ``rgb2ycbcr`` and the SR literature compute it.

    Y = 16/255 + (65.481 R + 128.553 G + 24.966 B) / 255, so Y lies in [16/255, 235/255].

    Args:
        x: (N, 3, H, W) RGB in [0, 1], floating point.

    Returns:
        (N, 1, H, W) luma, same dtype and device as `x`.
    """
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"rgb_to_y expects (N, 3, H, W) RGB images, got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"rgb_to_y expects floating-point images in [0, 1], got {x.dtype}; divide uint8 by 255")
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return _Y_OFFSET + _Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b


def _prepare(
    name: str,
    pred: torch.Tensor,
    target: torch.Tensor,
    border: int,
    y_channel: bool,
    min_side: int = 1,
    check_range: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Check the pair (`check_range`: also target's values, a host synchronisation), crop `border`, convert to Y if
    asked; return two (N, C, H', W') float64 tensors."""
    if not isinstance(pred, torch.Tensor) or not isinstance(target, torch.Tensor):
        raise ValueError(f"{name} expects torch tensors, got {type(pred).__name__} and {type(target).__name__}")
    if pred.shape != target.shape:
        raise ValueError(
            f"{name}: pred and target must have the same shape, got {tuple(pred.shape)} and {tuple(target.shape)}"
        )
    if pred.dtype != target.dtype:
        raise ValueError(
            f"{name}: pred and target must have the same dtype, got {pred.dtype} and {target.dtype}; "
            "convert both, e.g. with .float()"
        )
    if not pred.is_floating_point():
        raise ValueError(f"{name} expects floating-point images in [0, 1], got {pred.dtype}; divide uint8 by 255")
    if pred.device != target.device:
        raise ValueError(f"{name}: pred is on {pred.device} but target on {target.device}; move them to one device")
    if check_range and target.numel() and target.isnan().any():
        raise ValueError(f"{name}: target holds NaN; score images of finite values in [0, 1]")
    if check_range and target.numel() and (target.amin() < 0 or target.amax() > 1):
        raise ValueError(
            f"{name}: target values lie in [{target.amin().item():g}, {target.amax().item():g}], not [0, 1]; scale "
            "the images to [0, 1] (0–255 floats: divide by 255)"
        )
    if pred.dim() == 3:
        pred, target = pred.unsqueeze(0), target.unsqueeze(0)
    if pred.dim() != 4:
        raise ValueError(f"{name} expects (N, C, H, W) or (C, H, W) images, got shape {tuple(pred.shape)}")
    if y_channel and pred.shape[1] != 3:
        raise ValueError(f"{name}(y_channel=True) needs RGB images (C = 3), got shape {tuple(pred.shape)}")
    if border < 0:
        raise ValueError(f"{name}: border must be >= 0, got {border}")
    height, width = pred.shape[-2] - 2 * border, pred.shape[-1] - 2 * border
    if height < min_side or width < min_side:
        raise ValueError(
            f"{name}: images of {pred.shape[-2]}x{pred.shape[-1]} pixels less a border of {border} leave "
            f"{max(height, 0)}x{max(width, 0)}, fewer than the {min_side}x{min_side} needed; use larger images"
        )
    if border:
        pred = pred[..., border:-border, border:-border]
        target = target[..., border:-border, border:-border]
    pred, target = pred.double(), target.double()
    if y_channel:
        pred, target = rgb_to_y(pred), rgb_to_y(target)
    return pred, target


def psnr(pred: torch.Tensor, target: torch.Tensor, border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Peak signal-to-noise ratio per image, 10 log10(1 / MSE), the MSE taken over all channels.

    Args:
        pred: (N, C, H, W) or (C, H, W) images in [0, 1], floating point.
        target: same shape, dtype and device as `pred`.
        border: pixels cropped from every side before measuring (the SR convention: border = scale).
        y_channel: measure the BT.601 luma (`rgb_to_y`) instead of the RGB channels; needs C = 3.

    Returns:
        (N,) float64 PSNR in dB; +inf where pred equals target.
    """
    return _psnr_of(*_prepare("psnr", pred, target, border, y_channel))


def _psnr_of(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """(N,) PSNR of prepared (N, C, H, W) float64 pairs."""
    mse = (pred - target).square().mean(dim=(1, 2, 3))
    return 10.0 * torch.log10(1.0 / mse)  # mse = 0 gives +inf


def logged_psnr(pred: torch.Tensor, target: torch.Tensor, border: int) -> torch.Tensor:
    """The mean PSNR (dB) of a training batch for the run's log, each image's capped at LOGGED_PSNR_CEILING: an exact
    match (a flat black crop of a game or a video) is +inf dB, which a run would take for a diverged loss.

    Args:
        pred, target: (N, C, H, W) in [0, 1].
        border: pixels cropped from every side (the scale).

    Returns:
        () tensor on pred's device (read with the step's other metrics, in one host synchronisation: the targets,
        the run's own data, are not range-checked, which would synchronise).
    """
    prepared = _prepare("psnr", pred, target, border, y_channel=False, check_range=False)
    return _psnr_of(*prepared).clamp_max(LOGGED_PSNR_CEILING).mean()


def _gaussian_window(device: torch.device) -> torch.Tensor:
    """The normalised 11-tap Gaussian (σ = 1.5), (11,) float64, as scipy.ndimage.gaussian_filter builds it."""
    offsets = torch.arange(-SSIM_RADIUS, SSIM_RADIUS + 1, dtype=torch.float64, device=device)
    window = torch.exp(-0.5 * (offsets / SSIM_SIGMA) ** 2)
    return window / window.sum()


def ssim(pred: torch.Tensor, target: torch.Tensor, border: int = 0, y_channel: bool = False) -> torch.Tensor:
    """Structural similarity per image (Wang et al. 2004), matching scikit-image's Gaussian-weighted SSIM.

    Local statistics use an 11×11 Gaussian window (σ = 1.5, separable, float64) over the valid region only
    (scikit-image's crop of (11 - 1) // 2 pixels), population (co)variances, C1 = (0.01)², C2 = (0.03)² for
    data range 1; the SSIM map is averaged over pixels and then over channels.

    Args:
        pred: (N, C, H, W) or (C, H, W) images in [0, 1], floating point; H, W >= 11 + 2 * border.
        target: same shape, dtype and device as `pred`.
        border: pixels cropped from every side before measuring (the SR convention: border = scale).
        y_channel: measure the BT.601 luma (`rgb_to_y`) instead of the RGB channels; needs C = 3.

    Returns:
        (N,) float64 mean SSIM; 1 where pred equals target.
    """
    size = 2 * SSIM_RADIUS + 1
    pred, target = _prepare("ssim", pred, target, border, y_channel, min_side=size)
    n, c = pred.shape[:2]
    # (N, 5C, H, W): the five quantities whose local (weighted) means SSIM needs
    stats = torch.cat([pred, target, pred * pred, target * target, pred * target], dim=1)
    window = _gaussian_window(pred.device)
    groups = stats.shape[1]
    stats = F.conv2d(stats, window.view(1, 1, 1, size).expand(groups, 1, 1, size), groups=groups)  # rows
    stats = F.conv2d(stats, window.view(1, 1, size, 1).expand(groups, 1, size, 1), groups=groups)  # columns
    mu_x, mu_y, e_xx, e_yy, e_xy = stats.split(c, dim=1)  # each (N, C, H - 10, W - 10)
    var_x = e_xx - mu_x * mu_x
    var_y = e_yy - mu_y * mu_y
    cov_xy = e_xy - mu_x * mu_y
    c1, c2 = SSIM_K1**2, SSIM_K2**2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.mean(dim=(2, 3)).mean(dim=1).view(n)
