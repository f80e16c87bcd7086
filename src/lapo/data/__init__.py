"""The lapo on-disk dataset: format, writer, reader, windows and importers."""

from lapo.data.format import SCHEMA_VERSION, DatasetError
from lapo.data.prefetch import Prefetcher
from lapo.data.reader import LapoDataset, manifest_digest, open_dataset
from lapo.data.windows import (
    WindowBatchSampler,
    WindowDataset,
    WindowIndex,
    collate_windows,
    split_episodes,
    split_windows,
)
from lapo.data.writer import DatasetWriter, check_output_dir

__all__ = [
    "SCHEMA_VERSION",
    "DatasetError",
    "DatasetWriter",
    "LapoDataset",
    "Prefetcher",
    "WindowBatchSampler",
    "WindowDataset",
    "WindowIndex",
    "check_output_dir",
    "collate_windows",
    "manifest_digest",
    "open_dataset",
    "split_episodes",
    "split_windows",
]
