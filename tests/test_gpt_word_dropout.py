"""gpt.train.word_dropout's input corruption (attnlab.gpt.train.drop_words), against counted statistics.

A p outside [0, 1) is refused with the config, once (test_gpt_train), not on every call.
"""

import math

import pytest
import torch

from attnlab.gpt.train import drop_words

UNK = 2


def random_batch(seed, B=64, T=200, vocab=500):
    """Ids that are never UNK, right-padded rows of random lengths (1 to T real tokens)."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(3, vocab, (B, T), generator=g)
    lengths = torch.randint(1, T + 1, (B,), generator=g)
    mask = (torch.arange(T)[None, :] < lengths[:, None]).long()
    return ids.masked_fill(mask == 0, 1), mask


@pytest.mark.parametrize("p", [0.05, 0.3, 0.9])
def test_replaced_fraction_is_p_and_only_real_tokens_after_the_first_are_replaced(p):
    ids, mask = random_batch(0)
    before = ids.clone()
    out = drop_words(ids, mask, UNK, p, torch.Generator().manual_seed(1))
    assert torch.equal(ids, before)  # a new tensor; the targets are left alone
    replaced = out != ids
    assert torch.equal(out[replaced], torch.full_like(out[replaced], UNK))  # replaced means UNK
    assert not replaced[:, 0].any()
    assert not replaced[mask == 0].any()
    eligible = mask.bool().clone()
    eligible[:, 0] = False
    n = int(eligible.sum())
    assert n > 5000
    frac = int(replaced.sum()) / n
    assert abs(frac - p) < 4 * math.sqrt(p * (1 - p) / n)


def test_draws_come_from_the_given_generator():
    ids, mask = random_batch(1)
    a = drop_words(ids, mask, UNK, 0.3, torch.Generator().manual_seed(5))
    b = drop_words(ids, mask, UNK, 0.3, torch.Generator().manual_seed(5))
    c = drop_words(ids, mask, UNK, 0.3, torch.Generator().manual_seed(6))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_zero_probability_returns_the_ids_and_draws_nothing():
    ids, mask = random_batch(2)
    g = torch.Generator().manual_seed(3)
    state = g.get_state()
    out = drop_words(ids, mask, UNK, 0.0, g)
    assert torch.equal(out, ids) and out.data_ptr() != ids.data_ptr()
    assert torch.equal(g.get_state(), state)

