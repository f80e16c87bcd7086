"""RNG states as checkpoint data (lapo.rng): every stream continues exactly after a round trip
through a checkpoint, and bad states fail with one clear error."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest
import torch

from lapo.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from lapo.rng import BIT_GENERATORS, generator_state, restore_generator, rng_state, set_rng_state


def test_rng_round_trip(tmp_path):
    torch.manual_seed(3)
    random.seed(3)
    gen = np.random.default_rng(3)
    gen.random(5)
    tensors, rng_meta = rng_state()
    save_checkpoint(
        tmp_path / "c",
        tensors=tensors,
        meta={"rng": rng_meta, "gen": generator_state(gen)},
    )
    expected = (torch.rand(6), torch.randint(0, 100, (4,)), random.random(), gen.random(4))
    torch.rand(100)  # move every stream on
    random.random()
    ckpt = load_checkpoint(tmp_path / "c")
    set_rng_state(ckpt.tensors, ckpt.meta["rng"])
    gen2 = restore_generator(ckpt.meta["gen"])
    assert torch.equal(torch.rand(6), expected[0])
    assert torch.equal(torch.randint(0, 100, (4,)), expected[1])
    assert random.random() == expected[2]
    assert np.array_equal(gen2.random(4), expected[3])


@pytest.mark.parametrize("name", BIT_GENERATORS)
def test_numpy_generator_state_is_json(name):
    gen = np.random.Generator(getattr(np.random, name)(11))
    gen.integers(0, 7, 3, dtype=np.uint32)  # leaves a buffered half word in some generators
    state = json.loads(json.dumps(generator_state(gen)))
    assert np.array_equal(restore_generator(state).random(6), gen.random(6))


def test_unknown_bit_generator_and_missing_torch_state_are_refused():
    state = generator_state(np.random.default_rng(0)) | {"bit_generator": "NotAGenerator"}
    with pytest.raises(CheckpointError, match="unknown numpy bit generator 'NotAGenerator'"):
        restore_generator(state)
    tensors, meta = rng_state()
    del tensors["rng/torch"]
    with pytest.raises(CheckpointError, match="no 'rng/torch' tensor"):
        set_rng_state(tensors, meta)
