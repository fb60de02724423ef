"""The starter code's 50-token greedy generation (4g) and plain vs KV-cached speed (4e) (rule ``generate_gpt``).

    python -m attnlab.gpt.generate --checkpoint CKPT --vocab VOCAB --config SECTION.yaml \
        --out-txt TXT --out-json JSON

For each of ``generate.prompts`` the model greedily continues the encoded
prompt (start token first) by ``generate.num_tokens`` tokens. Then it times
greedy generation of ``generate.bench_tokens`` new tokens from the first
prompt on both paths (re-encoding the whole context per token vs the
key/value cache) and records whether they produced identical tokens.

``generate.mask_tokens`` (default ``<unk>`` and ``<pad>``) are never
generated: their logits are set to -inf before the argmax or the sampling.
The trainer's per-epoch samples (:func:`sample_prompts`) follow
``train.mask_tokens`` the same way.

4e like for like (:func:`decode_cost`, timed side by side in the same
process, repeats interleaved): one teacher-forced forward pass over T tokens
at batch 1 against T cached decoding steps over the same T tokens at batch 1,
and the same T steps at batch ``DECODE_BATCH``. A step time that stays flat
from batch 1 to 64, while the work grows 64-fold, means the step is bound by
fixed per-step overhead, not by arithmetic or memory traffic.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch
import torch.nn as nn

from attnlab import config as cfgmod
from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.gpt.data import load_tokenizer, trained_vocab_digest
from attnlab.gpt.model import DialogueGPT, load_checkpoint
from attnlab.io import write_json, write_text
from attnlab.runtime import pick_device

DECODE_BATCH = 64  # the batch of the second cached-step timing
DECODE_REPEATS = 5

def mask_ids(tok, tokens) -> list[int]:
    """Ids of the vocabulary ``tokens`` that generation must not produce (config ``mask_tokens``)."""
    tokens = list(tokens or [])
    missing = [t for t in tokens if t not in tok]
    if missing:
        raise cfgmod.ConfigError(f"mask_tokens {missing} are not in the vocabulary; name tokens it holds, "
                                 f"e.g. {[tok.unk_token, tok.pad_token]}")
    return [tok.stoi[t] for t in tokens]


def sample_prompts(model: DialogueGPT, tok, prompts, num_tokens: int,
                   banned_ids: Optional[Sequence[int]] = None) -> list[dict]:
    """Greedy continuations of each prompt (the starter code's per-epoch samples), never producing ``banned_ids``."""
    out = []
    for prompt in prompts:
        ids = model.generate(tok.encode(prompt), num_tokens, use_cache=True, banned_ids=banned_ids)
        out.append({"prompt": prompt, "text": tok.decode(ids[1:])})  # drop the start token
    return out


def time_generation(model: DialogueGPT, prefix: Sequence[int], new_tokens: int, repeats: int = 1,
                    banned_ids: Optional[Sequence[int]] = None) -> dict:
    """Greedy ``new_tokens`` on the plain and the cached path: tokens/s, speed-up, identical flag.

    Each path runs once untimed first (allocator and kernel warm-up), then the
    best of ``repeats`` timed runs counts.
    """
    def best(use_cache: bool) -> tuple[float, list[int]]:
        model.generate(prefix, min(new_tokens, 8), use_cache=use_cache, banned_ids=banned_ids)
        times, out = [], None
        for _ in range(repeats):
            if model.tok_embed.weight.device.type == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            out = model.generate(prefix, new_tokens, use_cache=use_cache, banned_ids=banned_ids)
            if model.tok_embed.weight.device.type == "cuda":
                torch.cuda.synchronize()
            times.append(time.perf_counter() - t0)
        return min(times), out

    plain_s, plain = best(False)
    cached_s, cached = best(True)
    return {"new_tokens": new_tokens, "prefix_tokens": len(prefix), "max_len": model.max_len,
            "plain_seconds": plain_s, "cached_seconds": cached_s,
            "plain_tokens_per_s": new_tokens / plain_s, "cached_tokens_per_s": new_tokens / cached_s,
            "speedup": plain_s / cached_s, "identical": plain == cached}


def weight_flops_per_token(model: nn.Module) -> int:
    """2 flops (a multiply-add) per weight of every linear layer, the output head included, per token.

    The products with the weights; the attention scores' own work (which grows
    with the context) and the elementwise operations are not counted.
    """
    return sum(2 * m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def _cached_steps(model: DialogueGPT, ids: torch.Tensor) -> tuple[list[int], torch.Tensor]:
    """Feed ids (B, T) one position at a time through a fresh KV cache, as generation does (logits, argmax,
    the next id to the host); returns the argmax of every step for row 0 and the last step's logits (B, V)."""
    cache = [{} for _ in model.transformer.layers]
    picks, logits = [], None
    for t in range(ids.shape[1]):
        logits = model._step(ids[:, t:t + 1], cache)  # (B, V)
        picks.append(int(logits[0].argmax()))
    return picks, logits


def decode_cost(model: DialogueGPT, tokens: Sequence[int], batch: int = DECODE_BATCH,
                repeats: int = DECODE_REPEATS) -> dict:
    """4e like for like on the T = len(tokens) tokens (T <= max_len), timed side by side.

    forward: one teacher-forced pass over the T tokens at batch 1 (the logits of
    every position, and their argmax); steps_b1: T cached decoding steps over
    the same tokens at batch 1; steps_bN: the same T steps at batch ``batch``
    (the tokens repeated in every row). Each runs once untimed, then the three
    are timed in turn ``repeats`` times; medians and the min/max spread are
    kept. ``same_predictions``: the steps' argmaxes equal the forward pass's.
    """
    T = len(tokens)
    if not 1 <= T <= model.max_len:
        raise ValueError(f"decode_cost needs 1..max_len={model.max_len} tokens, got {T}")
    device = model.tok_embed.weight.device
    ids = torch.tensor([list(tokens)], device=device)  # (1, T)
    ids_n = ids.expand(batch, T).contiguous()  # (batch, T)

    def forward():
        return model(ids)[0].argmax(dim=-1).tolist()  # (T,) -> the host, as the steps' picks

    work = {"forward": forward, "steps_b1": lambda: _cached_steps(model, ids)[0],
            "steps_bN": lambda: _cached_steps(model, ids_n)[0]}
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outs = {k: fn() for k, fn in work.items()}  # warm-up, and the predictions compared below
            times = {k: [] for k in work}
            for _ in range(repeats):
                for k, fn in work.items():
                    _sync(device)
                    t0 = time.perf_counter()
                    fn()
                    _sync(device)
                    times[k].append(time.perf_counter() - t0)
    finally:
        model.train(was_training)
    med = {k: statistics.median(v) for k, v in times.items()}
    per_token = weight_flops_per_token(model)
    return {
        "T": T, "batch": batch, "repeats": repeats, "device": str(device),
        "torch_threads": torch.get_num_threads() if device.type == "cpu" else None,
        "seconds": med, "seconds_min": {k: min(v) for k, v in times.items()},
        "seconds_max": {k: max(v) for k, v in times.items()},
        "steps_over_forward": med["steps_b1"] / med["forward"],
        "step_seconds_b1": med["steps_b1"] / T, "step_seconds_bN": med["steps_bN"] / T,
        "batch_step_ratio": med["steps_bN"] / med["steps_b1"],
        "weight_flops_per_token": per_token,
        "gflops_per_s": {"forward": per_token * T / med["forward"] / 1e9,
                         "steps_b1": per_token * T / med["steps_b1"] / 1e9,
                         "steps_bN": per_token * T * batch / med["steps_bN"] / 1e9},
        "same_predictions": outs["steps_b1"] == outs["forward"] and outs["steps_bN"] == outs["forward"],
        "definition": "forward: one teacher-forced pass over the T tokens at batch 1; steps_b1: T KV-cached "
                      "decoding steps over the same tokens at batch 1 (one token in, logits, argmax each); "
                      "steps_bN: the same T steps at batch `batch`; seconds: medians of `repeats` interleaved "
                      "timed runs after one untimed run; weight flops: 2 per weight of every linear layer "
                      "(head included) per token, attention scores not counted",
    }


def generate_samples(model: DialogueGPT, tok, prompts: Sequence[str], num_tokens: int,
                     temperature: float = 0.0, top_k: Optional[int] = None, seed: int = 0,
                     banned_ids: Optional[Sequence[int]] = None) -> list[dict]:
    out = []
    for i, prompt in enumerate(prompts):
        # seed + i: with one seed for all, prompts that differ only in the speaker draw the same words
        ids = model.generate(tok.encode(prompt), num_tokens, temperature=temperature, top_k=top_k, seed=seed + i,
                             banned_ids=banned_ids)
        out.append({"prompt": prompt, "text": tok.decode(ids[1:]), "ids": ids})  # text without start
    return out


def run(checkpoint: str | Path, vocab_path: str | Path, cfg: Optional[dict] = None,
        device: str = "auto") -> dict:
    """generation.json's content; ``cfg`` is the gpt section or part of it (only ``generate`` is read)."""
    unknown = set(cfg or {}) - {"model", "train", "generate", "baseline", "runs"}
    if unknown:
        raise cfgmod.ConfigError(f"unknown gpt config keys {sorted(unknown)} (known: model, train, generate, "
                                 "baseline, runs)")
    gcfg = cfgmod.resolve(cfgmod.defaults("gpt")["generate"], (cfg or {}).get("generate"), "gpt.generate")
    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    tok = load_tokenizer(vocab_path, model.vocab_size, trained_vocab_digest(ckpt), f"{checkpoint}")
    banned = mask_ids(tok, gcfg["mask_tokens"])
    with torch.no_grad():
        samples = generate_samples(model, tok, gcfg["prompts"], gcfg["num_tokens"], banned_ids=banned)
        # Greedy decoding of a small model tends to loop; seeded sampling shows what else it learned.
        sampled = []
        if gcfg["temperature"] > 0:
            sampled = generate_samples(model, tok, gcfg["prompts"], gcfg["num_tokens"],
                                       gcfg["temperature"], gcfg["top_k"], gcfg["seed"], banned)
        # Timed on one CPU thread (the rule reserves every core): tiny per-step operations on several threads
        # spend their time synchronising them, and a busy machine makes that cost erratic.
        threads = torch.get_num_threads()
        if dev.type == "cpu":
            torch.set_num_threads(1)
        try:
            speed = time_generation(model, tok.encode(gcfg["prompts"][0]), gcfg["bench_tokens"], banned_ids=banned)
            # 4e like for like, on the first tokens of a greedy continuation of the same prompt
            text = model.generate(tok.encode(gcfg["prompts"][0]), gcfg["bench_tokens"], use_cache=True,
                                  banned_ids=banned)
            like = decode_cost(model, text[:min(gcfg["bench_tokens"], model.max_len)])
        finally:
            torch.set_num_threads(threads)
    speed["device"] = str(dev)
    return {"num_tokens": gcfg["num_tokens"], "samples": samples, "speed": speed, "like_for_like": like,
            "sampled": sampled, "sampling": {k: gcfg[k] for k in ("temperature", "top_k", "seed")},
            "mask_tokens": list(gcfg["mask_tokens"]),
            "checkpoint": str(checkpoint)}


def render_text(result: dict) -> str:
    masked = ", ".join(result.get("mask_tokens") or []) or "none"
    lines = [f"Greedy generation, {result['num_tokens']} new tokens per prompt (never generated: {masked})\n"]
    for s in result["samples"]:
        lines += [f"--- prompt: {s['prompt']}", s["text"], ""]
    if result.get("sampled"):
        sm = result["sampling"]
        lines.append(f"Sampled (temperature {sm['temperature']}, top-k {sm['top_k']}, seed {sm['seed']})\n")
        for s in result["sampled"]:
            lines += [f"--- prompt: {s['prompt']}", s["text"], ""]
    sp = result["speed"]
    lines.append(f"Speed ({sp['new_tokens']} new tokens, {sp['device']}): plain {sp['plain_tokens_per_s']:.1f} "
                 f"tok/s, KV-cached {sp['cached_tokens_per_s']:.1f} tok/s, speed-up {sp['speedup']:.2f}x, "
                 f"identical tokens: {sp['identical']}")
    lk = result.get("like_for_like")
    if lk:
        s = lk["seconds"]
        lines.append(f"Like for like ({lk['T']} tokens): one forward pass at batch 1 {s['forward'] * 1e3:.1f} ms, "
                     f"{lk['T']} cached steps at batch 1 {s['steps_b1'] * 1e3:.1f} ms "
                     f"({lk['steps_over_forward']:.1f}x), at batch {lk['batch']} {s['steps_bN'] * 1e3:.1f} ms "
                     f"(step time x{lk['batch_step_ratio']:.2f} for {lk['batch']}x the work)")
    return "\n".join(lines) + "\n"


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    p = stage_parser("attnlab.gpt.generate", __doc__, "gpt-checkpoint", "vocab", "device")
    p.add_argument("--config", default=None, help="the gpt section (YAML/JSON); uses its generate keys")
    p.add_argument("--out-txt", required=True, help="generation.txt: the samples as text")
    p.add_argument("--out-json", required=True, help="generation.json: the samples, their ids and the timings")
    args = p.parse_args(argv)
    user = cfgmod.load_config_file(args.config)
    user.pop("runs", None)
    result = run(args.checkpoint, args.vocab, user, args.device)
    write_json(args.out_json, result)
    text = render_text(result)
    write_text(args.out_txt, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
