"""rnn_vs_attention stage: measurements behind the seed's Problem 1.

(i) Forward time and counted flops against T for the seed's RNN (step by
step), the seed's attention computed naively and rearranged, and standard
softmax attention; log-log slopes fitted on the larger half of the T grid.
(ii) The norm of x_1's contribution to y_T against T for W_h with spectral
radius 0.9, 1.0, 1.1 (W_h = rho * a random orthogonal matrix, so the norm of
the contribution to h_T is exactly rho^(T-1) ||W_x x_1||).

Writes rnn_vs_attention.json, scaling.csv, scaling.png, contribution.png.
"""

from __future__ import annotations

import csv
import math
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from attnlab.config import ConfigError, resolve
from attnlab.io import atomic_path, write_json
from attnlab.runtime import Progress, describe_hardware
from attnlab.theory import models
from attnlab.theory.models import LABELS, METHODS

DEFAULT_CONFIG: dict[str, Any] = {
    "seq_lens": [64, 128, 256, 512, 1024, 2048, 4096, 8192],
    "d": 64,  # d_in = d_k = d_v = d_out
    "d_hidden": 64,  # the RNN's hidden size
    "repeats": 5,  # timed runs per (method, T); the minimum is reported
    "radii": [0.9, 1.0, 1.1],
    "contribution_lens": [1] + list(range(10, 201, 10)),
    "seed": 0,
}

# naive and rearranged compute the same y in a different order; float32 rounding stays well inside these.
RTOL, ATOL = 1e-4, 1e-5


def validate(cfg: Mapping[str, Any]) -> None:
    def ints(key: str, minimum: int, min_len: int) -> None:
        v = cfg[key]
        if not isinstance(v, list) or len(v) < min_len or not all(
            isinstance(t, int) and not isinstance(t, bool) and t >= minimum for t in v
        ):
            raise ConfigError(f"config key 'theory.{key}' must be a list of at least {min_len} integers "
                              f">= {minimum}, got {v!r}")

    ints("seq_lens", 2, 2)
    ints("contribution_lens", 1, 2)
    for key in ("d", "d_hidden", "repeats"):
        if not isinstance(cfg[key], int) or isinstance(cfg[key], bool) or cfg[key] < 1:
            raise ConfigError(f"config key 'theory.{key}' must be a positive integer, got {cfg[key]!r}")
    radii = cfg["radii"]
    if not isinstance(radii, list) or not radii or not all(
        isinstance(r, (int, float)) and not isinstance(r, bool) and r > 0 for r in radii
    ):
        raise ConfigError(f"config key 'theory.radii' must be a non-empty list of positive numbers, got {radii!r}")
    if not isinstance(cfg["seed"], int):
        raise ConfigError(f"config key 'theory.seed' must be an integer, got {cfg['seed']!r}")


def fit_slope(xs, ys) -> float:
    """Slope of log(y) against log(x), least squares."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def fit_lens(seq_lens: list[int]) -> list[int]:
    """The larger half of the grid (at least two points): small T is dominated by per-call overhead."""
    lens = sorted(seq_lens)
    return lens[min(len(lens) // 2, len(lens) - 2):]


def _time(fn, args, repeats: int) -> tuple[float, torch.Tensor]:
    best, out = math.inf, None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        best = min(best, time.perf_counter() - start)
    return best, out


def measure_scaling(cfg: Mapping[str, Any]) -> dict:
    seq_lens, d, dh, repeats = sorted(cfg["seq_lens"]), cfg["d"], cfg["d_hidden"], cfg["repeats"]
    g = torch.Generator().manual_seed(cfg["seed"])
    # Scaled so activations stay O(1): entries ~ N(0, 1/fan_in).
    W_h = models.random_orthogonal(dh, g, torch.float32) * 0.9
    W_x = torch.randn(dh, d, generator=g) / math.sqrt(d)
    W_y = torch.randn(d, dh, generator=g) / math.sqrt(dh)
    Q, K, V = (torch.randn(d, d, generator=g) / math.sqrt(d) for _ in range(3))
    fns = {
        "rnn_loop": (models.rnn_forward, (W_h, W_x, W_y)),
        "attention_naive": (models.attention_naive, (Q, K, V)),
        "attention_rearranged": (models.attention_rearranged, (Q, K, V)),
        "attention_standard": (models.attention_standard, (Q, K, V)),
    }
    seconds = {m: [] for m in METHODS}
    agree = {"max_abs_diff": [], "allclose": [], "rtol": RTOL, "atol": ATOL}
    progress = Progress(len(seq_lens) * len(METHODS), "rnn_vs_attention")
    with torch.inference_mode():
        x0 = torch.randn(seq_lens[0], d, generator=g)
        for fn, w in fns.values():  # warm-up: first calls pay for allocation and kernel selection
            fn(x0, *w)
        for T in seq_lens:
            x = torch.randn(T, d, generator=g)
            outs = {}
            for m in METHODS:
                fn, w = fns[m]
                sec, outs[m] = _time(fn, (x, *w), repeats)
                seconds[m].append(sec)
                progress.update(T=T, method=m, seconds=sec)
            diff = (outs["attention_naive"] - outs["attention_rearranged"]).abs().max().item()
            agree["max_abs_diff"].append(diff)
            agree["allclose"].append(bool(torch.allclose(outs["attention_naive"], outs["attention_rearranged"],
                                                         rtol=RTOL, atol=ATOL)))
    agree["passed"] = all(agree["allclose"])
    if not agree["passed"]:
        bad = [T for T, ok in zip(seq_lens, agree["allclose"]) if not ok]
        raise RuntimeError(f"naive and rearranged seed attention disagree at T={bad} "
                           f"(max abs diff {max(agree['max_abs_diff']):.3g}); the rearrangement is wrong")

    fit = fit_lens(seq_lens)
    idx = [seq_lens.index(T) for T in fit]
    methods = {}
    for m in METHODS:
        fl = [models.flops(m, T, d, dh)["total"] for T in seq_lens]
        methods[m] = {
            "label": LABELS[m],
            "complexity": models.COMPLEXITY[m],
            "seconds": seconds[m],
            "flops": fl,
            "slope_seconds": fit_slope(fit, [seconds[m][i] for i in idx]),
            "slope_flops": fit_slope(fit, [fl[i] for i in idx]),
            "slope_flops_all": fit_slope(seq_lens, fl),
            "gflops_per_s": [f / s / 1e9 for f, s in zip(fl, seconds[m])],
        }
    return {
        "seq_lens": seq_lens,
        "fit_seq_lens": fit,
        "fit_note": "slopes are least-squares fits of log(seconds) and log(flops) against log(T) over fit_seq_lens "
                    "(the larger half of the grid, where per-call overhead no longer dominates); "
                    "slope_flops_all fits every T",
        "seconds_note": f"minimum over {repeats} timed forward passes (float32, inference mode, "
                        f"{torch.get_num_threads()} torch threads) after one warm-up call per method",
        "flop_convention": "multiply-add = 2 flops; a reduction over n numbers = n flops; each elementwise "
                           "add/sub/mul/div/exp/max = 1 flop per element",
        "d": d,
        "d_hidden": dh,
        "methods": methods,
        "naive_equals_rearranged": agree,
    }


def measure_contribution(cfg: Mapping[str, Any]) -> dict:
    d, dh, lens = cfg["d"], cfg["d_hidden"], sorted(cfg["contribution_lens"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    # float64: 1.1^(T-1) and 0.9^(T-1) span many orders of magnitude.
    O = models.random_orthogonal(dh, g)
    W_x = torch.randn(dh, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    W_y = torch.randn(d, dh, generator=g, dtype=torch.float64) / math.sqrt(dh)
    x1 = torch.randn(d, generator=g, dtype=torch.float64)
    base = torch.linalg.vector_norm(W_x @ x1).item()
    norms, h_norms, radius, rate = {}, {}, {}, {}
    for rho in cfg["radii"]:
        key = str(float(rho))
        W_h = rho * O
        norms[key], h_norms[key] = models.contribution_norms(W_h, W_x, W_y, x1, lens)
        radius[key] = torch.linalg.eigvals(W_h).abs().max().item()
        rate[key] = math.exp(float(np.polyfit(lens, np.log(norms[key]), 1)[0]))
    return {
        "lens": lens,
        "norms": norms,
        "h_norms": h_norms,
        "h_closed_form_base": base,
        "spectral_radius": radius,
        "fitted_rate": rate,
        "note": "norms[rho][i] = ||W_y W_h^(T-1) W_x x_1|| (x_1's contribution to y_T, phi_y = identity) and "
                "h_norms = ||W_h^(T-1) W_x x_1|| = rho^(T-1) ||W_x x_1|| for W_h = rho * orthogonal; "
                "fitted_rate = exp(slope of log norm against T)",
    }


def run(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict:
    """Resolve ``cfg`` (the theory section) against DEFAULT_CONFIG, measure, and write the outputs."""
    from attnlab.theory import plots

    cfg = resolve(DEFAULT_CONFIG, cfg, "theory")
    validate(cfg)
    start = time.perf_counter()
    scaling = measure_scaling(cfg)
    contribution = measure_contribution(cfg)
    record = {
        "scaling": scaling,
        "contribution": contribution,
        "config": cfg,
        "hardware": describe_hardware(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - start, 2),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "scaling.csv") as tmp:
        write_scaling_csv(scaling, tmp)
    with atomic_path(out_dir / "scaling.png") as tmp:
        plots.plot_scaling(scaling, tmp)
    with atomic_path(out_dir / "contribution.png") as tmp:
        plots.plot_contribution(contribution, tmp)
    write_json(out_dir / "rnn_vs_attention.json", record)
    return record


def write_scaling_csv(scaling: dict, path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["method", "seq_len", "seconds", "flops", "gflops_per_s"])
        for m, r in scaling["methods"].items():
            for T, s, f, rate in zip(scaling["seq_lens"], r["seconds"], r["flops"], r["gflops_per_s"]):
                w.writerow([m, T, f"{s:.6g}", f, f"{rate:.4g}"])
