"""Stage 3, offline, optional: fine-tune the decoded policy on the decoder's pseudo-labels.

Not in the paper (an extension, off by default: ``DecodeConfig.pseudo_label_updates = 0``). The
paper's decoded policy ``decoder(pi(o_t))`` (section 4.3) compounds two errors: the latent
policy's regression error and the decoder's. The decoder also reads the IDM's latent action
z_t of *every* unlabelled training transition, so it labels the whole video with soft true-action
targets ``softmax(decoder(z_t))``. Here the decoded policy (latent policy and decoder together,
initialized as trained) is fine-tuned end to end on those soft targets (cross-entropy on o_t,
the objective of behaviour cloning, now in the true action space) plus cross-entropy on the
training part of the N true labels. Still only N true actions are used; the unlabelled part of the
video enters through the IDM, as in stage 2.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from tqdm import tqdm

from lapo.config import DecodeConfig
from lapo.data import WindowIndex
from lapo.device import autocast
from lapo.eval.actors import predict_actions
from lapo.models.policy import DecodedPolicy


@torch.no_grad()
def _validation(net: nn.Module, obs: np.ndarray, actions: np.ndarray) -> tuple[float, float]:
    """(cross-entropy, accuracy) of a logits module on ``(N, H, W, C) uint8`` / ``(N,) int64``."""
    logits = net(torch.from_numpy(obs)).float()
    target = torch.from_numpy(actions)
    accuracy = (logits.argmax(-1) == target).float().mean()
    return float(F.cross_entropy(logits, target)), float(accuracy)


def pseudo_label_finetune(
    decoded: DecodedPolicy,
    index: WindowIndex,
    windows: np.ndarray,
    latents: np.ndarray,
    labelled: tuple[np.ndarray, np.ndarray],
    validation: tuple[np.ndarray, np.ndarray],
    config: DecodeConfig,
    bf16: bool = True,
    progress: bool = False,
) -> tuple[DecodedPolicy, dict]:
    """Fine-tune a copy of ``decoded`` on the decoder's soft labels of unlabelled transitions.

    Each of ``config.pseudo_label_updates`` Adam steps (lr ``pseudo_label_learning_rate``) takes
    ``pseudo_label_batch_size`` unlabelled windows (o_t as input, target
    ``softmax(decoder(z_t))`` from the decoder as trained, frozen) and up to as many labelled
    transitions (target a_t, weight ``pseudo_label_label_weight``). Every
    ``max(1, updates // 20)`` updates, and before the first, the validation cross-entropy is
    measured; the weights with the lowest one are kept (the initial decoded policy included, so
    the result is never worse than it on validation).

    Args:
        decoded: the trained decoded policy; left unchanged.
        index: training windows of the dataset (o_t read from here).
        windows: ``(M,) int64`` window numbers of ``index`` to pseudo-label.
        latents: ``(M, D) float32``, the IDM's latent action of each of ``windows``.
        labelled: ``(N, H, W, C) uint8`` o_t and ``(N,) int64`` true actions (training labels).
        validation: the same for the held-out labels (early stopping only).
        bf16: autocast the training passes where the device has native bf16 (``lapo.device``).

    Returns:
        The fine-tuned decoded policy (eval mode) and ``{validation_loss, validation_accuracy,
        initial_validation_loss, initial_validation_accuracy, best_update, updates,
        pseudo_labelled, teacher_agreement}`` (``teacher_agreement``: fraction of the pseudo-
        labelled windows whose argmax target the fine-tuned policy predicts, on up to 2048 of
        them).

    Raises:
        ValueError: ``windows`` and ``latents`` differ in length, or are empty.
    """
    if len(windows) != len(latents) or len(windows) == 0:
        raise ValueError(
            f"need one latent per window and at least one window, got {len(windows)} windows "
            f"and {len(latents)} latents"
        )
    device = next(decoded.parameters()).device
    teacher = copy.deepcopy(decoded.decoder).eval()
    student = copy.deepcopy(decoded).train()
    with torch.no_grad():
        targets = torch.cat(
            [
                torch.softmax(
                    teacher(torch.from_numpy(latents[i : i + 4096]).to(device)).float(), -1
                )
                for i in range(0, len(latents), 4096)
            ]
        )  # fmt: skip  (M, A) float32
    label_obs, label_actions = (torch.from_numpy(a) for a in labelled)
    rng = np.random.default_rng(config.seed)
    optimizer = torch.optim.Adam(student.parameters(), lr=config.pseudo_label_learning_rate)
    updates, batch = config.pseudo_label_updates, config.pseudo_label_batch_size
    eval_every = max(1, updates // 20)
    student.eval()
    initial = _validation(student, *validation)
    student.train()
    best = (initial[0], copy.deepcopy(student.state_dict()), 0)
    for update in tqdm(range(1, updates + 1), disable=not progress, desc="pseudo-label",
                       unit="upd", mininterval=1.0):  # fmt: skip
        rows = rng.integers(len(windows), size=batch)
        obs = torch.from_numpy(index.read(windows[rows])[:, index.context]).to(device)
        picked = rng.integers(len(label_actions), size=min(batch, len(label_actions)))
        with autocast(device, bf16):
            soft_loss = -(targets[rows] * F.log_softmax(student(obs).float(), -1)).sum(-1).mean()
            label_logits = student(label_obs[picked].to(device)).float()
        label_loss = F.cross_entropy(label_logits, label_actions[picked].to(device))
        loss = soft_loss + config.pseudo_label_label_weight * label_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if update % eval_every and update != updates:
            continue
        student.eval()
        val_loss = _validation(student, *validation)[0]
        student.train()
        if val_loss < best[0]:
            best = (val_loss, copy.deepcopy(student.state_dict()), update)
    student.load_state_dict(best[1])
    student.eval()
    val_loss, val_accuracy = _validation(student, *validation)
    check = slice(0, min(2048, len(windows)))
    predicted = predict_actions(student, index.read(windows[check])[:, index.context])
    agreement = float((predicted == targets[check].argmax(-1).cpu().numpy()).mean())
    return student, {
        "validation_loss": val_loss,
        "validation_accuracy": val_accuracy,
        "initial_validation_loss": initial[0],
        "initial_validation_accuracy": initial[1],
        "best_update": best[2],
        "updates": updates,
        "pseudo_labelled": len(windows),
        "teacher_agreement": agreement,
    }
