"""Where the class token looks: attention heatmaps, attention rollout and numbers describing them.

``python -m attnlab.vit.heatmaps --checkpoint CKPT --data SOURCE --out-dir DIR [--n-images 10]``
takes one test image per class and writes
- ``heatmaps.png``: the seed's view, the class token's attention to every
  patch averaged over all heads and layers, drawn per patch next to the image
  with the true and predicted labels, on one colour scale with a colour bar;
- ``rollout.png``: attention rollout (Abnar & Zuidema 2020): per layer average
  the heads, add the identity for the residual path, renormalise the rows,
  and multiply the layers together, so the class token's row says how much each
  input patch flows into its final representation;
- ``heatmap_stats.json``: per image and on average, how much of that attention
  falls on the central patches and on the border ring, and its entropy, each
  next to the value a uniform map would give.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

from attnlab.errors import cli_main
from attnlab.io import atomic_path, write_json
from attnlab.runtime import pick_device
from attnlab.vit.augment import normalize
from attnlab.vit.model import load_checkpoint

Tensor = torch.Tensor


def cls_attention(maps: Tensor) -> Tensor:
    """maps (B, L, H, T, T) -> class token's attention to the N = T-1 patches, mean over layers and heads (B, N).

    Renormalised over the patches (the class token's attention to itself is left out).
    """
    a = maps[:, :, :, 0, 1:].float().mean(dim=(1, 2))
    return a / a.sum(dim=-1, keepdim=True)


def attention_rollout(maps: Tensor) -> Tensor:
    """maps (B, L, H, T, T) -> rollout (B, T, T) = Â_L ... Â_1 with Â_l = rownorm(mean_heads(A_l) + I)."""
    A = maps.float().mean(dim=2)  # (B, L, T, T)
    A = A + torch.eye(A.shape[-1], device=A.device)
    A = A / A.sum(dim=-1, keepdim=True)
    R = A[:, 0]
    for layer in range(1, A.shape[1]):
        R = A[:, layer] @ R  # later layers act on what earlier layers mixed
    return R


def rollout_cls(maps: Tensor) -> Tensor:
    """Class token's rollout row over the patches (B, N), renormalised over the patches."""
    r = attention_rollout(maps)[:, 0, 1:]
    return r / r.sum(dim=-1, keepdim=True)


def region_masks(grid_h: int, grid_w: int) -> tuple[Tensor, Tensor]:
    """Boolean (N,) masks of the central patches (the middle half of each side) and of the outer ring."""
    ys, xs = torch.meshgrid(torch.arange(grid_h), torch.arange(grid_w), indexing="ij")
    cy0, cy1 = grid_h // 4, grid_h - grid_h // 4
    cx0, cx1 = grid_w // 4, grid_w - grid_w // 4
    center = (ys >= cy0) & (ys < cy1) & (xs >= cx0) & (xs < cx1)
    border = (ys == 0) | (ys == grid_h - 1) | (xs == 0) | (xs == grid_w - 1)
    return center.flatten(), border.flatten()


def map_stats(p: Tensor, grid_h: int, grid_w: int) -> dict:
    """Centre mass, border mass and entropy (nats) of patch distributions p (B, N) summing to 1."""
    center, border = region_masks(grid_h, grid_w)
    p = p.cpu().double()
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
    return {"center_mass": p[:, center].sum(dim=-1), "border_mass": p[:, border].sum(dim=-1), "entropy": entropy}


def pick_images(labels: Tensor, n_images: int, n_classes: int) -> list[int]:
    """The first test image of each class in turn (class 0, 1, ..., then second images), n_images in all."""
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(n_classes)]
    picked, rank = [], 0
    while len(picked) < n_images and any(rank < len(ix) for ix in by_class):
        picked += [ix[rank] for ix in by_class if rank < len(ix)]
        rank += 1
    return picked[:n_images]


def plot_overlays(images: Tensor, heat: Tensor, titles: list[str], title: str, path: Path,
                  per_image_scale: bool = False) -> tuple[float, float]:
    """Each image with its attention map right next to it, and a colour bar; returns the colour scale (vmin, vmax).

    heat (B, gh, gw) holds each patch's share of the attention (each map sums
    to 1). The map is drawn at patch resolution (one cell per patch, nothing
    interpolated) so a reader sees what was measured. One colour scale serves
    the whole figure, 0 to the largest share of any patch in it, so colours
    compare across images; the colour bar marks the uniform share 1/N. With
    ``per_image_scale`` each map gets its own scale and its own colour bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B = images.shape[0]
    gh, gw = heat.shape[-2:]
    uniform = 1.0 / (gh * gw)
    heat = heat.float().cpu()
    vmin, vmax = 0.0, float(heat.max())
    pairs = min(B, 2)  # image-map pairs per row
    rows = math.ceil(B / pairs)
    fig, axes = plt.subplots(rows, 2 * pairs, figsize=(3.3 * pairs + 1.0, 1.75 * rows + 0.6), squeeze=False,
                             constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    im = None
    for i in range(B):
        r, c = i // pairs, 2 * (i % pairs)
        axes[r, c].imshow(images[i].permute(1, 2, 0).cpu().numpy(), interpolation="nearest")
        axes[r, c].set_title(titles[i], fontsize=7.5)
        lo, hi = (float(heat[i].min()), float(heat[i].max())) if per_image_scale else (vmin, vmax)
        im = axes[r, c + 1].imshow(heat[i].numpy(), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        axes[r, c + 1].set_title("attention", fontsize=7.5)
        if per_image_scale:
            fig.colorbar(im, ax=axes[r, c + 1], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    if not per_image_scale and im is not None:
        cb = fig.colorbar(im, ax=axes, location="right", shrink=0.6, pad=0.02)
        cb.set_label("attention share per patch", fontsize=8)
        cb.ax.axhline(uniform, color="white", lw=1.5)
        cb.ax.axhline(uniform, color="black", lw=0.8, ls="--")
        cb.ax.tick_params(labelsize=7)
        if uniform < 0.85 * vmax:  # near the top it would sit on the tick labels; the caption names the mark
            cb.ax.text(-0.15, uniform, "1/N ", transform=cb.ax.get_yaxis_transform(), fontsize=6.5,
                       va="center", ha="right", clip_on=False)
    fig.suptitle(title, fontsize=10)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
    return vmin, vmax


def _summary(stats: dict, grid_h: int, grid_w: int, prefix: str = "") -> dict:
    center, border = region_masks(grid_h, grid_w)
    n = grid_h * grid_w
    return {
        f"{prefix}mean_center_mass": stats["center_mass"].mean().item(),
        f"{prefix}uniform_center_mass": center.sum().item() / n,
        f"{prefix}mean_border_mass": stats["border_mass"].mean().item(),
        f"{prefix}uniform_border_mass": border.sum().item() / n,
        f"{prefix}mean_entropy": stats["entropy"].mean().item(),
        f"{prefix}max_entropy": math.log(n),
    }


def heatmaps(checkpoint: str | Path, data: str | Path, out_dir: str | Path, n_images: int | None = None,
             device: str = "auto") -> dict:
    """Draw heatmaps.png and rollout.png and write heatmap_stats.json into out_dir; returns the stats."""
    from attnlab.data.cifar10 import load_split

    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    if n_images is None:
        n_images = ckpt.get("config", {}).get("heatmaps", {}).get("n_images", 10)
    split = load_split(data, "test")
    classes = list(split["classes"])
    labels = split["labels"].long()
    idx = pick_images(labels, n_images, len(classes))
    imgs = split["images"][idx]  # uint8 (B, 3, H, W)
    with torch.no_grad():
        logits, maps = model(normalize(imgs.to(dev)), return_attention=True)  # maps (B, L, H, T, T)
    preds = logits.argmax(dim=1).cpu()
    p = model.patch_embed.patch_size
    gh, gw = imgs.shape[-2] // p, imgs.shape[-1] // p
    cls_map, roll = cls_attention(maps).cpu(), rollout_cls(maps).cpu()
    s_cls, s_roll = map_stats(cls_map, gh, gw), map_stats(roll, gh, gw)
    records = []
    for k, i in enumerate(idx):
        records.append({
            "index": i, "true": classes[labels[i]], "pred": classes[preds[k]],
            "center_mass": s_cls["center_mass"][k].item(), "border_mass": s_cls["border_mass"][k].item(),
            "entropy": s_cls["entropy"][k].item(),
            "rollout_center_mass": s_roll["center_mass"][k].item(),
            "rollout_border_mass": s_roll["border_mass"][k].item(),
            "rollout_entropy": s_roll["entropy"][k].item(),
        })
    summary = {**_summary(s_cls, gh, gw), **_summary(s_roll, gh, gw, "rollout_"),
               "n_images": len(idx), "grid": [gh, gw],
               "correct": int((preds == labels[idx]).sum()),
               "mean_cls_self_attention": maps[:, :, :, 0, 0].float().mean().item()}
    result = {"images": records, "summary": summary, "source": str(split.get("source", data)),
              "checkpoint": str(checkpoint),
              "definitions": {"center": "patches in the middle half of the grid on both axes",
                              "border": "the outermost ring of patches",
                              "entropy": "nats, of the class token's attention renormalised over the patches"}}
    out_dir = Path(out_dir)
    titles = [f"#{r['index']}  true: {r['true']}\npred: {r['pred']}" for r in records]
    scale = plot_overlays(imgs, cls_map.view(-1, gh, gw), titles,
                          "class-token attention, mean over heads and layers", out_dir / "heatmaps.png")
    scale_roll = plot_overlays(imgs, roll.view(-1, gh, gw), titles, "attention rollout (Abnar & Zuidema)",
                               out_dir / "rollout.png")
    # the writeup quotes the colour scales next to the figures
    summary["colour_scale"] = list(scale)
    summary["rollout_colour_scale"] = list(scale_roll)
    write_json(out_dir / "heatmap_stats.json", result)
    return result


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m attnlab.vit.heatmaps", description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="checkpoint.pt written by attnlab.vit.train")
    ap.add_argument("--data", required=True, help="any CIFAR-10 source; images come from its test split")
    ap.add_argument("--out-dir", required=True, help="folder for heatmaps.png, rollout.png, heatmap_stats.json")
    ap.add_argument("--n-images", type=int, default=None, help="default: the run's heatmaps.n_images (10)")
    ap.add_argument("--device", default="auto")
    args = ap.parse_args(argv)
    result = heatmaps(args.checkpoint, args.data, args.out_dir, args.n_images, args.device)
    s = result["summary"]
    print(f"class-token attention: centre mass {s['mean_center_mass']:.3f} (uniform {s['uniform_center_mass']:.3f}), "
          f"entropy {s['mean_entropy']:.3f} (max {s['max_entropy']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
