"""DialogueGPT: a word-level GPT on the from-scratch Transformer (homework Problem 4c-4e).

token embedding + learned absolute positions -> Transformer (pre-LN blocks,
causal mask combined with the padding mask) -> final LayerNorm -> LM head,
whose weight is the token embedding's by default (``tie_weights``).

``generate`` is the starter code's greedy loop (or seeded top-k sampling) with two
paths over the same weights: ``use_cache=False`` re-encodes the whole context
for every new token, ``use_cache=True`` keeps every layer's keys and values
(the ``cache`` API of :mod:`attnlab.transformer`); both use the same context
window policy, so they return the same tokens. ``load_checkpoint`` rebuilds a
model that ``attnlab.gpt.train`` saved.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.transformer import Transformer

Tensor = torch.Tensor


def causal_mask(T: int, device=None) -> Tensor:
    """(T, T) bool, True on and below the diagonal: token i may attend to j <= i."""
    return torch.ones(T, T, dtype=torch.bool, device=device).tril()


def attention_mask(input_mask: Optional[Tensor], T: int, device=None) -> Tensor:
    """Causal mask, combined with the keys' padding mask when given.

    Returns (T, T) without ``input_mask`` and (B, T, T) with it; True = may attend.
    A padding query keeps its causal row over real keys (right padding), which
    is harmless because padding positions are never targets.
    """
    mask = causal_mask(T, device)
    if input_mask is None:
        return mask
    return mask.unsqueeze(0) & input_mask.bool().unsqueeze(1)  # (B, T, T)


class DialogueGPT(nn.Module):
    """forward(input_ids (B, T), input_mask (B, T) | None) -> logits (B, T, vocab_size)."""

    def __init__(
        self,
        vocab_size: int,
        d_model: int,
        n_heads: int,
        n_layers: int,
        max_len: int,
        dropout: float = 0.0,
        pad_id: Optional[int] = None,
        d_hidden: Optional[int] = None,
        tie_weights: bool = True,
    ) -> None:
        super().__init__()
        self.vocab_size, self.max_len, self.pad_id = vocab_size, max_len, pad_id
        self.tok_embed = nn.Embedding(vocab_size, d_model)
        self.pos_embed = nn.Embedding(max_len, d_model)
        self.drop = nn.Dropout(dropout)
        self.transformer = Transformer(d_model, n_heads, n_layers, d_hidden=d_hidden,
                                       dropout=dropout, pre_norm=True)
        self.norm = nn.LayerNorm(d_model)
        self.lm_head = nn.Linear(d_model, vocab_size, bias=False)
        if tie_weights:
            # ~7k words and ~240k training tokens: embedding and head are most of the
            # parameters; tying halves them and overfits later (Press & Wolf 2017, nanoGPT).
            self.lm_head.weight = self.tok_embed.weight
        self._init_weights(n_layers)

    def _init_weights(self, n_layers: int) -> None:
        # GPT-2 init: N(0, 0.02) everywhere, and the projections that write into
        # the residual stream scaled by 1/sqrt(2 * n_layers) so its variance
        # does not grow with depth.
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Embedding)):
                nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        for name, p in self.named_parameters():
            if name.endswith(("attn.W_O.weight", "ffn.fc2.weight")):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * n_layers))

    def n_params(self) -> int:
        return sum(p.numel() for p in self.parameters())  # tied weights count once

    def forward(
        self,
        input_ids: Tensor,
        input_mask: Optional[Tensor] = None,
        return_attention: bool = False,
    ):
        """Logits (B, T, V); with ``return_attention`` also maps (B, L, H, T, T)."""
        T = input_ids.shape[1]
        if T > self.max_len:
            raise ValueError(f"sequence of {T} tokens exceeds max_len={self.max_len}; "
                             "chunk it (see attnlab.gpt.scoring.windows)")
        mask = attention_mask(input_mask, T, input_ids.device)
        out = self.transformer(self._embed(input_ids, 0), mask, return_attention=return_attention)
        if return_attention:
            h, maps = out
            return self.lm_head(self.norm(h)), maps
        return self.lm_head(self.norm(out))

    def _embed(self, ids: Tensor, start: int) -> Tensor:
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        return self.drop(self.tok_embed(ids) + self.pos_embed(pos))  # (B, T, d_model)

    def _step(self, ids: Tensor, cache: list) -> Tensor:
        """Feed ``ids`` (B, T_new) after what ``cache`` holds; return the last position's logits (B, V)."""
        past = cache[0]["k"].shape[2] if "k" in cache[0] else 0
        T_new = ids.shape[1]
        if past + T_new > self.max_len:
            raise ValueError(f"cache of {past} + {T_new} tokens exceeds max_len={self.max_len}")
        # New queries see every cached key plus the new keys causally: (T_new, past + T_new).
        # A single new token sees everything, so it needs no mask (and skips the masking work).
        mask = None
        if T_new > 1:
            mask = torch.ones(T_new, past + T_new, dtype=torch.bool, device=ids.device).tril(diagonal=past)
        h = self.transformer(self._embed(ids, past), mask, cache=cache)
        return self.lm_head(self.norm(h[:, -1]))

    def _window_start(self, start: int, n: int) -> int:
        """Context window start for predicting token ``n`` given the current start.

        The context is ``seq[start:n]``. While it fits in ``max_len`` it grows;
        once it would exceed ``max_len`` it restarts from the last
        ``max_len // 2`` tokens. Both generation paths call this, so both see
        exactly the same contexts.
        """
        if n - start > self.max_len:
            return n - max(1, self.max_len // 2)
        return start

    @torch.no_grad()
    def generate(
        self,
        prefix_ids: Sequence[int] | Tensor,
        num_tokens: int,
        use_cache: bool = False,
        temperature: float = 0.0,
        top_k: Optional[int] = None,
        seed: Optional[int] = None,
        banned_ids: Optional[Sequence[int]] = None,
    ) -> list[int]:
        """Return ``prefix_ids`` followed by ``num_tokens`` generated token ids.

        ``temperature == 0`` is the starter code's greedy decoding (argmax); otherwise
        the next token is sampled from softmax(logits / temperature),
        restricted to the ``top_k`` most likely tokens when given, with a
        private generator seeded by ``seed`` (reproducible, leaves the global
        RNG alone).

        ``banned_ids`` (e.g. ``<unk>`` and ``<pad>``) get logit -inf before the
        argmax or the sampling, so they are never generated; the prefix may
        still hold them. Greedy decoding stays deterministic: the argmax over
        the remaining words.

        Context window: positions are learned up to ``max_len``, so the model
        never sees more than ``max_len`` tokens. While prefix + generated fits,
        the context is the whole sequence. When it would exceed ``max_len``,
        the context restarts from the last ``max_len // 2`` tokens (placed at
        positions 0..), grows again to ``max_len``, and so on. A KV cache
        cannot slide (every cached key carries its absolute position), so this
        block-wise window is what lets the cached path re-prime its cache only
        once every ``max_len // 2`` tokens; the plain path re-encodes the same
        windows, so greedy decoding gives identical tokens on both paths
        (tested), and a prompt longer than ``max_len`` is handled the same way.
        """
        was_training = self.training
        self.eval()
        device = self.tok_embed.weight.device
        seq = [int(t) for t in (prefix_ids.tolist() if isinstance(prefix_ids, Tensor) else prefix_ids)]
        if not seq:
            raise ValueError("generate needs at least one prefix token (the start token)")
        banned = sorted({int(t) for t in (banned_ids or ())})
        if any(not 0 <= t < self.vocab_size for t in banned):
            raise ValueError(f"banned_ids {banned} must lie in 0..{self.vocab_size - 1}")
        if len(banned) >= self.vocab_size:
            raise ValueError("banned_ids cover the whole vocabulary: nothing left to generate")
        banned_t = torch.tensor(banned, dtype=torch.long, device=device) if banned else None
        gen = None
        if temperature > 0:
            gen = torch.Generator(device=device)
            gen.manual_seed(0 if seed is None else seed)
        start, cache, cached_upto = 0, None, None
        try:
            for _ in range(num_tokens):
                n = len(seq)
                new_start = self._window_start(start, n)
                if not use_cache:
                    start = new_start
                    ctx = torch.tensor([seq[start:n]], device=device)
                    logits = self(ctx)[0, -1]
                else:
                    if cache is None or new_start != start:
                        # (Re-)prime: encode the whole window into a fresh cache.
                        start = new_start
                        cache = [{} for _ in self.transformer.layers]
                        logits = self._step(torch.tensor([seq[start:n]], device=device), cache)[0]
                    else:
                        logits = self._step(torch.tensor([seq[cached_upto:n]], device=device), cache)[0]
                    cached_upto = n
                logits = logits.float()
                if banned_t is not None:
                    logits = logits.index_fill(0, banned_t, float("-inf"))
                seq.append(self._pick(logits, temperature, top_k, gen))
        finally:
            self.train(was_training)
        return seq

    @staticmethod
    def _pick(logits: Tensor, temperature: float, top_k: Optional[int], gen) -> int:
        if temperature <= 0:
            return int(torch.argmax(logits))
        logits = logits / temperature
        if top_k is not None and top_k < logits.numel():
            kth = torch.topk(logits, top_k).values[-1]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        probs = torch.softmax(logits, dim=-1)
        return int(torch.multinomial(probs, 1, generator=gen))


def token_nll(logits: Tensor, input_ids: Tensor, input_mask: Optional[Tensor] = None) -> tuple[Tensor, Tensor]:
    """Per-target negative log-likelihoods and their mask, both (B, T-1).

    Logit i predicts token i+1: the start token is never a target and the
    last logit is unused. Padding targets get nll 0 and mask 0.
    """
    B, T, V = logits.shape
    keep = torch.ones(B, T - 1, dtype=torch.bool, device=input_ids.device)
    if input_mask is not None:
        keep = input_mask[:, 1:].bool()
    # Targets aligned with the logits (the last position gets none): cross-entropy
    # then runs on the contiguous (B*T, V) logits, with no (B, T-1, V) copy.
    targets = torch.full_like(input_ids, -100)
    targets[:, :-1] = input_ids[:, 1:].masked_fill(~keep, -100)
    if logits.dtype in (torch.float16, torch.bfloat16):
        logits = logits.float()  # the softmax over ~10k words needs more than bf16's 8 bits
    nll = F.cross_entropy(logits.reshape(B * T, V), targets.view(-1), ignore_index=-100, reduction="none")
    return nll.view(B, T)[:, :-1], keep


class DialogueLoss(nn.Module):
    """Mean next-token cross-entropy over the real (non-padding) targets (homework 4d).

    forward(logits (B, T, V), input_ids (B, T), input_mask (B, T) | None) -> scalar.
    A batch without a real target gives NaN (0 / 0), as ``F.cross_entropy``'s mean
    over nothing does: refusing it would need the count on the host, a sync with
    the GPU every step. The trainer never builds one (``training_chunks`` keeps
    only examples with a target), and it stops on a loss that is not finite.
    """

    def forward(self, logits: Tensor, input_ids: Tensor, input_mask: Optional[Tensor] = None) -> Tensor:
        nll, keep = token_nll(logits, input_ids, input_mask)
        return nll.sum() / keep.sum()


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[DialogueGPT, dict]:
    """Rebuild the model saved by attnlab.gpt.train; returns (model in eval mode, checkpoint dict).

    The file is loaded with weights_only (see attnlab.checkpoint): a foreign,
    truncated or ViT checkpoint raises CheckpointError, a ValueError.
    """
    from attnlab.checkpoint import load_model

    return load_model(path, "gpt", DialogueGPT, map_location)
