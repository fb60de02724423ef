"""DialogueGPT forward, masks and loss against hand computations and torch references."""

import math

import pytest
import torch
import torch.nn.functional as F

from attnlab import DialogueGPT, DialogueLoss
from attnlab.gpt.model import attention_mask, load_checkpoint

V, PAD = 23, 1


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    args = dict(vocab_size=V, d_model=16, n_heads=2, n_layers=2, max_len=12, pad_id=PAD)
    args.update(kw)
    model = DialogueGPT(**args).double().eval()
    return model


def padded_batch():
    """Three examples of lengths 7, 3 and 5, right-padded with PAD."""
    seqs = [[0, 5, 9, 3, 7, 7, 2], [0, 4, 8], [0, 11, 6, 2, 19]]
    T = max(map(len, seqs))
    ids = torch.full((len(seqs), T), PAD, dtype=torch.long)
    mask = torch.zeros(len(seqs), T, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, :len(s)] = torch.tensor(s)
        mask[i, :len(s)] = 1
    return seqs, ids, mask


def test_logits_shape_and_tied_head():
    model = tiny_model()
    _, ids, mask = padded_batch()
    assert model(ids, mask).shape == (3, ids.shape[1], V)
    assert model.lm_head.weight is model.tok_embed.weight
    untied = tiny_model(tie_weights=False)
    assert untied.lm_head.weight is not untied.tok_embed.weight
    assert untied.n_params() == model.n_params() + V * 16


def test_causal_earlier_logits_ignore_later_tokens():
    model = tiny_model()
    ids = torch.tensor([[0, 3, 4, 5, 6, 7, 8, 9]])
    changed = ids.clone()
    changed[0, 5] = 17
    a, b = model(ids), model(changed)
    torch.testing.assert_close(a[:, :5], b[:, :5])
    assert not torch.allclose(a[:, 5:], b[:, 5:])


def test_padded_example_matches_unpadded_alone():
    model = tiny_model()
    seqs, ids, mask = padded_batch()
    batch_logits = model(ids, mask)
    for i, s in enumerate(seqs):
        alone = model(torch.tensor([s]))[0]
        torch.testing.assert_close(batch_logits[i, :len(s)], alone)


def test_attention_mask_is_causal_and_hides_padding():
    _, _, mask = padded_batch()
    m = attention_mask(mask, mask.shape[1])
    for b in range(3):
        for i in range(mask.shape[1]):
            for j in range(mask.shape[1]):
                assert bool(m[b, i, j]) == (j <= i and bool(mask[b, j]))
    # The maps the model actually used respect it: zero weight where masked.
    model = tiny_model()
    _, ids, _ = padded_batch()
    _, maps = model(ids, mask, return_attention=True)  # (B, L, H, T, T)
    assert torch.all(maps.masked_select(~m[:, None, None]) == 0)


@torch.no_grad()
def test_loss_matches_hand_computation_with_mixed_padding():
    model = tiny_model(seed=3)
    seqs, ids, mask = padded_batch()
    logits = model(ids, mask)
    loss = DialogueLoss()(logits, ids, mask)
    total, n = 0.0, 0
    for b, s in enumerate(seqs):
        for i in range(len(s) - 1):  # logit i predicts token i+1; pads never targets
            total -= float(torch.log_softmax(logits[b, i], dim=-1)[s[i + 1]])
            n += 1
    assert n == 6 + 2 + 4
    assert float(loss) == pytest.approx(total / n, rel=1e-12)
    # and torch's own ignore_index formulation agrees
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    assert float(loss) == pytest.approx(float(ref), rel=1e-12)


def test_loss_without_mask_uses_every_target():
    logits = torch.randn(2, 4, V, dtype=torch.float64)
    ids = torch.randint(0, V, (2, 4))
    expected = sum(-float(torch.log_softmax(logits[b, i], -1)[ids[b, i + 1]])
                   for b in range(2) for i in range(3)) / 6
    assert float(DialogueLoss()(logits, ids)) == pytest.approx(expected, rel=1e-12)


def test_loss_of_a_batch_without_targets_is_nan_like_torchs_own_mean():
    # Only the start token is real: no target. Refusing it would cost a host sync every step;
    # the mean over nothing is NaN, as torch's cross-entropy gives (and the trainer stops on NaN).
    logits, ids, mask = torch.randn(2, 3, V), torch.randint(0, V, (2, 3)), torch.tensor([[1, 0, 0], [1, 0, 0]])
    targets = ids[:, 1:].masked_fill(mask[:, 1:] == 0, -100)
    ref = F.cross_entropy(logits[:, :-1].reshape(-1, V), targets.reshape(-1), ignore_index=-100)
    assert torch.isnan(ref)
    assert torch.isnan(DialogueLoss()(logits, ids, mask))


def test_too_long_input_is_refused():
    model = tiny_model()
    with pytest.raises(ValueError, match="max_len"):
        model(torch.zeros(1, 13, dtype=torch.long))


def test_gradients_reach_every_parameter():
    model = tiny_model().train()
    _, ids, mask = padded_batch()
    DialogueLoss()(model(ids, mask), ids, mask).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


def test_load_checkpoint_round_trip(tmp_path):
    model = tiny_model(seed=5).float()
    cfg = dict(vocab_size=V, d_model=16, n_heads=2, n_layers=2, max_len=12, pad_id=PAD)
    torch.save({"model_config": cfg, "state_dict": model.state_dict(), "config": {}, "epoch": 1},
               tmp_path / "c.pt")
    loaded, ckpt = load_checkpoint(tmp_path / "c.pt")
    _, ids, mask = padded_batch()
    torch.testing.assert_close(loaded(ids, mask), model(ids, mask))
    assert ckpt["epoch"] == 1 and not loaded.training
    assert loaded.lm_head.weight is loaded.tok_embed.weight
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
