"""DialogueGPT interpolated with the Kneser-Ney baseline, its weight cross-fitted (issue 12).

Per target, p_mix = lam * p_model + (1 - lam) * p_KN (linear interpolation of
the two probabilities of the same target, float64). lam is never chosen on the
targets it scores: the validation dialogues are split by a fixed seeded
permutation into halves A and B; lam is the value of the grid 0.00..1.00
(step 0.01) with the lowest total NLL on A and scores B, and the other way
round. The reported NLL is the sum over both halves. This is a combination of
two models, not DialogueGPT's own figure; eval.json keeps it under "mixture".
Choosing lam on all of validation and scoring validation with it would be
biased low (the weight is fit to the very targets it is judged on).
"""

from __future__ import annotations

import math
from typing import Optional, Sequence

import numpy as np

GRID = np.round(np.arange(101) / 100.0, 2)  # 0.00, 0.01, ..., 1.00
SPLIT_SEED = 12
DEFINITION = ("per target p = lam * p_DialogueGPT + (1 - lam) * p_KneserNey; lam from the grid 0.00..1.00 "
              "(step 0.01) minimising the NLL of the other half of the validation dialogues (2-fold "
              "cross-fitting, halves from a seeded permutation), so no target is scored with a lam chosen on it; "
              "a combination with the n-gram model, not DialogueGPT's own figure")


def mix_nll(model_nll, kn_nll, lam: float) -> np.ndarray:
    """-ln(lam e^-a + (1-lam) e^-b) per target, in float64 (lam = 1 gives a, lam = 0 gives b, exactly)."""
    a = np.asarray(model_nll, dtype=np.float64)
    b = np.asarray(kn_nll, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"the two models scored different targets: {a.shape} vs {b.shape}")
    if not 0.0 <= lam <= 1.0:
        raise ValueError(f"lam must be in [0, 1], got {lam}")
    with np.errstate(divide="ignore"):  # log(0) = -inf drops that model's term
        return -np.logaddexp(np.log(lam) - a, np.log1p(-lam) - b)


def grid_nll(model_nll, kn_nll, grid: Sequence[float] = GRID) -> np.ndarray:
    """Total mixture NLL for every lam of ``grid``."""
    return np.array([mix_nll(model_nll, kn_nll, float(lam)).sum() for lam in grid])


def best_lambda(model_nll, kn_nll, grid: Sequence[float] = GRID) -> float:
    """The lam of ``grid`` with the lowest total NLL on these targets (the first of equal ones)."""
    if len(np.asarray(model_nll)) == 0:
        raise ValueError("no target to choose lam on")
    return float(grid[int(np.argmin(grid_nll(model_nll, kn_nll, grid)))])


def halves(n_dialogues: int, seed: int = SPLIT_SEED) -> tuple[list[int], list[int]]:
    """Dialogue indices of halves A and B: a seeded permutation, A its first floor(n/2)."""
    if n_dialogues < 2:
        raise ValueError(f"cross-fitting needs at least 2 dialogues, got {n_dialogues}")
    perm = np.random.default_rng(seed).permutation(n_dialogues).tolist()
    k = n_dialogues // 2
    return sorted(perm[:k]), sorted(perm[k:])


def cross_fit(model_nll: Sequence[Sequence[float]], kn_nll: Sequence[Sequence[float]],
              folds: Optional[tuple[Sequence[int], Sequence[int]]] = None, seed: int = SPLIT_SEED,
              grid: Sequence[float] = GRID) -> dict:
    """2-fold cross-fitted mixture NLL from per-dialogue per-target NLLs of the two models.

    ``folds``: (A, B) dialogue indices, by default :func:`halves`. Each fold is
    scored with the lam chosen on the other. Returns {"total_nll", "n_tokens",
    "lambda_per_fold" ([lam scoring A, lam scoring B]), "folds": [...]}.
    """
    if len(model_nll) != len(kn_nll):
        raise ValueError(f"{len(model_nll)} dialogues from the model, {len(kn_nll)} from the baseline")
    for d, (a, b) in enumerate(zip(model_nll, kn_nll)):
        if len(a) != len(b):
            raise ValueError(f"dialogue {d}: the model scored {len(a)} targets, the baseline {len(b)}")
    fa, fb = folds if folds is not None else halves(len(model_nll), seed)
    if set(fa) & set(fb):
        raise ValueError("the two folds share dialogues")

    def cat(nlls, idx):
        return np.array([x for i in idx for x in nlls[i]], dtype=np.float64)

    parts = [(cat(model_nll, f), cat(kn_nll, f)) for f in (fa, fb)]
    chosen = [best_lambda(*parts[1], grid), best_lambda(*parts[0], grid)]  # fold A scored with B's lam
    out_folds, total, n_tok = [], 0.0, 0
    for name, f, (a, b), lam in zip("AB", (fa, fb), parts, chosen):
        nll = float(mix_nll(a, b, lam).sum())
        out_folds.append({"fold": name, "n_dialogues": len(f), "n_tokens": len(a),
                          "lambda": lam, "lambda_chosen_on": "B" if name == "A" else "A", "nll": nll})
        total += nll
        n_tok += len(a)
    return {"total_nll": total, "n_tokens": n_tok, "lambda_per_fold": chosen, "folds": out_folds}


def report(model_nll: Sequence[Sequence[float]], kn_nll: Sequence[Sequence[float]], n_chars: int,
           model_perplexity: float, kn_perplexity: float, spell_nll: Optional[float] = None,
           seed: int = SPLIT_SEED) -> dict:
    """eval.json's "mixture": the cross-fitted figures, bits/char over the same ``n_chars`` as the model's."""
    cf = cross_fit(model_nll, kn_nll, seed=seed)
    loss = cf["total_nll"] / max(cf["n_tokens"], 1)
    ppl = math.exp(min(loss, 700.0))
    out = {"definition": DEFINITION, "lambda_grid": [float(GRID[0]), float(GRID[-1]), 0.01],
           "split_seed": seed, "lambda_per_fold": cf["lambda_per_fold"], "folds": cf["folds"],
           "n_tokens": cf["n_tokens"], "val_loss": loss, "perplexity": ppl,
           "bits_per_char": cf["total_nll"] / math.log(2) / max(n_chars, 1),
           "ratio_to_baseline": ppl / kn_perplexity, "ratio_to_model": ppl / model_perplexity}
    if spell_nll is not None:
        out["bits_per_char_open"] = (cf["total_nll"] + spell_nll) / math.log(2) / max(n_chars, 1)
    return out
