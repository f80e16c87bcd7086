"""Code use of the latent action model as the report counts it: on held-out transitions, the
count the codebook figure shows (paper section 4.1: the VQ bottleneck), and the colour classes of
a latent map of data without true actions."""

from __future__ import annotations

import numpy as np


def count_text(n: int, noun: str) -> str:
    """``"1 code"``, ``"2,048 codes"``."""
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


#: Codes coloured apart in the latent map of action-free data (the rest share one colour).
MAP_CODES = 9


def code_classes(codes: np.ndarray, top: int = MAP_CODES) -> tuple[np.ndarray, list[str]]:
    """Colour classes of a latent map of data without true actions: the ``top`` most used code
    tuples, then "other".

    Args:
        codes: ``(N, G, L) int`` code indices of N transitions.
        top: code tuples coloured apart.

    Returns:
        ``classes (N,) int64`` in ``[0, K]`` (K = min(top, distinct tuples); K = "other") and K + 1
        names (``"code #1 (12%)"``, ..., ``"other codes"``).
    """
    from lapo.eval.fdm_samples import most_used_codes

    codes = np.asarray(codes)
    flat = codes.reshape(len(codes), -1)
    chosen, counts = most_used_codes(codes, top)
    classes = np.full(len(codes), len(chosen), np.int64)
    for i, code in enumerate(chosen.reshape(len(chosen), -1)):
        classes[(flat == code).all(axis=1)] = i
    names = [f"code #{i + 1} ({100 * c / len(codes):.0f}%)" for i, c in enumerate(counts)]
    return classes, [*names, "other codes"]


def heldout_codebook_metrics(codes: np.ndarray, codebook_size: int) -> dict:
    """``metrics.json`` entries of code use on held-out transitions, counted as the codebook
    figure counts them.

    Args:
        codes: ``(N, G, L) int`` code indices of N transitions (G codebooks, L latents each).
        codebook_size: S, codes per codebook.

    Returns: ``heldout_transitions`` (N); per codebook g ``heldout_codes_used/g`` (codes chosen
        by any latent of any transition) and ``heldout_perplexity/g`` of those N * L choices
        (``plots.codebook_stats``: the figure's panel titles); ``heldout_distinct_codes``
        (distinct whole code tuples, i.e. latent actions) and ``heldout_joint_perplexity``
        (exp of their entropy; 1 = every transition gets the same latent action).
    """
    from lapo.eval.plots import codebook_counts, codebook_stats

    codes = np.asarray(codes)
    used, perplexity = codebook_stats(codebook_counts(codes, codebook_size))
    _, joint_counts = np.unique(codes.reshape(len(codes), -1), axis=0, return_counts=True)
    share = joint_counts / len(codes)
    out = {"heldout_transitions": len(codes)}
    for g, (u, p) in enumerate(zip(used.tolist(), perplexity.tolist(), strict=True)):
        out[f"heldout_codes_used/{g}"] = int(u)
        out[f"heldout_perplexity/{g}"] = float(p)
    out["heldout_distinct_codes"] = len(joint_counts)
    out["heldout_joint_perplexity"] = float(np.exp(-(share * np.log(share)).sum()))
    return out


def codebook_rows(lam: dict, codebook_size: int) -> list[list[str]]:
    """Rows of the stage-1 code-use table: the held-out count (the one the summary and the figure
    give) and, named apart, stage 1's training-time usage-EMA count (``codes_used/g`` in
    ``lam/metrics.jsonl``)."""
    groups = sorted(int(k.split("/")[1]) for k in lam if k.startswith("heldout_codes_used/"))
    rows = [
        [
            f"codebook {g + 1}",
            f"{lam[f'heldout_codes_used/{g}']}/{codebook_size}",
            f"{lam[f'heldout_perplexity/{g}']:.2f}",
            f"{lam[k]}/{codebook_size}" if (k := f"train_ema_codes_alive/{g}") in lam else "n/a",
        ]
        for g in groups
    ]
    return rows


def codebook_summary(lam: dict, codebook_size: int) -> str | None:
    """``"4/64 and 5/64 (perplexity 2.10, 3.30) on 3,000 held-out transitions, which get 17
    distinct latent actions (joint perplexity 9.12)"``: the held-out counts
    (``heldout_codebook_metrics``); None without them."""
    rows = codebook_rows(lam, codebook_size)
    if not rows:
        return None
    return (
        f"{' and '.join(r[1] for r in rows)} (perplexity {', '.join(r[2] for r in rows)}) on "
        f"{lam['heldout_transitions']:,} held-out transitions, which get "
        f"{count_text(lam['heldout_distinct_codes'], 'distinct latent action')} (joint perplexity "
        f"{lam['heldout_joint_perplexity']:.2f})"
    )


def training_code_counts(summary: dict) -> dict:
    """Stage 1's ``codes_used/g`` (codes whose training usage EMA is above the dead-code
    threshold; it starts with every code at 1/S, so a short run counts them all) renamed
    ``train_ema_codes_alive/g``: "codes used" in the report is the held-out count of the figure."""
    prefix = "codes_used/"
    return {
        f"train_ema_codes_alive/{k[len(prefix) :]}": v
        for k, v in summary.items()
        if k.startswith(prefix)
    }
