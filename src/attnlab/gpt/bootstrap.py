"""A paired bootstrap interval for DialogueGPT's perplexity ratio to the Kneser-Ney baseline.

Both models score the same targets of the same validation dialogues, so the
dialogues, not the tokens, are the sampling unit (tokens of one dialogue are
not independent): resample the dialogues with replacement, recompute

    ratio = exp((sum_i L_model,i - sum_i L_KN,i) / sum_i n_i)

over the resample (L: a dialogue's total NLL in nats, n: its scored targets),
and take the percentile interval of the resampled ratios. Pairing keeps each
dialogue's two scores together, so the dialogues' differing difficulty
cancels and the interval reflects only how the comparison varies.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

N_BOOT = 2000
SEED = 0
LEVEL = 0.95


def _per_dialogue(nlls: Sequence[Sequence[float]]) -> np.ndarray:
    return np.array([math.fsum(d) for d in nlls], dtype=np.float64)


def perplexity_ratio_interval(model_nll: Sequence[Sequence[float]], kn_nll: Sequence[Sequence[float]],
                              n_boot: int = N_BOOT, seed: int = SEED, level: float = LEVEL) -> dict:
    """Point ratio and paired-bootstrap percentile interval from per-dialogue, per-target NLLs of the two models."""
    if len(model_nll) != len(kn_nll):
        raise ValueError(f"{len(model_nll)} dialogues from the model, {len(kn_nll)} from the baseline")
    for d, (a, b) in enumerate(zip(model_nll, kn_nll)):
        if len(a) != len(b):
            raise ValueError(f"dialogue {d}: the model scored {len(a)} targets, the baseline {len(b)}")
    if not model_nll:
        raise ValueError("no dialogue to bootstrap over")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    diff = _per_dialogue(model_nll) - _per_dialogue(kn_nll)  # (n,) nats, model minus baseline
    counts = np.array([len(d) for d in model_nll], dtype=np.float64)
    if counts.sum() == 0:
        raise ValueError("the dialogues hold no scored target")
    idx = np.random.default_rng(seed).integers(0, len(diff), size=(n_boot, len(diff)))
    with np.errstate(invalid="ignore", divide="ignore"):  # a resample of empty dialogues only: no ratio
        ratios = np.exp(diff[idx].sum(axis=1) / counts[idx].sum(axis=1))
    ratios = ratios[np.isfinite(ratios)]
    tail = (1 - level) / 2
    low, high = np.quantile(ratios, [tail, 1 - tail])
    return {"ratio": math.exp(diff.sum() / counts.sum()), "low": float(low), "high": float(high),
            "level": level, "n_dialogues": len(diff), "n_boot": n_boot, "seed": seed,
            "share_below_one": float((ratios < 1).mean()),
            "method": "paired bootstrap over validation dialogues (resampled with replacement, both models' "
                      "scores of a dialogue kept together), percentile interval"}
