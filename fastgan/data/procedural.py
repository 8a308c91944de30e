"""The embedded dataset: ten classes of anti-aliased vector scenes, renderable at any resolution.

Every image is a bright, upright (tilted by at most 20°) shape (the class) with a thin darker
outline over a dark two-colour linear-gradient background. Scene parameters (position, size, tilt,
colours) are drawn once per seed; rendering is a pure function of those parameters and the
resolution, so the 32×32 training images and the 64×64/128×128 high-resolution truth show the same
scenes. Coverage is analytic (signed distance over pixel size), so an R×R render is close to the
area-average of a 2R×2R render.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

CLASS_NAMES = ("disc", "ring", "crescent", "triangle", "square", "hexagon", "star", "cross", "arrow", "bars")
NUM_CLASSES = len(CLASS_NAMES)
MAX_TILT = math.radians(20)  # shapes stand upright, tilted by at most this much
OUTLINE_WIDTH = 0.025  # half-width of the outline stroke, in scene units (the scene spans [-1, 1])
_PIXELS_PER_CHUNK = 1 << 22  # bounds the (images × pixels × vertices) temporaries of one chunk


def _regular_polygon(sides: int, radius: float = 1.0) -> torch.Tensor:
    angles = torch.arange(sides, dtype=torch.float64) * (2 * math.pi / sides) + math.pi / 2
    return torch.stack([radius * angles.cos(), radius * angles.sin()], dim=1)


def _star(points: int = 5, inner: float = 0.45) -> torch.Tensor:
    angles = torch.arange(2 * points, dtype=torch.float64) * (math.pi / points) + math.pi / 2
    radii = torch.tensor([1.0, inner], dtype=torch.float64).repeat(points)
    return torch.stack([radii * angles.cos(), radii * angles.sin()], dim=1)


def _cross(arm: float = 0.33) -> torch.Tensor:
    a, b = arm, 1.0
    return torch.tensor(
        [(a, b), (a, a), (b, a), (b, -a), (a, -a), (a, -b), (-a, -b), (-a, -a), (-b, -a), (-b, a), (-a, a), (-a, b)],
        dtype=torch.float64,
    )


def _arrow() -> torch.Tensor:
    return torch.tensor(
        [(1.0, 0.0), (0.1, 0.8), (0.1, 0.3), (-1.0, 0.3), (-1.0, -0.3), (0.1, -0.3), (0.1, -0.8)], dtype=torch.float64
    )


_POLYGONS = {
    "triangle": _regular_polygon(3, 1.1),
    "square": _regular_polygon(4, 1.05),
    "hexagon": _regular_polygon(6, 1.0),
    "star": _star(),
    "cross": _cross(),
    "arrow": _arrow(),
}
_BARS = ((-0.6, 0.0, 0.18, 0.95), (0.0, 0.0, 0.18, 0.95), (0.6, 0.0, 0.18, 0.95))  # (cx, cy, half-w, half-h)


def _polygon_sdf(p: torch.Tensor, vertices: torch.Tensor) -> torch.Tensor:
    """Signed distance from points p (..., 2) to a closed polygon (V, 2); negative inside (even-odd rule)."""
    v = vertices.to(p.dtype)
    a, b = v, v.roll(-1, dims=0)  # edges a -> b, (V, 2)
    edge = b - a
    rel = p.unsqueeze(-2) - a  # (..., V, 2)
    t = ((rel * edge).sum(-1) / (edge * edge).sum(-1)).clamp(0.0, 1.0)
    dist = (rel - t.unsqueeze(-1) * edge).norm(dim=-1).amin(-1)
    py = p[..., 1:2]
    crosses = (a[:, 1] > py) != (b[:, 1] > py)
    x_at = a[:, 0] + (py - a[:, 1]) * edge[:, 0] / torch.where(edge[:, 1] == 0, 1e-12, edge[:, 1])
    inside = (crosses & (p[..., 0:1] < x_at)).sum(-1) % 2 == 1
    return torch.where(inside, -dist, dist)


def _box_sdf(p: torch.Tensor, cx: float, cy: float, hw: float, hh: float) -> torch.Tensor:
    q = (p - p.new_tensor([cx, cy])).abs() - p.new_tensor([hw, hh])
    return q.clamp(min=0).norm(dim=-1) + q.amax(-1).clamp(max=0)


def shape_sdf(name: str, p: torch.Tensor) -> torch.Tensor:
    """Signed distance to the unit-size shape of class `name` at local points p (..., 2)."""
    radius = p.norm(dim=-1)
    if name == "disc":
        return radius - 1.0
    if name == "ring":
        return (radius - 0.72).abs() - 0.28
    if name == "crescent":
        bite = (p - p.new_tensor([0.45, 0.0])).norm(dim=-1) - 0.8
        return torch.maximum(radius - 1.0, -bite)
    if name == "bars":
        return torch.stack([_box_sdf(p, *bar) for bar in _BARS]).amin(0)
    return _polygon_sdf(p, _POLYGONS[name])


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(N,) hue/saturation/value in [0, 1] -> (N, 3) RGB in [0, 1]."""
    k = (torch.tensor([5.0, 3.0, 1.0], dtype=h.dtype) + 6.0 * h.unsqueeze(1)) % 6.0
    return v.unsqueeze(1) - (v * s).unsqueeze(1) * torch.minimum(k, 4.0 - k).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Scenes:
    """Parameters of N scenes; every field is a float64 tensor with N rows."""

    labels: torch.Tensor  # (N,) int64 class index
    center: torch.Tensor  # (N, 2) in scene units
    size: torch.Tensor  # (N,) shape radius
    angle: torch.Tensor  # (N,) tilt, radians
    fill: torch.Tensor  # (N, 3) RGB in [0, 1]
    outline: torch.Tensor  # (N, 3)
    background: torch.Tensor  # (N, 2, 3) the two gradient end colours
    direction: torch.Tensor  # (N, 2) unit gradient direction

    def __len__(self) -> int:
        return self.labels.numel()


def sample_scenes(num_images: int, seed: int) -> Scenes:
    """Draw `num_images` scenes with balanced labels, deterministically from `seed`."""
    g = torch.Generator().manual_seed(seed)

    def uniform(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return torch.rand(*shape, generator=g, dtype=torch.float64) * (high - low) + low

    labels = (torch.arange(num_images) % NUM_CLASSES)[torch.randperm(num_images, generator=g)]
    fill = _hsv_to_rgb(uniform(num_images), uniform(num_images, low=0.55, high=1.0), uniform(num_images, low=0.75))
    bg_hue = uniform(num_images)
    background = torch.stack(
        [
            _hsv_to_rgb(
                (bg_hue + uniform(num_images, high=0.1)) % 1.0,
                uniform(num_images, high=0.5),
                uniform(num_images, low=0.08, high=0.3),
            )
            for _ in range(2)
        ],
        dim=1,
    )
    theta = uniform(num_images, high=2 * math.pi)
    return Scenes(
        labels=labels,
        center=uniform(num_images, 2, low=-0.2, high=0.2),
        size=uniform(num_images, low=0.45, high=0.7),
        angle=uniform(num_images, low=-MAX_TILT, high=MAX_TILT),
        fill=fill,
        outline=fill * 0.35,
        background=background,
        direction=torch.stack([theta.cos(), theta.sin()], dim=1),
    )


def _render_chunk(scenes: Scenes, rows: slice, resolution: int) -> torch.Tensor:
    coords = (torch.arange(resolution, dtype=torch.float32) + 0.5) * (2.0 / resolution) - 1.0
    yy, xx = torch.meshgrid(-coords, coords, indexing="ij")  # image row 0 is the top (y = +1)
    grid = torch.stack([xx, yy], dim=-1).reshape(1, -1, 2)  # (1, P, 2)
    pixel = 2.0 / resolution
    labels = scenes.labels[rows]
    center, size, angle = (t[rows].float() for t in (scenes.center, scenes.size, scenes.angle))
    cos, sin = angle.cos().view(-1, 1), angle.sin().view(-1, 1)
    rel = grid - center.unsqueeze(1)  # (n, P, 2)
    local = torch.stack([cos * rel[..., 0] + sin * rel[..., 1], -sin * rel[..., 0] + cos * rel[..., 1]], dim=-1)
    local = local / size.view(-1, 1, 1)
    sdf = torch.empty(local.shape[:2])
    for cls, name in enumerate(CLASS_NAMES):
        members = labels == cls
        if members.any():
            sdf[members] = shape_sdf(name, local[members])
    sdf = sdf * size.view(-1, 1)  # back to scene units
    fill_alpha = (0.5 - sdf / pixel).clamp(0.0, 1.0).unsqueeze(-1)
    stroke_alpha = (0.5 - (sdf.abs() - OUTLINE_WIDTH) / pixel).clamp(0.0, 1.0).unsqueeze(-1)
    t = (0.5 + 0.5 * (grid * scenes.direction[rows].float().unsqueeze(1)).sum(-1) / math.sqrt(2)).unsqueeze(-1)
    bg = scenes.background[rows].float()
    image = bg[:, 0:1] * (1 - t) + bg[:, 1:2] * t  # (n, P, 3)
    image = image * (1 - fill_alpha) + scenes.fill[rows].float().unsqueeze(1) * fill_alpha
    image = image * (1 - stroke_alpha) + scenes.outline[rows].float().unsqueeze(1) * stroke_alpha
    return image.transpose(1, 2).reshape(-1, 3, resolution, resolution)


def render(scenes: Scenes, resolution: int) -> torch.Tensor:
    """Render scenes at `resolution`.

    Args:
        scenes: N scene parameter sets from `sample_scenes`.
        resolution: output side R (any integer ≥ 4).

    Returns:
        (N, 3, R, R) float32 RGB in [0, 1].
    """
    if resolution < 4:
        raise ValueError(f"resolution must be at least 4 pixels, got {resolution}")
    chunk = max(1, _PIXELS_PER_CHUNK // (resolution * resolution * 12))
    out = torch.empty(len(scenes), 3, resolution, resolution)
    for start in range(0, len(scenes), chunk):
        rows = slice(start, min(start + chunk, len(scenes)))
        out[rows] = _render_chunk(scenes, rows, resolution)
    return out


def render_uint8(scenes: Scenes, resolution: int) -> torch.Tensor:
    """Render as (N, 3, R, R) uint8, the storage format of every fastgan image source."""
    return (render(scenes, resolution) * 255.0).round_().clamp_(0, 255).to(torch.uint8)
