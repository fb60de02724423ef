"""Figures of the rnn_vs_attention stage (matplotlib, Agg), written as SVG.

Vector figures stay sharp at any zoom in the PDF (Typst embeds SVG). A fixed
hash salt and no date make the same numbers give the same SVG bytes.
"""

from __future__ import annotations

from pathlib import Path


# RNN and rearranged attention (and naive and standard attention) nearly coincide in flops: small filled
# markers under large hollow ones, and different dashes, keep the hidden curve of each pair visible.
STYLES = [dict(marker="o", ms=4, ls="-", lw=1.6),
          dict(marker="s", ms=9, ls="-", lw=1.0, mfc="none", mew=1.2),
          dict(marker="D", ms=9, ls="--", lw=1.0, mfc="none", mew=1.2),
          dict(marker="x", ms=5, ls=":", lw=1.6)]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams["svg.hashsalt"] = "attnlab"
    return plt


def save_svg(fig, path: Path) -> None:
    fig.savefig(path, format="svg", metadata={"Date": None})


def _time_panel(ax, scaling: dict, title: str) -> None:
    T = scaling["seq_lens"]
    for (name, r), style in zip(scaling["methods"].items(), STYLES):
        # the least-squares slope the writeup's table gives (the robust one where an older record lacks it)
        slope = r.get("time_fit", {}).get("slope", r["slope_seconds"])
        (line,) = ax.loglog(T, r["seconds"], **style, label=f"{r['label']}  (slope {slope:.2f})")
        out = [(t, s) for t, s in zip(T, r["seconds"]) if t in r.get("outliers", [])]
        if out:
            ax.scatter(*zip(*out), s=110, facecolors="none", edgecolors="red", linewidths=1.2, zorder=5)
    if any(r.get("outliers") for r in scaling["methods"].values()):
        ax.scatter([], [], s=110, facecolors="none", edgecolors="red", label="flagged outlier")
    _finish_t_axes(ax, scaling, "forward time, median (s)", title)


def _finish_t_axes(ax, scaling: dict, ylabel: str, title: str) -> None:
    """Log2 T axis with the fitted range shaded, grid, legend and title: the same on every panel."""
    ax.axvspan(min(scaling["fit_seq_lens"]), max(scaling["fit_seq_lens"]), color="0.93", zorder=0)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(ylabel)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5, loc="upper left")
    ax.set_title(title, fontsize=10)


def _where(scaling: dict) -> str:
    if scaling.get("device", "cpu") == "cpu":
        n = scaling.get("torch_threads")
        return f"CPU, {n} thread{'s' if n != 1 else ''}" if n else "CPU"
    return scaling.get("hardware") or scaling["device"]


def plot_scaling(scaling: dict, path: Path, gpu: dict | None = None) -> None:
    """Log-log median seconds (CPU, and GPU when measured) and counted flops against T, slopes in the legends."""
    plt = _plt()
    T = scaling["seq_lens"]
    panels = 3 if gpu else 2
    fig, axes = plt.subplots(1, panels, figsize=(5.5 * panels, 4.8), constrained_layout=True)
    _time_panel(axes[0], scaling, f"time on {_where(scaling)} (slopes fitted over the shaded T)")
    if gpu:
        _time_panel(axes[1], gpu, f"time on {_where(gpu)}")
    ax = axes[-1]
    # naive/standard and RNN/rearranged nearly coincide in flops: distinct styles keep both visible.
    for (name, r), style in zip(scaling["methods"].items(), STYLES):
        ax.loglog(T, r["flops"], **style, label=f"{r['label']}  (slope {r['slope_flops']:.2f})")
    _finish_t_axes(ax, scaling, "floating-point operations (counted)",
                   f"counted flops (d = {scaling['d']}, d_hidden = {scaling['d_hidden']})")
    save_svg(fig, path)
    plt.close(fig)


def plot_contribution(contribution: dict, path: Path) -> None:
    """Two panels against T: the norm of x_1's contribution to y_T (log scale), and its ratio to the
    contribution to h_T, which is rho^(T-1) ||W_x x_1|| by construction (linear scale).

    The two norms nearly coincide, so drawn on one log axis one curve hides the
    other; the ratio shows on its own axis what W_y adds (a wobble, no trend).
    """
    plt = _plt()
    T = contribution["lens"]
    base = contribution["h_closed_form_base"]
    fig, (ax, axr) = plt.subplots(1, 2, figsize=(9.6, 3.9), constrained_layout=True)
    ratios = {}
    for rho, norms in contribution["norms"].items():
        rate = contribution["fitted_rate"][rho]
        (line,) = ax.semilogy(T, norms, marker="o", ms=3, label=f"spectral radius {rho}  "
                              + (f"(fitted rate {rate:.4f})" if rate is not None else "(overflowed)"))
        h = contribution.get("h_norms", {}).get(rho) or [float(rho) ** (t - 1) * base for t in T]
        ratios[rho] = ([(y / x if x and x > 0 and 0 < y < float("inf") else float("nan")) for y, x in zip(norms, h)],
                       line.get_color())
    # W_h = rho * O only rescales the state, so the ratio is the same for every rho: drawn once, said so
    curves = [r for r, _ in ratios.values()]
    same = all(all(abs(a - b) <= 1e-9 * abs(b) for a, b in zip(c, curves[0]) if a == a and b == b) for c in curves)
    if same and curves:
        axr.plot(T, curves[0], marker="o", ms=3, color="0.25", label="every spectral radius (identical)")
    else:
        for (rho, (ratio, colour)), style in zip(ratios.items(), ("-", "--", ":", "-.")):
            axr.plot(T, ratio, marker="o", ms=3, ls=style, color=colour, label=f"spectral radius {rho}")
    ax.set_xlabel("T")
    ax.set_ylabel(r"$\|W_y W_h^{T-1} W_x x_1\|$")
    ax.set_title("Contribution of $x_1$ to $y_T$", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=7.5)
    axr.set_xlabel("T")
    axr.set_ylabel(r"$\|W_y W_h^{T-1} W_x x_1\| \,/\, \|W_h^{T-1} W_x x_1\|$")
    axr.set_title(r"Its ratio to the contribution to $h_T$ ($= \rho^{T-1} \|W_x x_1\|$)", fontsize=10)
    axr.grid(True, which="major", alpha=0.3)
    axr.legend(fontsize=7.5)
    save_svg(fig, path)
    plt.close(fig)
