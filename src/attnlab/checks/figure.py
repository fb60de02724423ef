"""attention_mask.png: the starter code's test-3 mask beside the attention map it produces."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def plot_mask_and_attention(mask: np.ndarray, A: np.ndarray, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    T = mask.shape[0]
    fig, axes = plt.subplots(1, 2, figsize=(9, 4.4), constrained_layout=True)
    panels = (
        (axes[0], mask, "attn_mask (1 = may attend)", "Greys", "{:.0f}"),
        (axes[1], A, "A of one AttentionHead (rows sum to 1)", "viridis", "{:.2f}"),
    )
    for ax, data, title, cmap, fmt in panels:
        im = ax.imshow(data, cmap=cmap, vmin=0, vmax=1)
        for i in range(T):
            for j in range(T):
                v = data[i, j]
                ax.text(j, i, fmt.format(v), ha="center", va="center", fontsize=8,
                        color="white" if (v > 0.5) == (cmap == "Greys") else "black")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("key j")
        ax.set_ylabel("query i")
        ax.set_xticks(range(T))
        ax.set_yticks(range(T))
        fig.colorbar(im, ax=ax, shrink=0.8)
    fig.suptitle("Each token attends only to itself and the token before it", fontsize=11)
    fig.savefig(path, dpi=130, format="png")
    plt.close(fig)
