"""Where the upscalers' high-resolution images come from: scikit-image's bundled photographs, a folder of
images, or Doom frames rendered by ViZDoom. Each source gives a list of (name, uint8 (3, H, W) RGB) pairs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
import torch.nn.functional as F

from fastgan.data.game_frames import render_frames
from fastgan.data.sources import IMAGE_SUFFIXES, DataSourceError, read_or_skip, read_rgb, tool_file

NamedImages = list[tuple[str, torch.Tensor]]

#: Real photographs scikit-image ships in its wheel: they load offline, without pooch. Grey ones (camera,
#: brick, grass, gravel) are repeated to RGB. Sizes (H×W): astronaut, camera, immunohistochemistry, brick,
#: grass, gravel 512×512; coffee 400×600; chelsea 300×451; rocket 427×640; hubble_deep_field 872×1000;
#: retina 1411×1411; motorcycle_left/right 500×741.
DEFAULT_PHOTOS = (
    "astronaut", "coffee", "chelsea", "rocket", "camera", "hubble_deep_field", "retina", "immunohistochemistry",
    "motorcycle_left", "motorcycle_right", "brick", "grass", "gravel",
)  # fmt: skip

__all__ = [
    "DEFAULT_PHOTOS",
    "NamedImages",
    "folder_images",
    "game_frames",
    "held_out_game_frames",
    "image_files",
    "readable_images",
    "skimage_photos",
    "split_held_out",
]


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    if name.startswith("motorcycle_"):
        left, right, _ = data.stereo_motorcycle()
        array = left if name == "motorcycle_left" else right
    else:
        array = getattr(data, name)()
    image = torch.from_numpy(array)  # (H, W) or (H, W, C) uint8
    if image.dim() == 2:
        image = image[..., None].expand(-1, -1, 3)
    return image[..., :3].permute(2, 0, 1).contiguous()


def skimage_photos(names: Sequence[str] = DEFAULT_PHOTOS) -> NamedImages:
    """scikit-image's bundled photographs by name.

    Args:
        names: a subset of `DEFAULT_PHOTOS`.

    Returns:
        [(name, uint8 (3, H, W))] in the order of `names`.
    """
    unknown = [name for name in names if name not in DEFAULT_PHOTOS]
    if unknown:
        raise DataSourceError(
            f"unknown photo(s) {unknown}; the ones scikit-image ships for offline use are {', '.join(DEFAULT_PHOTOS)}"
        )
    try:
        import skimage.data  # noqa: F401
    except ImportError as exc:
        raise DataSourceError(
            f"the bundled photographs need scikit-image ({exc}): pip install scikit-image, or fastgan's `sr` extra"
        ) from exc
    return [(name, _photo(name)) for name in names]


def image_files(root: str | Path) -> list[tuple[str, Path]]:
    """Every image file under `root` (recursively, sorted by path) with its name: its path relative to root without
    suffix, which must be unique (`a.png` beside `a.jpg` is an error). Hidden and tools' files and folders
    (`tool_file`: a notebook's checkpoint copies, macOS's ``._x.png``) are left out, so that no copy of a held-out
    image is trained on."""
    folder = Path(root).expanduser()
    if not folder.is_dir():
        state = "is a file, not a folder" if folder.exists() else "does not exist"
        raise DataSourceError(f"image folder {folder} {state}; point sr.images at a folder of images")
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not any(map(tool_file, p.relative_to(folder).parts))
    )
    if not files:
        raise DataSourceError(
            f"image folder {folder} holds no images; put files ending in {', '.join(sorted(IMAGE_SUFFIXES))} there"
        )
    named = [(p.relative_to(folder).with_suffix("").as_posix(), p) for p in files]
    paths_of: dict[str, list[Path]] = {}
    for name, path in named:
        paths_of.setdefault(name, []).append(path)
    shared = {name: paths for name, paths in paths_of.items() if len(paths) > 1}
    if shared:
        name, paths = next(iter(shared.items()))
        raise DataSourceError(
            f"{' and '.join(p.name for p in paths)} share the name {name!r} (sr.held_out and the tables name images "
            f"without their suffix); rename one ({len(shared)} such name(s) under {folder})"
        )
    return named


def readable_images(root: str | Path, files: list[tuple[str, Path]], images: list[torch.Tensor | None]) -> NamedImages:
    """The (name, image) pairs of `image_files(root)` whose image was read (not None).

    Raises:
        DataSourceError: none was.
    """
    named = [(name, image) for (name, _), image in zip(files, images, strict=True) if image is not None]
    if not named:
        raise DataSourceError(f"none of the {len(files)} image files under {root} can be read or decoded")
    return named


def folder_images(root: str | Path) -> NamedImages:
    """Every image file under `root` (recursively, sorted by path), read with `read_rgb` (any size and mode),
    skipping (with a warning each, and a count) files that cannot be read.

    Returns:
        [(path relative to root without suffix, uint8 (3, H, W))].

    Raises:
        DataSourceError: the folder is missing, holds no image files, or none of them can be read.
    """
    files = image_files(root)
    return readable_images(root, files, read_or_skip([path for _, path in files], read_rgb))


def game_frames(scenario: str = "basic", count: int = 64, seed: int = 0, every: int = 4) -> NamedImages:
    """Real Doom frames rendered headless by ViZDoom (see `fastgan.data.game_frames.render_frames`).

    Reproducible from (scenario, seed, every); 64 frames take ~0.3-0.5 s on one CPU core, 1,000 frames 3-7 s.

    Returns:
        [(f"{scenario}-{seed}-{index:04d}", uint8 (3, 480, 640))].
    """
    frames = render_frames(scenario, count, seed, every)  # (count, 3, 480, 640)
    return [(f"{scenario}-{seed}-{i:04d}", frame) for i, frame in enumerate(frames)]


#: Held-out frames closer than this PSNR (dB) to a training frame are near-copies of it: every episode starts from
#: the same spawn view whatever the seed (deadly_corridor's seed-1 frames match seed-0 ones at 43, 61 and ∞ dB).
NEAR_COPY_PSNR = 35.0


def near_copies(candidates: NamedImages, reference: NamedImages, psnr: float = NEAR_COPY_PSNR) -> list[bool]:
    """For each candidate, whether some reference image of its size is within `psnr` dB of it (uint8 scale).

    Pairs are screened on block-summed thumbnails (8×8 blocks, larger for images over 1024 pixels a side; the sums
    divided by the block's area, edge blocks too), whose mean squared error per image pixel never exceeds the images'
    own (Cauchy-Schwarz), so the screen misses none; the pairs it passes are compared at full resolution.
    """
    limit = 255.0**2 / 10 ** (psnr / 10)  # the largest mean squared error of a near-copy

    def thumbnail(image: torch.Tensor) -> torch.Tensor:
        block = max(8, -(-max(image.shape[-2:]) // 128))
        return F.avg_pool2d(image.float()[None], block, ceil_mode=True, divisor_override=block * block).flatten()

    near = [False] * len(candidates)
    for shape in {image.shape for _, image in candidates}:
        mine = [i for i, (_, image) in enumerate(candidates) if image.shape == shape]
        theirs = [image for _, image in reference if image.shape == shape]
        if not theirs:
            continue
        ours = torch.stack([thumbnail(candidates[i][1]) for i in mine])
        screen = torch.cdist(
            ours, torch.stack([thumbnail(image) for image in theirs]), compute_mode="donot_use_mm_for_euclid_dist"
        )
        for row, column in (screen.square() / ours.shape[1] < limit).nonzero().tolist():
            if not near[mine[row]]:
                error = (candidates[mine[row]][1].float() - theirs[column].float()).square().mean()
                near[mine[row]] = bool(error < limit)
    return near


def held_out_game_frames(scenario: str, count: int, training: NamedImages, every: int = 4) -> NamedImages:
    """Up to `count` Doom frames of another seeded run (seed 1; training's is 0), leaving out near-copies of the
    `training` frames (`near_copies`): episode starts look alike whatever the seed. Twice `count` are rendered."""
    frames = game_frames(scenario, 2 * count, seed=1, every=every)
    kept = [frame for frame, near in zip(frames, near_copies(frames, training), strict=True) if not near][:count]
    if not kept:
        raise DataSourceError(
            f"every held-out {scenario} frame is a near-copy of a training frame: choose another scenario"
        )
    return kept


def split_held_out(images: NamedImages, held_out: Sequence[str]) -> tuple[NamedImages, NamedImages]:
    """Split images by name into (training, held-out); held-out ones keep the order of `images`.

    Every held-out name must be among the images, and at least one image must remain for training.
    """
    names = [name for name, _ in images]
    missing = [name for name in held_out if name not in names]
    if missing:
        shown = ", ".join(names[:20]) + (", ..." if len(names) > 20 else "")
        raise DataSourceError(
            f"held-out image(s) {missing} are not among the {len(images)} images ({shown}); fix sr.held_out"
        )
    keep = set(held_out)
    train = [(name, image) for name, image in images if name not in keep]
    if not train:
        raise DataSourceError(f"all {len(images)} images are held out; leave some for training")
    return train, [(name, image) for name, image in images if name in keep]
