"""Compare super-resolution upscalers: PIL baselines, a PSNR/SSIM table, and a side-by-side image.

Typical use (what ``python -m fastgan.eval sr`` does)::

    upscalers = {
        "bicubic": lambda lr: baseline_upscale(lr, scale, "bicubic"),
        "lanczos": lambda lr: baseline_upscale(lr, scale, "lanczos"),
        "fastgan": model_fn,  # (1, 3, h, w) -> (1, 3, s*h, s*w) in [0, 1]
    }
    print(markdown_table(evaluate(upscalers, [(name, lr, hr), ...], scale)))
    comparison_image(lr, {"bicubic": ..., "fastgan": ...}, hr, crop=(top, left, size)).save("cmp.png")
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from fastgan.eval.sr_metrics import psnr, ssim

BASELINES = {"bicubic": Image.BICUBIC, "lanczos": Image.LANCZOS, "nearest": Image.NEAREST}
CAPTION = "PSNR/SSIM on RGB and on Y (BT.601), border of {border} pixels cropped, outputs quantised to 8 bits."
METRICS = ("psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y")
GAP = 4  # pixels between the panels of `comparison_image`
LABEL_BAND = 16  # pixels above the panels for the labels


def quantize(x: torch.Tensor) -> torch.Tensor:
    """Round to 8 bits and back: round(clamp(x, 0, 1) · 255) / 255, same shape and dtype."""
    return (x.clamp(0, 1) * 255).round() / 255


def _to_uint8(x: torch.Tensor) -> np.ndarray:
    """(3, H, W) float in [0, 1] → (H, W, 3) uint8 array."""
    return (x.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


def _check_images(name: str, x: torch.Tensor) -> torch.Tensor:
    """Accept (1, 3, H, W) or (3, H, W) floats; return (3, H, W)."""
    if not isinstance(x, torch.Tensor) or not x.is_floating_point():
        kind = x.dtype if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"{name} must be a float tensor in [0, 1], got {kind}")
    if x.dim() == 4 and x.shape[0] == 1:
        x = x[0]
    if x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must be one RGB image, (1, 3, H, W) or (3, H, W); got shape {tuple(x.shape)}")
    return x


def baseline_upscale(lr: torch.Tensor, scale: int, method: str = "bicubic") -> torch.Tensor:
    """Upscale with PIL on 8-bit images: the standard bicubic / Lanczos / nearest baselines.

    Args:
        lr: (N, 3, h, w) float images in [0, 1] (quantised to 8 bits before resizing).
        scale: integer factor >= 1.
        method: "bicubic", "lanczos" or "nearest".

    Returns:
        (N, 3, scale·h, scale·w) float32 in [0, 1] (multiples of 1/255), on `lr`'s device.
    """
    if method not in BASELINES:
        raise ValueError(f"unknown baseline method {method!r}; choose one of {', '.join(BASELINES)}")
    if not isinstance(scale, int) or scale < 1:
        raise ValueError(f"scale must be an integer >= 1, got {scale!r}")
    if not isinstance(lr, torch.Tensor) or lr.dim() != 4 or lr.shape[1] != 3 or not lr.is_floating_point():
        shape = tuple(lr.shape) if isinstance(lr, torch.Tensor) else type(lr).__name__
        raise ValueError(f"baseline_upscale expects (N, 3, h, w) float images in [0, 1], got {shape}")
    height, width = lr.shape[-2:]
    out = []
    for image in lr:
        resized = Image.fromarray(_to_uint8(image)).resize((width * scale, height * scale), BASELINES[method])
        out.append(torch.from_numpy(np.asarray(resized).copy()).permute(2, 0, 1))
    return (torch.stack(out).float() / 255).to(lr.device)


def evaluate(
    upscalers: dict[str, Callable[[torch.Tensor], torch.Tensor]],
    pairs: list[tuple[str, torch.Tensor, torch.Tensor]],
    scale: int,
) -> list[dict]:
    """PSNR/SSIM of every upscaler on every (name, LR, HR) pair, plus a mean row per method.

    Outputs and HR are quantised to 8 bits (`quantize`); both metrics are computed on RGB and on the BT.601
    luma Y, with a border of `scale` pixels cropped.

    Args:
        upscalers: method name → function mapping a (1, 3, h, w) LR image to (1, 3, scale·h, scale·w) in [0, 1].
        pairs: (image name, LR (1, 3, h, w), HR (1, 3, scale·h, scale·w)) triples.
        scale: the upscaling factor, also the border crop.

    Returns:
        Rows ``{"image", "method", "psnr_rgb", "ssim_rgb", "psnr_y", "ssim_y", "scale"}`` (floats), image by
        image in the order of `pairs` and methods in the order of `upscalers`, then one row per method with
        image "mean" (arithmetic means over images).
    """
    if not upscalers:
        raise ValueError("evaluate needs at least one upscaler")
    if not pairs:
        raise ValueError("evaluate needs at least one (name, lr, hr) pair")
    rows, per_method = [], {method: [] for method in upscalers}
    for name, lr, hr in pairs:
        hr = _check_images(f"HR image {name!r}", hr).unsqueeze(0).cpu()
        if (
            hr.shape[-2] % scale
            or hr.shape[-1] % scale
            or lr.shape[-2:] != (hr.shape[-2] // scale, hr.shape[-1] // scale)
        ):
            raise ValueError(
                f"image {name!r}: LR is {tuple(lr.shape[-2:])} but HR {tuple(hr.shape[-2:])} at scale {scale}; "
                "crop HR to a multiple of the scale and make LR from it"
            )
        target = quantize(hr.float())
        for method, upscale in upscalers.items():
            out = upscale(lr)
            if not isinstance(out, torch.Tensor) or out.shape[-3:] != hr.shape[-3:] or out.numel() != hr.numel():
                shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
                raise ValueError(f"upscaler {method!r} returned {shape} for image {name!r}, expected {tuple(hr.shape)}")
            pred = quantize(out.detach().float().cpu().reshape(target.shape))
            try:
                row = {
                    "image": name,
                    "method": method,
                    "psnr_rgb": psnr(pred, target, border=scale).item(),
                    "ssim_rgb": ssim(pred, target, border=scale).item(),
                    "psnr_y": psnr(pred, target, border=scale, y_channel=True).item(),
                    "ssim_y": ssim(pred, target, border=scale, y_channel=True).item(),
                    "scale": scale,
                }
            except ValueError as error:  # e.g. too small for SSIM's window: name the image, as cropped here
                raise ValueError(f"image {name!r} (HR crop {hr.shape[-2]}×{hr.shape[-1]}): {error}") from error
            rows.append(row)
            per_method[method].append(row)
    for method, method_rows in per_method.items():
        mean = {key: float(np.mean([row[key] for row in method_rows])) for key in METRICS}
        rows.append({"image": "mean", "method": method, **mean, "scale": scale})
    return rows


def markdown_table(rows: list[dict]) -> str:
    """A Markdown table of `evaluate`'s rows (image, method, PSNR/SSIM on RGB and Y) under a caption line."""
    scales = {row["scale"] for row in rows if "scale" in row}
    border = str(scales.pop()) if len(scales) == 1 else "`scale`"
    lines = [
        CAPTION.format(border=border),
        "",
        "| image | method | PSNR RGB (dB) | SSIM RGB | PSNR Y (dB) | SSIM Y |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for row in rows:
        image = "**mean**" if row["image"] == "mean" else row["image"]
        lines.append(
            f"| {image} | {row['method']} | {row['psnr_rgb']:.2f} | {row['ssim_rgb']:.4f} "
            f"| {row['psnr_y']:.2f} | {row['ssim_y']:.4f} |"
        )
    return "\n".join(lines) + "\n"


def comparison_image(
    lr: torch.Tensor,
    outputs: dict[str, torch.Tensor],
    hr: torch.Tensor,
    crop: tuple[int, int, int] | None = None,
) -> Image.Image:
    """Side-by-side panels LR | each output | HR with a label above each, as one RGB PIL image.

    The LR panel is nearest-upscaled to the HR size so that all panels align.

    Args:
        lr: (1, 3, h, w) or (3, h, w) in [0, 1].
        outputs: method name → (1, 3, H, W) or (3, H, W) in [0, 1], the HR size; panels in dict order.
        hr: (1, 3, H, W) or (3, H, W) in [0, 1].
        crop: optional (top, left, size) square in HR pixels; every panel shows only that region.

    Returns:
        An RGB image of width panels · W' + (panels - 1) · GAP and height H' + LABEL_BAND, where W', H' are
        the HR size or the crop size and panels = len(outputs) + 2.
    """
    lr, hr = _check_images("lr", lr), _check_images("hr", hr)
    height, width = hr.shape[-2:]
    panels = [("LR (nearest)", Image.fromarray(_to_uint8(lr)).resize((width, height), Image.NEAREST))]
    for method, out in outputs.items():
        out = _check_images(f"output {method!r}", out)
        if out.shape != hr.shape:
            raise ValueError(f"output {method!r} has shape {tuple(out.shape)} but HR has {tuple(hr.shape)}")
        panels.append((method, Image.fromarray(_to_uint8(out))))
    panels.append(("HR", Image.fromarray(_to_uint8(hr))))
    if crop is not None:
        top, left, size = crop
        if size < 1 or top < 0 or left < 0 or top + size > height or left + size > width:
            raise ValueError(f"crop (top, left, size) = {crop} does not fit in the {height}x{width} HR image")
        panels = [(label, panel.crop((left, top, left + size, top + size))) for label, panel in panels]
        height = width = size
    canvas = Image.new("RGB", (len(panels) * width + (len(panels) - 1) * GAP, height + LABEL_BAND), "white")
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for i, (label, panel) in enumerate(panels):
        x = i * (width + GAP)
        canvas.paste(panel, (x, LABEL_BAND))
        while len(label) > 1 and draw.textlength(label, font=font) > width - 2:  # keep labels within their panel
            label = label[:-1]
        draw.text((x + 1, 2), label, fill="black", font=font)
    return canvas
