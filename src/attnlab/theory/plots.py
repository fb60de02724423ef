"""Figures of the rnn_vs_attention stage (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path


STYLES = [dict(marker="o", ms=4, ls="-"), dict(marker="s", ms=4, ls="-"),
          dict(marker="^", ms=4, ls="--"), dict(marker="x", ms=5, ls=":")]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_scaling(scaling: dict, path: Path) -> None:
    """Log-log seconds and flops against T, one line per method, fitted slopes in the legend."""
    plt = _plt()
    T = scaling["seq_lens"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4), constrained_layout=True)
    for ax, key, slope_key, ylabel in ((axes[0], "seconds", "slope_seconds", "forward time (s)"),
                                       (axes[1], "flops", "slope_flops", "floating-point operations")):
        # naive/standard and RNN/rearranged nearly coincide in flops: distinct styles keep both visible.
        for (name, r), style in zip(scaling["methods"].items(), STYLES):
            ax.loglog(T, r[key], **style, label=f"{r['label']}  (slope {r[slope_key]:.2f})")
        ax.axvspan(min(scaling["fit_seq_lens"]), max(scaling["fit_seq_lens"]), color="0.93", zorder=0)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("sequence length T")
        ax.set_ylabel(ylabel)
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=7.5, loc="upper left")
    axes[0].set_title("time (slopes fitted over the shaded T)", fontsize=10)
    axes[1].set_title(f"counted flops (d = {scaling['d']}, d_hidden = {scaling['d_hidden']})", fontsize=10)
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)


def plot_contribution(contribution: dict, path: Path) -> None:
    """Semilogy ||contribution of x_1 to y_T|| against T, with the rho^(T-1) law for reference."""
    plt = _plt()
    T = contribution["lens"]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), constrained_layout=True)
    base = contribution["h_closed_form_base"]
    for rho, norms in contribution["norms"].items():
        (line,) = ax.semilogy(T, norms, marker="o", ms=3,
                              label=f"spectral radius {rho}  (fitted rate {contribution['fitted_rate'][rho]:.3f})")
        ax.semilogy(T, [float(rho) ** (t - 1) * base for t in T], ls="--", lw=0.8, color=line.get_color())
    ax.plot([], [], ls="--", lw=0.8, color="0.4", label=r"$\rho^{T-1}\,\|W_x x_1\|$")
    ax.set_xlabel("T")
    ax.set_ylabel(r"$\|W_y W_h^{T-1} W_x x_1\|$")
    ax.set_title("Contribution of $x_1$ to $y_T$ in a linear RNN", fontsize=10)
    ax.grid(True, which="major", alpha=0.3)
    ax.legend(fontsize=8)
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)
