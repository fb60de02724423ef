"""module_checks stage: outputs, the mask it checks against, and that a broken module fails it."""

from __future__ import annotations

import json

import pytest
import torch

import attnlab.checks.suite as suite
from attnlab.checks import ChecksFailed, main, run_checks
from attnlab.transformer import AttentionHead, MultiHeadedAttention


def test_previous_token_mask_is_the_seeds_two_diagonals():
    expected = torch.tensor([[1, 0, 0, 0],
                             [1, 1, 0, 0],
                             [0, 1, 1, 0],
                             [0, 0, 1, 1]])
    assert torch.equal(suite.previous_token_mask(4), expected)


def test_run_checks_writes_record_and_figure(tmp_path):
    record = run_checks(tmp_path)
    on_disk = json.loads((tmp_path / "module_checks.json").read_text())
    assert on_disk["all_passed"] is True and record["all_passed"] is True
    names = {c["name"] for c in on_disk["checks"]}
    for required in ("attention_head_shapes", "attention_head_mask", "mha_shapes", "W_O_shape", "mha_mask",
                     "mha_loop_matches_vectorized", "mha_matches_torch_multihead", "ffn_shapes",
                     "attention_residual_shapes", "transformer_shapes", "transformer_mask",
                     "transformer_loop_matches_vectorized"):
        assert required in names
    assert all(isinstance(c["passed"], bool) and c["detail"] for c in on_disk["checks"])
    # ChecksConfig: n_heads=4, d_k=16, d_out=24 -> W_O maps the 64 concatenated head dims to 24.
    assert on_disk["W_O_shape"] == [64, 24]
    A = torch.tensor(on_disk["example"]["A_head"])
    assert torch.allclose(A.sum(-1), torch.ones(6), atol=1e-5)
    assert on_disk["vit_sincos_demo"]["status"] == "ran"
    png = (tmp_path / "attention_mask.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


class MaskIgnoringHead(AttentionHead):
    def forward(self, x, attn_mask=None):
        return super().forward(x, None)


def test_a_head_that_ignores_the_mask_fails_the_stage(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(suite, "AttentionHead", MaskIgnoringHead)
    with pytest.raises(ChecksFailed) as err:
        run_checks(tmp_path / "a")
    assert "attention_head_mask" in err.value.failed
    assert "mha_shapes" not in err.value.failed
    assert not (tmp_path / "a").exists()

    assert main(["--out-dir", str(tmp_path / "b")]) == 2
    err = capsys.readouterr().err
    assert "FAILED attention_head_mask" in err
    last = err.splitlines()[-1]
    assert last.startswith("error: module checks failed: ") and "attention_head_mask" in last
    assert last.endswith(f"nothing written to {tmp_path / 'b'}")
    assert not (tmp_path / "b" / "module_checks.json").exists()
    assert not (tmp_path / "b" / "attention_mask.png").exists()


def test_torch_reference_notices_a_changed_weight():
    # The comparison with torch.nn.MultiheadAttention is only worth something if it can fail.
    torch.manual_seed(0)
    mha = MultiHeadedAttention(16, 4).eval()
    ref = suite.torch_mha_from(mha)
    x = torch.randn(2, 5, 16)
    with torch.no_grad():
        same = (mha(x)[0] - ref(x, x, x, need_weights=False)[0]).abs().max().item()
        mha.heads[2].W_K.weight.mul_(1.5)
        changed = (mha(x)[0] - ref(x, x, x, need_weights=False)[0]).abs().max().item()
    assert same < 1e-5
    assert changed > 1e-3


def test_vit_demo_runs_sincos_on_larger_images():
    from attnlab.checks.vit_demo import vit_sincos_demo

    record, check = vit_sincos_demo()
    assert check is not None and check.passed, check
    assert record["patch_tokens"] == {"32": 64, "64": 256}
    assert record["logits_shape"]["64"] == [2, 10]


def test_cli_help():
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
