"""DialogueGPT throughput: training tokens/s and greedy generation, plain vs KV-cached (homework 4e).

    python -m attnlab.bench gpt [--preset cpu|gpu] [--new-tokens 250] [--threads 2]

The model has the preset's size (default: the CPU preset, config/cpu.yaml)
with random weights and a vocabulary of ``--vocab-size`` words: speed does
not depend on what the weights have learned. Training throughput counts real
tokens per second of forward + backward + AdamW steps on batches of
``--batch-len``-token dialogues. Generation: ``--new-tokens`` greedy tokens
from a 3-token prompt on both paths, best of ``--repeats`` runs each.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from attnlab.errors import cli_main


def train_throughput(model, vocab_size: int, batch_size: int, batch_len: int, steps: int, lr: float) -> float:
    from attnlab.gpt.model import DialogueLoss

    gen = torch.Generator().manual_seed(0)
    ids = torch.randint(3, vocab_size, (batch_size, batch_len), generator=gen)
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    loss_fn = DialogueLoss()
    model.train()

    def step():
        loss = loss_fn(model(ids, mask), ids, mask)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):  # warm-up
        step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * ids.numel() / (time.perf_counter() - t0)


@cli_main
def main(argv=None) -> int:
    from attnlab.gpt.generate import time_generation
    from attnlab.gpt.model import DialogueGPT
    from attnlab.config import preset

    p = argparse.ArgumentParser(prog="python -m attnlab.bench gpt", description=__doc__.split("\n\n")[0])
    p.add_argument("--preset", choices=["cpu", "gpu"], default="cpu")
    p.add_argument("--vocab-size", type=int, default=6903, help="min_freq=2 vocabulary of the training split")
    p.add_argument("--new-tokens", type=int, default=250)
    p.add_argument("--steps", type=int, default=10, help="timed training steps")
    p.add_argument("--batch-len", type=int, default=40, help="tokens per training dialogue (mean is ~37)")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--json", action="store_true", help="print the numbers as one JSON line too")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    cfg = preset("cpu" if args.preset == "cpu" else "config", "gpt")
    m = cfg["model"]
    torch.manual_seed(0)
    model = DialogueGPT(args.vocab_size, m["d_model"], m["n_heads"], m["n_layers"], m["max_len"],
                        dropout=m["dropout"], tie_weights=m["tie_weights"])
    print(f"DialogueGPT {args.preset} preset: d_model={m['d_model']} n_heads={m['n_heads']} "
          f"n_layers={m['n_layers']} max_len={m['max_len']} vocab={args.vocab_size} "
          f"({model.n_params() / 1e6:.2f}M params), {torch.get_num_threads()} threads")
    tps = train_throughput(model, args.vocab_size, cfg["train"]["batch_size"], args.batch_len,
                           args.steps, cfg["train"]["lr"])
    print(f"training: {tps:,.0f} tokens/s (batch {cfg['train']['batch_size']} x {args.batch_len} tokens)")
    model.eval()
    with torch.no_grad():
        sp = time_generation(model, [0, 5, 6], args.new_tokens, repeats=args.repeats)
    print(f"greedy generation of {args.new_tokens} new tokens: plain {sp['plain_tokens_per_s']:.1f} tok/s "
          f"({sp['plain_seconds']:.2f}s), KV-cached {sp['cached_tokens_per_s']:.1f} tok/s "
          f"({sp['cached_seconds']:.2f}s), speed-up {sp['speedup']:.2f}x, identical tokens: {sp['identical']}")
    if args.json:
        print(json.dumps({"train_tokens_per_s": tps, **sp}))
    return 0
