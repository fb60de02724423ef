"""Greedy / cached / sampled generation of DialogueGPT, including the max_len window."""

import pytest
import torch

from attnlab import DialogueGPT

V, MAX_LEN = 29, 10


def lively_model(seed=0, dtype=torch.float64):
    """A tiny random model with large weights, so greedy output varies instead of repeating one token."""
    torch.manual_seed(seed)
    model = DialogueGPT(V, d_model=16, n_heads=4, n_layers=2, max_len=MAX_LEN)
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() > 1:
                p.normal_(0.0, 0.5)
    return model.to(dtype).eval()


def reference_greedy(model, prefix, n):
    """The starter code's loop: re-run the whole sequence, append the argmax (valid while it fits max_len)."""
    seq = list(prefix)
    for _ in range(n):
        seq.append(int(model(torch.tensor([seq]))[0, -1].argmax()))
    return seq


PROMPTS = [[0], [0, 3], [0, 7, 7, 12, 4], [0, 1, 2, 3, 4, 5, 6, 7, 8]]


@pytest.mark.parametrize("prefix", PROMPTS)
def test_plain_greedy_matches_seed_loop_within_max_len(prefix):
    model = lively_model()
    n = MAX_LEN - len(prefix)
    out = model.generate(prefix, n)
    assert out == reference_greedy(model, prefix, n)
    assert out[:len(prefix)] == prefix and len(out) == len(prefix) + n


def test_outputs_are_not_degenerate():
    # guards the other tests: a model that always says the same token would prove little
    model = lively_model()
    assert len(set(model.generate([0, 3], 30)[2:])) >= 4


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("prefix", PROMPTS + [list(range(14)) + [2, 2]])  # last prompt > max_len
def test_cached_greedy_equals_plain_greedy(seed, prefix):
    model = lively_model(seed)
    n = 3 * MAX_LEN + 1  # crosses the max_len window several times
    plain = model.generate(prefix, n, use_cache=False)
    cached = model.generate(prefix, n, use_cache=True)
    assert cached == plain
    assert len(plain) == len(prefix) + n


def test_cached_greedy_equals_plain_in_float32():
    model = lively_model(4, dtype=torch.float32)
    for prefix in PROMPTS:
        assert model.generate(prefix, 25, use_cache=True) == model.generate(prefix, 25)


def test_window_restarts_from_last_half_when_max_len_is_reached():
    """Documented policy: once the context would exceed max_len, it restarts from the last max_len//2 tokens."""
    model = lively_model(1)
    out = model.generate([0, 5], MAX_LEN + 3)
    # Tokens 1..max_len are predicted from the full sequence so far.
    assert out[:MAX_LEN + 1] == reference_greedy(model, [0, 5], MAX_LEN - 1)
    # Token max_len+1 would need max_len+1 context tokens: it sees the last max_len//2 only.
    n = MAX_LEN + 1
    ctx = out[n - MAX_LEN // 2:n]
    assert out[n] == int(model(torch.tensor([ctx]))[0, -1].argmax())
    # and the next one sees that window grown by one token
    ctx = out[n - MAX_LEN // 2:n + 1]
    assert out[n + 1] == int(model(torch.tensor([ctx]))[0, -1].argmax())


def test_cache_grows_by_one_key_per_new_token():
    model = lively_model()
    cache = [{} for _ in model.transformer.layers]
    model._step(torch.tensor([[0, 4, 5]]), cache)
    model._step(torch.tensor([[6]]), cache)
    assert all(c["k"].shape[2] == 4 for c in cache)
    # incremental logits equal the full forward's last-position logits
    full = model(torch.tensor([[0, 4, 5, 6, 9]]))[0, -1]
    torch.testing.assert_close(model._step(torch.tensor([[9]]), cache)[0], full)


def test_sampling_reproducible_with_seed_and_leaves_global_rng():
    model = lively_model()
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = model.generate([0, 3], 20, temperature=1.0, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)
    b = model.generate([0, 3], 20, temperature=1.0, seed=7)
    c = model.generate([0, 3], 20, temperature=1.0, seed=8)
    assert a == b and a != c
    assert model.generate([0, 3], 20, temperature=1.0, seed=7, use_cache=True) == a


def test_top_k_restricts_samples_and_top_1_is_greedy():
    model = lively_model()
    greedy = model.generate([0, 3], 12)
    assert model.generate([0, 3], 12, temperature=0.8, top_k=1, seed=3) == greedy
    top3 = set(torch.topk(model(torch.tensor([[0, 3]]))[0, -1], 3).indices.tolist())
    firsts = {model.generate([0, 3], 1, temperature=5.0, top_k=3, seed=s)[-1] for s in range(40)}
    assert firsts <= top3 and len(firsts) >= 2


def test_generate_restores_training_mode_and_needs_a_prefix():
    model = lively_model().train()
    model.generate([0], 3)
    assert model.training
    with pytest.raises(ValueError, match="prefix"):
        model.generate([], 3)


def test_weight_flops_count_every_linear_weight_by_hand():
    from attnlab.gpt.generate import weight_flops_per_token

    model = lively_model()  # d_model 16, 4 heads of 4, 2 layers, FFN 64, vocabulary 29
    per_layer = 3 * 16 * 16 + 16 * 16 + 16 * 64 + 64 * 16  # Q, K, V of all heads, W_O, fc1, fc2
    assert weight_flops_per_token(model) == 2 * (2 * per_layer + 16 * V)  # + the (tied) head


def test_decode_cost_times_the_same_tokens_both_ways():
    """4e like for like: the T cached steps predict what the one forward pass predicts, at batch 1 and N."""
    from attnlab.gpt import generate as gen

    model = lively_model()
    tokens = model.generate([0, 3], MAX_LEN - 2)  # MAX_LEN tokens: the longest a forward pass takes
    model.train()
    r = gen.decode_cost(model, tokens, batch=5, repeats=3)
    assert model.training  # timed in eval mode, the caller's mode restored
    assert r["T"] == MAX_LEN and r["batch"] == 5 and r["same_predictions"] is True
    assert set(r["seconds"]) == {"forward", "steps_b1", "steps_bN"}
    for k, med in r["seconds"].items():
        assert r["seconds_min"][k] <= med <= r["seconds_max"][k]
    s = r["seconds"]
    assert r["steps_over_forward"] == pytest.approx(s["steps_b1"] / s["forward"])
    assert r["batch_step_ratio"] == pytest.approx(s["steps_bN"] / s["steps_b1"])
    assert r["step_seconds_b1"] == pytest.approx(s["steps_b1"] / MAX_LEN)
    assert r["gflops_per_s"]["steps_bN"] == pytest.approx(
        gen.weight_flops_per_token(model) * MAX_LEN * 5 / s["steps_bN"] / 1e9)
    # the steps feed the given tokens, not their own picks: the last step's logits equal the forward pass's
    picks, logits = gen._cached_steps(model, torch.tensor([tokens] * 2))
    with torch.no_grad():
        full = model(torch.tensor([tokens]))[0]
    torch.testing.assert_close(logits[1], full[-1])
    assert picks == full.argmax(dim=-1).tolist()
    with pytest.raises(ValueError, match="max_len"):
        gen.decode_cost(model, tokens + [1])


def test_decode_cost_notices_steps_that_predict_otherwise(monkeypatch):
    from attnlab.gpt import generate as gen

    model = lively_model()
    real = DialogueGPT._step
    monkeypatch.setattr(DialogueGPT, "_step", lambda self, ids, cache: -real(self, ids, cache))  # argmin instead
    assert gen.decode_cost(model, model.generate([0, 3], 6), batch=2, repeats=1)["same_predictions"] is False
