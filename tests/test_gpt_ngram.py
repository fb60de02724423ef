"""Kneser-Ney baseline and <unk> spelling cost, against probabilities worked out by hand."""

import math
from collections import Counter

import pytest

from attnlab.gpt.ngram import CharSpeller, KneserNey, _discounts, spelling_nll, summarize

# ids: 0 start, 1 pad, 2 unk, 3 a, 4 b, 5 c
BIGRAM_CORPUS = [[0, 3, 4, 3, 5], [0, 4, 3, 4]]


def distribution(kn: KneserNey, context) -> list[float]:
    """p(w | context) for every id w, through the model's public prob()."""
    return [kn.prob(w, context) for w in range(kn.vocab_size)]


def bigram_model():
    # Fixed discounts keep the hand computation short: unigram D = 0.5, bigram (D1, D2, D3+) = (0.5, 1, 1).
    return KneserNey(2, 6, discounts={1: (0.5, 0.5, 0.5), 2: (0.5, 1.0, 1.0)}).fit(BIGRAM_CORPUS)


def test_bigram_probabilities_match_hand_computation():
    # Unigram continuation counts: a <- {4, start}: 2, b <- {a, start}: 2, c <- {a}: 1; total 5.
    # gamma_1 = 0.5 * 3 / 5 = 0.3, so p1(w) = max(a - 0.5, 0) / 5 + 0.3 / 6.
    p1 = {0: 0.05, 1: 0.05, 2: 0.05, 3: 0.35, 4: 0.35, 5: 0.15}
    kn = bigram_model()
    # Context a: raw counts b: 2, c: 1 (total 3), gamma = (0.5 * 1 + 1.0 * 1) / 3 = 0.5.
    hand_a = {w: 0.5 * p1[w] for w in p1}
    hand_a[4] += (2 - 1.0) / 3
    hand_a[5] += (1 - 0.5) / 3
    assert distribution(kn, [0, 3]) == pytest.approx([hand_a[w] for w in range(6)], abs=1e-12)
    assert hand_a[4] == pytest.approx(0.5083333333333)
    # Context c never precedes anything: the unigram distribution unchanged.
    assert distribution(kn, [0, 5]) == pytest.approx([p1[w] for w in range(6)], abs=1e-12)


def test_trigram_start_padding_and_raw_counts_after_start():
    # Padded streams: s s a b, s s a a. Trigrams (s,s,a): 2, (s,a,b): 1, (s,a,a): 1.
    # Bigram level: (s,a) starts with the start token, so it keeps its raw count 2 (nothing precedes it);
    # (a,b) and (a,a) get continuation count 1. Unigrams: a <- {s, a}: 2, b <- {a}: 1. Every D = 0.5.
    kn = KneserNey(3, 5, discounts={k: (0.5, 0.5, 0.5) for k in (1, 2, 3)}).fit([[0, 3, 4], [0, 3, 3]])
    p1_a = 1.5 / 3 + (0.5 * 2 / 3) / 5          # 0.5666...
    p1_b = 0.5 / 3 + (0.5 * 2 / 3) / 5          # 0.2333...
    p2_a_s = 1.5 / 2 + 0.25 * p1_a               # context s: a has raw count 2, gamma 0.5/2
    p2_b_a = 0.5 / 2 + 0.5 * p1_b                # context a: b: 1, a: 1, gamma 0.5*2/2
    p3_a_ss = 1.5 / 2 + 0.25 * p2_a_s
    p3_b_sa = 0.5 / 2 + 0.5 * p2_b_a
    assert kn.prob(3, [0]) == pytest.approx(p3_a_ss, abs=1e-12)
    assert kn.prob(4, [0, 3]) == pytest.approx(p3_b_sa, abs=1e-12)
    assert kn.prob(3, [0, 4, 4]) == pytest.approx(p1_a, abs=1e-12)  # unseen at orders 3 and 2
    s = kn.score([[0, 3, 4]])
    assert s["n_tokens"] == 2
    assert s["total_nll"] == pytest.approx(-math.log(p3_a_ss) - math.log(p3_b_sa), abs=1e-12)


@pytest.mark.parametrize("discount", ["modified", "single"])
@pytest.mark.parametrize("order", [1, 2, 3, 4])
def test_distribution_sums_to_one_for_seen_and_unseen_contexts(order, discount):
    corpus = [[0, 3, 4, 3, 5, 3, 4, 6, 7, 3], [0, 4, 3, 4, 4, 4, 5], [0, 6, 6, 6, 6, 3, 4, 3, 4], [0, 2, 3, 2]]
    kn = KneserNey(order, 9, discount=discount).fit(corpus)
    for ctx in ([0], [0, 3], [0, 3, 4], [0, 4, 4, 4], [8, 8, 8], [1, 7, 5], [0, 2]):
        dist = distribution(kn, ctx)
        assert math.fsum(dist) == pytest.approx(1.0, abs=1e-12)
        assert min(dist) > 0  # even never-seen words (8) keep mass: the model scores any target


def test_modified_discounts_follow_chen_goodman():
    t = Counter({1: 10, 2: 4, 3: 2, 4: 1})
    y = 10 / 18
    assert _discounts(t, "modified") == pytest.approx((1 - 2 * y * 4 / 10, 2 - 3 * y * 2 / 4, 3 - 4 * y * 1 / 2))
    assert _discounts(t, "single") == pytest.approx((y, y, y))


def test_score_counts_every_target_once_unk_included():
    corpus = [[0, 3, 2, 4], [0, 2], [0, 5, 5, 5, 2]]
    kn = KneserNey(3, 6).fit(corpus)
    assert kn.score(corpus)["n_tokens"] == sum(len(s) - 1 for s in corpus)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="start token"):
        KneserNey(2, 6).fit([[3, 4]])
    with pytest.raises(ValueError, match="outside the vocabulary"):
        KneserNey(2, 6).fit([[0, 9]])
    with pytest.raises(ValueError, match="order"):
        KneserNey(0, 6)


def test_spelling_cost_matches_hand_computation():
    # Unigram character model on the words "ab" and "b": symbols start, end, other, a, b (5).
    # Raw counts a: 1, b: 2, end: 2 (total 5); D = 0.5, gamma = 0.5 * 3 / 5 = 0.3, floor 0.3 / 5 = 0.06.
    sp = CharSpeller(["ab", "b"], order=1, discounts={1: (0.5, 0.5, 0.5)})
    p = {"a": 0.5 / 5 + 0.06, "b": 1.5 / 5 + 0.06, "end": 1.5 / 5 + 0.06, "other": 0.06}
    assert sp.cost("ba") == pytest.approx(-math.log(p["b"] * p["a"] * p["end"]), abs=1e-12)
    assert sp.cost("z") == pytest.approx(-math.log(p["other"] * p["end"]), abs=1e-12)


def test_spelling_cost_bigram_hand_computation():
    # Bigram character model on "ab": streams start a b end. Unigram continuation counts a, b, end: 1 each
    # (total 3, D 0.5 -> gamma 0.5, floor 0.5/5 = 0.1, p1 = 0.5/3 + 0.1 for each of them).
    # Bigram contexts each have one follower with count 1: p = 0.5 + 0.5 * p1(next).
    sp = CharSpeller(["ab"], order=2, discounts={1: (0.5, 0.5, 0.5), 2: (0.5, 0.5, 0.5)})
    p1 = 0.5 / 3 + 0.1
    seen = 0.5 + 0.5 * p1
    assert sp.cost("ab") == pytest.approx(-3 * math.log(seen), abs=1e-12)
    # "ba": start->b unseen follower (0.5 p1), b->a unseen follower (0.5 p1), a->end unseen (0.5 p1).
    assert sp.cost("ba") == pytest.approx(-3 * math.log(0.5 * p1), abs=1e-12)


def test_open_vocabulary_adds_spelling_of_unk_words_only():
    class Tok:
        stoi = {"the": 3, "king": 4}

    sp = CharSpeller(["the", "king", "queen"], order=2)
    words = ["the", "kingdom", "king", "Yorick"]
    total, n = spelling_nll(words, Tok(), sp)
    assert n == 2
    assert total == pytest.approx(sp.cost("kingdom") + sp.cost("Yorick"))
    out = summarize(10.0, 4, 20, total)
    assert out["bits_per_char"] == pytest.approx(10.0 / math.log(2) / 20)
    assert out["bits_per_char_open"] == pytest.approx((10.0 + total) / math.log(2) / 20)
    assert out["perplexity"] == pytest.approx(math.exp(2.5))
