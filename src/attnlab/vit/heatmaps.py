"""Where the class token looks: attention heatmaps, attention rollout and numbers describing them.

``python -m attnlab.vit.heatmaps --checkpoint CKPT --data SOURCE --out-dir DIR [--n-images 10]``
takes one test image per class and writes
- ``heatmaps.png``: the starter code's view, the class token's attention to
  every patch averaged over all heads and layers; per image the image itself
  (true and predicted labels), the map upsampled and alpha-blended over it,
  and the plain map at patch resolution, on one colour scale with a colour bar;
- ``rollout.png``: attention rollout (Abnar & Zuidema 2020): per layer average
  the heads, add the identity for the residual path, renormalise the rows,
  and multiply the layers together, so the class token's row says how much each
  input patch flows into its final representation;
- ``heatmap_stats.json``: per image and on average, how much of that attention
  falls on the central patches, on the border ring and on the "object"
  patches (the half of the patches whose mean colour is farthest from the
  mean colour of the border ring: a crude, label-free stand-in for the
  object), and its entropy. Each statistic has two baselines: the uniform map,
  and the maps of an untrained model (the same architecture built with the
  run's seed, never trained) on the same images. ``tests`` holds, for the
  trained maps against each baseline, an exact paired sign-flip permutation
  test over the images (:func:`sign_flip_p`).
"""

from __future__ import annotations

import itertools
import math
import sys
from pathlib import Path
from typing import NamedTuple

import torch

from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.io import atomic_path, write_json
from attnlab.runtime import pick_device
from attnlab.vit.augment import normalize
from attnlab.vit.model import VisionTransformer, load_checkpoint

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


def map_stats(p: Tensor, grid_h: int, grid_w: int, objects: Tensor | None = None) -> dict:
    """Centre mass, border mass and entropy (nats) of patch distributions p (B, N) summing to 1; with
    ``objects`` (B, N) bool (:func:`object_masks`) also the mass on those patches."""
    center, border = region_masks(grid_h, grid_w)
    p = p.cpu().double()
    entropy = -(p * p.clamp_min(1e-12).log()).sum(dim=-1)
    out = {"center_mass": p[:, center].sum(dim=-1), "border_mass": p[:, border].sum(dim=-1), "entropy": entropy}
    if objects is not None:
        out["object_mass"] = (p * objects.cpu().double()).sum(dim=-1)
    return out


def object_masks(images: Tensor, patch: int) -> Tensor:
    """images (B, C, H, W) -> (B, N) bool: the N // 2 patches whose mean colour is farthest (Euclidean) from
    the mean colour of the image's border ring of patches; a crude, label-free stand-in for the object."""
    x = images.float()
    means = torch.nn.functional.avg_pool2d(x, patch)  # (B, C, gh, gw): each patch's mean colour
    B, C, gh, gw = means.shape
    _, border = region_masks(gh, gw)
    colours = means.flatten(2).transpose(1, 2)  # (B, N, C)
    background = colours[:, border].mean(dim=1, keepdim=True)  # (B, 1, C)
    dist = (colours - background).norm(dim=-1)  # (B, N)
    order = dist.argsort(dim=-1, descending=True, stable=True)
    mask = torch.zeros_like(dist, dtype=torch.bool)
    mask.scatter_(1, order[:, : (gh * gw) // 2], True)
    return mask


def binomial_p(k: int, n: int, q: float = 0.5) -> float:
    """Two-sided exact binomial p-value of k successes in n trials of probability q (twice the smaller tail)."""
    pmf = [math.comb(n, i) * q ** i * (1 - q) ** (n - i) for i in range(n + 1)]
    return min(1.0, 2 * min(sum(pmf[k:]), sum(pmf[: k + 1])))


def sign_flip_p(diffs, max_exact: int = 16, draws: int = 20000, seed: int = 0) -> float:
    """Two-sided p-value of a zero mean paired difference: the share of sign flips of ``diffs`` whose mean is
    at least as far from zero as the observed one (all 2^n flips up to ``max_exact`` images, else ``draws``
    seeded random ones). With n images it cannot go below 2 / 2^n."""
    d = torch.as_tensor(list(diffs), dtype=torch.float64)
    n = len(d)
    if n == 0:
        raise ValueError("no paired differences to test")
    observed = abs(float(d.mean()))
    tol = 1e-12 * max(1.0, observed)
    if n <= max_exact:
        signs = torch.tensor(list(itertools.product((1.0, -1.0), repeat=n)), dtype=torch.float64)
    else:
        g = torch.Generator().manual_seed(seed)
        signs = torch.randint(0, 2, (draws, n), generator=g).double() * 2 - 1
    means = (signs * d).mean(dim=1).abs()
    return float((means >= observed - tol).double().mean())


def pick_images(labels: Tensor, n_images: int, n_classes: int) -> list[int]:
    """The first test image of each class in turn (class 0, 1, ..., then second images), n_images in all."""
    by_class = [torch.nonzero(labels == c).flatten().tolist() for c in range(n_classes)]
    picked, rank = [], 0
    while len(picked) < n_images and any(rank < len(ix) for ix in by_class):
        picked += [ix[rank] for ix in by_class if rank < len(ix)]
        rank += 1
    return picked[:n_images]


def plot_overlays(images: Tensor, heat: Tensor, titles: list[str], title: str, path: Path,
                  per_image_scale: bool = False, alpha: float = 0.5,
                  subtitles: list[str] | None = None) -> tuple[float, float]:
    """Per image: the image, the map over it, the plain map; one colour bar. Returns the colour scale (vmin, vmax).

    heat (B, gh, gw) holds each patch's share of the attention (each map sums
    to 1). The overlay upsamples the map bilinearly to the image's pixels and
    blends it over the image with opacity ``alpha``, so one sees what lies
    under the attention; the plain map beside it is drawn at patch resolution
    (one cell per patch, nothing interpolated), so one sees what was measured.
    One colour scale serves the whole figure, from the smallest to the largest
    share of any patch in it, so colours compare across images and a nearly
    flat map still shows its structure; the colour bar, with the uniform share
    1/N marked, says how small that structure is. ``subtitles`` go over the
    overlays (default "overlay"). With ``per_image_scale`` each map gets its
    own scale.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    B = images.shape[0]
    H, W = images.shape[-2:]
    gh, gw = heat.shape[-2:]
    uniform = 1.0 / (gh * gw)
    heat = heat.float().cpu()
    up = torch.nn.functional.interpolate(heat[:, None], size=(H, W), mode="bilinear", align_corners=False)[:, 0]
    vmin, vmax = float(heat.min()), float(heat.max())
    per_row = min(B, 2)  # images per row, three panels each
    rows = math.ceil(B / per_row)
    fig, axes = plt.subplots(rows, 3 * per_row, figsize=(2.45 * 3 * per_row / 2 + 0.9, 1.45 * rows + 0.6),
                             squeeze=False, constrained_layout=True)
    for ax in axes.flat:
        ax.axis("off")
    im = None
    for i in range(B):
        r, c = i // per_row, 3 * (i % per_row)
        img = images[i].permute(1, 2, 0).cpu().numpy()
        lo, hi = (float(heat[i].min()), float(heat[i].max())) if per_image_scale else (vmin, vmax)
        axes[r, c].imshow(img, interpolation="nearest")
        axes[r, c].set_title(titles[i], fontsize=6.5)
        axes[r, c + 1].imshow(img, interpolation="nearest")
        axes[r, c + 1].imshow(up[i].numpy(), cmap="viridis", vmin=lo, vmax=hi, alpha=alpha,
                              interpolation="nearest")
        axes[r, c + 1].set_title(subtitles[i] if subtitles else "overlay", fontsize=6.5)
        im = axes[r, c + 2].imshow(heat[i].numpy(), cmap="viridis", vmin=lo, vmax=hi, interpolation="nearest")
        axes[r, c + 2].set_title("map", fontsize=6.5)
        if per_image_scale:
            fig.colorbar(im, ax=axes[r, c + 2], fraction=0.046, pad=0.02).ax.tick_params(labelsize=6)
    if not per_image_scale and im is not None:
        cb = fig.colorbar(im, ax=axes, location="right", shrink=0.6, pad=0.02)
        cb.set_label("attention share per patch", fontsize=8)
        cb.ax.axhline(uniform, color="white", lw=1.5)
        cb.ax.axhline(uniform, color="black", lw=0.8, ls="--")
        cb.ax.tick_params(labelsize=7)
        if vmin < uniform < vmin + 0.85 * (vmax - vmin):  # near the top it would sit on the tick labels
            cb.ax.text(-0.15, uniform, "1/N ", transform=cb.ax.get_yaxis_transform(), fontsize=6.5,
                       va="center", ha="right", clip_on=False)
    fig.suptitle(title, fontsize=9)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=150)
    plt.close(fig)
    return vmin, vmax


STATS = ("center_mass", "border_mass", "object_mass", "entropy")


def _summary(stats: dict, grid_h: int, grid_w: int, prefix: str = "") -> dict:
    center, border = region_masks(grid_h, grid_w)
    n = grid_h * grid_w
    out = {
        f"{prefix}mean_center_mass": stats["center_mass"].mean().item(),
        f"{prefix}uniform_center_mass": center.sum().item() / n,
        f"{prefix}mean_border_mass": stats["border_mass"].mean().item(),
        f"{prefix}uniform_border_mass": border.sum().item() / n,
        f"{prefix}mean_entropy": stats["entropy"].mean().item(),
        f"{prefix}max_entropy": math.log(n),
    }
    if "object_mass" in stats:
        out[f"{prefix}mean_object_mass"] = stats["object_mass"].mean().item()
        out[f"{prefix}uniform_object_mass"] = (n // 2) / n
    return out


def untrained_model(ckpt: dict) -> VisionTransformer:
    """The run's architecture built with the run's seed, as its trainer builds it, and never trained."""
    seed = int(((ckpt.get("config") or {}).get("train") or {}).get("seed", 0))
    with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG alone
        torch.manual_seed(seed)
        return VisionTransformer(**ckpt["model_config"]).eval()


def _maps(model, x: Tensor) -> tuple[Tensor, Tensor, Tensor, float]:
    """logits (B, K), class-token attention (B, N), its rollout row (B, N) on the CPU, and the class token's
    mean attention to itself."""
    with torch.no_grad():
        logits, maps = model(x, return_attention=True)  # maps (B, L, H, T, T)
    return logits.cpu(), cls_attention(maps).cpu(), rollout_cls(maps).cpu(), maps[:, :, :, 0, 0].float().mean().item()


def compare(trained: dict, untrained: dict, uniform: dict) -> dict:
    """Per statistic: the trained maps' mean beside the untrained model's and the uniform map's, with the
    sign-flip p-values of the paired per-image differences from each."""
    out = {}
    for stat in STATS:
        if stat not in trained:
            continue
        t, u = trained[stat], untrained[stat]
        out[stat] = {"trained": t.mean().item(), "untrained": u.mean().item(), "uniform": uniform[stat],
                     "p_vs_untrained": sign_flip_p((t - u).tolist()),
                     "p_vs_uniform": sign_flip_p((t - uniform[stat]).tolist())}
    return out


def peak_test(on_object: list[bool]) -> dict:
    """How often the most-attended patch is an "object" patch, against the half of the patches they are."""
    k, n = sum(on_object), len(on_object)
    return {"count": k, "n": n, "chance": 0.5, "p": binomial_p(k, n)}


class Shown(NamedTuple):
    """A checkpoint's model and the test images its heatmaps show."""

    model: VisionTransformer  # in eval mode, on ``device``
    ckpt: dict
    device: torch.device
    classes: list[str]
    labels: Tensor  # (N,) every test label
    index: list[int]  # the shown images' places in the test split
    images: Tensor  # uint8 (B, 3, H, W), the shown images
    source: str  # where the test split came from


def shown_images(checkpoint: str | Path, data: str | Path, n_images: int | None = None,
                 device: str = "auto") -> Shown:
    """The model of ``checkpoint`` and ``n_images`` test images of ``data`` (default: the run's
    heatmaps.n_images), picked class by class (:func:`pick_images`)."""
    from attnlab.data.cifar10 import load_split

    dev = pick_device(device)
    model, ckpt = load_checkpoint(checkpoint)
    model.to(dev)
    if n_images is None:
        n_images = ckpt.get("config", {}).get("heatmaps", {}).get("n_images", 10)
    if n_images < 1:
        raise ValueError(f"n_images must be at least 1, got {n_images}")
    split = load_split(data, "test")
    classes = list(split["classes"])
    labels = split["labels"].long()
    idx = pick_images(labels, n_images, len(classes))
    return Shown(model, ckpt, dev, classes, labels, idx, split["images"][idx], str(split.get("source", data)))


def heatmaps(checkpoint: str | Path, data: str | Path, out_dir: str | Path, n_images: int | None = None,
             device: str = "auto") -> dict:
    """Draw heatmaps.png and rollout.png and write heatmap_stats.json into out_dir; returns the stats."""
    model, ckpt, dev, classes, labels, idx, imgs, source = shown_images(checkpoint, data, n_images, device)
    x = normalize(imgs.to(dev))
    logits, cls_map, roll, self_attention = _maps(model, x)
    _, cls_map0, roll0, _ = _maps(untrained_model(ckpt).to(dev), x)
    preds = logits.argmax(dim=1)
    p = model.patch_embed.patch_size
    gh, gw = imgs.shape[-2] // p, imgs.shape[-1] // p
    objects = object_masks(imgs, p)
    s_cls, s_roll = map_stats(cls_map, gh, gw, objects), map_stats(roll, gh, gw, objects)
    s_cls0, s_roll0 = map_stats(cls_map0, gh, gw, objects), map_stats(roll0, gh, gw, objects)
    center, border = region_masks(gh, gw)
    n = gh * gw
    uniform = {"center_mass": center.sum().item() / n, "border_mass": border.sum().item() / n,
               "object_mass": (n // 2) / n, "entropy": math.log(n)}
    records = []
    for k, i in enumerate(idx):
        peak = int(cls_map[k].argmax())
        rec = {"index": i, "true": classes[labels[i]], "pred": classes[preds[k]], "peak": [peak // gw, peak % gw],
               "peak_on_object": bool(objects[k, peak])}
        for stat in STATS:
            rec[stat] = s_cls[stat][k].item()
            rec[f"untrained_{stat}"] = s_cls0[stat][k].item()
            rec[f"rollout_{stat}"] = s_roll[stat][k].item()
        records.append(rec)
    summary = {**_summary(s_cls, gh, gw), **_summary(s_roll, gh, gw, "rollout_"),
               **{f"untrained_mean_{k}": v.mean().item() for k, v in s_cls0.items()},
               "n_images": len(idx), "grid": [gh, gw],
               "correct": int((preds == labels[idx]).sum()), "mean_cls_self_attention": self_attention}
    result = {"images": records, "summary": summary, "source": source,
              "checkpoint": str(checkpoint),
              "tests": {"attention": compare(s_cls, s_cls0, uniform), "rollout": compare(s_roll, s_roll0, uniform),
                        "peak_on_object": peak_test([r["peak_on_object"] for r in records])},
              "definitions": {"center": "patches in the middle half of the grid on both axes",
                              "border": "the outermost ring of patches",
                              "object": "per image, the half of the patches whose mean colour is farthest "
                                        "(Euclidean, RGB) from the mean colour of the border ring: a crude, "
                                        "label-free stand-in for the object",
                              "entropy": "nats, of the class token's attention renormalised over the patches",
                              "untrained": "the same architecture built with the run's seed and never trained, "
                                           "on the same images",
                              "peak": "[row, column] of the patch with the most attention; peak_on_object: "
                                      "whether it is an object patch (tests.peak_on_object: how often, with a "
                                      "two-sided exact binomial test against one half)",
                              "tests": "two-sided exact paired sign-flip permutation test over the images of a "
                                       "zero mean difference (trained minus baseline), per statistic"}}
    out_dir = Path(out_dir)
    titles = [f"#{r['index']}  {r['true']}" for r in records]
    subtitles = [f"predicted: {r['pred']}" for r in records]
    scale = plot_overlays(imgs, cls_map.view(-1, gh, gw), titles, "class-token attention, mean over heads and "
                          "layers", out_dir / "heatmaps.png", subtitles=subtitles)
    scale_roll = plot_overlays(imgs, roll.view(-1, gh, gw), titles, "attention rollout (Abnar & Zuidema)",
                               out_dir / "rollout.png", subtitles=subtitles)
    # the writeup quotes the colour scales next to the figures
    summary["colour_scale"] = list(scale)
    summary["rollout_colour_scale"] = list(scale_roll)
    write_json(out_dir / "heatmap_stats.json", result)
    return result


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.vit.heatmaps", __doc__, "vit-checkpoint", "cifar-test", "n-images", "device")
    ap.add_argument("--out-dir", required=True, help="folder for heatmaps.png, rollout.png, heatmap_stats.json")
    args = ap.parse_args(argv)
    result = heatmaps(args.checkpoint, args.data, args.out_dir, args.n_images, args.device)
    s = result["summary"]
    print(f"class-token attention: centre mass {s['mean_center_mass']:.3f} (uniform {s['uniform_center_mass']:.3f}), "
          f"entropy {s['mean_entropy']:.3f} (max {s['max_entropy']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
