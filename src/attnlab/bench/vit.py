"""Training throughput of our ViT against an identically shaped torch.nn.TransformerEncoder ViT.

``python -m attnlab.bench vit [--dim 128 --depth 4 --heads 4 ...]`` builds both
models with the same patch embedding, class token, positional embedding, final
norm and head; only the transformer blocks differ (ours vs
``nn.TransformerEncoder(norm_first=True, activation="gelu")``, whose q/k/v
projections carry a bias that ours do not). It times full training steps
(augmented batch, forward, backward, AdamW) in alternating rounds so that both
see the same machine load, and prints images/s and the ratio ours/reference.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from attnlab.errors import cli_main
from attnlab.runtime import autocast, describe_hardware, pick_device
from attnlab.vit.augment import normalize, random_crop_flip
from attnlab.vit.model import VisionTransformer


class ReferenceViT(VisionTransformer):
    """Our ViT with its blocks swapped for torch.nn.TransformerEncoder of the same shape."""

    def __init__(self, dim: int, depth: int, heads: int, mlp_ratio: float, dropout: float = 0.0, **kw) -> None:
        super().__init__(dim=dim, depth=depth, heads=heads, mlp_ratio=mlp_ratio, dropout=dropout, **kw)
        layer = nn.TransformerEncoderLayer(dim, heads, int(dim * mlp_ratio), dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.blocks = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)

    def forward_features(self, x, return_attention=False):
        if return_attention:
            raise NotImplementedError("the reference model is for timing only")
        p = self.patch_embed.patch_size
        grid_h, grid_w = x.shape[-2] // p, x.shape[-1] // p
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.norm(self.blocks(self._add_pos_embed(x, grid_h, grid_w)))


def time_steps(model: nn.Module, batch: torch.Tensor, labels: torch.Tensor, steps: int,
               device: torch.device, amp: bool) -> float:
    """Seconds for ``steps`` full training steps (after the caller's warm-up)."""
    opt = model._bench_opt
    gen = torch.Generator(device=device).manual_seed(0)
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        x = random_crop_flip(normalize(batch), 4, gen)
        with autocast(device, amp):
            loss = F.cross_entropy(model(x).float(), labels)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m attnlab.bench vit", description=__doc__.split("\n")[0])
    ap.add_argument("--dim", type=int, default=128)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--patch-size", type=int, default=4)
    ap.add_argument("--mlp-ratio", type=float, default=2.0)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=5, help="training steps per timing round")
    ap.add_argument("--rounds", type=int, default=3, help="alternating timing rounds; the median is reported")
    ap.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (CPU)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    amp = device.type == "cuda"
    shape = dict(patch_size=args.patch_size, dim=args.dim, depth=args.depth, heads=args.heads,
                 mlp_ratio=args.mlp_ratio)
    torch.manual_seed(0)
    models = {"ours": VisionTransformer(**shape).to(device), "reference": ReferenceViT(**shape).to(device)}
    batch = torch.randint(0, 256, (args.batch_size, 3, 32, 32), dtype=torch.uint8, device=device)
    labels = torch.randint(0, 10, (args.batch_size,), device=device)
    for m in models.values():
        m.train()
        m._bench_opt = torch.optim.AdamW(m.parameters(), lr=1e-4)
        time_steps(m, batch, labels, 2, device, amp)  # warm-up: allocator, kernels, autotuning
    secs = {name: [] for name in models}
    for _ in range(args.rounds):
        for name, m in models.items():
            secs[name].append(time_steps(m, batch, labels, args.steps, device, amp))
    n_img = args.steps * args.batch_size
    rate = {name: n_img / statistics.median(s) for name, s in secs.items()}
    params = {name: sum(p.numel() for p in m.parameters()) for name, m in models.items()}
    print(f"device: {device} ({describe_hardware(device)}), torch threads {torch.get_num_threads()}")
    print(f"shape: {shape}, batch {args.batch_size}, {args.rounds} rounds x {args.steps} steps")
    for name in models:
        print(f"{name:>9}: {rate[name]:8.1f} images/s  ({params[name] / 1e6:.2f}M params)")
    print(f"ratio ours/reference: {rate['ours'] / rate['reference']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
