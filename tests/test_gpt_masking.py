"""Masked decoding: banned ids (<unk>, <pad>) are never generated, greedy stays the masked argmax."""

from collections import Counter

import pytest
import torch

from attnlab import config as cfgmod
from attnlab.data.tokenizer import MyTokenizer
from attnlab.gpt.generate import mask_ids, sample_prompts
from test_gpt_generate import MAX_LEN, V, lively_model
from test_gpt_train import corpus, straight  # noqa: F401 (fixtures: a trained tiny model)


def reference_masked_greedy(model, prefix, n, banned):
    """The starter code's loop with the banned logits removed by hand (valid while the sequence fits max_len)."""
    seq = list(prefix)
    for _ in range(n):
        logits = model(torch.tensor([seq]))[0, -1].clone()
        logits[list(banned)] = float("-inf")
        seq.append(int(logits.argmax()))
    return seq


def favourites(model, prefix, n, k):
    """The k ids unmasked greedy decoding emits most: banning them is a real constraint."""
    out = model.generate(prefix, n, use_cache=True)[len(prefix):]
    return [t for t, _ in Counter(out).most_common(k)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_masked_greedy_is_the_masked_argmax_and_never_emits_banned(seed):
    model = lively_model(seed)
    prefix = [0, 3]
    banned = favourites(model, prefix, 3 * MAX_LEN, 2)
    n = MAX_LEN - len(prefix)
    assert model.generate(prefix, n, banned_ids=banned) == reference_masked_greedy(model, prefix, n, banned)
    long = 3 * MAX_LEN + 1  # across several context-window restarts
    plain = model.generate(prefix, long, banned_ids=banned)
    cached = model.generate(prefix, long, use_cache=True, banned_ids=banned)
    assert plain == cached
    assert not set(plain[len(prefix):]) & set(banned)
    assert model.generate(prefix, long, banned_ids=banned) == plain  # deterministic


@pytest.mark.parametrize("top_k", [None, 3])
@pytest.mark.parametrize("use_cache", [False, True])
def test_masked_sampling_never_emits_banned(top_k, use_cache):
    model = lively_model(0)
    prefix = [0, 5]
    banned = favourites(model, prefix, 3 * MAX_LEN, 3)
    free = model.generate(prefix, 200, temperature=2.0, top_k=top_k, seed=3, use_cache=use_cache)
    assert set(free[len(prefix):]) & set(banned)  # without the mask they do come up
    out = model.generate(prefix, 200, temperature=2.0, top_k=top_k, seed=3, use_cache=use_cache,
                         banned_ids=banned)
    assert not set(out[len(prefix):]) & set(banned)
    assert len(set(out[len(prefix):])) > 3  # still sampling, not stuck


def test_banned_ids_are_checked():
    model = lively_model(0)
    with pytest.raises(ValueError, match="must lie in"):
        model.generate([0], 2, banned_ids=[V])
    with pytest.raises(ValueError, match="whole vocabulary"):
        model.generate([0], 2, banned_ids=range(V))


def test_mask_tokens_map_to_ids_and_unknown_names_are_refused():
    tok = MyTokenizer(["ROMEO", ":", "the"])
    assert mask_ids(tok, ["<unk>", "<pad>"]) == [tok.unk_id, tok.pad_id]
    assert mask_ids(tok, []) == []
    with pytest.raises(cfgmod.ConfigError, match="not in the vocabulary"):
        mask_ids(tok, ["<unknown>"])


def test_per_epoch_samples_follow_the_mask():
    tok = MyTokenizer([f"w{i}" for i in range(V - 3)])
    model = lively_model(1)
    prompt_ids = tok.encode("w1 w2")
    banned = favourites(model, prompt_ids, 40, 2)
    for s in sample_prompts(model, tok, ["w1 w2"], 40, banned_ids=banned):
        words = s["text"].split()[2:]  # the prompt's two words, then the continuation
        assert len(words) == 40
        assert not {tok.itos[b] for b in banned} & set(words)


def test_generate_stage_applies_mask_tokens_to_greedy_sampled_and_bench(corpus, straight):
    from attnlab.gpt import generate as gpt_gen

    d, tok, _ = corpus
    ckpt = straight[0] / "checkpoint.pt"
    gen = {"prompts": ["ROMEO:", "JULIET:"], "num_tokens": 30, "bench_tokens": 12, "temperature": 1.5}
    free = gpt_gen.run(ckpt, d / "vocab.json", {"generate": {**gen, "mask_tokens": []}}, "cpu")
    def generated(s):
        return s["ids"][len(tok.encode(s["prompt"])):]

    common = Counter(t for s in free["samples"] + free["sampled"] for t in generated(s)).most_common(1)[0][0]
    masked_words = ["<unk>", "<pad>", tok.itos[common]]
    torch.set_num_threads(2)
    res = gpt_gen.run(ckpt, d / "vocab.json", {"generate": {**gen, "mask_tokens": masked_words}}, "cpu")
    assert res["mask_tokens"] == masked_words
    # the 4e timings ran on one CPU thread, and the process's setting is back afterwards
    assert res["like_for_like"]["torch_threads"] == 1 and torch.get_num_threads() == 2
    assert res["like_for_like"]["T"] == 12 and res["like_for_like"]["same_predictions"] is True
    banned = {tok.unk_id, tok.pad_id, common}
    for s in res["samples"] + res["sampled"]:
        assert len(generated(s)) == 30 and not banned & set(generated(s))
    assert res["speed"]["identical"]
    with pytest.raises(cfgmod.ConfigError, match="not in the vocabulary"):
        gpt_gen.run(ckpt, d / "vocab.json", {"generate": {**gen, "mask_tokens": ["<mask>"]}}, "cpu")
