"""The ViT's attention explorer page (rule ``explore_vit``).

    python -m attnlab.explore vit --checkpoint CKPT --data SOURCE --out HTML [--n-images N] [--run NAME]

Takes the same test images as ``attnlab.vit.heatmaps`` (one per class in
turn, ``vit.heatmaps.n_images`` of them), runs the checkpoint once with
``return_attention=True`` and inlines, per image, every layer's and head's
full attention matrix (all queries, so any patch can be the query), the
attention rollout matrix, the image itself and the predicted probabilities.

Page data (``pack`` explains the row format): ``attention`` holds rows in
the order (image, layer, head, query), each over the 1 + N keys (key 0 is the
class token); ``rollout`` rows in the order (image, query).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

from attnlab.cli import stage_parser
from attnlab.errors import cli_main
from attnlab.explore.pack import b64, pack_rows, render_page
from attnlab.io import write_text
from attnlab.vit.augment import normalize
from attnlab.vit.heatmaps import attention_rollout, shown_images


def page_data(checkpoint: str | Path, data: str | Path, n_images: int | None = None, run: str | None = None,
              device: str = "auto") -> dict:
    """Everything the page shows, as JSON-ready values."""
    model, ckpt, dev, classes, labels, idx, imgs, _ = shown_images(checkpoint, data, n_images, device)
    with torch.no_grad():
        logits, maps = model(normalize(imgs.to(dev)), return_attention=True)  # maps (B, L, H, T, T)
    probs = torch.softmax(logits.float(), dim=-1).cpu()
    B, L, H, T, _ = maps.shape
    p = model.patch_embed.patch_size
    grid = [imgs.shape[-2] // p, imgs.shape[-1] // p]
    images = []
    for k, i in enumerate(idx):
        images.append({
            "index": int(i), "true": classes[int(labels[i])],
            "probs": [round(float(v), 5) for v in probs[k]],
            "pixels": b64(imgs[k].permute(1, 2, 0).contiguous().numpy().tobytes()),  # (H, W, 3) RGB
        })
    return {
        "family": "vit", "run": run or Path(checkpoint).parent.name, "epoch": ckpt.get("epoch"),
        "classes": classes, "size": [int(imgs.shape[-2]), int(imgs.shape[-1])], "patch": p, "grid": grid,
        "layers": L, "heads": H, "tokens": T, "images": images,
        "attention": pack_rows(maps),
        "rollout": pack_rows(attention_rollout(maps)),  # (B, T, T): heads averaged, residual added, layers chained
    }


def build(checkpoint: str | Path, data: str | Path, out: str | Path, n_images: int | None = None,
          run: str | None = None, device: str = "auto") -> dict:
    """Write the page to ``out`` (atomically); returns its data."""
    d = page_data(checkpoint, data, n_images, run, device)
    write_text(out, render_page("vit", f"ViT attention explorer: run {d['run']}", d))
    return d


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.explore vit", __doc__, "vit-checkpoint", "cifar-test", "n-images", "device")
    ap.add_argument("--out", required=True, help="the page to write (attention.html)")
    ap.add_argument("--run", default=None, help="run name shown on the page (default: the checkpoint's folder)")
    args = ap.parse_args(argv)
    d = build(args.checkpoint, args.data, args.out, args.n_images, args.run, args.device)
    print(f"wrote {args.out}: {len(d['images'])} images, {d['layers']} layers x {d['heads']} heads, "
          f"{Path(args.out).stat().st_size / 1e6:.2f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
