"""Attention maps packed small for the page, and the page assembled from its assets.

Every attention row (a query's weights over the keys) is stored as uint8
scaled by that row's own maximum, plus the scale as float32:
``weight = q * scale`` with ``scale = row_max / 255``, so each weight is
within ``row_max / 510`` of the model's (half a quantisation step). A row's
large weights, which is what the eye reads, keep three significant digits,
at a quarter of float32's size (a ViT run's default page: ~1.5 MB).

Format inside the page (``<script type="application/json" id="attnlab-data">``):
``{"q": base64 of uint8 rows, "scale": base64 of little-endian float32, one
per row}``; the family's metadata says how rows are laid out.
"""

from __future__ import annotations

import base64
import json
import re
from importlib import resources

import numpy as np
import torch

_ASSETS = resources.files("attnlab.explore") / "assets"


def pack_rows(rows: torch.Tensor) -> dict:
    """Attention rows (..., K), non-negative -> {"q", "scale"} as above, rows in C order."""
    a = rows.detach().float().cpu().reshape(-1, rows.shape[-1]).numpy()
    if (a < 0).any() or not np.isfinite(a).all():
        raise ValueError("attention weights must be finite and non-negative")
    top = a.max(axis=1, keepdims=True)
    scale = (top / 255.0).astype("<f4")
    safe = np.where(scale > 0, scale, 1.0)  # an all-zero row stays zero
    q = np.clip(np.rint(a / safe), 0, 255).astype(np.uint8)
    return {"q": b64(q.tobytes()), "scale": b64(scale.tobytes())}


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _asset(name: str, inlined: bool = True) -> str:
    """An asset's text; one inlined verbatim must not hold "</script", which would end its element early."""
    text = (_ASSETS / name).read_text(encoding="utf-8")
    if inlined and "</script" in text.lower():
        raise ValueError(f"asset {name} contains '</script', which would end the inline script")
    return text


def json_for_script(obj) -> str:
    """JSON safe inside a <script> element: <, > and & escaped, so no data (a token, a class name) can end it."""
    text = json.dumps(obj, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def render_page(family: str, title: str, data: dict) -> str:
    """The whole page: skeleton + the family's body markup, styles, scripts and data, all inline."""
    html = _asset("page.html", inlined=False)
    parts = {
        "TITLE": _escape_html(title),
        "STYLE": _asset("page.css"),
        "BODY": _asset(f"{family}.html"),
        "DATA": json_for_script(data),
        "SCRIPT": _asset("common.js") + "\n" + _asset(f"{family}.js"),
    }
    # one pass, so text substituted in (a token that reads "@@SCRIPT@@") is never substituted again
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], html)


def _escape_html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
