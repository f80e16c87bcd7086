"""Record a Procgen game or a Gymnasium environment (its rendered pixels) with a policy into a
lapo dataset (``lapo collect``).

True actions, rewards and done flags are stored beside the frames. LAPO never trains on them:
they serve evaluation and the small labelled subset of stage 3.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

from lapo.config import CollectConfig
from lapo.data.writer import DatasetWriter, check_output_dir
from lapo.envs import (
    OBS_SHAPE,
    ActionSpec,
    check_env_name,
    env_action_spec,
    is_procgen,
    make_env_from_config,
)
from lapo.envs.games import check_distribution_mode, normalized_return
from lapo.envs.scripted import SCRIPTED_EXPERTS
from lapo.eval.actors import Policy, PolicyActor, RandomPolicy, ScriptedActor
from lapo.load import load_expert
from lapo.safety import holds_lock


def make_policy(
    spec: str,
    seed: int = 0,
    temperature: float = 1.0,
    device: str | torch.device | None = None,
    action_spec: ActionSpec | None = None,
) -> Policy:
    """Build the policy named by ``spec``: ``random`` or a PPO expert checkpoint (``lapo expert
    train`` run directory or its ``checkpoint`` path); experts sample from
    ``softmax(logits / temperature)`` (a Gaussian policy with its std scaled by
    ``temperature``) and act on ``device`` (None: ``lapo.device.default_device``). ``random``
    is uniform over ``action_spec`` (default: Procgen's 15).

    Raises:
        FileNotFoundError: ``spec`` is neither ``random`` nor an existing checkpoint.
        lapo.checkpoint.CheckpointError: the checkpoint is not a loadable policy.
    """
    if spec == "random":
        if action_spec is not None and action_spec.continuous:
            return RandomPolicy(action_spec.dim, seed, bounds=(action_spec.low, action_spec.high))
        return RandomPolicy(15 if action_spec is None else action_spec.dim, seed)
    try:
        net, config = load_expert(spec, device)
    except FileNotFoundError as exc:  # the error says what is at spec instead
        raise FileNotFoundError(
            f"--policy must be 'random', 'scripted' or a policy checkpoint: {exc}"
        ) from None
    return PolicyActor(net, bf16=config.bf16, seed=seed, temperature=temperature)


@dataclass
class CollectSummary:
    """What ``collect`` recorded. Returns are episode sums of rewards (complete episodes only)."""

    frames: int
    episodes: int
    complete_episodes: int
    episode_returns: list[float] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def mean_return(self) -> float:
        """Mean return of the complete episodes; NaN if none finished."""
        return float(np.mean(self.episode_returns)) if self.episode_returns else float("nan")

    @property
    def frames_per_second(self) -> float:
        """Recorded frames per wall-clock second of the collection loop; NaN if ``seconds`` is 0."""
        return self.frames / self.seconds if self.seconds else float("nan")


class _EpisodeBuffer:
    """Frames, actions, rewards and dones of one env's unfinished episode."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []
        self.actions: list = []
        self.rewards: list[float] = []
        self.dones: list[bool] = []

    def append(self, frame: np.ndarray, action, reward: float, done: bool) -> None:
        self.frames.append(frame)
        self.actions.append(action)
        self.rewards.append(reward)
        self.dones.append(done)

    def write(self, writer: DatasetWriter, episode_return: float | None) -> None:
        writer.add_episode(
            np.stack(self.frames),
            actions=np.asarray(self.actions),  # (T,) int or (T, A) float
            rewards=np.asarray(self.rewards, dtype=np.float32),
            dones=np.asarray(self.dones, dtype=bool),
            episode_return=episode_return,
        )
        self.__init__()


@holds_lock(lambda args: args["config"].out, inside=False)
def collect(
    config: CollectConfig,
    policy: Policy | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
):
    """Record ``config.frames`` frames into a new dataset at ``config.out``.

    Every env's frames are buffered until its episode ends, then written as one episode; at the
    end, unfinished episodes are written as cut episodes (return unknown, last done False).
    Memory is bounded by ``num_envs`` x the longest episode, not by ``frames``.

    Args:
        config: what to record.
        policy: overrides ``config.policy`` (e.g. an in-memory policy from the Python API).
        progress: show a tqdm bar with frames/s, episodes and mean return.
        device: where an expert named by ``config.policy`` acts (None: the default device).

    Returns:
        ``CollectSummary``.

    The dataset's lock (``lapo.safety.exclusive``) is held for the whole call.

    Raises:
        FileExistsError, ValueError: bad output path (existing without ``overwrite``, not a lapo
            dataset with it, or holding the policy checkpoint), environment, mode or policy
            (``scripted``: only for the tasks of ``lapo.envs.scripted``), before any stepping.
        lapo.safety.InUseError: another lapo process is writing ``config.out``.
    """
    check_env_name(config.env)
    if is_procgen(config.env):
        check_distribution_mode(config.env, config.distribution_mode)
    scripted = config.policy == "scripted"
    if scripted and config.env not in SCRIPTED_EXPERTS:
        raise ValueError(f"policy 'scripted' exists for {', '.join(SCRIPTED_EXPERTS)}; "
                         f"got env {config.env!r}")  # fmt: skip
    source_policy = None if config.policy in ("random", "scripted") else config.policy
    check_output_dir(config.out, config.overwrite, inputs=[source_policy])
    spec = env_action_spec(config.env)
    if policy is None and not scripted:
        policy = make_policy(config.policy, config.seed, config.temperature, device, spec)
    env = make_env_from_config(config)
    if policy is None:
        policy = ScriptedActor(config.env).bind(env)
    source = {
        "kind": "procgen" if is_procgen(config.env) else "gymnasium",
        "game": config.env,
        "policy": config.policy,
        "temperature": config.temperature,
        "distribution_mode": config.distribution_mode,
        "num_levels": config.num_levels,
        "start_level": config.start_level,
        "seed": config.seed,
        "num_envs": config.num_envs,
    }
    action_space = spec.manifest()
    writer = DatasetWriter(
        config.out,
        frame_shape=OBS_SHAPE,
        fields=("actions", "rewards", "dones"),
        source=source,
        action_space=action_space,
        shard_frames=config.shard_frames,
        overwrite=config.overwrite,
    )
    summary = CollectSummary(frames=0, episodes=0, complete_episodes=0)
    buffers = [_EpisodeBuffer() for _ in range(config.num_envs)]
    start = time.perf_counter()  # after env construction (about 2 s for gym3's library load)
    bar = tqdm(total=config.frames, unit="frame", disable=not progress, mininterval=0.5)
    with writer, bar:
        obs = env.reset()
        while summary.frames < config.frames:
            take = min(config.num_envs, config.frames - summary.frames)  # last step may be partial
            actions = np.asarray(policy.act(obs))
            step = env.step(actions)
            for i in range(take):
                buffers[i].append(obs[i], actions[i], float(step.reward[i]), bool(step.done[i]))
            for ep in step.episodes:
                if ep.env_index < take:
                    buffers[ep.env_index].write(writer, ep.episode_return)
                    summary.complete_episodes += 1
                    summary.episode_returns.append(ep.episode_return)
            summary.frames += take
            obs = step.obs
            bar.update(take)
            if summary.episode_returns:
                bar.set_postfix(
                    episodes=summary.complete_episodes,
                    mean_return=f"{np.mean(summary.episode_returns[-100:]):.2f}",
                )
        for buffer in buffers:  # episodes still running at the end are written as cut
            if buffer.frames:
                buffer.write(writer, None)
    env.close()
    summary.seconds = time.perf_counter() - start
    summary.episodes = writer.num_episodes
    return summary


def format_summary(config: CollectConfig, summary: CollectSummary) -> str:
    """Human-readable end-of-collection summary (frames, episodes, returns, speed)."""
    lines = [
        f"recorded {summary.frames} frames of {config.env} with policy '{config.policy}' "
        f"into {config.out}",
        f"  complete episodes: {summary.complete_episodes}",
        f"  speed: {summary.frames_per_second:.0f} frames/s over {summary.seconds:.1f} s",
    ]
    if summary.episode_returns:
        returns = np.asarray(summary.episode_returns)
        lines.append(
            f"  episode return: mean {returns.mean():.3f}, std {returns.std():.3f}, "
            f"normalized {normalized_return(config.env, returns.mean()):.3f}"
        )
    return "\n".join(lines)
