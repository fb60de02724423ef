"""The attention explorer pages (attnlab.explore), read back in Python: values, offline-ness, size, errors.

The pages are built here from small seeded models; the values they carry are
decoded from the HTML by the format the page documents (uint8 rows times a
float32 scale per row), independently of the package's own packing code, and
compared with the models' ``forward(..., return_attention=True)``. The browser
side (the page's JavaScript) is tests/test_explore_browser.py.
"""

from __future__ import annotations

import base64
import html.parser
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from attnlab.explore import gpt as xg
from attnlab.explore import vit as xv
from attnlab.explore.pack import pack_rows

torch.set_num_threads(2)
ROOT = Path(__file__).resolve().parents[1]
MEAN = torch.tensor([0.4914, 0.4822, 0.4465]).view(1, 3, 1, 1)
STD = torch.tensor([0.2470, 0.2435, 0.2616]).view(1, 3, 1, 1)


# ------------------------------------------------------------------ decoding
def page_data(path: Path) -> dict:
    text = Path(path).read_text(encoding="utf-8")
    m = re.search(r'<script type="application/json" id="attnlab-data">(.*?)</script>', text, re.S)
    assert m, "the page holds no data element"
    return json.loads(m.group(1))


def rows(packed: dict, row_len: int) -> np.ndarray:
    """The page's weights: uint8 * per-row float32 scale, (n_rows, row_len)."""
    q = np.frombuffer(base64.b64decode(packed["q"]), dtype=np.uint8).reshape(-1, row_len)
    scale = np.frombuffer(base64.b64decode(packed["scale"]), dtype="<f4")
    assert scale.shape == (q.shape[0],)
    return q.astype(np.float64) * scale[:, None]


def close_to_model(page: np.ndarray, model: np.ndarray) -> None:
    """The stated precision: each weight within half a step (row max / 510) of the model's, float32 rounding aside."""
    model = model.reshape(page.shape).astype(np.float64)
    tol = model.max(axis=1, keepdims=True) / 510 * (1 + 1e-5) + 1e-7
    assert np.all(np.abs(page - model) <= tol), float((np.abs(page - model) - tol).max())


# ---------------------------------------------------------------- fixtures
VIT_CFG = dict(img_size=32, patch_size=8, dim=32, depth=2, heads=2, mlp_ratio=2.0, num_classes=10)


def write_vit_checkpoint(path: Path, cfg=VIT_CFG, seed=0, n_images=3) -> torch.nn.Module:
    from attnlab.vit.model import VisionTransformer

    torch.manual_seed(seed)
    model = VisionTransformer(**cfg).eval()
    with torch.no_grad():  # sharper than at initialisation, so the maps and predictions differ visibly
        for p in model.parameters():
            p.mul_(8.0 if p.dim() > 1 else 1.0)
    torch.save({"family": "vit", "model_config": cfg, "state_dict": model.state_dict(),
                "config": {"heatmaps": {"n_images": n_images}}, "epoch": 3}, path)
    return model


@pytest.fixture(scope="module")
def vit_case(tmp_path_factory):
    from tinydata import make_cifar_tarball

    base = tmp_path_factory.mktemp("explore_vit")
    make_cifar_tarball(base / "cifar.tar.gz", n_per_class_train=1, n_per_class_test=2)
    model = write_vit_checkpoint(base / "checkpoint.pt")
    out = base / "attention.html"
    xv.build(base / "checkpoint.pt", base / "cifar.tar.gz", out, n_images=5, run="main", device="cpu")
    return {"base": base, "model": model, "page": out, "data": base / "cifar.tar.gz"}


def write_gpt_case(base: Path, vocab_tokens=None, d_model=32, n_heads=2, n_layers=2, max_len=48,
                   seq_len=12, n_val=5):
    """A seeded DialogueGPT, its vocab.json and dialogues.pt, and a generation.json, all made here."""
    from attnlab.data.tokenizer import MyTokenizer
    from attnlab.gpt.model import DialogueGPT

    words = vocab_tokens or [f"w{i}" for i in range(40)] + ["ROMEO", ":", "JULIET", "First", "Citizen"]
    tok = MyTokenizer(words)
    tok.save(base / "vocab.json")
    g = torch.Generator().manual_seed(1)
    V = len(tok)
    val = [torch.cat([torch.tensor([tok.start_id]), torch.randint(3, V, (seq_len + 3 * i,), generator=g)])
           for i in range(n_val)]
    torch.save({"train": val[:1], "val": val, "train_chars": 1, "val_chars": 1, "start_id": tok.start_id,
                "pad_id": tok.pad_id, "unk_id": tok.unk_id, "vocab_size": V}, base / "dialogues.pt")
    cfg = dict(vocab_size=V, d_model=d_model, n_heads=n_heads, n_layers=n_layers, max_len=max_len, pad_id=tok.pad_id)
    torch.manual_seed(0)
    model = DialogueGPT(**cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "W_Q" in name or "W_K" in name:
                p.mul_(6.0)  # peaked attention, so rows differ between heads and queries
    torch.save({"family": "gpt", "model_config": cfg, "state_dict": model.state_dict(), "epoch": 2},
               base / "checkpoint.pt")
    samples = [{"prompt": p, "text": "", "ids": [tok.start_id] + torch.randint(3, V, (seq_len,), generator=g).tolist()}
               for p in ("ROMEO:", "JULIET:", "First Citizen:")]
    (base / "generation.json").write_text(json.dumps({"samples": samples}))
    return model, tok, val, samples


@pytest.fixture(scope="module")
def gpt_case(tmp_path_factory):
    base = tmp_path_factory.mktemp("explore_gpt")
    model, tok, val, samples = write_gpt_case(base)
    out = base / "attention.html"
    xg.build(base / "checkpoint.pt", base / "vocab.json", base / "dialogues.pt", base / "generation.json", out,
             n_dialogues=3, max_tokens=15, run="main", device="cpu")
    return {"base": base, "model": model, "tok": tok, "val": val, "samples": samples, "page": out}


# ------------------------------------------------------------------- values
def test_packing_is_the_row_max_scaled_uint8_of_a_hand_computation():
    a = torch.tensor([[0.0, 0.2, 0.5, 0.3], [0.1, 0.1, 0.1, 0.7], [0.0, 0.0, 0.0, 0.0]])
    packed = pack_rows(a)
    q = np.frombuffer(base64.b64decode(packed["q"]), dtype=np.uint8).reshape(3, 4)
    scale = np.frombuffer(base64.b64decode(packed["scale"]), dtype="<f4")
    # 0.2 / 0.5 * 255 = 102, 0.3 / 0.5 * 255 = 153; 0.1 / 0.7 * 255 = 36.43 -> 36
    assert q.tolist() == [[0, 102, 255, 153], [36, 36, 36, 255], [0, 0, 0, 0]]
    assert np.allclose(scale, [0.5 / 255, 0.7 / 255, 0.0])
    with pytest.raises(ValueError):
        pack_rows(torch.tensor([[0.5, -0.1]]))


def test_vit_page_holds_the_models_attention_rollout_images_and_probabilities(vit_case):
    from attnlab.data.cifar10 import load_split
    from attnlab.vit.heatmaps import attention_rollout, cls_attention

    d = page_data(vit_case["page"])
    split = load_split(vit_case["data"], "test")
    idx = [img["index"] for img in d["images"]]
    assert len(idx) == 5 and len(set(split["labels"][idx].tolist())) == 5  # one image per class, as the heatmaps
    imgs = split["images"][idx]
    with torch.no_grad():
        logits, maps = vit_case["model"]((imgs.float() / 255 - MEAN) / STD, return_attention=True)
    B, L, H, T, _ = maps.shape
    assert (d["layers"], d["heads"], d["tokens"], d["grid"]) == (2, 2, 17, [4, 4])
    attn = rows(d["attention"], T)
    close_to_model(attn, maps.numpy())
    close_to_model(rows(d["rollout"], T), attention_rollout(maps).numpy())
    # what the page draws by default (class token, mean of layers and heads, renormalised over the patches)
    # is the homework's heatmap, attnlab.vit.heatmaps.cls_attention, to the stated precision
    a = attn.reshape(B, L, H, T, T)[:, :, :, 0, 1:].mean(axis=(1, 2))
    drawn, ref = a / a.sum(axis=1, keepdims=True), cls_attention(maps).numpy()
    # each averaged weight is off by at most eps, so the renormalised one by eps * (1 + N * share) / patch sum
    eps = maps[:, :, :, 0].amax(dim=(1, 2, 3)).numpy()[:, None] / 510
    patch_sum = maps[:, :, :, 0, 1:].mean(dim=(1, 2)).sum(-1).numpy()[:, None]
    assert np.all(np.abs(drawn - ref) <= 1.01 * eps * (1 + (T - 1) * ref) / (patch_sum - (T - 1) * eps))
    assert np.allclose([img["probs"] for img in d["images"]], torch.softmax(logits, -1).numpy(), atol=1e-5)
    for k, img in enumerate(d["images"]):
        px = np.frombuffer(base64.b64decode(img["pixels"]), dtype=np.uint8).reshape(32, 32, 3)
        assert np.array_equal(px, imgs[k].permute(1, 2, 0).numpy())
        assert img["true"] == split["classes"][split["labels"][idx[k]]]
    # one layer and head, one query, exactly: the row the page draws for layer 2, head 1, patch 6
    row = attn.reshape(B, L, H, T, T)[3, 1, 0, 6]
    ref = maps[3, 1, 0, 6].numpy()
    assert np.abs(row - ref).max() <= ref.max() / 510 + 1e-7


def test_gpt_page_holds_each_sequences_causal_attention(gpt_case):
    d = page_data(gpt_case["page"])
    model, tok = gpt_case["model"], gpt_case["tok"]
    labels = [s["label"] for s in d["sequences"]]
    assert labels == ["greedy sample: ROMEO:", "greedy sample: JULIET:", "greedy sample: First Citizen:",
                      "validation dialogue 1 of 5", "validation dialogue 2 of 5", "validation dialogue 3 of 5"]
    ids_all = [s["ids"] for s in gpt_case["samples"]] + [v.tolist() for v in gpt_case["val"][:3]]
    assert (d["layers"], d["heads"], d["max_tokens"]) == (2, 2, 15)
    for seq, ids in zip(d["sequences"], ids_all):
        ids = ids[:15]  # --max-tokens
        assert seq["tokens"] == [tok.itos[i] for i in ids]
        T = len(ids)
        with torch.no_grad():
            _, maps = model(torch.tensor([ids]), return_attention=True)
        page = rows(seq["attention"], T)
        close_to_model(page, maps[0].numpy())
        # the causal mask: no weight at all on a later token
        m = page.reshape(2, 2, T, T)
        assert np.all(m[..., np.triu_indices(T, 1)[0], np.triu_indices(T, 1)[1]] == 0)
        assert np.allclose(m.sum(-1), 1, atol=T / 510)
    assert len(ids_all[0]) < 15 < len(ids_all[4])  # short sequences kept whole, long ones cut


# ---------------------------------------------------------------- offline
class Sources(html.parser.HTMLParser):
    """Every URL-bearing attribute of the page's elements."""

    URL_ATTRS = {"src", "href", "srcset", "poster", "action", "data", "xlink:href", "formaction", "background"}

    def __init__(self):
        super().__init__()
        self.urls, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.urls += [v or "" for k, v in attrs if k in self.URL_ATTRS]


@pytest.mark.parametrize("case", ["vit_case", "gpt_case"])
def test_pages_have_no_remote_script_link_or_image_source(case, request):
    text = request.getfixturevalue(case)["page"].read_text(encoding="utf-8")
    parser = Sources()
    parser.feed(text)
    assert parser.urls == []  # nothing is loaded from anywhere: scripts, styles, images are inline
    assert "link" not in parser.tags and "img" not in parser.tags and "iframe" not in parser.tags
    assert not re.search(r"url\s*\(|@import", text)  # no CSS fetches either
    assert "http://" not in text and "https://" not in text and "//cdn" not in text
    # and the browser is told to refuse any request the page could make
    assert "default-src 'none'" in text
    scripts = re.findall(r"<script\b([^>]*)>", text)
    assert all("src" not in attrs for attrs in scripts) and len(scripts) == 2


def test_a_hostile_token_cannot_break_out_of_the_data(tmp_path):
    evil = "</script><script>alert(1)</script>"
    write_gpt_case(tmp_path, vocab_tokens=[evil, "@@SCRIPT@@", "a", "b", "c", "ROMEO", ":", "JULIET", "First", "Citizen"], seq_len=6, n_val=2)
    out = tmp_path / "attention.html"
    xg.build(tmp_path / "checkpoint.pt", tmp_path / "vocab.json", tmp_path / "dialogues.pt",
             tmp_path / "generation.json", out, device="cpu")
    text = out.read_text()
    assert evil not in text and text.count("</script>") == 2
    tokens = {t for s in page_data(out)["sequences"] for t in s["tokens"]}
    assert evil in tokens or "@@SCRIPT@@" in tokens  # the hostile words made it into the data, escaped
    # a token that reads like a template slot stays a token: substituted text is never substituted again
    assert text.count("Shared by both explorer pages") == 1


# -------------------------------------------------------------------- size
def test_default_config_pages_stay_under_5_mb(tmp_path):
    """The GPU preset's shapes (config/config.yaml): ViT dim 256, 7 layers, 4 heads, 10 images; GPT 4x4, 7 x 64 tokens."""
    from tinydata import make_cifar_tarball

    from attnlab.config import defaults

    v, g = defaults("vit"), defaults("gpt")
    make_cifar_tarball(tmp_path / "cifar.tar.gz", n_per_class_train=1, n_per_class_test=1)
    cfg = {k: v["model"][k] for k in ("img_size", "patch_size", "dim", "depth", "heads", "mlp_ratio")}
    write_vit_checkpoint(tmp_path / "vit.pt", dict(cfg, num_classes=10), n_images=v["heatmaps"]["n_images"])
    d = xv.build(tmp_path / "vit.pt", tmp_path / "cifar.tar.gz", tmp_path / "vit.html", device="cpu")
    assert len(d["images"]) == 10 and d["layers"] == 7 and d["tokens"] == 65
    base = tmp_path / "gpt"
    base.mkdir()
    m = g["model"]
    write_gpt_case(base, d_model=m["d_model"], n_heads=m["n_heads"], n_layers=m["n_layers"], max_len=m["max_len"],
                   seq_len=80, n_val=4)
    xg.build(base / "checkpoint.pt", base / "vocab.json", base / "dialogues.pt", base / "generation.json",
             tmp_path / "gpt.html", device="cpu")
    sizes = {name: (tmp_path / f"{name}.html").stat().st_size for name in ("vit", "gpt")}
    print(f"\n[explore] default-config page sizes: {sizes}")
    assert all(size < 5_000_000 for size in sizes.values()), sizes
    assert sizes["vit"] > 10 * 7 * 4 * 65 * 65 * 4 / 3  # every map of every image really is in it


# ------------------------------------------------------------------ errors
def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {"PYTHONPATH": str(ROOT / "src"), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "attnlab.explore", *args], cwd=cwd, capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_errors_are_one_line_and_leave_no_page(vit_case, gpt_case, tmp_path):
    out = tmp_path / "attention.html"
    g = gpt_case["base"]
    (tmp_path / "bad.json").write_text('{"samples": [{"prompt": "x"}]}')
    cases = [
        ("vit", "--checkpoint", str(tmp_path / "missing.pt"), "--data", str(vit_case["data"]), "--out", str(out)),
        ("vit", "--checkpoint", str(g / "checkpoint.pt"), "--data", str(vit_case["data"]), "--out", str(out)),
        ("gpt", "--checkpoint", str(g / "checkpoint.pt"), "--vocab", str(g / "vocab.json"), "--dialogues",
         str(g / "dialogues.pt"), "--generation", str(tmp_path / "bad.json"), "--out", str(out)),
        ("gpt", "--checkpoint", str(vit_case["base"] / "checkpoint.pt"), "--vocab", str(g / "vocab.json"),
         "--dialogues", str(g / "dialogues.pt"), "--generation", str(g / "generation.json"), "--out", str(out)),
        ("nonsense",),
    ]
    for args in cases:
        proc = run_cli(*args, cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, proc.stderr)
        assert not out.exists() and not list(tmp_path.glob(".attention.html.*"))
    for family in ("vit", "gpt", "views"):
        proc = run_cli(family, "--help", cwd=tmp_path)
        assert proc.returncode == 0 and ("--out" in proc.stdout or "--page" in proc.stdout), proc.stderr
