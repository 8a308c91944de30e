"""Real game frames for the upscalers: Doom rendered headless by ViZDoom from its bundled Freedoom scenarios.

ViZDoom is imported only when frames are rendered (`pip install vizdoom`, or fastgan's `sr` extra).
"""

from __future__ import annotations

import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from fastgan.data.sources import DataSourceError

#: Single-player scenarios ViZDoom ships (each is `<name>.cfg` + `<name>.wad` in `vizdoom.scenarios_path`).
SCENARIOS = (
    "basic", "simpler_basic", "rocket_basic", "deadly_corridor", "defend_the_center", "defend_the_line",
    "health_gathering", "health_gathering_supreme", "my_way_home", "predict_position", "take_cover", "deathmatch",
)  # fmt: skip
FRAME_SHAPE = (3, 480, 640)  # (C, H, W) of every rendered frame


def _vizdoom():
    try:
        import vizdoom
    except ImportError as exc:
        raise DataSourceError(
            f"rendering Doom frames needs ViZDoom ({exc}): pip install vizdoom, or install fastgan's `sr` extra"
        ) from exc
    return vizdoom


def render_frames(scenario: str = "basic", count: int = 64, seed: int = 0, every: int = 4) -> torch.Tensor:
    """Render `count` Doom frames of a bundled ViZDoom scenario, reproducibly.

    The game is seeded with `seed` and the player presses random buttons drawn from `random.Random(seed)`,
    holding each choice for `every` game tics; the frame after each such step is kept, so consecutive frames
    are `every` tics apart rather than near-duplicates. Episodes restart when they end. The same arguments
    give the same frames, bit for bit.

    Speed (2-core x86 CPU, headless software renderer): ~0.2 s to start the game, then the kept 640×480 frames
    dominate (skipped tics are cheap): 200-400 frames/s, the lower figure with the other core busy. 64 frames
    take ~0.3-0.5 s in all, 1,000 frames 3-7 s.

    Args:
        scenario: one of `SCENARIOS`.
        count: frames to keep.
        seed: seeds the game (monster behaviour, spawn points) and the random actions.
        every: game tics between kept frames.

    Returns:
        (count, 3, 480, 640) uint8 RGB frames, HUD included.
    """
    if scenario not in SCENARIOS:
        raise DataSourceError(f"unknown ViZDoom scenario {scenario!r}; choose one of {', '.join(SCENARIOS)}")
    if count < 1 or every < 1:
        raise ValueError(f"count and every must be >= 1, got count={count}, every={every}")
    vizdoom = _vizdoom()
    config = Path(vizdoom.scenarios_path) / f"{scenario}.cfg"
    if not config.is_file():
        raise DataSourceError(f"ViZDoom scenario file {config} is missing; reinstall vizdoom")
    work_dir = Path("_vizdoom")  # ViZDoom makes this (empty) folder in the working directory; tidy it if we made it
    made_work_dir = not work_dir.exists()
    frames = np.empty((count, FRAME_SHAPE[1], FRAME_SHAPE[2], 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory(prefix="fastgan-vizdoom-") as tmp:
        game = vizdoom.DoomGame()
        try:
            game.load_config(str(config))
            game.set_doom_config_path(str(Path(tmp) / "_vizdoom.ini"))  # not the working directory
            game.set_window_visible(False)
            game.set_sound_enabled(False)
            game.set_screen_resolution(vizdoom.ScreenResolution.RES_640X480)
            game.set_screen_format(vizdoom.ScreenFormat.RGB24)
            game.set_render_hud(True)
            game.set_mode(vizdoom.Mode.PLAYER)
            game.set_seed(seed)
            game.init()
        except Exception as exc:  # ViZDoom raises its own exception types
            game.close()
            raise DataSourceError(f"ViZDoom could not start scenario {config}: {exc}") from exc
        try:
            buttons = game.get_available_buttons_size()
            rng = random.Random(seed)
            game.new_episode()
            kept = 0
            while kept < count:
                if game.is_episode_finished():
                    game.new_episode()
                frames[kept] = game.get_state().screen_buffer  # (480, 640, 3)
                kept += 1
                game.make_action([rng.random() < 0.5 for _ in range(buttons)], every)
        finally:
            game.close()
    if made_work_dir:
        try:
            work_dir.rmdir()
        except OSError:
            pass  # not empty or already gone: leave it
    return torch.from_numpy(frames).permute(0, 3, 1, 2).contiguous()
