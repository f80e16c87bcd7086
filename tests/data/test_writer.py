"""DatasetWriter (``lapo.data.writer``): shard layout, the manifest, and what the writer refuses."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from lapo.data import SCHEMA_VERSION, DatasetWriter, LapoDataset
from lapo.data.format import FORMAT_NAME, MANIFEST, shard_name

FRAME_SHAPE = (8, 8, 3)
ACTION_SPACE = {"type": "discrete", "n": 15}


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def names(directory) -> list[str]:
    """Entries of ``directory``, without the datasets' (empty, persistent) lock files."""
    return sorted(p.name for p in directory.iterdir() if not p.name.endswith(".lapo.lock"))


def episode(length: int, seed: int = 0, value: int | None = None) -> dict:
    """Keyword arguments of ``add_episode`` for a writer with all three fields."""
    rng = np.random.default_rng(seed)
    frames = rng.integers(0, 256, size=(length, *FRAME_SHAPE), dtype=np.uint8)
    if value is not None:
        frames[:] = value
    return {
        "frames": frames,
        "actions": rng.integers(0, 15, size=length),
        "rewards": rng.normal(size=length).astype(np.float32),
        "dones": np.zeros(length, dtype=bool),
    }


def writer(path, **kwargs) -> DatasetWriter:
    kwargs.setdefault("fields", ("actions", "rewards", "dones"))
    kwargs.setdefault("action_space", ACTION_SPACE)
    kwargs.setdefault("shard_frames", 4)
    return DatasetWriter(path, frame_shape=FRAME_SHAPE, **kwargs)


@pytest.mark.parametrize(
    ("lengths", "shard_frames"),
    [((5, 5), 5), ((4, 6), 5), ((1,), 1), ((3, 2, 4), 1), ((3, 2), 100), ((13,), 4)],
)
def test_shard_layout(make_dataset, lengths, shard_frames):
    w = make_dataset(lengths=lengths, shard_frames=shard_frames)
    n = sum(lengths)
    num_shards = -(-n // shard_frames)
    files = sorted((w.path / "frames").iterdir())
    assert [f.name for f in files] == [shard_name(i).split("/")[1] for i in range(num_shards)]
    ds = LapoDataset(w.path)
    for i, file in enumerate(files):
        expected = w.frames[i * shard_frames : (i + 1) * shard_frames]
        np.testing.assert_array_equal(np.load(file, mmap_mode="r"), expected)  # plain .npy
        np.testing.assert_array_equal(ds.shard_memmap(i), expected)
    np.testing.assert_array_equal(ds.read_frames(0, n), w.frames)


# ---------------------------------------------------------------------------- manifest
def test_manifest_fields(small_dataset):
    w = small_dataset
    m = json.loads((w.path / MANIFEST).read_text())
    assert m == w.manifest
    lengths = w.episodes[:, 1]
    assert m["format"] == FORMAT_NAME
    assert m["schema_version"] == SCHEMA_VERSION == 1
    assert m["frame_shape"] == list(FRAME_SHAPE) and m["frame_dtype"] == "uint8"
    assert m["num_frames"] == lengths.sum() == 40
    assert m["num_episodes"] == len(lengths) == 7
    assert m["num_transitions"] == (lengths - 1).sum() == 33
    assert m["shard_frames"] == 5
    assert m["fields"] == ["actions", "rewards", "dones"]
    assert m["action_space"] == {"type": "discrete", "n": 15}
    assert m["source"] == {"test": "conftest", "seed": 0}
    assert m["lapo_version"] and m["created"]
    known = [r for r in w.returns if r is not None]
    assert m["mean_episode_return"] == pytest.approx(np.mean(known))


def test_manifest_sizes_and_hashes(small_dataset):
    w = small_dataset
    m = w.manifest
    assert [s["file"] for s in m["shards"]] == [shard_name(i) for i in range(8)]
    assert [s["num_frames"] for s in m["shards"]] == [5] * 8
    for shard in m["shards"]:
        file = w.path / shard["file"]
        assert shard["bytes"] == file.stat().st_size
        assert shard["sha256"] == sha256(file)
    assert sorted(m["files"]) == ["actions.npy", "dones.npy", "episodes.npy", "rewards.npy"]
    for name, entry in m["files"].items():
        file = w.path / name
        assert entry["bytes"] == file.stat().st_size
        assert entry["sha256"] == sha256(file)
        assert len(entry["sha256"]) == 64


def test_no_temporary_files_left(small_dataset):
    w = small_dataset
    assert names(w.path.parent) == ["ds"]
    assert names(w.path) == sorted(
        ["actions.npy", "dones.npy", "episodes.npy", "frames", "manifest.json", "rewards.npy"]
    )
    assert all(p.suffix == ".npy" for p in (w.path / "frames").iterdir())


def test_uneven_last_shard_in_manifest(make_dataset):
    w = make_dataset(lengths=(7, 4), shard_frames=4)
    assert [s["num_frames"] for s in w.manifest["shards"]] == [4, 4, 3]


# ---------------------------------------------------------------------------- existing output
def test_refuses_existing_dataset_before_writing(small_dataset, tmp_path):
    before = names(tmp_path)
    hashes = {p: sha256(p) for p in small_dataset.path.rglob("*") if p.is_file()}
    with pytest.raises(FileExistsError, match="overwrite"):
        writer(small_dataset.path)
    assert names(tmp_path) == before  # no partial directory was even created
    assert {p: sha256(p) for p in small_dataset.path.rglob("*") if p.is_file()} == hashes


def test_refuses_existing_file(tmp_path):
    target = tmp_path / "taken"
    target.write_text("keep me")
    with pytest.raises(FileExistsError, match=str(target)):
        writer(target)
    assert target.read_text() == "keep me" and names(tmp_path) == ["taken"]


def test_overwrite_replaces_only_after_close(make_dataset, tmp_path):
    old = make_dataset(lengths=(6, 5), name="ds")
    w = writer(old.path, overwrite=True)
    ep = episode(9, seed=7)
    w.add_episode(**ep)
    # still the old dataset, readable and intact, until close()
    with LapoDataset(old.path) as ds:
        np.testing.assert_array_equal(ds.read_frames(0, 11), old.frames)
        ds.verify()
    manifest = w.close()
    assert manifest["num_frames"] == 9
    ds = LapoDataset(old.path)
    np.testing.assert_array_equal(ds.read_frames(0, 9), ep["frames"])
    np.testing.assert_array_equal(ds.actions, ep["actions"])
    ds.verify()
    assert names(tmp_path) == ["ds"]  # no .old- or .partial- leftovers
    assert sorted(p.name for p in (old.path / "frames").iterdir()) == [
        "shard-00000.npy",
        "shard-00001.npy",
        "shard-00002.npy",
    ]


def test_overwrite_with_the_same_data_keeps_the_dataset_and_its_identity(tmp_path):
    """Importing the same data again (a rerun script with --overwrite) must not give it a new
    manifest digest: runs on the dataset record that digest as its identity."""
    from lapo.data import manifest_digest

    def write(seed: int) -> dict:
        with writer(tmp_path / "ds", overwrite=True) as w:
            w.add_episode(**episode(6, seed=seed))
            return w.close()

    first = write(0)
    first_inode = (tmp_path / "ds").stat().st_ino
    earlier = json.loads((tmp_path / "ds" / MANIFEST).read_text())
    earlier["created"] = "2000-01-01T00:00:00+00:00"  # as if written long ago
    (tmp_path / "ds" / MANIFEST).write_text(json.dumps(earlier))
    before = (tmp_path / "ds" / MANIFEST).read_bytes()
    digest = manifest_digest(LapoDataset(tmp_path / "ds"))
    again = write(0)
    assert again["created"] == "2000-01-01T00:00:00+00:00" and again["shards"] == first["shards"]
    assert (tmp_path / "ds" / MANIFEST).read_bytes() == before
    assert manifest_digest(LapoDataset(tmp_path / "ds")) == digest
    assert (tmp_path / "ds").stat().st_ino == first_inode  # kept, not replaced
    assert names(tmp_path) == ["ds"]  # the new copy was discarded
    shard = tmp_path / "ds" / "frames" / "shard-00000.npy"
    shard.write_bytes(b"garbage")  # damaged: the same import again repairs it
    write(0)
    LapoDataset(tmp_path / "ds").verify()
    assert names(tmp_path) == ["ds"]
    other = write(1)  # other frames: replaced
    assert other["shards"] != first["shards"]
    assert manifest_digest(LapoDataset(tmp_path / "ds")) != digest


def test_overwrite_never_replaces_a_file(tmp_path):
    target = tmp_path / "out"
    target.write_text("old")
    with pytest.raises(FileExistsError, match="is a file, not a lapo dataset"):
        writer(target, overwrite=True)
    assert target.read_text() == "old"
    assert names(tmp_path) == ["out"]


def test_path_created_while_writing_is_not_clobbered(tmp_path):
    target = tmp_path / "out"
    w = writer(target)
    w.add_episode(**episode(3))
    target.mkdir()
    (target / "precious.txt").write_text("someone else's")
    with pytest.raises(FileExistsError, match="out"):
        w.close()
    assert (target / "precious.txt").read_text() == "someone else's"
    assert names(tmp_path) == ["out"]


# ---------------------------------------------------------------------------- failures
def test_exception_in_with_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(RuntimeError, match="boom"), writer(target) as w:
        for i in range(4):
            w.add_episode(**episode(5, seed=i))  # several shards are complete on disk
        raise RuntimeError("boom")
    assert names(tmp_path) == []


def test_exception_in_with_leaves_existing_dataset_untouched(small_dataset, tmp_path):
    hashes = {p: sha256(p) for p in small_dataset.path.rglob("*") if p.is_file()}
    with pytest.raises(RuntimeError, match="boom"), writer(small_dataset.path, overwrite=True) as w:
        w.add_episode(**episode(11))
        raise RuntimeError("boom")
    assert names(tmp_path) == ["ds"]
    assert {p: sha256(p) for p in small_dataset.path.rglob("*") if p.is_file()} == hashes
    ds = LapoDataset(small_dataset.path)
    ds.verify()
    np.testing.assert_array_equal(ds.read_frames(0, ds.num_frames), small_dataset.frames)


def test_failed_close_leaves_nothing(tmp_path):
    target = tmp_path / "out"
    w = writer(target, source={"policy": "ppo"})
    w.source["not json"] = object()  # makes writing the manifest fail inside close()
    w.add_episode(**episode(6))
    with pytest.raises(TypeError):
        w.close()
    assert names(tmp_path) == []


def test_unserializable_source_rejected_up_front(tmp_path):
    with pytest.raises(ValueError, match="source"):
        writer(tmp_path / "out", source={"fn": print})
    assert names(tmp_path) == []


def test_empty_dataset_refused(tmp_path):
    target = tmp_path / "out"
    with pytest.raises(ValueError, match="empty"), writer(target):
        pass
    assert names(tmp_path) == []
    w = writer(target)
    with pytest.raises(ValueError, match="empty"):
        w.close()
    assert names(tmp_path) == []


def test_add_after_close_and_double_close(tmp_path):
    w = writer(tmp_path / "out")
    w.add_episode(**episode(3))
    w.close()
    with pytest.raises(RuntimeError, match="after close"):
        w.add_episode(**episode(3))
    with pytest.raises(RuntimeError, match="twice"):
        w.close()


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"frames": np.zeros((3, *FRAME_SHAPE), dtype=np.float32)}, "uint8, got float32"),
        ({"frames": np.zeros((3, 8, 8, 4), dtype=np.uint8)}, r"\(3, 8, 8, 4\)"),
        ({"frames": np.zeros((3, 8, 8), dtype=np.uint8)}, r"\(3, 8, 8\)"),
        ({"frames": np.zeros(FRAME_SHAPE, dtype=np.uint8)}, r"\(8, 8, 3\)"),
        ({"frames": np.zeros((0, *FRAME_SHAPE), dtype=np.uint8)}, r"T>=1"),
        ({"actions": None}, "actions is required"),
        ({"dones": None}, "dones is required"),
        ({"actions": np.array([0, 1, 15])}, r"actions must be in \[0, 15\).*\[0, 15\]"),
        ({"actions": np.array([-1, 1, 2])}, r"actions must be in \[0, 15\).*\[-1, 2\]"),
        ({"actions": np.array([0.0, 1.0, 2.0])}, "actions must be integers, got float64"),
        ({"actions": np.array([1, 2])}, r"actions must have shape \(3,\), got \(2,\)"),
        ({"rewards": np.zeros((3, 1))}, r"rewards must have shape \(3,\), got \(3, 1\)"),
        ({"dones": np.zeros(4, bool)}, r"dones must have shape \(3,\), got \(4,\)"),
    ],
)
def test_add_episode_rejects(tmp_path, change, match):
    w = writer(tmp_path / "out")
    with pytest.raises(ValueError, match=match):
        w.add_episode(**{**episode(3), **change})
    w.abort()
    assert names(tmp_path) == []


def test_extra_field_rejected(tmp_path):
    w = writer(tmp_path / "out", fields=("actions",))
    ep = episode(3)
    with pytest.raises(ValueError, match="rewards is not stored by this writer"):
        w.add_episode(ep["frames"], actions=ep["actions"], rewards=ep["rewards"])
    w.abort()
    w = writer(tmp_path / "video", fields=(), action_space=None)
    with pytest.raises(ValueError, match="actions is not stored"):
        w.add_episode(ep["frames"], actions=ep["actions"])
    w.abort()
    assert names(tmp_path) == []


def test_rejected_episode_leaves_no_trace(tmp_path):
    """A rejected episode must not leave some of its fields behind (a later field was bad)."""
    target = tmp_path / "out"
    good1, good2 = episode(4, seed=1), episode(5, seed=2)
    with writer(target) as w:
        w.add_episode(**good1)
        bad = {**episode(3, seed=3), "rewards": np.zeros(2, np.float32)}  # actions fine
        with pytest.raises(ValueError, match="rewards"):
            w.add_episode(**bad)
        bad = {**episode(3, seed=3), "dones": np.zeros(7, bool)}
        with pytest.raises(ValueError, match="dones"):
            w.add_episode(**bad)
        w.add_episode(**good2)
    ds = LapoDataset(target)  # raised DatasetError (actions.npy size) before the fix
    assert ds.num_frames == 9 and ds.num_episodes == 2
    for name in ("frames", "actions", "rewards", "dones"):
        expected = np.concatenate([good1[name], good2[name]])
        got = ds.read_frames(0, 9) if name == "frames" else getattr(ds, name)
        np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"frame_shape": (8, 8)}, r"frame_shape must be \(H, W, C\)"),
        ({"frame_shape": (8, 0, 3)}, "positive"),
        ({"fields": ("actions", "values")}, r"unknown fields \['values'\]"),
        ({"fields": ("actions",), "action_space": None}, "needs an action_space"),
        ({"shard_frames": 0}, "shard_frames must be >= 1"),
    ],
)
def test_writer_constructor_rejects(tmp_path, kwargs, match):
    kwargs = {"frame_shape": FRAME_SHAPE, "action_space": ACTION_SPACE, **kwargs}
    with pytest.raises(ValueError, match=match):
        DatasetWriter(tmp_path / "out", **kwargs)
    assert names(tmp_path) == []


def test_writer_stores_fields_in_canonical_order(tmp_path):
    with writer(tmp_path / "out", fields=("dones", "actions")) as w:
        ep = episode(3)
        w.add_episode(ep["frames"], actions=ep["actions"], dones=ep["dones"])
    assert LapoDataset(tmp_path / "out").fields == ("actions", "dones")


def test_nan_return_is_stored_as_null(tmp_path):
    with writer(tmp_path / "out") as w:
        w.add_episode(**episode(3), episode_return=float("nan"))
        w.add_episode(**episode(2), episode_return=np.float32(4.0))
    text = (tmp_path / "out" / MANIFEST).read_text()
    assert "NaN" not in text  # strict JSON
    manifest = json.loads(text)
    assert manifest["episode_returns"] == [None, 4.0]
    assert manifest["mean_episode_return"] == 4.0
    np.testing.assert_array_equal(LapoDataset(tmp_path / "out").episode_returns, [np.nan, 4.0])
