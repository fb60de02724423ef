"""The paired bootstrap interval of the perplexity ratio, against hand-worked cases and evaluate's own ratio."""

import math

import pytest

from attnlab.gpt import evaluate as gpt_eval
from attnlab.gpt.bootstrap import perplexity_ratio_interval
from test_gpt_eval_baseline import built  # noqa: F401  (the module-scoped fixture)


def test_two_dialogues_by_hand():
    # Dialogue 1: model 2.0 nats, baseline 3.0, over 2 targets; dialogue 2: model 4.0, baseline 3.0, 1 target.
    # Resamples (1,1), (1,2)/(2,1), (2,2) with probability 1/4, 1/2, 1/4 give the ratios
    # exp(-2/4), exp(0/3) = 1 and exp(2/2): both 2.5% tails fall inside the two outer atoms.
    model = [[0.5, 1.5], [4.0]]
    kn = [[1.0, 2.0], [3.0]]
    r = perplexity_ratio_interval(model, kn, n_boot=4000, seed=3)
    assert r["ratio"] == pytest.approx(math.exp((6.0 - 6.0) / 3))
    assert r["low"] == pytest.approx(math.exp(-0.5)) and r["high"] == pytest.approx(math.e)
    assert r["share_below_one"] == pytest.approx(0.25, abs=0.03)
    assert r["n_dialogues"] == 2 and r["n_boot"] == 4000


def test_a_constant_per_token_difference_has_no_spread():
    # every dialogue 0.1 nats per target better: every resample gives exp(-0.1)
    model = [[1.0] * n for n in (3, 1, 7, 2)]
    kn = [[1.1] * n for n in (3, 1, 7, 2)]
    r = perplexity_ratio_interval(model, kn)
    for key in ("ratio", "low", "high"):
        assert r[key] == pytest.approx(math.exp(-0.1), rel=1e-12)
    assert r["share_below_one"] == 1.0


def test_the_pairing_matters():
    # dialogue difficulty varies a lot, the models' difference very little: a tight interval around the ratio
    model = [[5.0 + d] * 4 for d in range(10)]
    kn = [[5.0 + d + 0.05 + 0.001 * (d % 3)] * 4 for d in range(10)]
    r = perplexity_ratio_interval(model, kn, seed=1)
    assert r["low"] <= r["ratio"] <= r["high"] and r["high"] - r["low"] < 0.003
    with pytest.raises(ValueError, match="dialogue 0"):
        perplexity_ratio_interval([[1.0]], [[1.0, 2.0]])
    with pytest.raises(ValueError, match="dialogues"):
        perplexity_ratio_interval([[1.0]], [])


def test_evaluate_records_the_interval_around_its_ratio(built):  # noqa: F811
    d, out, source, _ = built
    files = {"ngram": d / "ngram.json", "data": out / "dialogues.pt", "vocab_report": out / "vocab_report.json",
             "source": source}
    res = gpt_eval.evaluate(d / "ckpt.pt", out / "vocab.json", out / "val.txt", "cpu", baseline=files)
    ci = res["perplexity_ratio_ci"]
    assert ci["ratio"] == pytest.approx(res["perplexity_ratio"], rel=1e-9)
    assert ci["low"] <= ci["ratio"] <= ci["high"] and ci["n_dialogues"] == res["n_dialogues"]
