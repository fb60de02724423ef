"""The explorer pages in the pipeline: built for every run, rebuilt only when their inputs or code change,
and carried by ``snakemake --report`` with their captions (on the shared finished tiny run); their screenshots
planned as ``explore.screenshots`` says."""

from __future__ import annotations

import base64
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from test_pipeline import edited

pytestmark = pytest.mark.slow

EXPLORE = tuple(f"src/attnlab/explore/{name}" for name in ("assets/vit.js", "assets/page.css"))


def test_every_run_has_its_page_log_and_benchmark(tiny_run):
    res = tiny_run.workdir / "results"
    tiny = yaml.safe_load(tiny_run.config.read_text())
    pages = [res / "vit" / "main" / "attention.html"] + [res / "gpt" / run / "attention.html" for run in tiny["gpt"]["runs"]]
    for page in pages:
        text = page.read_text()
        assert text.startswith("<!DOCTYPE html>") and '"family":"%s"' % page.parts[-3] in text
        rule, run = f"explore_{page.parts[-3]}", page.parts[-2]
        assert (res / "logs" / rule / f"{run}.log").is_file()
        assert (res / "benchmarks" / rule / f"{run}.tsv").read_text().startswith("s\t")
        print(f"\n[explore] tiny {page.relative_to(res)}: {page.stat().st_size / 1e3:.1f} kB")


@pytest.mark.parametrize("asset", EXPLORE)
def test_editing_what_the_pages_inline_rebuilds_the_pages_alone(tiny_run, asset):
    with edited(tiny_run.repo / asset, b"\n/* edited by a test */\n"):
        assert tiny_run.plan() == {"explore_vit": 1, "explore_gpt": 2, "all": 1}


def test_editing_the_page_code_rebuilds_that_familys_pages_alone(tiny_run):
    with edited(tiny_run.repo / "src" / "attnlab" / "explore" / "gpt.py"):
        assert tiny_run.plan() == {"explore_gpt": 2, "all": 1}
    with edited(tiny_run.repo / "src" / "attnlab" / "explore" / "pack.py"):
        assert tiny_run.plan() == {"explore_vit": 1, "explore_gpt": 2, "all": 1}
    with edited(tiny_run.repo / "src" / "attnlab" / "explore" / "vit.py", b"\n# only a comment\n"):
        assert tiny_run.plan() == {}


def test_changed_data_or_checkpoint_rebuild_the_pages(tiny_run, tmp_path):
    # more heatmap images: the ViT page shows them too (and the writeup prints the config)
    extra = tmp_path / "n.yaml"
    extra.write_text(yaml.safe_dump({"vit": {"heatmaps": {"n_images": 3}}}))
    assert set(tiny_run.plan(configfiles=(extra,))) == {"vit_heatmaps", "explore_vit", "report", "all"}
    # new greedy samples: the GPT pages show them
    extra.write_text(yaml.safe_dump({"gpt": {"generate": {"num_tokens": 6}}}))
    assert tiny_run.plan(configfiles=(extra,)) == {"generate_gpt": 2, "explore_gpt": 2, "report": 1, "all": 1}
    # a retrained checkpoint (a new ViT seed) rebuilds the ViT page, not the GPT ones
    extra.write_text(yaml.safe_dump({"vit": {"train": {"seed": 5}}}))
    plan = tiny_run.plan(configfiles=(extra,))
    assert "explore_vit" in plan and "explore_gpt" not in plan


def test_snakemake_report_carries_each_page_with_its_caption(tiny_run, tmp_path):
    out = tmp_path / "report.html"
    tiny_run.snakemake("--report", str(out))
    text = out.read_text()
    res = tiny_run.workdir / "results"
    for family, run, caption in [("vit", "main", "ViT run"), ("gpt", "main", "DialogueGPT run"),
                                 ("gpt", "narrow", "DialogueGPT run")]:
        key = f'"results/{family}/{run}/attention.html": '
        assert key in text, f"{key} is not in the report"
        entry = text[text.index(key) + len(key):]
        m = re.match(r'\{.*?"caption": (".*?(?<!\\)").*?"data_uri": "data:text/html;[^"]*?base64,([^"]+)"', entry, re.S)
        assert m, entry[:400]
        assert json.loads(m.group(1)).startswith(f"<p>{caption} <tt") and "interactive attention explorer" in m.group(1)
        assert base64.b64decode(m.group(2)) == (res / family / run / "attention.html").read_bytes()



def _views_of(output: str) -> set[str]:
    """'family/run' of each explore_views job in a dry run's output."""
    jobs = set()
    for block in re.split(r"\n(?=rule \w+:)", output)[1:]:
        if block.startswith("rule explore_views:"):
            wildcards = re.search(r"^\s+wildcards: (.*)$", block, re.M).group(1)
            wc = dict(re.findall(r"(\w+)=([\w.-]+)", wildcards))
            jobs.add(f"{wc['family']}/{wc['run']}")
    return jobs


def _planned_views(tmp_path, screenshots, env: dict | None = None) -> set[str]:
    """The explore_views jobs a dry run of the default target plans on a fresh folder."""
    from test_planning import dry_run

    proc = dry_run(tmp_path, yaml.safe_dump({"explore": {"screenshots": screenshots}}), timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout[-3000:]
    return _views_of(proc.stdout)


def test_explore_screenshots_true_plans_a_job_per_page_and_false_none(tmp_path):
    assert _planned_views(tmp_path, True) == {"vit/main", "gpt/main"}  # the default config's one run each
    assert _planned_views(tmp_path, False) == set()


def test_explore_screenshots_auto_plans_none_without_a_browser(tmp_path):
    # PATH: every program of this one but Chromium; no $ATTNLAB_CHROMIUM: auto means off
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    for folder in os.environ["PATH"].split(os.pathsep):
        for prog in Path(folder).glob("*") if Path(folder).is_dir() else ():
            if "chromium" not in prog.name and not (bin_ / prog.name).exists():
                (bin_ / prog.name).symlink_to(prog)
    env = {k: v for k, v in os.environ.items() if k != "ATTNLAB_CHROMIUM"} | {"PATH": str(bin_)}
    assert _planned_views(tmp_path, "auto", env) == set()
