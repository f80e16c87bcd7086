"""The synthetic sprite video: the recorded action is the sprite's displacement."""

from __future__ import annotations

import numpy as np

from lapo.data import open_dataset
from lapo.data.synthetic import MOVES, sprite_episode, write_sprite_dataset


def _sprite_top_left(frame: np.ndarray, colour: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero((frame == colour).all(-1))
    # wrapped sprites straddle the border: take the position whose square covers all pixels
    for y in np.unique(ys):
        for x in np.unique(xs):
            if all(((ys - y) % 64 < 6) & ((xs - x) % 64 < 6)):
                return np.array([y, x])
    raise AssertionError("sprite not found")


def test_actions_are_sprite_displacements() -> None:
    rng = np.random.default_rng(0)
    frames, actions = sprite_episode(rng, 20)
    colour = frames[0].reshape(-1, 3)[np.argmax(frames[0].reshape(-1, 3).sum(1))]
    for t in range(19):
        move = (_sprite_top_left(frames[t + 1], colour) - _sprite_top_left(frames[t], colour)) % 64
        assert np.array_equal(move, (4 * MOVES[actions[t]]) % 64)


def test_write_sprite_dataset(tmp_path) -> None:
    manifest = write_sprite_dataset(tmp_path / "ds", episodes=4, length=12, seed=1)
    ds = open_dataset(tmp_path / "ds")
    assert manifest["num_frames"] == ds.num_frames == 48
    assert ds.num_actions == 8 and set(np.unique(ds.actions)) <= set(range(8))
