"""Split an image into overlapping tiles, upscale them in batches, blend them back without seams.

Geometry, per axis: the image is cut into n *cores* that partition it; each tile is its core plus at least
`overlap` pixels of context on every side that borders another tile (Real-ESRGAN's ``tile_pad``), and all tiles
have one size t ≤ `tile` so that they batch. Blending: each tile's output is weighted by a window that is 1 inside
its core and ramps (linearly or by a raised cosine) across a band of half-width `feather` around each core
boundary; the two neighbours' weights sum to one, so the blend is a convex combination.

Exactness: a model with receptive-field radius r (input pixels) computes an output pixel from the input pixels
within r of it. A tile's output is therefore exact (equal to the whole-image pass) except within r of the tile's
edge, and the window is non-zero only up to `feather` pixels beyond the core. With overlap ≥ r + feather the
tiled result equals the whole-image result up to floating-point rounding; `feather = overlap − r` is the widest
exact feather, and the default whenever overlap ≥ r. For smaller overlaps the feather is the whole overlap
(classic feathered blending, the least visible seam) and `seam_error` measures what is left.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from fastgan.profiling import phase

WINDOWS = ("linear", "cosine")


@dataclass(frozen=True)
class AxisTiles:
    """The tiles along one axis of length `length`: starts (n,), one size, and the n − 1 core boundaries."""

    length: int
    size: int
    starts: tuple[int, ...]
    boundaries: tuple[int, ...]

    def context(self) -> int:
        """The least context any tile has beyond a core boundary (the whole length when there is one tile)."""
        if not self.boundaries:
            return self.length
        left = min(s + self.size - b for s, b in zip(self.starts, self.boundaries, strict=False))
        right = min(b - s for s, b in zip(self.starts[1:], self.boundaries, strict=True))
        return min(left, right)


def plan_axis(length: int, tile: int, overlap: int) -> AxisTiles:
    """Tiles of one size ≤ `tile` covering [0, length), each with ≥ `overlap` context beyond its core.

    Raises:
        ValueError: tile ≤ 2·overlap (no room for a core) or non-positive sizes.
    """
    if length < 1 or tile < 1 or overlap < 0:
        raise ValueError(f"tiling needs length, tile ≥ 1 and overlap ≥ 0, got {length}, {tile}, {overlap}")
    if length <= tile:
        return AxisTiles(length, length, (0,), ())
    if tile <= 2 * overlap:
        raise ValueError(
            f"tile {tile} leaves no core inside an overlap of {overlap} on each side; use tile > 2·overlap"
        )
    count = math.ceil((length - 2 * overlap) / (tile - 2 * overlap))
    size = math.ceil((length - 2 * overlap) / count) + 2 * overlap
    while True:  # rounding the starts can shave a pixel off an overlap: grow the tiles until none is short
        starts = tuple(round(i * (length - size) / (count - 1)) for i in range(count))
        shared = [a + size - b for a, b in zip(starts, starts[1:], strict=False)]
        if min(shared) >= 2 * overlap or size >= length:
            break
        size += 1
    boundaries = tuple((a + size + b) // 2 for a, b in zip(starts, starts[1:], strict=False))
    return AxisTiles(length, size, starts, boundaries)


def _ramp(t: torch.Tensor, window: str) -> torch.Tensor:
    """Rising edge on [0, 1] with ramp(t) + ramp(1 − t) = 1."""
    t = t.clamp(0, 1)
    return t if window == "linear" else 0.5 - 0.5 * torch.cos(math.pi * t)


def axis_weights(axis: AxisTiles, index: int, scale: int, feather: int, window: str) -> torch.Tensor:
    """Blend weights (scale·size,) of tile `index` at output resolution: 1 in its core, ramps at its boundaries."""
    centres = axis.starts[index] * scale + torch.arange(axis.size * scale, dtype=torch.float64) + 0.5
    weight = torch.ones_like(centres)
    half = feather * scale
    for side, boundary in ((-1, index - 1), (1, index)):  # the boundary before and after this tile's core
        if 0 <= boundary < len(axis.boundaries):
            inside = side * (axis.boundaries[boundary] * scale - centres)  # > 0 inside the core
            weight = weight * (_ramp((inside + half) / (2 * half), window) if half else (inside > 0).double())
    return weight


@dataclass(frozen=True)
class TilePlan:
    """Tiles over an (H, W) image: the product of the two axes' tiles, in row-major order."""

    rows: AxisTiles
    cols: AxisTiles

    @classmethod
    def for_image(cls, height: int, width: int, tile: int, overlap: int) -> TilePlan:
        return cls(plan_axis(height, tile, overlap), plan_axis(width, tile, overlap))

    def __len__(self) -> int:
        return len(self.rows.starts) * len(self.cols.starts)

    def origin(self, index: int) -> tuple[int, int, int, int]:
        """(row index, col index, y, x) of tile `index`."""
        i, j = divmod(index, len(self.cols.starts))
        return i, j, self.rows.starts[i], self.cols.starts[j]

    def context(self) -> int:
        return min(self.rows.context(), self.cols.context())


TileModel = Callable[[torch.Tensor], torch.Tensor]  # (B, C, t, t') float32 → (B, C, s·t, s·t') float32


@dataclass(frozen=True)
class _Geometry:
    """What tiling an (H, W) padded image with tiles ≤ T takes that does not depend on its pixels: the plan, each
    row's and column's blend weights (s·t,) and the inverse of the summed weights (1, s·H, s·W), on the device."""

    plan: TilePlan
    rows: list[torch.Tensor]
    cols: list[torch.Tensor]
    inverse_total: torch.Tensor


class TiledUpscaler:
    """Upscale (C, H, W) images of any size through a tile model, `batch` tiles per call.

    Args:
        model: (B, C, t, t') → (B, C, s·t, s·t'), on `device`; a backend of `fastgan.upscale.backends`.
        scale: s.
        receptive_radius: r, the model's receptive-field radius in input pixels (`receptive_radius`, or the
            ONNX metadata an export wrote); decides the default feather and is reported.
        tile: the largest tile side t the model is given.
        overlap: context pixels every tile reads beyond its core (≥ r for an exact result).
        feather: half-width of the blend band in input pixels; default `overlap − r` when overlap ≥ r (exact),
            else `overlap`.
        window: "cosine" or "linear" ramp.
        batch: tiles per model call.
        border: "reflect" pads the image by `overlap` with its mirror image before tiling, so the border pixels
            also see context (clamped to what the image can mirror); "zero" leaves the model's own zero padding.
        device: where tiles are cut and blended (the model's device).
    """

    def __init__(
        self,
        model: TileModel,
        scale: int,
        receptive_radius: int,
        tile: int = 256,
        overlap: int = 16,
        feather: int | None = None,
        window: str = "cosine",
        batch: int = 8,
        border: str = "reflect",
        device: torch.device | str = "cpu",
    ):
        if window not in WINDOWS:
            raise ValueError(f"unknown blend window {window!r}; choose one of {', '.join(WINDOWS)}")
        if border not in ("reflect", "zero"):
            raise ValueError(f"unknown border {border!r}; choose reflect or zero")
        if feather is not None and not 0 <= feather <= overlap:
            raise ValueError(f"feather must lie in [0, overlap = {overlap}], got {feather}")
        integers = (batch, scale, receptive_radius, tile, overlap, 0 if feather is None else feather)
        if any(isinstance(n, bool) or not isinstance(n, int) for n in integers):
            raise TypeError(f"batch, scale, receptive_radius, tile, overlap and feather are integers, got {integers}")
        if batch < 1 or scale < 1:
            raise ValueError(f"batch and scale must be ≥ 1, got {batch} and {scale}")
        if receptive_radius < 0:
            raise ValueError(f"receptive_radius must be ≥ 0, got {receptive_radius}")
        if tile < 1 or overlap < 0:
            raise ValueError(f"tile must be ≥ 1 and overlap ≥ 0 (--tile, --overlap), got {tile} and {overlap}")
        self.model, self.scale, self.receptive_radius = model, scale, receptive_radius
        self.tile, self.overlap, self.window, self.batch, self.border = tile, overlap, window, batch, border
        self.feather = (
            feather if feather is not None else (overlap - receptive_radius if overlap >= receptive_radius else overlap)
        )
        self.device = torch.device(device)
        self._geometry_cache: tuple[tuple[int, int, int], _Geometry] | None = None
        plan_axis(tile + 1, tile, overlap)  # reject tile ≤ 2·overlap now, not at the first large image

    @property
    def exact(self) -> bool:
        """Whether tiled output equals the whole-image output (overlap ≥ receptive radius + feather)."""
        return self.overlap >= self.receptive_radius + self.feather

    def _pad(self, image: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        if self.border == "zero":
            return image, 0, 0
        pad_y, pad_x = min(self.overlap, image.shape[1] - 1), min(self.overlap, image.shape[2] - 1)
        padded = F.pad(image[None], (pad_x, pad_x, pad_y, pad_y), mode="reflect")[0]
        return padded, pad_y, pad_x

    def _geometry(self, height: int, width: int, tile: int) -> _Geometry:
        """The `_Geometry` of a padded (height, width) image, kept for the next call: frames of a video, or a folder
        of one size, reuse it (no weights rebuilt and copied to the device, no weight sums, per frame)."""
        key = (height, width, tile)
        if self._geometry_cache is not None and self._geometry_cache[0] == key:
            return self._geometry_cache[1]
        s = self.scale
        plan = TilePlan.for_image(height, width, tile, self.overlap)
        rows, cols = (
            [axis_weights(axis, i, s, self.feather, self.window).to(self.device, torch.float32) for i in range(n)]
            for axis, n in ((plan.rows, len(plan.rows.starts)), (plan.cols, len(plan.cols.starts)))
        )
        total = torch.zeros(1, s * height, s * width, device=self.device)
        th, tw = plan.rows.size, plan.cols.size
        for k in range(len(plan)):
            i, j, y, x = plan.origin(k)
            total[:, s * y : s * (y + th), s * x : s * (x + tw)] += rows[i][:, None] * cols[j][None, :]
        geometry = _Geometry(plan, rows, cols, total.reciprocal_())
        self._geometry_cache = key, geometry
        return geometry

    def __call__(self, image: torch.Tensor, tile: int | None = None) -> torch.Tensor:
        """(C, H, W) float in [0, 1] → (C, s·H, s·W) float32 on `device`, unclamped; `tile` overrides the size
        (a tile ≥ the padded image gives the whole-image pass)."""
        _check_image(image)
        s = self.scale
        with phase("upscale/pre-process"):
            padded, pad_y, pad_x = self._pad(image.to(self.device, torch.float32))
            channels, height, width = padded.shape
            geometry = self._geometry(height, width, tile or self.tile)
            plan, rows, cols = geometry.plan, geometry.rows, geometry.cols
            out = torch.zeros(channels, s * height, s * width, device=self.device)
        th, tw = plan.rows.size, plan.cols.size
        for first in range(0, len(plan), self.batch):
            origins = [plan.origin(k) for k in range(first, min(first + self.batch, len(plan)))]
            with phase("upscale/tiles"):
                tiles = torch.stack([padded[:, y : y + th, x : x + tw] for _, _, y, x in origins])
                upscaled = self.model(tiles)  # (B, C, s·th, s·tw)
                if upscaled.shape != (len(origins), channels, s * th, s * tw):
                    raise ValueError(
                        f"the model turned tiles {tuple(tiles.shape)} into {tuple(upscaled.shape)}, not "
                        f"{(len(origins), channels, s * th, s * tw)}: it does not upscale ×{s} with {channels} "
                        "channels in and out as this upscaler was told (check the scale it was exported with)"
                    )
            with phase("upscale/blend"):
                for (i, j, y, x), tile_out in zip(origins, upscaled, strict=True):
                    weight = rows[i][:, None] * cols[j][None, :]
                    out[:, s * y : s * (y + th), s * x : s * (x + tw)] += tile_out * weight
        with phase("upscale/blend"):
            out *= geometry.inverse_total
            return out[:, s * pad_y : s * (height - pad_y), s * pad_x : s * (width - pad_x)]


def _check_image(image: torch.Tensor) -> None:
    """Refuse what the tiles would silently get wrong: integer pixels (0–255 read as intensities), channels last,
    empty images."""
    if image.dim() != 3:
        raise ValueError(f"upscale takes one (C, H, W) image, got shape {tuple(image.shape)}")
    if not image.is_floating_point():
        raise TypeError(
            f"upscale takes float pixels in [0, 1], got {image.dtype}: divide 8-bit images by 255 and 16-bit ones by "
            "65535 (fastgan.upscale.frames.read_image does this)"
        )
    if image.shape[0] > 4 and image.shape[2] <= 4:
        raise ValueError(f"image {tuple(image.shape)} looks channels-last; pass image.permute(2, 0, 1), (C, H, W)")
    if image.numel() == 0:
        raise ValueError(f"image {tuple(image.shape)} has no pixels")


def seam_error(upscaler: TiledUpscaler, image: torch.Tensor) -> float:
    """max |tiled − whole-image| over the output pixels within `feather + 1` input pixels of a core boundary, where
    seams show; 0 up to rounding when `upscaler.exact`."""
    tiled = upscaler(image)
    whole = upscaler(image, tile=max(image.shape[1:]) + 2 * upscaler.overlap)
    padded_h, padded_w = upscaler._pad(image)[0].shape[1:]
    plan = TilePlan.for_image(padded_h, padded_w, upscaler.tile, upscaler.overlap)
    pad_y, pad_x = (padded_h - image.shape[1]) // 2, (padded_w - image.shape[2]) // 2
    s, reach = upscaler.scale, upscaler.feather + 1
    near = torch.zeros(tiled.shape[1:], dtype=torch.bool)
    for b in plan.rows.boundaries:
        near[max(0, s * (b - pad_y - reach)) : max(0, s * (b - pad_y + reach)), :] = True
    for b in plan.cols.boundaries:
        near[:, max(0, s * (b - pad_x - reach)) : max(0, s * (b - pad_x + reach))] = True
    if not near.any():
        return 0.0
    return (tiled - whole).abs().amax(dim=0)[near.to(tiled.device)].max().item()
