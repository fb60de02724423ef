"""Stochastic depth (drop_path) in AttentionResidual / Transformer / VisionTransformer, against hand computation."""

import pytest
import torch

from attnlab import AttentionResidual, Transformer
from attnlab.vit.model import VisionTransformer


def branches(block, x):
    """The block's two residual branches computed by hand (dropout 0): a = MHA(norm(x)), f(y) = FFN(y)."""
    a, _ = block.attn(block.norm(x))
    return a, block.ffn


def test_training_drops_or_rescales_each_branch_per_example():
    torch.manual_seed(0)
    p, B = 0.4, 400
    block = AttentionResidual(16, 2, dropout=0.0, drop_path=p).train()
    x = torch.randn(B, 5, 16)
    with torch.no_grad():
        out, _ = block(x)
        a, ffn = branches(block, x)
        kept_attn, kept_ffn = [], []
        for b in range(B):
            # the four outcomes: each branch skipped (x0) or kept and scaled by 1/(1-p)
            matches = []
            for s1 in (0.0, 1 / (1 - p)):
                y = x[b] + s1 * a[b]
                for s2 in (0.0, 1 / (1 - p)):
                    if torch.allclose(out[b], y + s2 * ffn(y), atol=1e-5):
                        matches.append((s1 > 0, s2 > 0))
            assert len(matches) == 1, b
            kept_attn.append(matches[0][0])
            kept_ffn.append(matches[0][1])
    for kept in (kept_attn, kept_ffn):  # each branch kept with probability 1-p: 4 standard errors
        frac = sum(kept) / B
        assert abs(frac - (1 - p)) < 4 * (p * (1 - p) / B) ** 0.5


def test_eval_mode_is_the_plain_block():
    torch.manual_seed(1)
    block = AttentionResidual(16, 2, drop_path=0.5)
    plain = AttentionResidual(16, 2)
    plain.load_state_dict(block.state_dict())
    x = torch.randn(3, 7, 16)
    block.eval(), plain.eval()
    assert torch.equal(block(x)[0], plain(x)[0])


def test_zero_rate_draws_nothing_and_changes_nothing():
    torch.manual_seed(2)
    block = AttentionResidual(16, 2).train()
    x = torch.randn(3, 7, 16)
    state = torch.get_rng_state()
    out = block(x)[0]
    assert torch.equal(torch.get_rng_state(), state)
    a, ffn = branches(block, x)
    y = x + a
    assert torch.allclose(out, y + ffn(y), atol=1e-6)


def test_rates_rise_linearly_over_the_layers():
    t = Transformer(16, 2, 5, drop_path=0.2)
    assert [layer.drop_path.p for layer in t.layers] == pytest.approx([0.0, 0.05, 0.1, 0.15, 0.2])
    assert Transformer(16, 2, 1, drop_path=0.2).layers[0].drop_path.p == 0.0
    with pytest.raises(ValueError, match="drop_path"):
        Transformer(16, 2, 2, drop_path=1.0)


def test_vit_passes_the_rate_to_its_blocks():
    vit = VisionTransformer(img_size=8, patch_size=4, dim=16, depth=3, heads=2, drop_path=0.1)
    assert [b.drop_path.p for b in vit.blocks.layers] == pytest.approx([0.0, 0.05, 0.1])
