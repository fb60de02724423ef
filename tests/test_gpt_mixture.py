"""DialogueGPT + Kneser-Ney mixture with a cross-fitted weight, against hand-worked and independent references."""

import math
import random

import numpy as np
import pytest
import torch

from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt import mixture
from attnlab.gpt.ngram import KneserNey
from attnlab.gpt.scoring import score_dialogues
from test_gpt_eval_baseline import built  # noqa: F401  (the module-scoped fixture)


def nll_of(probs):
    return [-math.log(p) for p in probs]


def direct_total(p_model, p_kn, lam):
    """Mixture NLL straight from the probabilities (no log-space arithmetic)."""
    return sum(-math.log(lam * p + (1 - lam) * q) for p, q in zip(p_model, p_kn))


# ---------------------------------------------------------------- (a) grid search
def test_grid_search_finds_the_analytic_optimum():
    # Two targets. d/dlam NLL = 0 gives lam* = (d1 q2 - d2 q1) / (2 d1 d2) with d1 = p1 - q1, d2 = q2 - p2:
    # p = (0.9, 0.1), q = (0.1, 0.26): d1 = 0.8, d2 = 0.16, lam* = (0.208 - 0.016) / 0.256 = 0.75.
    p, q = [0.9, 0.1], [0.1, 0.26]
    assert mixture.best_lambda(nll_of(p), nll_of(q)) == 0.75
    # an independent fine scan of the probability formula agrees
    fine = np.linspace(0, 1, 100001)
    assert fine[np.argmin([direct_total(p, q, lam) for lam in fine])] == pytest.approx(0.75, abs=1e-5)


def test_grid_search_matches_a_fine_scan_and_the_boundaries():
    rng = np.random.default_rng(3)
    p, q = rng.uniform(0.01, 0.9, 40), rng.uniform(0.01, 0.9, 40)
    fine = np.linspace(0, 1, 20001)
    ref = fine[np.argmin([direct_total(p, q, lam) for lam in fine])]
    lam = mixture.best_lambda(nll_of(p), nll_of(q))
    assert abs(lam - ref) <= 0.01  # the 0.01 grid point next to the continuous optimum (the NLL is convex)
    assert lam in [round(x, 2) for x in (math.floor(ref * 100) / 100, math.ceil(ref * 100) / 100)]
    # one model better on every target: the optimum is the boundary
    assert mixture.best_lambda(nll_of([0.9, 0.8]), nll_of([0.1, 0.2])) == 1.0
    assert mixture.best_lambda(nll_of([0.1, 0.2]), nll_of([0.9, 0.8])) == 0.0


# ---------------------------------------------------------------- (b) cross-fitting
def test_each_fold_is_scored_with_the_other_folds_lambda():
    # dialogues 0, 1 (fold A): the model is far better; dialogues 2, 3 (fold B): Kneser-Ney is.
    pm = [[0.9, 0.8], [0.7], [0.01, 0.02], [0.03]]
    pk = [[0.01, 0.02], [0.03], [0.9, 0.8], [0.7]]
    a_alone = mixture.best_lambda(nll_of(pm[0] + pm[1]), nll_of(pk[0] + pk[1]))
    b_alone = mixture.best_lambda(nll_of(pm[2] + pm[3]), nll_of(pk[2] + pk[3]))
    assert (a_alone, b_alone) == (1.0, 0.0)
    cf = mixture.cross_fit([nll_of(x) for x in pm], [nll_of(x) for x in pk], folds=([0, 1], [2, 3]))
    assert cf["lambda_per_fold"] == [0.0, 1.0]  # A scored with B's lam, B with A's
    assert [f["lambda"] for f in cf["folds"]] == [0.0, 1.0]
    # so A pays Kneser-Ney's probabilities and B the model's: the worst case, by hand
    by_hand = sum(nll_of([0.01, 0.02, 0.03])) * 2
    assert cf["total_nll"] == pytest.approx(by_hand, rel=1e-12)
    assert cf["n_tokens"] == 6


def test_a_folds_own_targets_never_move_its_lambda():
    rng = np.random.default_rng(0)
    pm = [list(rng.uniform(0.05, 0.9, rng.integers(1, 6))) for _ in range(10)]
    pk = [list(rng.uniform(0.05, 0.9, len(x))) for x in pm]
    folds = mixture.halves(10, seed=1)
    base = mixture.cross_fit([nll_of(x) for x in pm], [nll_of(x) for x in pk], folds=folds)
    # make fold A's own targets overwhelmingly favour the model: the lam that scores A must not change
    pm2 = [[0.99] * len(x) if i in folds[0] else x for i, x in enumerate(pm)]
    pk2 = [[0.001] * len(x) if i in folds[0] else x for i, x in enumerate(pk)]
    moved = mixture.cross_fit([nll_of(x) for x in pm2], [nll_of(x) for x in pk2], folds=folds)
    assert moved["lambda_per_fold"][0] == base["lambda_per_fold"][0]
    assert moved["lambda_per_fold"][1] == 1.0  # chosen on A, which now prefers the model throughout


def test_halves_are_a_fixed_seeded_split_of_all_dialogues():
    a, b = mixture.halves(11, seed=5)
    assert sorted(a + b) == list(range(11)) and len(a) == 5 and len(b) == 6
    assert mixture.halves(11, seed=5) == (a, b)
    assert any(mixture.halves(11, seed=s) != (a, b) for s in range(6, 12))
    with pytest.raises(ValueError, match="at least 2"):
        mixture.halves(1)


def test_targets_of_different_count_are_refused():
    with pytest.raises(ValueError, match="dialogue 1"):
        mixture.cross_fit([[0.1], [0.2, 0.3]], [[0.1], [0.2]], folds=([0], [1]))


# ---------------------------------------------------------------- (c) perplexity by hand
def test_mixture_perplexity_is_exp_of_the_mean_nll_by_hand():
    pm = [[0.5, 0.25], [0.125], [0.4, 0.1], [0.2]]
    pk = [[0.1, 0.4], [0.3], [0.2, 0.2], [0.05]]
    folds = mixture.halves(4)
    lam_for = {}  # lam chosen on the other fold by an independent fine scan restricted to the grid
    for scored, other in ((0, 1), (1, 0)):
        idx = folds[other]
        p = [x for i in idx for x in pm[i]]
        q = [x for i in idx for x in pk[i]]
        lam_for[scored] = min((i / 100 for i in range(101)), key=lambda lam: direct_total(p, q, lam))
    nlls = [-math.log(lam_for[f] * p + (1 - lam_for[f]) * q)
            for f in (0, 1) for i in folds[f] for p, q in zip(pm[i], pk[i])]
    n_chars = 37
    res = mixture.report([nll_of(x) for x in pm], [nll_of(x) for x in pk], n_chars,
                         model_perplexity=7.0, kn_perplexity=9.0, spell_nll=2.5)
    assert res["lambda_per_fold"] == pytest.approx([lam_for[0], lam_for[1]], abs=1e-12)
    assert res["n_tokens"] == 6
    assert res["perplexity"] == pytest.approx(math.exp(sum(nlls) / 6), rel=1e-12)
    assert res["bits_per_char"] == pytest.approx(sum(nlls) / math.log(2) / n_chars, rel=1e-12)
    assert res["bits_per_char_open"] == pytest.approx((sum(nlls) + 2.5) / math.log(2) / n_chars, rel=1e-12)
    assert res["ratio_to_baseline"] == pytest.approx(res["perplexity"] / 9.0, rel=1e-12)
    assert res["ratio_to_model"] == pytest.approx(res["perplexity"] / 7.0, rel=1e-12)
    assert "not DialogueGPT's own" in res["definition"]


# ---------------------------------------------------------------- (d) the endpoints
def test_lambda_one_is_the_model_and_zero_the_baseline_exactly():
    rng = np.random.default_rng(1)
    a, b = rng.uniform(0.1, 9, 50), rng.uniform(0.1, 9, 50)
    assert np.array_equal(mixture.mix_nll(a, b, 1.0), a)
    assert np.array_equal(mixture.mix_nll(a, b, 0.0), b)
    assert np.allclose(mixture.mix_nll(a, b, 0.3), -np.log(0.3 * np.exp(-a) + 0.7 * np.exp(-b)), rtol=1e-13)


class BigramLogits(torch.nn.Module):
    """Logits that depend on the current token only, so each target's NLL is known without windows."""

    def __init__(self, vocab: int, max_len: int):
        super().__init__()
        self.max_len = max_len
        self.table = torch.nn.Parameter(torch.randn(vocab, vocab, generator=torch.Generator().manual_seed(0)))

    def forward(self, ids, mask=None):
        return self.table[ids]


def test_per_target_model_nll_follows_each_dialogue_across_windows():
    rng = random.Random(2)
    dialogues = [[0] + [rng.randrange(3, 12) for _ in range(rng.randint(1, 30))] for _ in range(9)]
    model = BigramLogits(12, max_len=6)  # most dialogues need several overlapping windows
    s = score_dialogues(model, dialogues, pad_id=1, batch_size=4, per_target=True)
    logp = torch.log_softmax(model.table.detach().double(), -1)
    for ids, got in zip(dialogues, s["target_nll"]):
        want = [-float(logp[ids[t - 1], ids[t]]) for t in range(1, len(ids))]
        assert got == pytest.approx(want, rel=1e-6)
    assert sum(map(sum, s["target_nll"])) == pytest.approx(s["total_nll"], rel=1e-12)
    plain = score_dialogues(model, dialogues, pad_id=1, batch_size=4)
    assert plain["total_nll"] == s["total_nll"] and "target_nll" not in plain  # the totals are unchanged


def test_per_target_kneser_ney_nll_is_its_probability():
    corpus = [[0, 3, 4, 3], [0, 3, 3, 5], [0, 4, 5]]
    kn = KneserNey(3, 6).fit(corpus)
    s = kn.score(corpus, per_target=True)
    for ids, got in zip(corpus, s["target_nll"]):
        assert got == pytest.approx([-math.log(kn.prob(ids[t], ids[:t])) for t in range(1, len(ids))], rel=1e-12)
    assert s["total_nll"] == kn.score(corpus)["total_nll"] == pytest.approx(sum(map(sum, s["target_nll"])))


def test_evaluate_reports_the_mixture_separately(built, monkeypatch):  # noqa: F811
    d, out, source, data = built
    files = {"ngram": d / "ngram.json", "data": out / "dialogues.pt", "vocab_report": out / "vocab_report.json",
             "source": source}
    seen = {}
    real = mixture.report

    def spy(model_nll, kn_nll, *args, **kw):
        seen["model"], seen["kn"] = model_nll, kn_nll
        return real(model_nll, kn_nll, *args, **kw)

    monkeypatch.setattr(mixture, "report", spy)
    res = gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu", baseline=files)
    m, b = res["mixture"], res["baseline"]
    # the per-target values are the ones the two reported totals sum
    assert sum(map(sum, seen["model"])) == pytest.approx(res["val_loss"] * res["n_tokens"], rel=1e-12)
    assert sum(map(sum, seen["kn"])) == pytest.approx(b["val_loss"] * b["n_tokens"], rel=1e-12)
    assert [len(x) for x in seen["model"]] == [len(x) for x in seen["kn"]]
    # (d) on the real pipeline's targets: lam = 1 is DialogueGPT's perplexity, lam = 0 Kneser-Ney's
    a = np.concatenate([np.asarray(x) for x in seen["model"]])
    k = np.concatenate([np.asarray(x) for x in seen["kn"]])
    assert math.exp(mixture.mix_nll(a, k, 1.0).mean()) == pytest.approx(res["val_perplexity"], rel=1e-12)
    assert math.exp(mixture.mix_nll(a, k, 0.0).mean()) == pytest.approx(b["val_perplexity"], rel=1e-12)
    for lam, ppl in ((1.0, res["val_perplexity"]), (0.0, b["val_perplexity"])):
        cf = mixture.cross_fit(seen["model"], seen["kn"], grid=[lam])
        assert math.exp(cf["total_nll"] / cf["n_tokens"]) == pytest.approx(ppl, rel=1e-12)
    # eval.json's block: cross-fitted, same targets and character count as the model's figures
    assert m["n_tokens"] == res["n_tokens"] and len(m["lambda_per_fold"]) == 2
    assert all(0.0 <= lam <= 1.0 for lam in m["lambda_per_fold"])
    assert sum(f["n_dialogues"] for f in m["folds"]) == res["n_dialogues"]
    assert m["bits_per_char"] == pytest.approx(m["val_loss"] * m["n_tokens"] / math.log(2) / res["n_chars"],
                                               rel=1e-12)
    assert m["ratio_to_baseline"] == pytest.approx(m["perplexity"] / b["val_perplexity"], rel=1e-12)
    assert m["ratio_to_model"] == pytest.approx(m["perplexity"] / res["val_perplexity"], rel=1e-12)
    # the model's own figures are untouched by the mixture
    plain = gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu")
    assert res["val_loss"] == plain["val_loss"] and "mixture" not in plain
