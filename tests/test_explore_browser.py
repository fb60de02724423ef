"""The tiny run's explorer pages in a real browser: headless Chromium, opened from file://, no network.

Each page must start with no console error and make no request outside
file://; a scripted click on a patch (ViT) or a token (GPT) must change what
is drawn (canvas pixels, the head view's lines); and the values the page's
own JavaScript draws for a chosen image/sequence, layer, head and query must
equal the tiny run's models (``forward(..., return_attention=True)``) to the
stated precision. Screenshots of every view land in the tiny run's results
(results/{vit,gpt}/main/attention_views/).

Needs Chromium (Debian: ``apt-get install chromium``) and playwright's Python
package, which drives it (no browser download). Without them the tests skip,
except with ATTNLAB_REQUIRE_BROWSER=1 (CI, .ci/run), where that is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import unavailable

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run"]


def _chromium() -> str | None:
    for cand in (os.environ.get("ATTNLAB_CHROMIUM"), shutil.which("chromium"), "/usr/bin/chromium"):
        if cand and Path(cand).is_file():
            return cand
    return None


def _unavailable(why: str):
    unavailable(why, "ATTNLAB_REQUIRE_BROWSER", "browser tests")


@pytest.fixture(scope="module")
def browser():
    exe = _chromium()
    if exe is None:
        _unavailable("no Chromium installed (Debian: apt-get install chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _unavailable("playwright is not installed (pip install '.[test]')")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=ARGS)
        yield b
        b.close()


class Opened:
    """A page opened from file:// in a fresh context that aborts, and records, every other request."""

    def __init__(self, browser, path: Path):
        self.requests, self.errors = [], []
        self.context = browser.new_context(viewport={"width": 1200, "height": 900})
        self.context.route("**/*", self._route)
        self.page = self.context.new_page()
        self.page.on("request", lambda r: self.requests.append(r.url))
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.goto(path.resolve().as_uri())
        self.page.wait_for_function("window.explorer !== undefined", timeout=10_000)

    def _route(self, route):
        url = route.request.url
        route.continue_() if url.startswith("file://") else route.abort()

    def js(self, expr: str):
        return self.page.evaluate(expr)

    def pixels(self, canvas: str) -> np.ndarray:
        """The canvas's RGBA pixels as drawn now."""
        data = self.js(f"""(() => {{ const c = document.querySelector('{canvas}');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let s = ''; for (let i = 0; i < d.length; i += 8192) s += String.fromCharCode(...d.subarray(i, i + 8192));
            return btoa(s); }})()""")
        return np.frombuffer(base64.b64decode(data), dtype=np.uint8)

    def close(self):
        assert self.errors == [], self.errors
        assert self.requests and all(u.startswith("file://") for u in self.requests), self.requests
        self.context.close()


def assert_close(page_row, model_row) -> None:
    """The stated precision: each weight within row max / 510 of the model's (a mean: of the rows' maxima)."""
    page_row, model_row = np.asarray(page_row, dtype=np.float64), np.asarray(model_row, dtype=np.float64)
    assert page_row.shape == model_row.shape
    assert np.all(np.abs(page_row - model_row) <= model_row.max() / 510 * 1.0001 + 1e-6), (page_row, model_row)


def changed(before: np.ndarray, after: np.ndarray) -> float:
    px = (before.reshape(-1, 4) != after.reshape(-1, 4)).any(axis=1)
    return float(px.mean())


def test_vit_page_draws_the_models_attention_and_a_clicked_patch_changes_it(tiny_run, browser):
    from attnlab.data.cifar10 import load_split
    from attnlab.vit.augment import normalize
    from attnlab.vit.heatmaps import attention_rollout, cls_attention
    from attnlab.vit.model import load_checkpoint

    res = tiny_run.workdir / "results"
    page = Opened(browser, res / "vit" / "main" / "attention.html")
    idx = page.js("DATA.images.map(i => i.index)")
    model, _ = load_checkpoint(res / "vit" / "main" / "checkpoint.pt")
    split = load_split(res / "data" / "cifar10" / "test.pt", "test")
    with torch.no_grad():
        logits, maps = model(normalize(split["images"][idx]), return_attention=True)  # (B, L, H, T, T)
    gw = page.js("DATA.grid[1]")

    # default: image 1, the class token, means over layers and heads = the homework's heatmap
    drawn = page.js("Array.from(explorer.currentMap().map)")
    ref = cls_attention(maps)[0].numpy()
    assert np.abs(np.array(drawn) - ref).max() < 0.01 * ref.max() + 1e-4

    page.page.select_option("#layer", "0")
    page.page.select_option("#head", "1")
    assert_close(page.js("Array.from(explorer.currentRow())"), maps[0, 0, 1, 0].numpy())
    before = page.pixels("#main")

    # click the patch in row 3, column 6 (1-based) of the grid: it becomes the query
    box = page.page.locator("#main").bounding_box()
    cell = box["width"] / gw
    page.page.mouse.click(box["x"] + 5.5 * cell, box["y"] + 2.5 * cell)
    q = 1 + 2 * gw + 5
    assert page.js("explorer.state.query") == q
    assert_close(page.js("Array.from(explorer.currentRow())"), maps[0, 0, 1, q].numpy())
    after = page.pixels("#main")
    assert changed(before, after) > 0.02  # the map (and the outline of the query patch) was redrawn
    assert "patch %d " % q in page.page.inner_text("#query")

    page.page.select_option("#view", "rollout")
    assert_close(page.js("Array.from(explorer.currentRow())"), attention_rollout(maps)[0, q].numpy())
    rolled = page.pixels("#main")
    page.page.fill("#opacity", "0.1")
    page.page.dispatch_event("#opacity", "input")
    assert changed(rolled, page.pixels("#main")) > 0.5  # a fainter map over the same image

    # another image from its thumbnail: its prediction with its probability beside the map
    page.page.locator("#thumbs .thumb").nth(2).click()
    assert page.js("explorer.state.image") == 2
    probs = torch.softmax(logits[2], -1)
    top = int(probs.argmax())
    first_row = page.page.locator("#probs tr").first.inner_text()
    assert page.js("DATA.classes")[top] in first_row and f"{100 * probs[top]:.1f}%" in first_row
    page.close()


@pytest.mark.parametrize("run", ["main", "narrow"])
def test_gpt_page_shows_a_clicked_tokens_attention_over_earlier_tokens_only(tiny_run, browser, run):
    from attnlab.gpt.data import load_tokenizer
    from attnlab.gpt.model import load_checkpoint

    res = tiny_run.workdir / "results"
    page = Opened(browser, res / "gpt" / run / "attention.html")
    model, _ = load_checkpoint(res / "gpt" / run / "checkpoint.pt")
    tok = load_tokenizer(res / "data" / "shakespeare" / "vocab.json", model.vocab_size)
    tokens = page.js("DATA.sequences[0].tokens")
    generation = json.loads((res / "gpt" / run / "generation.json").read_text())
    assert tokens == [tok.itos[i] for i in generation["samples"][0]["ids"][:len(tokens)]]  # the greedy sample
    with torch.no_grad():
        _, maps = model(torch.tensor([[tok.stoi[t] for t in tokens]]), return_attention=True)  # (1, L, H, T, T)
    T = len(tokens)
    L, H = maps.shape[1:3]
    assert page.page.locator("#overview > div").count() == L * (H + 1)  # every layer: its heads and their mean

    # nothing selected: every query's lines, never to a later key
    lines = page.js("explorer.lines()")
    assert {(q, k) for q, k, _ in lines} == {(q, k) for q in range(T) for k in range(q + 1)}
    before = page.pixels("#matrix")

    # hovering shows one token's lines, leaving it shows them all again
    page.page.hover('#queries text[data-i="2"]')
    assert {(qq, k) for qq, k, _ in page.js("explorer.lines()")} == {(2, 0), (2, 1), (2, 2)}
    page.page.mouse.move(1, 1)
    assert len(page.js("explorer.lines()")) == T * (T + 1) // 2

    q = min(5, T - 1)
    page.page.locator(f'#queries text[data-i="{q}"]').click()
    lines = page.js("explorer.lines()")
    assert [k for _, k, _ in lines] == list(range(q + 1)) and {qq for qq, _, _ in lines} == {q}
    assert_close([w for _, _, w in lines], maps[0, 0, :, q, :q + 1].mean(0).numpy())  # mean of heads, layer 1
    masked = page.js("[...document.querySelectorAll('#keys text.masked')].map(e => Number(e.dataset.k))")
    assert masked == list(range(q + 1, T))  # the causal mask, drawn
    assert changed(before, page.pixels("#matrix")) > 0  # the query's row is outlined

    page.page.select_option("#head", "1")
    lines = page.js("explorer.lines()")
    assert_close([w for _, _, w in lines], maps[0, 0, 1, q, :q + 1].numpy())
    page.page.locator(f'#queries text[data-i="{q}"]').click()  # let go: every query again
    assert len(page.js("explorer.lines()")) == T * (T + 1) // 2
    page.close()


def test_screenshots_of_every_view_are_kept_in_the_runs_results(tiny_run, browser):
    """Through the pipeline's own rule (explore_views), as `explore.screenshots` schedules it."""
    res = tiny_run.workdir / "results"
    expected = {"vit": {"cls_mean", "layer1_head1", "patch_query", "rollout"},
                "gpt": {"all_lines", "token_query", "last_layer_head1"}}
    folders = {family: res / family / "main" / "attention_views" for family in expected}
    targets = [str(f.relative_to(tiny_run.workdir)) for f in folders.values()]
    tiny_run.extra_env["ATTNLAB_CHROMIUM"] = _chromium()
    try:
        tiny_run.snakemake(*targets)
    finally:
        del tiny_run.extra_env["ATTNLAB_CHROMIUM"]
    for family, views in expected.items():
        pngs = {p.stem: p.read_bytes() for p in folders[family].glob("*.png")}
        assert set(pngs) == views
        assert all(b.startswith(b"\x89PNG\r\n\x1a\n") for b in pngs.values())
        assert len(set(pngs.values())) == len(views)  # each view looks different
        assert (res / "logs" / "explore_views" / f"{family}_main.log").is_file()
        print(f"\n[explore] screenshots of {family}/main/attention.html: {folders[family]}")
    # the Snakemake report of those targets carries them, with their caption
    out = tiny_run.workdir / "report-views.html"
    tiny_run.snakemake("--report", str(out), *targets)
    text = out.read_text()
    for family, views in expected.items():
        for view in views:
            assert f'"results/{family}/main/attention_views/{view}.png"' in text
    assert "taken in headless Chromium from the page on disk with the network off" in text


def test_a_page_that_asks_the_network_stops_the_screenshots_and_leaves_none(tiny_run, browser, tmp_path):
    page = tmp_path / "attention.html"
    text = (tiny_run.workdir / "results" / "vit" / "main" / "attention.html").read_text()
    page.write_text(text.replace("<body>", '<body><img src="https://example.invalid/tracker.png">', 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src"), "ATTNLAB_CHROMIUM": _chromium()}
    proc = subprocess.run([sys.executable, "-m", "attnlab.explore", "views", "--page", str(page)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2 and proc.stderr.startswith("error: ") and len(proc.stderr.splitlines()) == 1
    assert "example.invalid" in proc.stderr  # refused by the page's own policy, and named
    assert not (tmp_path / "attention_views").exists()


def test_explore_screenshots_auto_plans_them_where_a_browser_is(browser, tmp_path):
    from test_explore_pipeline import _planned_views

    env = {**os.environ, "ATTNLAB_CHROMIUM": _chromium()}
    assert _planned_views(tmp_path, "auto", env) == {"vit/main", "gpt/main"}
