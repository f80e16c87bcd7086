"""Synthetic video with known actions: a sprite moved by one of 8 actions over random backgrounds.

The known-answer test bed for the latent action model: the true action a_t is the sprite's
displacement between o_t and o_{t+1}, so a good IDM's latents must predict it (probe accuracy near
1), while nothing else in the frame changes.
"""

from __future__ import annotations

import os

import numpy as np

from lapo.data.writer import DatasetWriter

#: (dy, dx) unit displacement of each of the 8 actions: the compass directions.
MOVES = np.array([(-1, -1), (-1, 0), (-1, 1), (0, -1), (0, 1), (1, -1), (1, 0), (1, 1)])


def sprite_episode(
    rng: np.random.Generator, length: int, size: int = 64, sprite: int = 6, speed: int = 4
) -> tuple[np.ndarray, np.ndarray]:
    """One episode: frames ``(length, size, size, 3) uint8`` and actions ``(length,) int64``.

    The background is a random low-resolution colour texture (new per episode); the sprite is a
    ``sprite``-pixel square of a random saturated colour, moved by ``speed`` pixels per step in
    the action's direction and wrapped around the borders (so every action stays visible).
    """
    coarse = rng.integers(0, 160, size=(size // 8, size // 8, 3), dtype=np.uint8)
    background = np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))  # (size, size, 3)
    colour = np.array([255, 255, 255], dtype=np.uint8)
    colour[rng.integers(0, 3)] = rng.integers(0, 64)
    actions = rng.integers(0, len(MOVES), size=length)
    pos = rng.integers(0, size, size=2)
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    rows = np.arange(sprite)
    for t in range(length):
        frame = background.copy()
        ys, xs = (pos[0] + rows) % size, (pos[1] + rows) % size
        frame[np.ix_(ys, xs)] = colour
        frames[t] = frame
        pos = (pos + speed * MOVES[actions[t]]) % size
    return frames, actions.astype(np.int64)


def write_sprite_dataset(
    path: str | os.PathLike,
    *,
    episodes: int = 100,
    length: int = 50,
    size: int = 64,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic sprite dataset with true actions (8 actions); return its manifest.

    Raises:
        FileExistsError: ``path`` exists and not ``overwrite``.
    """
    rng = np.random.default_rng(seed)
    space = {"type": "discrete", "n": len(MOVES),
             "meanings": ["UP-LEFT", "UP", "UP-RIGHT", "LEFT", "RIGHT", "DOWN-LEFT", "DOWN",
                          "DOWN-RIGHT"]}  # fmt: skip
    source = {"kind": "synthetic-sprite", "episodes": episodes, "length": length, "seed": seed}
    with DatasetWriter(
        path,
        frame_shape=(size, size, 3),
        fields=("actions",),
        source=source,
        action_space=space,
        overwrite=overwrite,
    ) as writer:
        for _ in range(episodes):
            frames, actions = sprite_episode(rng, length, size)
            writer.add_episode(frames, actions=actions)
        return writer.close()


def continuous_sprite_episode(
    rng: np.random.Generator, length: int, size: int = 64, sprite: int = 6, speed: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """One episode of the continuous-action variant: frames ``(length, size, size, 3) uint8``
    and actions ``(length, 2) float32`` uniform in ``[-1, 1]^2``.

    As ``sprite_episode``, but the sprite moves by ``round(speed * a_t)`` pixels (dy, dx): a
    2-d float action whose effect is visible up to the rounding to whole pixels (``2 * speed +
    1`` distinct displacements per axis).
    """
    coarse = rng.integers(0, 160, size=(size // 8, size // 8, 3), dtype=np.uint8)
    background = np.kron(coarse, np.ones((8, 8, 1), dtype=np.uint8))
    colour = np.array([255, 255, 255], dtype=np.uint8)
    colour[rng.integers(0, 3)] = rng.integers(0, 64)
    actions = rng.uniform(-1.0, 1.0, size=(length, 2)).astype(np.float32)
    pos = rng.integers(0, size, size=2)
    frames = np.empty((length, size, size, 3), dtype=np.uint8)
    rows = np.arange(sprite)
    for t in range(length):
        frame = background.copy()
        frame[np.ix_((pos[0] + rows) % size, (pos[1] + rows) % size)] = colour
        frames[t] = frame
        pos = (pos + np.rint(speed * actions[t]).astype(int)) % size
    return frames, actions


def write_continuous_sprite_dataset(
    path: str | os.PathLike,
    *,
    episodes: int = 100,
    length: int = 50,
    size: int = 64,
    sprite: int = 6,
    speed: float = 6.0,
    seed: int = 0,
    overwrite: bool = False,
) -> dict:
    """Write a synthetic sprite dataset with 2-d continuous actions in ``[-1, 1]^2`` (a box
    action space); return its manifest.

    Raises:
        FileExistsError: ``path`` exists and not ``overwrite``.
    """
    rng = np.random.default_rng(seed)
    space = {"type": "box", "shape": [2], "low": [-1.0, -1.0], "high": [1.0, 1.0]}
    source = {"kind": "synthetic-sprite-continuous", "episodes": episodes, "length": length,
              "sprite": sprite, "speed": speed, "seed": seed}  # fmt: skip
    with DatasetWriter(path, frame_shape=(size, size, 3), fields=("actions",), source=source,
                       action_space=space, overwrite=overwrite) as writer:  # fmt: skip
        for _ in range(episodes):
            frames, actions = continuous_sprite_episode(rng, length, size, sprite, speed)
            writer.add_episode(frames, actions=actions)
        return writer.close()
