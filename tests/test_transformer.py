"""Problem 2: attention and the transformer stack, checked against torch's own attention."""

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab import FFN, AttentionHead, AttentionResidual, MultiHeadedAttention, Transformer

B, T, D, H = 3, 7, 32, 4


def prev_token_mask(t: int) -> torch.Tensor:
    """The starter code's test-3 mask: every token sees itself and the token before it."""
    return (torch.eye(t) + torch.diag(torch.ones(t - 1), -1)).long()


def copy_into_torch_mha(ours: MultiHeadedAttention) -> nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention holding exactly our weights."""
    d = ours.heads[0].W_Q.in_features
    ref = nn.MultiheadAttention(d, ours.n_heads, bias=True, batch_first=True)
    with torch.no_grad():
        wq = torch.cat([h.W_Q.weight for h in ours.heads])
        wk = torch.cat([h.W_K.weight for h in ours.heads])
        wv = torch.cat([h.W_V.weight for h in ours.heads])
        ref.in_proj_weight.copy_(torch.cat([wq, wk, wv]))
        ref.in_proj_bias.zero_()
        ref.out_proj.weight.copy_(ours.W_O.weight)
        ref.out_proj.bias.copy_(ours.W_O.bias)
    return ref


# --- the starter code's three checks -------------------------------------------------

def test_seed_check_1_output_sizes():
    x = torch.randn(B, T, D)
    out, A = AttentionHead(D, 8)(x)
    assert out.shape == (B, T, 8) and A.shape == (B, T, T)
    mha = MultiHeadedAttention(D, H, d_out=20)
    out, A = mha(x, need_weights=True)
    assert out.shape == (B, T, 20) and A.shape == (B, H, T, T)
    assert mha.W_O.weight.shape == (20, H * (D // H))  # W_O maps n_heads*d_k -> d_out
    assert FFN(D, 64)(x).shape == (B, T, D)
    y, A = AttentionResidual(D, H)(x, need_weights=True)
    assert y.shape == (B, T, D) and A.shape == (B, H, T, T)


def test_seed_check_2_transformer_sizes():
    x = torch.randn(B, T, D)
    tr = Transformer(D, H, n_layers=3)
    assert tr(x).shape == (B, T, D)
    y, maps = tr(x, return_attention=True)
    assert y.shape == (B, T, D) and maps.shape == (B, 3, H, T, T)


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
def test_seed_check_3_previous_token_mask(impl):
    torch.manual_seed(0)
    x = torch.randn(B, T, D)
    mask = prev_token_mask(T)
    allowed = mask.bool()
    _, A = AttentionHead(D, 8)(x, mask)
    tr = Transformer(D, H, n_layers=2, impl=impl)
    _, maps = tr(x, mask, return_attention=True)
    for a in [A, *maps.unbind(1)]:
        a = a.reshape(-1, T, T)
        assert torch.all(a[:, ~allowed] == 0)  # exactly zero off the two diagonals
        assert torch.all(a[:, allowed] > 0)
        torch.testing.assert_close(a.sum(-1), torch.ones(a.shape[:-1]))


# --- against torch's own attention ---------------------------------------------

def test_attention_head_matches_sdpa():
    torch.manual_seed(1)
    head = AttentionHead(D, 16)
    x = torch.randn(B, T, D)
    mask = torch.rand(T, T) > 0.4
    mask |= torch.eye(T, dtype=torch.bool)
    out, A = head(x, mask)
    q, k, v = head.W_Q(x), head.W_K(x), head.W_V(x)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert (out - ref).abs().max() <= 1e-5
    ref_A = torch.softmax((q @ k.transpose(1, 2) / math.sqrt(16)).masked_fill(~mask, -math.inf), -1)
    assert (A - ref_A).abs().max() <= 1e-6


@pytest.mark.parametrize("masked", [False, True])
@pytest.mark.parametrize("need_weights", [False, True])
def test_vectorized_mha_matches_torch_multihead_attention(masked, need_weights):
    torch.manual_seed(2)
    ours = MultiHeadedAttention(D, H)
    ref = copy_into_torch_mha(ours)
    x = torch.randn(B, T, D)
    mask = None
    if masked:
        mask = torch.ones(T, T).tril().long()  # causal
    out, A = ours(x, mask, need_weights=need_weights)
    # torch's attn_mask uses True = NOT allowed, the opposite of the starter code's convention
    ref_out, ref_A = ref(x, x, x, attn_mask=None if mask is None else mask == 0,
                         need_weights=True, average_attn_weights=False)
    assert (out - ref_out).abs().max() <= 1e-5
    if need_weights:
        assert (A - ref_A).abs().max() <= 1e-5
    else:
        assert A is None


def test_loop_and_vectorized_paths_agree_on_outputs_and_gradients():
    torch.manual_seed(3)
    vec = MultiHeadedAttention(D, H, qkv_bias=True)
    loop = MultiHeadedAttention(D, H, qkv_bias=True, impl="loop")
    loop.load_state_dict(vec.state_dict())
    x = torch.randn(B, T, D, requires_grad=True)
    mask = torch.rand(B, T, T) > 0.3
    grads, outs = {}, {}
    for impl, mha in (("loop", loop), ("vectorized", vec)):
        x.grad = None
        out, _ = mha(x, mask)
        (out * torch.linspace(-1, 1, out.numel()).view_as(out)).sum().backward()
        outs[impl] = out.detach()
        grads[impl] = [x.grad.clone()] + [p.grad.clone() for p in mha.parameters()]
    assert (outs["loop"] - outs["vectorized"]).abs().max() <= 1e-5
    for g_loop, g_vec in zip(grads["loop"], grads["vectorized"]):
        assert (g_loop - g_vec).abs().max() <= 1e-5


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
def test_gradcheck_float64(impl):
    torch.manual_seed(4)
    mha = MultiHeadedAttention(6, 2, impl=impl).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 0], [0, 1, 1, 0], [0, 0, 0, 0]])  # last row fully masked
    assert torch.autograd.gradcheck(lambda inp: mha(inp, mask)[0], (x,))


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
@pytest.mark.parametrize("need_weights", [False, True])
def test_fully_masked_row_gives_zeros_not_nan(impl, need_weights):
    torch.manual_seed(5)
    mha = MultiHeadedAttention(D, H, impl=impl)
    x = torch.randn(B, T, D, requires_grad=True)
    mask = torch.ones(T, T)
    mask[2] = 0  # query 2 may attend to nothing
    out, A = mha(x, mask, need_weights=need_weights)
    out.sum().backward()
    assert torch.isfinite(out).all() and torch.isfinite(x.grad).all()
    # a row with no allowed key contributes nothing before W_O, so its output is W_O's bias
    torch.testing.assert_close(out[:, 2], mha.W_O.bias.expand(B, -1))
    if need_weights:
        assert torch.all(A[:, :, 2] == 0)
    _, A_head = AttentionHead(D, 8)(x, mask)
    assert torch.all(A_head[:, 2] == 0) and torch.isfinite(A_head).all()


@pytest.mark.parametrize("impl", ["loop", "vectorized"])
def test_per_example_padding_mask_masks_only_that_example(impl):
    torch.manual_seed(6)
    tr = Transformer(D, H, n_layers=2, impl=impl).eval()
    x = torch.randn(B, T, D)
    lengths = torch.tensor([T, 4, T])
    keep = torch.arange(T)[None, :] < lengths[:, None]  # (B, T) key padding
    mask = keep[:, None, :].expand(B, T, T)  # (B, T, T)
    y, maps = tr(x, mask, return_attention=True)
    y_free = tr(x)
    # examples 0 and 2 have no padding: identical to the unmasked run
    torch.testing.assert_close(y[[0, 2]], y_free[[0, 2]])
    # example 1 never looks at its padding, and its real tokens equal a run on the trimmed sequence
    assert torch.all(maps[1, ..., 4:] == 0)
    assert torch.all(maps[[0, 2], ..., 4:] > 0)
    torch.testing.assert_close(y[1, :4], tr(x[1:2, :4])[0])


def test_kv_cache_matches_full_causal_forward():
    torch.manual_seed(7)
    tr = Transformer(D, H, n_layers=2).eval()
    x = torch.randn(2, T, D)
    full = tr(x, torch.ones(T, T).tril())
    cache = [{} for _ in tr.layers]
    steps = [tr(x[:, :3], torch.ones(3, 3).tril(), cache=cache)]
    for t in range(3, T):
        steps.append(tr(x[:, t:t + 1], cache=cache))  # one new query sees all cached keys
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_bad_mask_shape_is_a_clear_error():
    with pytest.raises(ValueError, match=r"attn_mask must be"):
        AttentionHead(D, 8)(torch.randn(B, T, D), torch.ones(T + 1, T))


def test_attention_benchmark_prints_ratios(capsys):
    from attnlab.bench.__main__ import main

    assert main(["attention", "--seq-lens", "8", "16", "--d-model", "16", "--heads", "2",
                 "--tokens", "32", "--min-time", "0.01"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line.split()[:1] in (["8"], ["16"])]
    assert [r[0] for r in rows] == ["8", "16"]
    for r in rows:  # loop/torch and vec/torch are positive ratios of measured times
        loop_ms, vec_ms, torch_ms, loop_ratio, vec_ratio = map(float, r[2:])
        assert loop_ratio == pytest.approx(loop_ms / torch_ms, rel=0.05, abs=0.02)
        assert vec_ratio == pytest.approx(vec_ms / torch_ms, rel=0.05, abs=0.02)


def test_inference_weight_stack_follows_parameter_updates():
    """The no-grad path reuses its stacked weights, but never stale ones after an update."""
    torch.manual_seed(8)
    mha = MultiHeadedAttention(D, H)
    ref = copy_into_torch_mha(mha)
    x = torch.randn(B, T, D)
    with torch.no_grad():
        mha(x)  # fills the reuse cache
        for p in mha.parameters():
            p.add_(0.1 * torch.randn_like(p))  # an in-place update, as an optimizer step does
        ref = copy_into_torch_mha(mha)
        out, _ = mha(x)
        ref_out, _ = ref(x, x, x, need_weights=False)
    assert (out - ref_out).abs().max() <= 1e-5
    mha.load_state_dict({k: torch.zeros_like(v) for k, v in mha.state_dict().items()})  # replaced tensors
    with torch.no_grad():
        assert torch.all(mha(x)[0] == 0)
