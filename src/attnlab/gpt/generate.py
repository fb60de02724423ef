"""The seed's 50-token greedy generation (4g) and plain vs KV-cached speed (4e) (rule ``generate_gpt``).

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
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Optional, Sequence

import torch

from attnlab import config as cfgmod
from attnlab.errors import cli_main
from attnlab.gpt.data import load_tokenizer, trained_vocab_digest
from attnlab.gpt.model import DialogueGPT, load_checkpoint
from attnlab.io import write_json, write_text
from attnlab.runtime import pick_device


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
    """Greedy continuations of each prompt (the seed's per-epoch samples), never producing ``banned_ids``."""
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
        speed = time_generation(model, tok.encode(gcfg["prompts"][0]), gcfg["bench_tokens"], banned_ids=banned)
    speed["device"] = str(dev)
    return {"num_tokens": gcfg["num_tokens"], "samples": samples, "speed": speed,
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
    return "\n".join(lines) + "\n"


@cli_main
def main(argv: Optional[list[str]] = None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnlab.gpt.generate", description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--vocab", required=True)
    p.add_argument("--config", default=None, help="the gpt section (YAML/JSON); uses its generate keys")
    p.add_argument("--out-txt", required=True)
    p.add_argument("--out-json", required=True)
    p.add_argument("--device", default="auto")
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
