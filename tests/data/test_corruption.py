"""A damaged dataset must fail loudly, with an error that names the file and says what is wrong."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from lapo.data import DatasetError, LapoDataset, WindowIndex
from lapo.data.format import read_npy_header


def file_pattern(path) -> str:
    """Regex matching ``path`` in an error message."""
    return re.escape(str(path))


def rewrite_manifest(path, **changes) -> None:
    file = path / "manifest.json"
    manifest = json.loads(file.read_text())
    manifest.update(changes)
    file.write_text(json.dumps(manifest))


def replace_array(file, array) -> None:
    """Overwrite ``file`` with ``array`` as .npy; the test asserts the byte size is unchanged."""
    size = file.stat().st_size
    np.save(file, array)
    assert file.stat().st_size == size, "precondition: same byte size as the original"


# ---------------------------------------------------------------------------- frame shards
def test_truncated_shard(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00003.npy"
    data = shard.read_bytes()
    shard.write_bytes(data[:-10])
    with pytest.raises(DatasetError, match=file_pattern(shard)) as info:
        LapoDataset(small_dataset.path)
    assert f"expected {len(data)} bytes" in str(info.value)
    assert f"found {len(data) - 10}" in str(info.value)


def test_truncated_shard_header(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00000.npy"
    shard.write_bytes(shard.read_bytes()[:20])
    with pytest.raises(DatasetError, match=file_pattern(shard)):
        LapoDataset(small_dataset.path)


def test_altered_shard_same_size_caught_by_verify(small_dataset):
    w = small_dataset
    shard = w.path / "frames" / "shard-00002.npy"
    _, _, offset = read_npy_header(shard)
    data = bytearray(shard.read_bytes())
    data[offset + 100] ^= 0xFF  # frame 10, same file size
    shard.write_bytes(bytes(data))
    ds = LapoDataset(w.path)  # opening checks sizes and headers only
    assert not np.array_equal(ds.read_frames(10, 11), w.frames[10:11])
    np.testing.assert_array_equal(ds.read_frames(0, 10), w.frames[:10])
    with pytest.raises(DatasetError, match=file_pattern(shard) + ".*sha256 mismatch"):
        ds.verify()


@pytest.mark.parametrize("name", ["actions.npy", "rewards.npy", "dones.npy", "episodes.npy"])
def test_altered_array_file_caught_by_verify(small_dataset, name):
    file = small_dataset.path / name
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01  # last byte of the data; stays a valid value of every dtype here
    file.write_bytes(bytes(data))
    if name == "episodes.npy":  # the last episode's length changes, which open() notices
        with pytest.raises(DatasetError, match=file_pattern(file)):
            LapoDataset(small_dataset.path)
        return
    ds = LapoDataset(small_dataset.path)
    with pytest.raises(DatasetError, match=file_pattern(file) + ".*sha256"):
        ds.verify()


def test_missing_shard(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00001.npy"
    shard.unlink()
    with pytest.raises(DatasetError, match=file_pattern(shard) + ".*missing"):
        LapoDataset(small_dataset.path)


def test_shard_deleted_after_open_caught_by_verify(small_dataset):
    ds = LapoDataset(small_dataset.path)
    shard = small_dataset.path / "frames" / "shard-00004.npy"
    shard.unlink()
    with pytest.raises(DatasetError, match=file_pattern(shard) + ".*missing"):
        ds.verify()


def test_shard_truncated_after_open_short_read(small_dataset):
    w = small_dataset
    ds = LapoDataset(w.path)
    shard = w.path / "frames" / "shard-00007.npy"
    shard.write_bytes(shard.read_bytes()[:-200])  # last frame of the dataset is cut
    np.testing.assert_array_equal(ds.read_frames(30, 38), w.frames[30:38])
    with pytest.raises(DatasetError, match=file_pattern(shard) + ".*short read"):
        ds.read_frames(36, 40)


def test_shard_of_wrong_dtype_and_shape(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00002.npy"
    replace_array(shard, np.zeros((5, 48), dtype=np.float32))  # 960 bytes, like (5, 8, 8, 3) u8
    with pytest.raises(DatasetError, match=file_pattern(shard)) as info:
        LapoDataset(small_dataset.path)
    message = str(info.value)
    assert "expected array uint8 (5, 8, 8, 3)" in message
    assert "found float32 (5, 48)" in message


def test_shard_of_wrong_shape(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00000.npy"
    replace_array(shard, np.zeros((5, 8, 3, 8), dtype=np.uint8))
    with pytest.raises(DatasetError, match=file_pattern(shard)) as info:
        LapoDataset(small_dataset.path)
    assert "expected array uint8 (5, 8, 8, 3), found uint8 (5, 8, 3, 8)" in str(info.value)


def test_shard_in_fortran_order(small_dataset):
    shard = small_dataset.path / "frames" / "shard-00001.npy"
    replace_array(shard, np.asfortranarray(np.zeros((5, 8, 8, 3), dtype=np.uint8)))
    with pytest.raises(DatasetError, match=file_pattern(shard) + ".*Fortran"):
        LapoDataset(small_dataset.path)


def test_extra_shard_listed_inconsistently(small_dataset):
    manifest = small_dataset.manifest
    rewrite_manifest(small_dataset.path, shards=manifest["shards"][:-1])
    with pytest.raises(DatasetError, match=r"manifest\.json.*need 8 shards, manifest lists 7"):
        LapoDataset(small_dataset.path)


# ---------------------------------------------------------------------------- other files
@pytest.mark.parametrize("name", ["episodes.npy", "actions.npy", "rewards.npy", "dones.npy"])
def test_missing_array_file(small_dataset, name):
    file = small_dataset.path / name
    file.unlink()
    with pytest.raises(DatasetError, match=file_pattern(file) + ".*missing"):
        LapoDataset(small_dataset.path)


def test_actions_of_wrong_dtype(small_dataset):
    file = small_dataset.path / "actions.npy"
    replace_array(file, np.zeros(80, dtype=np.int32))  # same bytes as (40,) int64
    with pytest.raises(DatasetError, match=file_pattern(file)) as info:
        LapoDataset(small_dataset.path)
    assert "expected array int64 (40,), found int32 (80,)" in str(info.value)


def test_episode_index_does_not_cover_frames(small_dataset):
    file = small_dataset.path / "episodes.npy"
    episodes = np.load(file)
    episodes[-1, 1] -= 2  # still contiguous, but 2 frames short of num_frames
    replace_array(file, episodes)
    with pytest.raises(DatasetError, match=file_pattern(file)) as info:
        LapoDataset(small_dataset.path)
    assert "episodes cover 38 frames, manifest says 40" in str(info.value)


@pytest.mark.parametrize(
    "edit",
    [
        lambda e: e.__setitem__((0, 0), 1),  # does not start at frame 0
        lambda e: e.__setitem__((3, 0), e[3, 0] + 1),  # gap between episodes
        lambda e: e.__setitem__((3, 1), 0),  # empty episode
    ],
    ids=["start", "gap", "empty"],
)
def test_episode_index_not_contiguous(small_dataset, edit):
    file = small_dataset.path / "episodes.npy"
    episodes = np.load(file)
    edit(episodes)
    replace_array(file, episodes)
    with pytest.raises(DatasetError, match=file_pattern(file) + ".*contiguous"):
        LapoDataset(small_dataset.path)


def test_episode_count_disagrees_with_manifest(small_dataset):
    rewrite_manifest(small_dataset.path, num_episodes=6)
    file = small_dataset.path / "episodes.npy"
    with pytest.raises(DatasetError, match=file_pattern(file) + r".*\(6, 2\).*\(7, 2\)"):
        LapoDataset(small_dataset.path)


def test_field_without_file_entry(small_dataset):
    files = dict(small_dataset.manifest["files"])
    del files["rewards.npy"]
    rewrite_manifest(small_dataset.path, files=files)
    with pytest.raises(DatasetError, match=r"manifest\.json.*'rewards' has no file entry"):
        LapoDataset(small_dataset.path)


# ---------------------------------------------------------------------------- manifest
def test_missing_manifest(small_dataset):
    (small_dataset.path / "manifest.json").unlink()
    with pytest.raises(DatasetError, match=r"manifest\.json: manifest is missing"):
        LapoDataset(small_dataset.path)


@pytest.mark.parametrize("text", ["{not json", "", "\x00\xff\xfe"])
def test_manifest_not_json(small_dataset, text):
    file = small_dataset.path / "manifest.json"
    file.write_bytes(text.encode("latin-1"))
    with pytest.raises(DatasetError, match=file_pattern(file) + ".*not valid JSON"):
        LapoDataset(small_dataset.path)


@pytest.mark.parametrize("text", ["[1, 2]", "null", "3"])
def test_manifest_not_an_object(small_dataset, text):
    file = small_dataset.path / "manifest.json"
    file.write_text(text)
    with pytest.raises(DatasetError, match=file_pattern(file) + ".*JSON object"):
        LapoDataset(small_dataset.path)


def test_manifest_missing_key(small_dataset):
    file = small_dataset.path / "manifest.json"
    manifest = json.loads(file.read_text())
    del manifest["shards"]
    file.write_text(json.dumps(manifest))
    with pytest.raises(DatasetError, match=file_pattern(file) + r".*\['shards'\]"):
        LapoDataset(small_dataset.path)


@pytest.mark.parametrize("version", [2, 0, "1", None])
def test_wrong_schema_version(small_dataset, version):
    rewrite_manifest(small_dataset.path, schema_version=version)
    file = small_dataset.path / "manifest.json"
    with pytest.raises(DatasetError, match=file_pattern(file)) as info:
        LapoDataset(small_dataset.path)
    assert f"expected schema_version 1, got {version!r}" in str(info.value)


def test_wrong_format_name(small_dataset):
    rewrite_manifest(small_dataset.path, format="something-else")
    with pytest.raises(DatasetError, match="expected format 'lapo-dataset'"):
        LapoDataset(small_dataset.path)


def test_manifest_claims_empty_dataset(small_dataset):
    rewrite_manifest(small_dataset.path, num_frames=0)
    with pytest.raises(DatasetError, match="empty"):
        LapoDataset(small_dataset.path)


def test_path_is_a_file(tmp_path):
    file = tmp_path / "manifest.json"
    file.write_text("{}")
    with pytest.raises(DatasetError, match="a dataset's manifest; pass its directory"):
        LapoDataset(file)


# ---------------------------------------------------------------------------- too short
@pytest.mark.parametrize(
    ("lengths", "context"), [((1, 2, 2, 1), 1), ((1, 1), 0), ((3, 3, 1), 2), ((4,), 3)]
)
def test_dataset_shorter_than_one_window(make_dataset, lengths, context):
    w = make_dataset(lengths=lengths, shard_frames=2)
    ds = LapoDataset(w.path)  # a valid dataset, only too short
    with pytest.raises(DatasetError, match=file_pattern(w.path)) as info:
        WindowIndex(ds, context=context)
    message = str(info.value)
    assert f"no window of {context + 2} frames" in message
    assert f"longest has {max(lengths)} frames" in message
    if max(lengths) >= 2:  # the longest episode holds exactly one window of its own length
        assert len(WindowIndex(ds, context=max(lengths) - 2)) == lengths.count(max(lengths))


def test_manifest_shard_path_outside_dataset_is_refused(small_dataset):
    manifest = json.loads((small_dataset.path / "manifest.json").read_text())
    manifest["shards"][0]["file"] = "../../etc/passwd"
    rewrite_manifest(small_dataset.path, shards=manifest["shards"])
    with pytest.raises(DatasetError, match="shard 0 must be 'frames/shard-00000.npy'"):
        LapoDataset(small_dataset.path)
