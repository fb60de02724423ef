"""The starter code's Problem 2 checks, run on attnlab.transformer and recorded.

Each check returns a ``CheckResult``: a name, whether it passed, a one-line
detail that states what was measured (shapes, max abs error, tolerance) so
the writeup can quote it. The checks compare our modules against independent
references where one exists: hand-built masks, torch's own softmax attention
(``F.scaled_dot_product_attention``) and ``torch.nn.MultiheadAttention`` with
our weights copied in.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.transformer import FFN, AttentionHead, AttentionResidual, MultiHeadedAttention, Transformer

# Float32 agreement between two orderings of the same arithmetic.
ATOL = 1e-5


@dataclass(frozen=True)
class ChecksConfig:
    """Sizes for the checks. d_k and d_out differ from d_model/n_heads and d_model on
    purpose, so the W_O shape check would catch a transposed or mis-sized W_O."""

    batch: int = 2
    seq_len: int = 6
    d_model: int = 32
    n_heads: int = 4
    d_k: int = 16
    d_out: int = 24
    n_layers: int = 3
    seed: int = 0


@dataclass
class CheckResult:
    name: str
    passed: bool
    detail: str
    max_abs_error: float | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        out = asdict(self)
        if out["max_abs_error"] is None:
            del out["max_abs_error"]
        if not out["extra"]:
            del out["extra"]
        return out


def previous_token_mask(T: int) -> torch.Tensor:
    """The starter code's test-3 mask: token i may attend to itself and to token i-1 only. (T, T) long."""
    i = torch.arange(T)
    return ((i[:, None] == i[None, :]) | (i[:, None] == i[None, :] + 1)).long()


def _shape_check(name: str, got: dict[str, tuple], want: dict[str, tuple]) -> CheckResult:
    bad = {k: (tuple(got[k]), want[k]) for k in want if tuple(got[k]) != want[k]}
    shown = ", ".join(f"{k} {tuple(got[k])}" for k in want)
    if bad:
        wrong = ", ".join(f"{k} {g} (expected {w})" for k, (g, w) in bad.items())
        return CheckResult(name, False, f"wrong shapes: {wrong}")
    return CheckResult(name, True, f"shapes as expected: {shown}")


def _mask_pattern_check(name: str, A: torch.Tensor, mask: torch.Tensor) -> CheckResult:
    """A (..., T, T): zero outside the allowed entries, positive on them, rows summing to 1."""
    allowed = mask.bool().expand_as(A)
    outside = A.masked_select(~allowed).abs().max().item() if (~allowed).any() else 0.0
    inside_min = A.masked_select(allowed).min().item()
    row_err = (A.sum(-1) - 1).abs().max().item()
    passed = outside == 0.0 and inside_min > 0.0 and row_err <= ATOL
    n_maps = A.numel() // (A.shape[-1] * A.shape[-2])
    detail = (
        f"{n_maps} attention map(s) {tuple(A.shape[-2:])}: max |A| outside the two diagonals = {outside:.3g} "
        f"(must be exactly 0), min A on them = {inside_min:.3g} (must be > 0), "
        f"max |row sum - 1| = {row_err:.3g} (tol {ATOL:g})"
    )
    return CheckResult(name, passed, detail, max_abs_error=max(outside, row_err))


def _close_check(name: str, pairs: dict[str, tuple[torch.Tensor, torch.Tensor]], what: str) -> CheckResult:
    errs = {k: (a - b).abs().max().item() for k, (a, b) in pairs.items()}
    worst = max(errs.values())
    shown = ", ".join(f"{k} {e:.3g}" for k, e in errs.items())
    return CheckResult(name, worst <= ATOL, f"{what}: max abs error {shown} (tol {ATOL:g})", max_abs_error=worst)


def torch_mha_from(mha: MultiHeadedAttention) -> nn.MultiheadAttention:
    """A torch.nn.MultiheadAttention holding the same weights as ``mha``.

    torch packs the heads' projections as in_proj_weight = [W_Q; W_K; W_V],
    each (n_heads*d_k, d_model) with head h in rows h*d_k:(h+1)*d_k, which is
    the order of our per-head modules. torch needs n_heads*d_k == d_model and
    d_out == d_model.
    """
    H, d_k = mha.n_heads, mha.d_k
    d_model = mha.heads[0].W_Q.in_features
    if H * d_k != d_model or mha.d_out != d_model:
        raise ValueError("torch.nn.MultiheadAttention needs n_heads*d_k == d_out == d_model")
    ref = nn.MultiheadAttention(d_model, H, bias=True, batch_first=True)
    with torch.no_grad():
        w = [torch.cat([getattr(h, name).weight for h in mha.heads]) for name in ("W_Q", "W_K", "W_V")]
        ref.in_proj_weight.copy_(torch.cat(w))
        qkv_bias = mha.heads[0].W_Q.bias
        if qkv_bias is None:
            ref.in_proj_bias.zero_()
        else:
            b = [torch.cat([getattr(h, name).bias for h in mha.heads]) for name in ("W_Q", "W_K", "W_V")]
            ref.in_proj_bias.copy_(torch.cat(b))
        ref.out_proj.weight.copy_(mha.W_O.weight)
        ref.out_proj.bias.copy_(mha.W_O.bias)
    return ref.eval()


def run_suite(cfg: ChecksConfig = ChecksConfig()) -> tuple[list[CheckResult], dict]:
    """Run every check; returns (results, example) where example holds the tensors for the figure."""
    torch.manual_seed(cfg.seed)
    B, T, D, H, d_k, d_out, L = cfg.batch, cfg.seq_len, cfg.d_model, cfg.n_heads, cfg.d_k, cfg.d_out, cfg.n_layers
    x = torch.randn(B, T, D)
    mask = previous_token_mask(T)
    results: list[CheckResult] = []
    example: dict = {}

    def add(fn: Callable[[], CheckResult]) -> None:
        # A check that raises is a failed check, recorded with the error, not a crash.
        try:
            results.append(fn())
        except Exception as exc:  # noqa: BLE001 - any error here means the module is broken
            results.append(CheckResult(fn.__name__, False, f"raised {type(exc).__name__}: {exc}"))

    with torch.no_grad():
        head = AttentionHead(D, d_k).eval()
        mha = MultiHeadedAttention(D, H, d_k=d_k, d_out=d_out).eval()
        block = AttentionResidual(D, H, d_k=d_k).eval()
        model = Transformer(D, H, L, d_k=d_k).eval()

        def attention_head_shapes() -> CheckResult:
            out, A = head(x)
            return _shape_check("attention_head_shapes", {"out": out.shape, "A": A.shape},
                                {"out": (B, T, d_k), "A": (B, T, T)})

        def attention_head_matches_torch_sdpa() -> CheckResult:
            out, A = head(x, mask)
            q, k, v = head.W_Q(x), head.W_K(x), head.W_V(x)
            ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask.bool())
            ref_A = torch.softmax((q @ k.transpose(-2, -1) / math.sqrt(d_k)).masked_fill(mask == 0, -math.inf), -1)
            return _close_check("attention_head_matches_torch_sdpa", {"out": (out, ref), "A": (A, ref_A)},
                                "masked AttentionHead vs torch scaled_dot_product_attention")

        def attention_head_mask() -> CheckResult:
            out, A = head(x, mask)
            example["A_head"] = A[0]
            return _mask_pattern_check("attention_head_mask", A, mask)

        def mha_shapes() -> CheckResult:
            out, A = mha(x, mask, need_weights=True)
            return _shape_check("mha_shapes", {"out": out.shape, "A": A.shape},
                                {"out": (B, T, d_out), "A": (B, H, T, T)})

        def W_O_shape() -> CheckResult:
            # nn.Linear stores weight as (out, in); as the starter code's matrix W_O it is weight.T.
            got = tuple(mha.W_O.weight.T.shape)
            want = (H * d_k, d_out)
            return CheckResult("W_O_shape", got == want,
                               f"W_O is {got}, expected (n_heads*d_k, d_out) = ({H}*{d_k}, {d_out}) = {want}",
                               extra={"W_O_shape": list(got)})

        def mha_mask() -> CheckResult:
            _, A = mha(x, mask, need_weights=True)
            return _mask_pattern_check("mha_mask", A, mask)

        def mha_loop_matches_vectorized() -> CheckResult:
            loop = MultiHeadedAttention(D, H, d_k=d_k, d_out=d_out, impl="loop").eval()
            loop.load_state_dict(mha.state_dict())
            pairs = {}
            for label, m in (("unmasked", None), ("masked", mask)):
                o_loop, A_loop = loop(x, m, need_weights=True)
                o_vec, A_vec = mha(x, m, need_weights=True)
                o_sdpa, _ = mha(x, m, need_weights=False)
                pairs[f"{label} out"] = (o_loop, o_vec)
                pairs[f"{label} A"] = (A_loop, A_vec)
                pairs[f"{label} out (sdpa path)"] = (o_loop, o_sdpa)
            return _close_check("mha_loop_matches_vectorized", pairs, "per-head loop vs vectorized path")

        def mha_matches_torch_multihead() -> CheckResult:
            ours = MultiHeadedAttention(D, H).eval()  # torch needs d_k = D/H and d_out = D
            ref = torch_mha_from(ours)
            pairs = {}
            for label, m in (("unmasked", None), ("masked", mask)):
                o, A = ours(x, m, need_weights=True)
                # torch's bool mask marks the entries that may NOT attend.
                ro, rA = ref(x, x, x, attn_mask=None if m is None else m == 0,
                             need_weights=True, average_attn_weights=False)
                pairs[f"{label} out"] = (o, ro)
                pairs[f"{label} A"] = (A, rA)
            return _close_check("mha_matches_torch_multihead", pairs,
                                f"MultiHeadedAttention({D}, {H}) vs torch.nn.MultiheadAttention, same weights")

        def fully_masked_row_is_zero() -> CheckResult:
            m = mask.clone()
            m[0] = 0  # token 0 may attend to nothing, as a padding query would
            out, A = mha(x, m, need_weights=True)
            out_fast, _ = mha(x, m)
            finite = bool(torch.isfinite(out).all() and torch.isfinite(out_fast).all() and torch.isfinite(A).all())
            row = A[:, :, 0].abs().max().item()
            # The row's attention output is 0, so MHA gives W_O's bias there.
            bias_err = max((o[:, 0] - mha.W_O.bias).abs().max().item() for o in (out, out_fast))
            passed = finite and row == 0.0 and bias_err <= ATOL
            return CheckResult("fully_masked_row_is_zero", passed,
                               f"all finite: {finite}; max |A| in the empty row = {row:.3g}; "
                               f"its output minus W_O bias = {bias_err:.3g}", max_abs_error=max(row, bias_err))

        def ffn_shapes() -> CheckResult:
            ffn = FFN(D, 4 * D).eval()
            return _shape_check("ffn_shapes", {"out": ffn(x).shape}, {"out": (B, T, D)})

        def attention_residual_shapes() -> CheckResult:
            out, A = block(x, mask, need_weights=True)
            return _shape_check("attention_residual_shapes", {"out": out.shape, "A": A.shape},
                                {"out": (B, T, D), "A": (B, H, T, T)})

        def transformer_shapes() -> CheckResult:
            out = model(x)
            out2, maps = model(x, mask, return_attention=True)
            return _shape_check("transformer_shapes", {"out": out.shape, "out (with maps)": out2.shape,
                                                        "maps": maps.shape},
                                {"out": (B, T, D), "out (with maps)": (B, T, D), "maps": (B, L, H, T, T)})

        def transformer_mask() -> CheckResult:
            _, maps = model(x, mask, return_attention=True)
            r = _mask_pattern_check("transformer_mask", maps, mask)
            r.detail = f"every layer and head ({L} x {H}): " + r.detail
            return r

        def transformer_loop_matches_vectorized() -> CheckResult:
            loop = Transformer(D, H, L, d_k=d_k, impl="loop").eval()
            loop.load_state_dict(model.state_dict())
            pairs = {}
            o_loop, m_loop = loop(x, mask, return_attention=True)
            o_vec, m_vec = model(x, mask, return_attention=True)
            pairs["out"] = (o_loop, o_vec)
            pairs["maps"] = (m_loop, m_vec)
            pairs["out (sdpa path)"] = (o_loop, model(x, mask))
            return _close_check("transformer_loop_matches_vectorized", pairs,
                                f"{L}-layer Transformer, loop vs vectorized, masked")

        for fn in (attention_head_shapes, attention_head_matches_torch_sdpa, attention_head_mask, mha_shapes,
                   W_O_shape, mha_mask, mha_loop_matches_vectorized, mha_matches_torch_multihead,
                   fully_masked_row_is_zero, ffn_shapes, attention_residual_shapes, transformer_shapes,
                   transformer_mask, transformer_loop_matches_vectorized):
            add(fn)

    example["mask"] = mask
    example["W_O_shape"] = [H * d_k, d_out]
    return results, example
