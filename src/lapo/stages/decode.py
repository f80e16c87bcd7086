"""Stage 3, offline decoding (``lapo decode-offline``), paper section 4.3.

With N labelled transitions (o_t, a_t) drawn reproducibly from the training episodes (the only
place where true actions enter the pipeline):
- an MLP decoder (128, 128) learns a_t from the IDM's latent action z_t of the same transition;
  composed with the latent policy it gives the decoded policy ``decoder(pi(o_t))``;
- the label-only baseline trains the latent policy's encoder architecture from scratch to predict
  a_t from o_t on the same N labels, so the value of latent pre-training is visible;
- optionally (not in the paper; ``pseudo_label_updates > 0``), the decoded policy is fine-tuned
  end to end on the decoder's soft labels of unlabelled transitions (``lapo.stages.pseudo_label``).
All keep the weights with the lowest validation loss (a held-out part of the N labels).

Continuous actions (a dataset with a box action space; the paper's appendix A.3): the decoder
and the label-only baseline regress the action instead of classifying it, by mean squared error
on the actions scaled affinely from their bounds to ``[-1, 1]`` (so that every dimension weighs
the same); they act with the regressed action mapped back to the bounds, and their test scores
are the coefficient of determination R^2 instead of accuracy.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from lapo.config import BCConfig, DecodeConfig
from lapo.data import DatasetError, WindowIndex, open_dataset, split_windows
from lapo.device import resolve_device
from lapo.eval.actors import predict_actions
from lapo.eval.probes import fit_classifier, r2_score
from lapo.load import check_finished, load_lam, load_latent_policy, save_policy
from lapo.models.build import build_encoder
from lapo.models.policy import ActionClassifier, ActionDecoder, DecodedPolicy
from lapo.paths import write_json_atomic
from lapo.safety import holds_lock
from lapo.stages.bc import cached_latents, label_stamps, label_windows
from lapo.stages.lam import weights_digest
from lapo.stages.pseudo_label import pseudo_label_finetune

DECODED, LABEL_BC, PSEUDO_LABEL = "decoded", "label-bc", "pseudo-label"


@dataclass(frozen=True)
class LabelledSet:
    """N labelled transitions.

    Attributes:
        windows: ``(N,) int64`` window numbers in the training index.
        observations: ``(N, H, W, C) uint8``, o_t.
        latents: ``(N, D) float32``, the IDM's latent action of (o_{t-k} .. o_{t+1}).
        actions: ``(N,) int64``, the true a_t; ``(N, A) float32`` in unit space ``[-1, 1]``
            for continuous actions.
    """

    windows: np.ndarray
    observations: np.ndarray
    latents: np.ndarray
    actions: np.ndarray

    def split(self, validation_fraction: float) -> tuple[LabelledSet, LabelledSet]:
        """First ``N - n_val`` as training, the last ``n_val >= 1`` as validation."""
        n_val = min(max(1, round(len(self.actions) * validation_fraction)), len(self.actions) - 1)
        cut = len(self.actions) - n_val
        take = lambda s: LabelledSet(*(getattr(self, f.name)[s] for f in dataclasses.fields(self)))  # noqa: E731
        return take(slice(0, cut)), take(slice(cut, None))


def draw_labelled_set(
    lam,
    index: WindowIndex,
    n: int,
    seed: int,
    target: str = "continuous",
    cached: np.ndarray | None = None,
) -> LabelledSet:
    """Draw ``n`` labelled transitions (nested in ``n`` for a fixed seed) and label them.

    Args:
        cached: the IDM's latent of every window of ``index`` (``(len(index), D) float32``,
            stage 2's cache, ``lapo.stages.bc.cached_latents``): the latents are read from it
            instead of computed again, which matters with many labels (the IDM labels about
            180 windows/s on one AVX2 core). None: the IDM labels the drawn windows.

    Raises:
        ValueError: ``n`` exceeds the number of windows; the dataset has no true actions.
    """
    dataset = index.dataset
    if not dataset.has_actions:
        raise ValueError(
            f"{dataset.path} has no true actions: offline decoding needs a few labelled "
            "transitions of the same source (a dataset with actions, e.g. from lapo collect or "
            "an import with actions; lapo run --data takes it as --labels-from)"
        )
    windows = index.labelled_subset(n, seed=seed)
    frames = index.read(windows)  # (N, k+2, H, W, C)
    if cached is not None and len(cached) == len(index):
        latents = np.asarray(cached[windows], dtype=np.float32)
    else:
        latents = label_windows(lam, WindowSubset(index, windows), target)
    actions = np.asarray(dataset.actions[index.frame_index(windows)])
    if dataset.continuous_actions:
        low, high = dataset.action_bounds
        actions = (2.0 * (actions.astype(np.float32) - low) / (high - low) - 1.0).astype(np.float32)
    else:
        actions = actions.astype(np.int64)
    return LabelledSet(windows, frames[:, index.context].copy(), latents, actions)


class WindowSubset:
    """A window index restricted to given windows (only what ``label_windows`` needs)."""

    def __init__(self, index: WindowIndex, windows: np.ndarray) -> None:
        self.index, self.windows = index, windows

    def __len__(self) -> int:
        return len(self.windows)

    def read(self, positions: np.ndarray) -> np.ndarray:
        """Frames of the windows at ``positions`` (indices into ``windows``): ``(B, k + 2, H, W, C)
        uint8``, as ``WindowIndex.read``."""
        return self.index.read(self.windows[positions])


def train_decoder(
    labelled: LabelledSet, config: DecodeConfig, num_actions: int, bounds=None
) -> tuple[ActionDecoder, dict]:
    """Fit the MLP decoder z_t -> a_t on ``labelled`` (section 4.3); returns it (eval) + facts.

    With ``bounds`` ``(low, high)`` (continuous actions, ``num_actions`` = A) the decoder
    regresses the unit-space actions by mean squared error (facts: ``validation_r2``).
    """
    train, val = labelled.split(config.validation_fraction)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        decoder = ActionDecoder(labelled.latents.shape[1], num_actions, config.hidden, bounds)
        steps_per_epoch = max(1, -(-len(train.actions) // config.batch_size))
        info = fit_classifier(
            decoder,
            torch.from_numpy(train.latents),
            torch.from_numpy(train.actions),
            torch.from_numpy(val.latents),
            torch.from_numpy(val.actions),
            lr=config.learning_rate,
            batch_size=config.batch_size,
            updates=config.max_epochs * steps_per_epoch,
            eval_every=steps_per_epoch,
            patience=config.patience,
            generator=torch.Generator().manual_seed(config.seed),
            regression=bounds is not None,
        )
    return decoder, info


def train_label_bc(
    labelled: LabelledSet,
    config: DecodeConfig,
    bc_config: BCConfig,
    num_actions: int,
    bounds=None,
) -> tuple[ActionClassifier, dict]:
    """Baseline: the latent policy's encoder trained from scratch on o_t -> a_t, same labels
    (cross-entropy; with ``bounds``, mean squared error on the unit-space actions)."""
    train, val = labelled.split(config.validation_fraction)
    with torch.random.fork_rng():
        torch.manual_seed(config.seed)
        net = ActionClassifier(
            build_encoder(bc_config, labelled.observations.shape[1:]), num_actions, bounds
        )
        net = net.to(memory_format=torch.channels_last)
        info = fit_classifier(
            net,
            torch.from_numpy(train.observations),
            torch.from_numpy(train.actions),
            torch.from_numpy(val.observations),
            torch.from_numpy(val.actions),
            lr=config.bc_learning_rate,
            batch_size=config.batch_size,
            updates=max(config.bc_steps, 1),
            eval_every=25,
            patience=config.patience,
            generator=torch.Generator().manual_seed(config.seed),
            regression=bounds is not None,
        )
    return net, info


@holds_lock(
    lambda a: a["out_dir"], inputs=lambda a: [a["policy_path"], a["lam_path"], a["data_dir"]]
)
def decode_offline(
    config: DecodeConfig,
    policy_path: str | Path,
    lam_path: str | Path,
    data_dir: str | Path,
    out_dir: str | Path,
    *,
    baseline: bool = True,
    allow_unfinished: bool = False,
    test_samples: int = 2048,
    device: str | torch.device | None = None,
    progress: bool = False,
) -> dict:
    """Train the decoder (and the label-only baseline) and save both as acting policies.

    Files in ``out_dir``: ``decoded/checkpoint`` (kind ``decoded-policy``), ``label-bc/checkpoint``
    (kind ``bc-policy``, when ``baseline``), ``pseudo-label/checkpoint`` (kind
    ``decoded-policy``, when ``config.pseudo_label_updates > 0``) and ``decode.json`` (the
    returned facts). Holds ``out_dir``'s lock (``lapo.safety.exclusive``) for the whole call.
    ``allow_unfinished`` accepts a stage-2 run that stopped before its last update. The latent
    policy, the IDM and the decoded policy compute on ``device`` (None: ``lapo.device.
    default_device``); the small decoder and baseline fits run on the CPU.

    Returns:
        JSON-able facts: labels used, decoder/baseline validation accuracy, and on up to
        ``test_samples`` held-out windows (stage 1's test episodes): the decoder's accuracy on IDM
        latents, the decoded policy's and the baseline's accuracy on o_t, the true and decoded
        actions (for a confusion matrix) and the game the data came from; with pseudo-label
        fine-tuning also its facts (``pseudo_label``) and ``test/pseudo_label_accuracy``.
        With continuous actions (Appendix A.3) the accuracies are replaced by the coefficient of
        determination R^2: ``test/decoder_r2``, ``test/decoded_policy_r2``,
        ``test/label_bc_r2``, and ``loss`` names the decoder's loss (MSE on actions scaled
        to [-1, 1]).

    Raises:
        ValueError: no true actions in the data; more labels than training windows; ``out_dir``
            is, contains or lies inside an input.
        lapo.checkpoint.CheckpointError: wrong checkpoint kinds.
        lapo.load.UnfinishedRunError: the stage-2 run is unfinished and not ``allow_unfinished``.
        lapo.safety.InUseError: another lapo process holds ``out_dir``.
    """
    out_dir = Path(out_dir)
    check_finished(policy_path, allow_unfinished=allow_unfinished, what="--policy")
    device = resolve_device(device)
    latent_policy, bc_config = load_latent_policy(policy_path, device)
    lam, lam_config = load_lam(lam_path, device)
    dataset = open_dataset(data_dir)
    if tuple(dataset.frame_shape) != lam.frame_shape:
        raise DatasetError(
            f"{data_dir}: frames are {tuple(dataset.frame_shape)}, but the latent action model "
            f"was trained on {lam.frame_shape}"
        )
    bounds = dataset.action_bounds  # None: discrete
    num_actions = len(bounds[0]) if bounds is not None else (dataset.num_actions or 15)
    if bounds is not None and config.pseudo_label_updates:
        raise ValueError(
            f"pseudo-label fine-tuning supports discrete actions only, but {data_dir} has "
            f"continuous actions ({num_actions} dimensions): set pseudo_label_updates "
            "(--pseudo-label-updates) to 0"
        )
    train_index, test_index = split_windows(dataset, lam_config.context,
                                            lam_config.test_fraction, lam_config.seed)  # fmt: skip
    # stage 2 labelled every window of both splits with this IDM: reuse its labels when its
    # stamp vouches for them (same IDM weights, stage-1 checkpoint, dataset and target)
    bc_dir = Path(policy_path) if Path(policy_path).is_dir() else Path(policy_path).parent
    stamps = label_stamps(lam_path, weights_digest(lam), dataset, bc_config.target, train_index,
                          test_index)  # fmt: skip
    cached = {split: cached_latents(bc_dir, split, stamp) for split, stamp in stamps.items()}
    labelled = draw_labelled_set(lam, train_index, config.labels, config.seed, bc_config.target,
                                 cached["train"])  # fmt: skip
    test = draw_labelled_set(lam, test_index, min(test_samples, len(test_index)), 1,
                             bc_config.target, cached["test"])  # fmt: skip
    decoder, decoder_info = train_decoder(labelled, config, num_actions, bounds)  # on the CPU
    with torch.no_grad():
        decoder_test = decoder(torch.from_numpy(test.latents)).numpy()  # before the move
    decoder = decoder.to(device)
    decoded = DecodedPolicy(latent_policy, decoder).eval()
    game = dataset.manifest.get("source", {}).get("game")
    common = {
        "env": game,
        "num_actions": num_actions,
        "latent_dim": lam_config.latent_dim,
        "bc_config": dataclasses.asdict(bc_config),
        "labels": config.labels,
        "decode_config": dataclasses.asdict(config),
        "frame_shape": list(dataset.frame_shape),
        "data": str(dataset.path),
        "action_bounds": None if bounds is None else [b.tolist() for b in bounds],
    }
    save_policy(
        out_dir / DECODED / "checkpoint",
        "decoded-policy",
        {"latent_policy": latent_policy, "decoder": decoder},
        {**common, "hidden": list(config.hidden), "metrics": decoder_info},
    )
    if bounds is not None:
        facts = _continuous_facts(config, game, test, decoder_test, decoded, decoder_info)
    else:
        facts = _discrete_facts(config, game, test, decoder_test, decoded, decoder_info)
    if config.pseudo_label_updates:
        facts |= _pseudo_label(config, decoded, lam, train_index, cached["train"], labelled,
                               test, bc_config, common, out_dir, progress)  # fmt: skip
    if baseline:
        facts |= _label_bc(config, labelled, test, bc_config, num_actions, bounds, common, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json_atomic(out_dir / "decode.json", facts)
    return facts


def _discrete_facts(config, game, test, decoder_test, decoded, decoder_info) -> dict:
    """``decode_offline``'s facts for discrete actions: accuracy on the held-out windows of the
    decoder on IDM latents (``decoder_test (N, num_actions)`` logits) and of the decoded policy
    on o_t, with the true and decoded actions (for a confusion matrix)."""
    decoder_test = decoder_test.argmax(-1)
    decoded_actions = predict_actions(decoded, test.observations)
    return {
        "env": game,
        "labels": config.labels,
        "seed": config.seed,
        "decoder": decoder_info,
        "test_samples": len(test.actions),
        "test/decoder_accuracy": float((decoder_test == test.actions).mean()),
        "test/decoded_policy_accuracy": float((decoded_actions == test.actions).mean()),
        "test/true_actions": test.actions.tolist(),
        "test/decoded_actions": decoded_actions.tolist(),
    }


def _pseudo_label(config, decoded, lam, train_index, cached_train, labelled, test, bc_config,
                  common, out_dir, progress) -> dict:  # fmt: skip
    """Fine-tune the decoded policy on soft labels of unlabelled training windows (the IDM's
    latents from stage 2's cache when it holds them), save it and return its facts.

    Discrete actions only (its test accuracy compares action indices): ``decode_offline`` refuses
    ``pseudo_label_updates > 0`` with continuous actions before any work."""
    rng = np.random.default_rng(config.seed)
    count = min(config.pseudo_label_frames, len(train_index))
    windows = np.sort(rng.choice(len(train_index), size=count, replace=False))
    latents = (
        np.asarray(cached_train[windows])
        if cached_train is not None  # stage 2 labelled every training window
        else label_windows(lam, WindowSubset(train_index, windows), bc_config.target)
    )
    train, val = labelled.split(config.validation_fraction)
    finetuned, pseudo_info = pseudo_label_finetune(
        decoded, train_index, windows, latents, (train.observations, train.actions),
        (val.observations, val.actions), config, bf16=bc_config.bf16, progress=progress,
    )  # fmt: skip
    save_policy(
        out_dir / PSEUDO_LABEL / "checkpoint",
        "decoded-policy",
        {"latent_policy": finetuned.latent_policy, "decoder": finetuned.decoder},
        {**common, "hidden": list(config.hidden), "metrics": pseudo_info},
    )
    accuracy = (predict_actions(finetuned, test.observations) == test.actions).mean()
    return {"pseudo_label": pseudo_info, "test/pseudo_label_accuracy": float(accuracy)}


def _label_bc(config, labelled, test, bc_config, num_actions, bounds, common, out_dir) -> dict:
    """Train the label-only baseline on the same labels, save it and return its facts: held-out
    accuracy, or with continuous action ``bounds`` the R^2 of its unit-space actions."""
    if bounds is not None:
        bounds = tuple(np.asarray(b, np.float32) for b in bounds)
    net, bc_info = train_label_bc(labelled, config, bc_config, num_actions, bounds)
    save_policy(out_dir / LABEL_BC / "checkpoint", "bc-policy", {"policy": net},
                {**common, "metrics": bc_info})  # fmt: skip
    if bounds is not None:
        r2 = r2_score(_predict(net, test.observations), test.actions)
        return {"label_bc": bc_info, "test/label_bc_r2": r2}
    accuracy = (predict_actions(net, test.observations) == test.actions).mean()
    return {"label_bc": bc_info, "test/label_bc_accuracy": float(accuracy)}


@torch.no_grad()
def _predict(net, observations: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Unit-space actions ``(N, A) float32`` of a regressor on ``(N, H, W, C) uint8``."""
    device = next(net.parameters()).device
    out = [net(torch.from_numpy(observations[i : i + batch_size]).to(device)).float().cpu()
           for i in range(0, len(observations), batch_size)]  # fmt: skip
    return torch.cat(out).numpy()


def _continuous_facts(config, game, test, decoder_test, decoded, decoder_info) -> dict:
    """``decode_offline``'s facts for continuous actions: R^2 of the unit-space actions on the
    held-out windows (``test/decoder_r2`` from the IDM latents, ``decoder_test (N, A)``;
    ``test/decoded_policy_r2`` from o_t)."""
    return {
        "env": game,
        "labels": config.labels,
        "seed": config.seed,
        "decoder": decoder_info,
        "loss": "mse on actions scaled to [-1, 1]",
        "test_samples": len(test.actions),
        "test/decoder_r2": r2_score(decoder_test, test.actions),
        "test/decoded_policy_r2": r2_score(_predict(decoded, test.observations), test.actions),
    }
