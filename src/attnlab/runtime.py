"""Device choice, seeding, mixed precision and progress output for training stages."""

from __future__ import annotations

import contextlib
import os
import random
import sys
import time

import torch


def pick_device(preference: str = "auto") -> torch.device:
    """'auto' picks cuda, then mps, then cpu; anything else is a torch device string, which must exist here.

    A device that is not there (``cuda`` on a machine without a GPU, ``cuda:3``
    with two) raises ConfigError at once, not torch's error at the first tensor.
    """
    if preference != "auto":
        from attnlab.config import ConfigError

        try:
            device = torch.device(preference)
        except (RuntimeError, TypeError, ValueError):
            raise ConfigError(f"device {preference!r} is not a device torch knows: use auto, cpu, cuda, cuda:N "
                              f"or mps") from None
        if device.type == "cuda" and (not torch.cuda.is_available()
                                      or (device.index or 0) >= torch.cuda.device_count()):
            found = f"{torch.cuda.device_count()} CUDA device(s)" if torch.cuda.is_available() else "no CUDA device"
            raise ConfigError(f"device {preference!r} was asked for but torch sees {found} here; "
                              f"use device auto or cpu")
        mps = getattr(torch.backends, "mps", None)
        if device.type == "mps" and (mps is None or not mps.is_available()):
            raise ConfigError(f"device {preference!r} was asked for but this machine has no MPS device; "
                              f"use device auto or cpu")
        return device
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)
    try:
        import numpy as np

        np.random.seed(seed % 2**32)
    except ImportError:
        pass


def weight_decay_groups(model: torch.nn.Module, weight_decay: float,
                        no_decay_names: tuple[str, ...] = ()) -> list[dict]:
    """AdamW parameter groups: decay weight matrices only (nanoGPT, timm).

    Biases and norm gains (1-D) and any parameter whose name contains one of
    ``no_decay_names`` get no decay. Tied parameters appear once.
    """
    decay, no_decay = [], []
    for name, p in model.named_parameters():  # shared (tied) parameters are listed once
        if not p.requires_grad:
            continue
        keep = p.dim() >= 2 and not any(n in name for n in no_decay_names)
        (decay if keep else no_decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_adamw(groups: list[dict], lr: float, betas: tuple[float, float]) -> torch.optim.AdamW:
    """AdamW with the fused kernel where torch has one for the parameters' device, else foreach.

    All three implementations compute the same update. On this project's 2-core
    CPU the fused one takes 1.5-1.8 ms per step against 5.1-5.3 ms for foreach
    and 10 ms for the per-tensor loop (a 0.32M-parameter ViT in ~60 tensors).
    """
    try:
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=True)
    except (RuntimeError, TypeError, ValueError):  # no fused kernel for this device / torch
        return torch.optim.AdamW(groups, lr=lr, betas=betas, foreach=True)


def autocast(device: torch.device, enabled: bool = True):
    """bf16 autocast on CUDA (where it pays off); a no-op elsewhere."""
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def describe_hardware(device: torch.device | None = None) -> str:
    device = device or pick_device()
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{cpu} ({os.cpu_count()} cores)"


class Progress:
    """Line-based progress for long loops; prints at most every ``every`` seconds.

    Plain lines (no carriage returns) so the output reads well in Snakemake
    logs and SLURM output files as well as in a terminal.
    """

    def __init__(self, total: int, label: str, every: float = 5.0, stream=None) -> None:
        self.total, self.label, self.every = total, label, every
        self.stream = stream or sys.stderr
        self.start = self.last = time.perf_counter()
        self.n = 0

    def update(self, n: int = 1, **info) -> None:
        self.n += n
        now = time.perf_counter()
        if now - self.last >= self.every or self.n >= self.total:
            self.last = now
            extra = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
            pct = 100.0 * self.n / max(self.total, 1)
            print(f"[{self.label}] {self.n}/{self.total} ({pct:.0f}%) {now - self.start:.0f}s {extra}".rstrip(),
                  file=self.stream, flush=True)
