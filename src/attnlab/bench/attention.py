"""Forward+backward time of our attention against torch.nn.MultiheadAttention.

Three implementations with identical weights, timed in one process with
torch.utils.benchmark (which warms up and picks the repetition count):
the starter code's per-head loop, our vectorized path, and torch's own module.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn as nn
from torch.utils import benchmark

from attnlab.errors import cli_main
from attnlab.transformer import MultiHeadedAttention


def _torch_copy(ours: MultiHeadedAttention) -> nn.MultiheadAttention:
    d = ours.heads[0].W_Q.in_features
    ref = nn.MultiheadAttention(d, ours.n_heads, bias=True, batch_first=True)
    with torch.no_grad():
        w = [torch.cat([getattr(h, n).weight for h in ours.heads]) for n in ("W_Q", "W_K", "W_V")]
        ref.in_proj_weight.copy_(torch.cat(w))
        ref.in_proj_bias.zero_()
        ref.out_proj.load_state_dict(ours.W_O.state_dict())
    return ref


def _step(fn, x):
    def run():
        x.grad = None
        fn(x).sum().backward()
    return run


def measure(T: int, d_model: int, n_heads: int, batch: int, min_time: float) -> dict[str, float]:
    torch.manual_seed(0)
    ours = MultiHeadedAttention(d_model, n_heads)
    loop = MultiHeadedAttention(d_model, n_heads, impl="loop")
    loop.load_state_dict(ours.state_dict())
    ref = _torch_copy(ours)
    x = torch.randn(batch, T, d_model, requires_grad=True)
    fns = {
        "loop": lambda inp: loop(inp)[0],
        "vectorized": lambda inp: ours(inp)[0],
        "torch": lambda inp: ref(inp, inp, inp, need_weights=False)[0],
    }
    out = {}
    for name, fn in fns.items():
        timer = benchmark.Timer(stmt="run()", globals={"run": _step(fn, x)}, num_threads=torch.get_num_threads())
        out[name] = timer.blocked_autorange(min_run_time=min_time).median
    return out


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m attnlab.bench attention", description=__doc__)
    p.add_argument("--seq-lens", type=int, nargs="+", default=[64, 256, 1024])
    p.add_argument("--d-model", type=int, default=256)
    p.add_argument("--heads", type=int, default=8)
    p.add_argument("--tokens", type=int, default=4096, help="batch size is tokens // T (at least 1)")
    p.add_argument("--min-time", type=float, default=1.0, help="seconds of repetitions per measurement")
    args = p.parse_args(argv)

    print(f"attention forward+backward, d_model={args.d_model}, heads={args.heads}, "
          f"{torch.get_num_threads()} threads, torch {torch.__version__}")
    print(f"{'T':>6} {'batch':>5} {'loop ms':>9} {'vec ms':>9} {'torch ms':>9} {'loop/torch':>10} {'vec/torch':>10}")
    for T in args.seq_lens:
        batch = max(1, args.tokens // T)
        t = measure(T, args.d_model, args.heads, batch, args.min_time)
        print(f"{T:>6} {batch:>5} {t['loop'] * 1e3:>9.3f} {t['vectorized'] * 1e3:>9.3f} {t['torch'] * 1e3:>9.3f}"
              f" {t['loop'] / t['torch']:>10.2f} {t['vectorized'] / t['torch']:>10.2f}")
    print("ratio = time / torch.nn.MultiheadAttention time (lower is faster; target vec/torch <= 1.2)")
    return 0
