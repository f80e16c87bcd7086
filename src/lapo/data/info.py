"""Human-readable dataset summary (``lapo data info``)."""

from __future__ import annotations

import numpy as np

from lapo.data.reader import LapoDataset
from lapo.envs.games import normalized_return, reference_returns


def _short(values, fmt: str = "{}", keep: int = 6) -> str:
    """``[a, b, c, ..., y, z] (N values)`` for a long list, the whole list for a short one (a
    128-dimensional latent action would fill a screen)."""
    items = [fmt.format(v) for v in values]
    if len(items) <= keep:
        return f"[{', '.join(items)}]"
    head, tail = items[: keep - 2], items[-2:]
    return f"[{', '.join(head)}, ..., {', '.join(tail)}] ({len(items)} values)"


def describe(dataset: LapoDataset) -> str:
    """Multi-line summary: source, counts, shapes, fields, returns, action frequencies, size."""
    m = dataset.manifest
    lengths = dataset.episodes[:, 1]
    nbytes = sum(s["bytes"] for s in m["shards"]) + sum(f["bytes"] for f in m["files"].values())
    given = m.get("source")  # descriptive only: any shape is shown as it is
    source = (
        ", ".join(
            f"{k}={_short(v) if isinstance(v, list) else v}"
            for k, v in given.items()
            if k != "files"
        )
        if isinstance(given, dict)
        else repr(given)
    )
    lines = [
        f"dataset     {dataset.path}",
        f"source      {source}",
        f"created     {m.get('created')} (lapo {m.get('lapo_version')}, "
        f"schema {m['schema_version']})",
        f"frames      {dataset.num_frames} x {tuple(dataset.frame_shape)} uint8 "
        f"in {len(m['shards'])} shard(s), {nbytes / 1e6:.1f} MB on disk",
        f"episodes    {dataset.num_episodes} (length min {lengths.min()}, "
        f"mean {lengths.mean():.1f}, max {lengths.max()}), "
        f"{m.get('num_transitions', dataset.num_frames - dataset.num_episodes)} transitions",
        f"fields      {', '.join(dataset.fields) or 'none (frames only, no actions)'}",
    ]
    returns = dataset.episode_returns
    known = returns[~np.isnan(returns)]
    if len(known):
        line = (
            f"returns     mean {known.mean():.3f} +- {known.std():.3f} over {len(known)} "
            "complete episodes"
        )
        game = given.get("game") if isinstance(given, dict) else None
        if game:
            if reference_returns(game) is not None:
                line += f" (normalized {normalized_return(game, known.mean()):.3f})"
        lines.append(line)
    if dataset.has_actions and dataset.continuous_actions:
        actions = np.asarray(dataset.actions)  # (N, A) float32
        low, high = dataset.action_bounds
        names = (m.get("action_space") or {}).get("names")
        named = f", names {_short(names)}" if isinstance(names, list) else ""
        lines.append(
            f"actions     {actions.shape[1]} continuous in [{_short(low.tolist())}, "
            f"{_short(high.tolist())}]: mean {_short(actions.mean(0), '{:.3f}')}, std "
            f"{_short(actions.std(0), '{:.3f}')}{named}"
        )
    elif dataset.has_actions:
        n = dataset.num_actions or int(dataset.actions.max()) + 1
        counts = np.bincount(np.asarray(dataset.actions), minlength=n)
        meanings = (m.get("action_space") or {}).get("meanings")
        if not (isinstance(meanings, list) and len(meanings) >= n):
            meanings = [str(i) for i in range(n)]
        freq = ", ".join(f"{meanings[i]} {c / counts.sum():.1%}" for i, c in enumerate(counts))
        lines.append(f"actions     {n} discrete: {freq}")
    elif isinstance(given, dict) and isinstance(given.get("continuous_actions"), dict):
        side = given["continuous_actions"]  # what LeRobot and Minari imports wrote before
        lines.append(
            f"actions     {side.get('dim')} continuous in the side file {side.get('file')} (an "
            "earlier import): not the dataset's actions, so stage 3 skips them; import the "
            "source again to store them as actions"
        )
    return "\n".join(lines)
