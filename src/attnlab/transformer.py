"""Attention and the transformer stack, from scratch (homework Problem 2).

Classes in dependency order: AttentionHead -> MultiHeadedAttention -> FFN ->
AttentionResidual -> Transformer.

Masks follow the starter code's convention: ``attn_mask[i, j] == 1`` (or True) means
query i may attend to key j, 0 means it may not and its weight is exactly 0.
A mask is (Tq, Tk) for the whole batch or (B, Tq, Tk) per example. A query row
with no allowed key gets all-zero weights and a zero output (never NaN), which
is what a padding token should contribute.

MultiHeadedAttention holds its weights once, as the starter code's per-head modules,
and has two paths over them: the per-head loop the homework teaches, and a
vectorized path that runs every head in one batched product (through
``scaled_dot_product_attention`` when the maps are not needed).
"""

from __future__ import annotations

import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torchvision.ops import StochasticDepth

Tensor = torch.Tensor


def normalize_mask(attn_mask: Optional[Tensor], tq: int, tk: int) -> Optional[Tensor]:
    """Return the mask as bool, broadcastable to (B, Tq, Tk), or None."""
    if attn_mask is None:
        return None
    if attn_mask.dim() not in (2, 3) or tuple(attn_mask.shape[-2:]) != (tq, tk):
        raise ValueError(
            f"attn_mask must be ({tq}, {tk}) or (B, {tq}, {tk}), got {tuple(attn_mask.shape)}"
        )
    mask = attn_mask if attn_mask.dtype == torch.bool else attn_mask != 0
    return mask if mask.dim() == 3 else mask.unsqueeze(0)


def masked_softmax(scores: Tensor, mask: Optional[Tensor]) -> Tensor:
    """Softmax over the last dim where masked entries get weight exactly 0.

    Masked scores are filled with the dtype's most negative finite value rather
    than -inf, so a row with nothing allowed stays finite (uniform) instead of
    NaN in both passes; the final fill then makes that row exactly zero.
    """
    if mask is None:
        return torch.softmax(scores, dim=-1)
    scores = scores.masked_fill(~mask, torch.finfo(scores.dtype).min)
    return torch.softmax(scores, dim=-1).masked_fill(~mask, 0.0)


class AttentionHead(nn.Module):
    """One head of scaled dot-product self-attention (homework 2a).

    forward(x (B, T, d_in)) -> out (B, T, d_k) = A V, A (B, T, T).
    """

    def __init__(self, d_in: int, d_k: int, bias: bool = False) -> None:
        super().__init__()
        self.d_k = d_k
        self.W_Q = nn.Linear(d_in, d_k, bias=bias)
        self.W_K = nn.Linear(d_in, d_k, bias=bias)
        self.W_V = nn.Linear(d_in, d_k, bias=bias)

    def forward(self, x: Tensor, attn_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
        q, k, v = self.W_Q(x), self.W_K(x), self.W_V(x)  # (B, T, d_k) each
        scores = q @ k.transpose(-2, -1) / math.sqrt(self.d_k)  # (B, T, T)
        A = masked_softmax(scores, normalize_mask(attn_mask, x.shape[1], x.shape[1]))
        return A @ v, A


class MultiHeadedAttention(nn.Module):
    """Concat(head_1(x), ..., head_n(x)) W_O, with W_O of shape (n_heads*d_k, d_out) (homework 2b).

    ``impl``, fixed at construction, picks the path: "vectorized" (default) or
    "loop". Both read the same parameters, so one path's state_dict loads into
    a module built for the other (that is how the two are compared).

    forward(x, attn_mask=None, need_weights=False, cache=None) -> (out, A)
      out: (B, T, d_out); A: (B, n_heads, T, Tk) when need_weights, else None.
    ``cache`` (vectorized path only) is a dict that keeps this layer's keys and
    values between calls for incremental decoding: the new keys/values are
    appended and the queries of ``x`` attend to everything cached so far, so
    the mask, if any, is (T, T_cached + T).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_k: Optional[int] = None,
        d_out: Optional[int] = None,
        qkv_bias: bool = False,
        impl: str = "vectorized",
    ) -> None:
        super().__init__()
        if impl not in ("loop", "vectorized"):
            raise ValueError(f"impl must be 'loop' or 'vectorized', got {impl!r}")
        if d_k is None:
            if d_model % n_heads:
                raise ValueError(f"d_model={d_model} is not divisible by n_heads={n_heads} "
                                 f"(each head gets d_model / n_heads dimensions)")
            d_k = d_model // n_heads
        self.n_heads, self.d_k = n_heads, d_k
        self.d_out = d_model if d_out is None else d_out
        self.heads = nn.ModuleList(AttentionHead(d_model, d_k, bias=qkv_bias) for _ in range(n_heads))
        self.W_O = nn.Linear(n_heads * d_k, self.d_out)
        self.impl = impl
        self._fused_cache: Optional[tuple] = None  # see _fused_weights

    # The loop path is the starter code's: each head on its own, then concatenate.
    def _forward_loop(self, x: Tensor, attn_mask: Optional[Tensor]) -> tuple[Tensor, Tensor]:
        outs, maps = zip(*(head(x, attn_mask) for head in self.heads))
        return self.W_O(torch.cat(outs, dim=-1)), torch.stack(maps, dim=1)

    def _fused_weights(self) -> tuple[Tensor, Optional[Tensor]]:
        """The per-head W_Q, W_K, W_V stacked into one (3*H*d_k, d_model) matrix (and bias).

        While gradients flow the stack is rebuilt every call (it is part of the
        graph). Without gradients (evaluation, generation) it is reused until a
        parameter changes: re-stacking on every decoding step would otherwise
        cost about as much as the step itself for small models.
        """
        params = [getattr(h, name) for name in ("W_Q", "W_K", "W_V") for h in self.heads]
        weights = [lin.weight for lin in params]
        biases = [lin.bias for lin in params] if params[0].bias is not None else None
        reuse = not torch.is_grad_enabled()
        if reuse:
            key = tuple((t.data_ptr(), t._version) for t in weights + (biases or []))
            if self._fused_cache is not None and self._fused_cache[0] == key:
                return self._fused_cache[1]
        fused = torch.cat(weights, dim=0), None if biases is None else torch.cat(biases)
        self._fused_cache = (key, fused) if reuse else None
        return fused

    def _fused_qkv(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """All heads' Q, K, V from one matmul over the per-head weights, each (B, H, T, d_k)."""
        H, d_k = self.n_heads, self.d_k
        w, b = self._fused_weights()
        B, T, _ = x.shape
        qkv = F.linear(x, w, b).view(B, T, 3, H, d_k).permute(2, 0, 3, 1, 4)
        return qkv[0], qkv[1], qkv[2]

    def _forward_vectorized(
        self, x: Tensor, attn_mask: Optional[Tensor], need_weights: bool, cache: Optional[dict]
    ) -> tuple[Tensor, Optional[Tensor]]:
        B, T, _ = x.shape
        q, k, v = self._fused_qkv(x)
        if cache is not None:
            if "k" in cache:
                k = torch.cat([cache["k"], k], dim=2)
                v = torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        mask = normalize_mask(attn_mask, T, k.shape[2])
        if mask is not None:
            mask = mask.unsqueeze(1)  # (B|1, 1, Tq, Tk): the same for every head
        if need_weights:
            A = masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(self.d_k), mask)  # (B, H, T, Tk)
            out = A @ v
        else:
            A = None
            if mask is None:
                out = F.scaled_dot_product_attention(q, k, v)
            else:
                # SDPA returns NaN for a row with no allowed key: let such rows
                # attend everywhere, then zero them, so nothing NaN flows back.
                empty = ~mask.any(dim=-1, keepdim=True)  # (B|1, 1, Tq, 1)
                out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask | empty)
                out = out.masked_fill(empty, 0.0)
        out = out.transpose(1, 2).reshape(B, T, self.n_heads * self.d_k)
        return self.W_O(out), A

    def forward(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        cache: Optional[dict] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        if self.impl == "loop":
            if cache is not None:
                raise ValueError("the loop path has no key/value cache; use impl='vectorized'")
            out, A = self._forward_loop(x, attn_mask)
            return out, (A if need_weights else None)
        return self._forward_vectorized(x, attn_mask, need_weights, cache)


class FFN(nn.Module):
    """LayerNorm -> Linear -> GELU -> Linear (-> Dropout), the starter code's feed-forward block."""

    def __init__(self, d_model: int, d_hidden: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model)
        self.fc1 = nn.Linear(d_model, d_hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(d_hidden, d_model)  # writes into the residual stream
        self.drop = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.fc2(self.act(self.fc1(self.norm(x)))))


class AttentionResidual(nn.Module):
    """x + MHA(x), then + FFN(...), as the starter code's block.

    The starter code's FFN normalises its input but attention does not. ``pre_norm``
    adds a LayerNorm in front of attention too (the usual pre-LN block), which
    trains more stably; ``pre_norm=False`` is the starter code's block exactly.
    ``drop_path`` > 0 is stochastic depth (Huang et al. 2016): while training,
    each branch's output is dropped for a whole example with that probability
    and scaled by 1/(1-p) otherwise (torchvision's ``StochasticDepth``, "row").
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        d_hidden: Optional[int] = None,
        d_k: Optional[int] = None,
        dropout: float = 0.0,
        pre_norm: bool = True,
        qkv_bias: bool = False,
        impl: str = "vectorized",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(d_model) if pre_norm else nn.Identity()
        self.attn = MultiHeadedAttention(d_model, n_heads, d_k=d_k, qkv_bias=qkv_bias, impl=impl)
        self.drop = nn.Dropout(dropout)
        self.ffn = FFN(d_model, d_hidden or 4 * d_model, dropout)
        # At p = 0 it returns its input without drawing, so a model without it is unchanged.
        self.drop_path = StochasticDepth(drop_path, "row")

    def forward(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        need_weights: bool = False,
        cache: Optional[dict] = None,
    ) -> tuple[Tensor, Optional[Tensor]]:
        a, A = self.attn(self.norm(x), attn_mask, need_weights=need_weights, cache=cache)
        x = x + self.drop_path(self.drop(a))
        x = x + self.drop_path(self.ffn(x))
        return x, A


class Transformer(nn.Module):
    """Successive AttentionResidual layers (homework 2c).

    forward(x (B, T, d_model), attn_mask=None, return_attention=False)
      -> out (B, T, d_model), or (out, maps (B, n_layers, n_heads, T, T)).
    ``cache`` is a list with one dict per layer for incremental decoding.
    ``drop_path`` is the stochastic-depth rate of the last layer; layer i of n
    gets ``drop_path * i / (n - 1)``, so the first layer is never dropped (timm).
    """

    def __init__(
        self,
        d_model: int,
        n_heads: int,
        n_layers: int,
        d_hidden: Optional[int] = None,
        d_k: Optional[int] = None,
        dropout: float = 0.0,
        pre_norm: bool = True,
        qkv_bias: bool = False,
        impl: str = "vectorized",
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0 <= drop_path < 1:
            raise ValueError(f"drop_path must be in [0, 1), got {drop_path}")
        rates = [drop_path * i / max(n_layers - 1, 1) for i in range(n_layers)]
        self.layers = nn.ModuleList(
            AttentionResidual(d_model, n_heads, d_hidden, d_k, dropout, pre_norm, qkv_bias, impl, rate)
            for rate in rates
        )

    def forward(
        self,
        x: Tensor,
        attn_mask: Optional[Tensor] = None,
        return_attention: bool = False,
        cache: Optional[list] = None,
    ):
        maps = []
        for i, layer in enumerate(self.layers):
            x, A = layer(x, attn_mask, need_weights=return_attention,
                         cache=None if cache is None else cache[i])
            maps.append(A)
        if return_attention:
            return x, torch.stack(maps, dim=1)
        return x
