"""Screenshots of every view of an explorer page, taken in headless Chromium with no network.

    python -m attnlab.explore views --page results/vit/main/attention.html [--out-dir DIR] [--chromium PATH]

writes one PNG per view into ``DIR`` (default: ``attention_views/`` beside the
page): for the ViT the class token's mean map, one layer and head, a patch as
the query, and the rollout; for the GPT the head view with every line, one
token clicked (its attention over the earlier tokens, the later ones masked),
and the last layer's first head. The pages are opened from ``file://`` with
the browser offline and every other request aborted; a page that logs an
error or asks for anything stops the command. Needs the ``playwright`` Python
package and a Chromium (Debian: ``apt-get install chromium``); playwright's
own browser download is not used.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

from attnlab.cli import stage_parser
from attnlab.errors import AttnlabError, cli_main

# Chromium runs as root in CI and containers (no sandbox there), and must not phone home.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-default-apps"]


class BrowserError(AttnlabError, RuntimeError):
    """No browser to run, or a page that misbehaved in it; the message is one line for the user."""


def find_chromium(explicit: str | None = None) -> str:
    for cand in (explicit, os.environ.get("ATTNLAB_CHROMIUM"), shutil.which("chromium"),
                 shutil.which("chromium-browser")):
        if cand and Path(cand).is_file():
            return cand
    raise BrowserError("no Chromium found; install it (Debian: apt-get install chromium) or pass --chromium PATH")


@contextlib.contextmanager
def offline_page(html: str | Path, chromium: str | None = None) -> Iterator:
    """A playwright page showing ``html`` from file://, offline; raises BrowserError if it errs or asks the network."""
    try:
        from playwright.sync_api import Error as PlaywrightError
        from playwright.sync_api import sync_playwright
    except ImportError:
        raise BrowserError("screenshots need the playwright package: pip install playwright") from None
    errors, foreign = [], []

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            foreign.append(r.request.url)
            r.abort()

    with sync_playwright() as pw:
        exe = find_chromium(chromium)
        try:
            browser = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        except PlaywrightError as exc:
            raise BrowserError(f"{exe} did not start: {str(exc).splitlines()[0]}") from None
        try:
            ctx = browser.new_context(viewport={"width": 1200, "height": 900}, offline=True)
            ctx.route("**/*", route)
            page = ctx.new_page()
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.goto(Path(html).resolve().as_uri())
            try:
                page.wait_for_function("window.explorer !== undefined", timeout=10_000)
            except PlaywrightError:
                raise BrowserError(f"{html}: the page did not start (console errors: {errors})") from None
            yield page
            if errors or foreign:
                raise BrowserError(f"{html}: console errors {errors}, requests outside file:// {foreign}")
        finally:
            browser.close()


def _vit_views(page) -> Iterator[str]:
    yield "cls_mean"
    page.select_option("#layer", "0")
    page.select_option("#head", "0")
    yield "layer1_head1"
    box = page.locator("#main").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.55, box["y"] + box["height"] * 0.45)  # a patch near the centre
    yield "patch_query"
    page.click("#cls")
    page.select_option("#view", "rollout")
    yield "rollout"


def _gpt_views(page) -> Iterator[str]:
    yield "all_lines"
    tokens = page.locator("#queries text")
    tokens.nth(tokens.count() // 2).click()
    yield "token_query"
    page.select_option("#layer", str(page.evaluate("DATA.layers") - 1))
    page.select_option("#head", "0")
    page.uncheck("#perrow")
    yield "last_layer_head1"


def screenshots(html: str | Path, out_dir: str | Path | None = None, chromium: str | None = None) -> list[Path]:
    """Write one PNG per view of the page ``html``; returns their paths."""
    from attnlab.io import atomic_path

    html = Path(html)
    if not html.is_file():
        raise FileNotFoundError(f"page {html} does not exist; build it with python -m attnlab.explore vit|gpt")
    out_dir = Path(out_dir) if out_dir else html.parent / "attention_views"
    shots = {}
    with offline_page(html, chromium) as page:
        family = page.evaluate("DATA.family")
        for name in (_vit_views if family == "vit" else _gpt_views)(page):
            shots[name] = page.screenshot(full_page=True)
    # written only once the page has behaved all the way through
    written = []
    for name, png in shots.items():
        with atomic_path(out_dir / f"{name}.png") as tmp:
            tmp.write_bytes(png)
        written.append(out_dir / f"{name}.png")
    return written


@cli_main
def main(argv: list[str] | None = None) -> int:
    ap = stage_parser("attnlab.explore views", __doc__)
    ap.add_argument("--page", required=True, help="an attention.html written by python -m attnlab.explore")
    ap.add_argument("--out-dir", default=None, help="default: attention_views/ beside the page")
    ap.add_argument("--chromium", default=None, help="the browser (default: $ATTNLAB_CHROMIUM, then chromium on PATH)")
    args = ap.parse_args(argv)
    paths = screenshots(args.page, args.out_dir, args.chromium)
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
