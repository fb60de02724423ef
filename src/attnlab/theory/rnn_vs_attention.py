"""rnn_vs_attention stage: measurements behind the starter code's Problem 1.

(i) Forward time and counted flops against T for the starter code's RNN
(step by step), its attention computed naively and rearranged, and standard
softmax attention; log-log slopes fitted on the larger half of the T grid.
Times are medians of ``repeats`` runs, and their spread (max/min over the
repeats) is kept. Two fits of log time on log T: Siegel's repeated median
(robust to one stray point among four; points more than OUTLIER_FACTOR off it
are flagged) and least squares with a 95% t-interval on the slope and R^2,
from which :func:`order_verdict` says whether the timings tell O(T) from
O(T^2). :func:`separation` says, per T, whether one method's timed runs all
lie above or below another's (no claim where their ranges overlap). The CPU is
timed on one torch thread (the rule reserves every core, so nothing else
runs beside it); with ``gpu: auto`` a CUDA device, when torch sees one, is
measured too (synchronised around each run).
(ii) The norm of x_1's contribution to y_T against T for W_h with spectral
radius 0.9, 1.0, 1.1 (W_h = rho * a random orthogonal matrix, so the norm of
the contribution to h_T is exactly rho^(T-1) ||W_x x_1||).

Writes rnn_vs_attention.json, scaling.csv, scaling.svg, contribution.svg.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from attnlab.config import defaults, resolve
from attnlab.io import atomic_path, write_json
from attnlab.runtime import Progress, describe_hardware
from attnlab.theory import models
from attnlab.theory.models import LABELS, METHODS

DEFAULT_CONFIG: dict[str, Any] = defaults("theory")  # config/config.yaml, the one home of defaults

# naive and rearranged compute the same y in a different order; float32 rounding stays well inside these.
RTOL, ATOL = 1e-4, 1e-5
# A median time this far (either way) off the robust line is flagged: per-call noise on a shared
# machine stays well inside it, a cache or scheduling cliff does not.
OUTLIER_FACTOR = 1.5


def fit_slope(xs, ys) -> float:
    """Slope of log(y) against log(x), least squares."""
    return float(np.polyfit(np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float)), 1)[0])


def repeated_median_slope(xs, ys) -> tuple[float, float]:
    """Siegel's repeated-median line through (log x, log y): (slope, intercept).

    For each point the median of its slopes to every other point, then the
    median of those. Unlike least squares (or Theil-Sen on four points) one
    stray point cannot move it.
    """
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    n = len(lx)
    if n < 2:
        raise ValueError("a slope needs at least two points")
    per_point = [np.median([(ly[j] - ly[i]) / (lx[j] - lx[i]) for j in range(n) if j != i]) for i in range(n)]
    slope = float(np.median(per_point))
    return slope, float(np.median(ly - slope * lx))


def flag_outliers(xs, ys, slope: float, intercept: float, factor: float = OUTLIER_FACTOR) -> list:
    """The x whose y is more than ``factor`` times above or below the line exp(intercept) x^slope."""
    return [x for x, y in zip(xs, ys)
            if abs(math.log(y) - (intercept + slope * math.log(x))) > math.log(factor)]


# Two-sided 95% quantiles of Student's t for 1..30 degrees of freedom (standard tables; tested against a
# numerical integration of the t density). Beyond 30, the Cornish-Fisher expansion around 1.96.
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048,
         2.045, 2.042)
# A time slope decides between O(T) and O(T^2) only when its whole 95% interval lies on one side of this.
ORDER_SPLIT = 1.5


def t975(dof: int) -> float:
    if dof < 1:
        raise ValueError("a t interval needs at least one degree of freedom")
    if dof <= len(_T975):
        return _T975[dof - 1]
    z = 1.959964
    return z + (z ** 3 + z) / (4 * dof) + (5 * z ** 5 + 16 * z ** 3 + 3 * z) / (96 * dof ** 2)


def slope_fit(xs, ys) -> dict:
    """Least squares of log y on log x: slope, its 95% t-interval and R^2 ({ci95: None} with two points)."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    n = len(lx)
    if n < 2:
        raise ValueError("a slope needs at least two points")
    slope, icpt = np.polyfit(lx, ly, 1)
    resid = ly - (icpt + slope * lx)
    ss_tot = float(((ly - ly.mean()) ** 2).sum())
    r2 = 1.0 - float((resid ** 2).sum()) / ss_tot if ss_tot > 0 else 1.0
    ci = None
    if n > 2:
        se = math.sqrt(float((resid ** 2).sum()) / (n - 2) / float(((lx - lx.mean()) ** 2).sum()))
        half = t975(n - 2) * se
        ci = [float(slope - half), float(slope + half)]
    return {"slope": float(slope), "ci95": ci, "r2": r2, "n": n}


def order_verdict(fit: Mapping[str, Any], split: float = ORDER_SPLIT) -> str:
    """"linear" / "quadratic" when the slope's 95% interval lies wholly below / above ``split``, else "undecided"."""
    ci = fit.get("ci95")
    if ci is None:
        return "undecided"
    if ci[1] < split:
        return "linear"
    if ci[0] > split:
        return "quadratic"
    return "undecided"


def separation(runs_a, runs_b) -> list[int]:
    """Per T: +1 if every timed run of b is slower than every run of a, -1 if every one is faster, 0 otherwise."""
    out = []
    for a, b in zip(runs_a, runs_b):
        out.append(1 if min(b) > max(a) else -1 if max(b) < min(a) else 0)
    return out


def from_on(signs: list[int], lens: list[int], want: int):
    """The first T from which ``signs`` equals ``want`` at every longer T too; None if the last does not."""
    if not signs or signs[-1] != want:
        return None
    i = len(signs) - 1
    while i > 0 and signs[i - 1] == want:
        i -= 1
    return lens[i]


# The pairs the writeup compares: the RNN against each attention (b slower than a: +1).
COMPARED = (("rnn_loop", "attention_rearranged"), ("rnn_loop", "attention_standard"),
            ("rnn_loop", "attention_naive"))


def comparisons(seq_lens: list[int], methods: Mapping[str, Mapping[str, Any]]) -> list[dict]:
    out = []
    for a, b in COMPARED:
        if a not in methods or b not in methods:
            continue
        ra, rb = methods[a], methods[b]
        signs = separation(ra["seconds_runs"], rb["seconds_runs"])
        out.append({"a": a, "b": b, "separation": signs,
                    "ratio": [sb / sa for sa, sb in zip(ra["seconds"], rb["seconds"])],
                    "b_slower_from": from_on(signs, seq_lens, 1), "b_faster_from": from_on(signs, seq_lens, -1)})
    return out


def fit_lens(seq_lens: list[int]) -> list[int]:
    """The larger half of the grid (at least two points): small T is dominated by per-call overhead."""
    lens = sorted(seq_lens)
    return lens[min(len(lens) // 2, len(lens) - 2):]


def _time(fn, args, repeats: int, device: torch.device) -> tuple[list[float], torch.Tensor]:
    """Every repeat's seconds; on CUDA synchronised, so a time covers the kernels, not their launch."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    times, out = [], None
    for _ in range(repeats):
        sync()
        start = time.perf_counter()
        out = fn(*args)
        sync()
        times.append(time.perf_counter() - start)
    return times, out


def _time_methods(fns: dict, seq_lens: list[int], d: int, repeats: int, device: torch.device,
                  g: torch.Generator, progress: Progress) -> tuple[dict, dict, dict]:
    """(median seconds, every repeat's seconds, naive-vs-rearranged agreement) per method and T."""
    seconds = {m: [] for m in METHODS}
    runs = {m: [] for m in METHODS}
    agree = {"max_abs_diff": [], "allclose": [], "rtol": RTOL, "atol": ATOL}
    with torch.inference_mode():
        x0 = torch.randn(seq_lens[0], d, generator=g).to(device)
        for fn, w in fns.values():  # warm-up: first calls pay for allocation and kernel selection
            fn(x0, *w)
        for T in seq_lens:
            x = torch.randn(T, d, generator=g).to(device)
            outs = {}
            for m in METHODS:
                fn, w = fns[m]
                times, outs[m] = _time(fn, (x, *w), repeats, device)
                runs[m].append(times)
                seconds[m].append(float(np.median(times)))
                progress.update(T=T, method=m, seconds=seconds[m][-1])
            diff = (outs["attention_naive"] - outs["attention_rearranged"]).abs().max().item()
            agree["max_abs_diff"].append(diff)
            agree["allclose"].append(bool(torch.allclose(outs["attention_naive"], outs["attention_rearranged"],
                                                         rtol=RTOL, atol=ATOL)))
    return seconds, runs, agree


def measure_scaling(cfg: Mapping[str, Any], device: torch.device | str = "cpu") -> dict:
    device = torch.device(device)
    seq_lens, d, dh, repeats = sorted(cfg["seq_lens"]), cfg["d"], cfg["d_hidden"], cfg["repeats"]
    g = torch.Generator().manual_seed(cfg["seed"])
    # Scaled so activations stay O(1): entries ~ N(0, 1/fan_in). Drawn on the CPU, so both devices
    # time the same numbers.
    W_h = (models.random_orthogonal(dh, g, torch.float32) * 0.9).to(device)
    W_x = (torch.randn(dh, d, generator=g) / math.sqrt(d)).to(device)
    W_y = (torch.randn(d, dh, generator=g) / math.sqrt(dh)).to(device)
    Q, K, V = ((torch.randn(d, d, generator=g) / math.sqrt(d)).to(device) for _ in range(3))
    fns = {
        "rnn_loop": (models.rnn_forward, (W_h, W_x, W_y)),
        "attention_naive": (models.attention_naive, (Q, K, V)),
        "attention_rearranged": (models.attention_rearranged, (Q, K, V)),
        "attention_standard": (models.attention_standard, (Q, K, V)),
    }
    progress = Progress(len(seq_lens) * len(METHODS), f"rnn_vs_attention ({device.type})")
    threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(1)  # one thread: the RNN's steps and the attention's products on equal terms
    try:
        seconds, runs, agree = _time_methods(fns, seq_lens, d, repeats, device, g, progress)
    finally:
        torch.set_num_threads(threads)
    agree["passed"] = all(agree["allclose"])
    if not agree["passed"]:
        bad = [T for T, ok in zip(seq_lens, agree["allclose"]) if not ok]
        raise RuntimeError(f"naive and rearranged attention of eq. 3-4 disagree at T={bad} "
                           f"(max abs diff {max(agree['max_abs_diff']):.3g}); the rearrangement is wrong")

    fit = fit_lens(seq_lens)
    idx = [seq_lens.index(T) for T in fit]
    methods = {}
    for m in METHODS:
        fl = [models.flops(m, T, d, dh)["total"] for T in seq_lens]
        fit_sec = [seconds[m][i] for i in idx]
        slope, intercept = repeated_median_slope(fit, fit_sec)
        outliers = flag_outliers(fit, fit_sec, slope, intercept)
        kept = [(T, s_) for T, s_ in zip(fit, fit_sec) if T not in outliers]
        time_fit = slope_fit(fit, fit_sec)
        methods[m] = {
            "label": LABELS[m],
            "complexity": models.COMPLEXITY[m],
            "seconds": seconds[m],
            "seconds_min": [min(t) for t in runs[m]],
            "seconds_max": [max(t) for t in runs[m]],
            "seconds_runs": runs[m],
            "spread": [max(t) / min(t) for t in runs[m]],
            "flops": fl,
            "slope_seconds": slope,
            "intercept_seconds": intercept,
            "slope_seconds_lsq": fit_slope(fit, fit_sec),
            "slope_seconds_clean": fit_slope(*zip(*kept)) if len(kept) >= 2 else None,
            "time_fit": time_fit,
            "time_order": order_verdict(time_fit),
            "outliers": outliers,
            "slope_flops": fit_slope(fit, [fl[i] for i in idx]),
            "slope_flops_all": fit_slope(seq_lens, fl),
            "gflops_per_s": [f / s / 1e9 for f, s in zip(fl, seconds[m])],
        }
    return {
        "device": device.type,
        "hardware": describe_hardware(device),
        "torch_threads": 1 if device.type == "cpu" else None,
        "repeats": repeats,
        "outlier_factor": OUTLIER_FACTOR,
        "seq_lens": seq_lens,
        "fit_seq_lens": fit,
        "fit_note": "slope_seconds is the repeated-median (Siegel) slope of log(median seconds) against log(T) "
                    "over fit_seq_lens (the larger half of the grid, where per-call overhead no longer "
                    "dominates); outliers are the T there more than outlier_factor off that line; "
                    "slope_seconds_lsq is least squares on the same points, slope_seconds_clean least squares "
                    "without the outliers; slope_flops fits counted flops over fit_seq_lens, slope_flops_all "
                    "over every T",
        "seconds_note": f"median of {repeats} timed forward passes (float32, inference mode, "
                        + ("1 torch CPU thread" if device.type == "cpu"
                           else f"on {device.type}, synchronised before and after each pass")
                        + ") after one warm-up call per method",
        "flop_convention": "multiply-add = 2 flops; a reduction over n numbers = n flops; each elementwise "
                           "add/sub/mul/div/exp/max = 1 flop per element",
        "d": d,
        "d_hidden": dh,
        "methods": methods,
        "comparisons": comparisons(seq_lens, methods),
        "comparison_note": "separation[i] = +1 when every timed run of b at seq_lens[i] is slower than every run "
                           "of a, -1 when every one is faster, 0 when the ranges overlap (no claim); "
                           "b_slower_from (b_faster_from) = the first T from which it is +1 (-1) at every longer T",
        "order_note": f"time_fit: least squares of log(median seconds) on log(T) over fit_seq_lens, with a 95% "
                      f"t-interval on the slope and R^2; time_order is 'linear' ('quadratic') when that whole "
                      f"interval lies below (above) {ORDER_SPLIT}, else 'undecided': the timings cannot tell",
        "naive_equals_rearranged": agree,
    }


def _fitted_rate(lens, norms) -> float | None:
    """exp(least-squares slope of log norm against T); None once a norm over- or underflowed (no rate to fit)."""
    if not all(math.isfinite(n) and n > 0 for n in norms):
        return None
    return math.exp(float(np.polyfit(lens, np.log(norms), 1)[0]))


def measure_contribution(cfg: Mapping[str, Any]) -> dict:
    d, dh, lens = cfg["d"], cfg["d_hidden"], sorted(cfg["contribution_lens"])
    g = torch.Generator().manual_seed(cfg["seed"] + 1)
    # float64: 1.1^(T-1) and 0.9^(T-1) span many orders of magnitude.
    O = models.random_orthogonal(dh, g)
    W_x = torch.randn(dh, d, generator=g, dtype=torch.float64) / math.sqrt(d)
    W_y = torch.randn(d, dh, generator=g, dtype=torch.float64) / math.sqrt(dh)
    x1 = torch.randn(d, generator=g, dtype=torch.float64)
    base = torch.linalg.vector_norm(W_x @ x1).item()
    norms, h_norms, radius, rate, h_rate = {}, {}, {}, {}, {}
    for rho in cfg["radii"]:
        key = str(float(rho))
        W_h = rho * O
        norms[key], h_norms[key] = models.contribution_norms(W_h, W_x, W_y, x1, lens)
        radius[key] = torch.linalg.eigvals(W_h).abs().max().item()
        rate[key] = _fitted_rate(lens, norms[key])
        h_rate[key] = _fitted_rate(lens, h_norms[key])
    return {
        "lens": lens,
        "norms": norms,
        "h_norms": h_norms,
        "h_closed_form_base": base,
        "spectral_radius": radius,
        "fitted_rate": rate,
        "h_fitted_rate": h_rate,
        "note": "norms[rho][i] = ||W_y W_h^(T-1) W_x x_1|| (x_1's contribution to y_T, phi_y = identity) and "
                "h_norms = ||W_h^(T-1) W_x x_1|| = rho^(T-1) ||W_x x_1|| for W_h = rho * orthogonal; "
                "fitted_rate (h_fitted_rate) = exp(least-squares slope of log norm (log h_norm) "
                "against T)",
    }


def _load_average() -> float | None:
    """The system's 1-minute load average: how busy the machine's cores were around the CPU timings."""
    try:
        return round(os.getloadavg()[0], 2)
    except (OSError, AttributeError):  # not on every platform
        return None


def run(cfg: Mapping[str, Any] | None, out_dir: str | Path) -> dict:
    """Resolve ``cfg`` (the theory section) against DEFAULT_CONFIG, measure, and write the outputs."""
    from attnlab.theory import plots

    cfg = resolve(DEFAULT_CONFIG, cfg, "theory")
    if cfg["gpu"] is False:  # YAML 1.1 reads a bare `off` as false
        cfg = {**cfg, "gpu": "off"}
    start = time.perf_counter()
    load_before = _load_average()
    scaling = measure_scaling(cfg, "cpu")
    scaling["load_average"] = {"before": load_before, "after": _load_average()}
    # The parallelism argument is about parallel hardware: time it there too when the run has a GPU.
    scaling_gpu, gpu_error = None, None
    if cfg["gpu"] == "auto" and torch.cuda.is_available():
        try:
            scaling_gpu = measure_scaling(cfg, "cuda")
        except RuntimeError as exc:  # an extra measurement: its failure (out of memory, a driver error,
            # a numerical disagreement on this device) is recorded and reported, the CPU results stand
            gpu_error = str(exc).splitlines()[0][:300]
            print(f"[rnn_vs_attention] GPU timing failed, CPU results kept: {gpu_error}", file=sys.stderr)
    contribution = measure_contribution(cfg)
    record = {
        "scaling": scaling,
        "scaling_gpu": scaling_gpu,
        "scaling_gpu_error": gpu_error,
        "contribution": contribution,
        "config": cfg,
        "hardware": describe_hardware(torch.device("cpu")),
        "torch_threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - start, 2),
    }
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_dir / "scaling.csv") as tmp:
        write_scaling_csv([sc for sc in (scaling, scaling_gpu) if sc is not None], tmp)
    with atomic_path(out_dir / "scaling.svg") as tmp:
        plots.plot_scaling(scaling, tmp, gpu=scaling_gpu)
    with atomic_path(out_dir / "contribution.svg") as tmp:
        plots.plot_contribution(contribution, tmp)
    write_json(out_dir / "rnn_vs_attention.json", record)
    return record


def write_scaling_csv(scalings: list[dict], path: Path) -> None:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["device", "method", "seq_len", "seconds_median", "seconds_min", "seconds_max", "spread",
                    "flops", "gflops_per_s", "outlier"])
        for sc in scalings:
            for m, r in sc["methods"].items():
                for i, T in enumerate(sc["seq_lens"]):
                    w.writerow([sc["device"], m, T, f"{r['seconds'][i]:.6g}", f"{r['seconds_min'][i]:.6g}",
                                f"{r['seconds_max'][i]:.6g}", f"{r['spread'][i]:.3g}", r["flops"][i],
                                f"{r['gflops_per_s'][i]:.4g}", int(T in r["outliers"])])
