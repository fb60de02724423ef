"""What planning refuses before any job, and what a stage CLI refuses in a config file (issue 22).

* A YAML alias bomb ("billion laughs") in ``--configfile``: refused in seconds, naming the key.
* A data source inside results/ (which the pipeline writes, and Snakemake deletes to regenerate):
  refused naming the key, and the file is still there afterwards.
* In-range sizes whose product cannot fit in memory: refused naming the keys; the estimate is a
  lower bound of what a real training step keeps for its backward pass.
* ``vit.model.img_size`` other than CIFAR-10's 32: refused naming the key.
* YAML tags, aliases that expand too far, self-references and nesting too deep, in a stage
  CLI's ``--config``: one ConfigError line naming the file.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from attnlab.config import MAX_CONFIG_VALUES, ConfigError, describe, load_config_file, schema

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "workflow" / "lib"))
import configcheck  # noqa: E402

from test_schema import CONFIG, _merge  # noqa: E402


def dry_run(tmp_path: Path, text: str, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """``snakemake -n`` of the default target in a fresh folder, with ``text`` as an extra config file."""
    extra = tmp_path / "extra.yaml"
    extra.write_text(text)
    (tmp_path / "work").mkdir(exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "snakemake", "-s", str(ROOT / "Snakefile"), "-d", str(tmp_path / "work"),
         "-n", "--cores", "1", "--configfile", str(extra)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout, env=env)


def billion_laughs(key: str, levels: int = 9) -> str:
    """A ~1 kB YAML file whose ``key`` expands to 9**levels strings through nested aliases."""
    lines = ['l0: &l0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for i in range(1, levels):
        lines.append(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]")
    section, leaf = key.split(".")
    lines.append(f"{section}: {{{leaf}: *l{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_an_alias_bomb_in_a_configfile_is_refused_in_seconds(tmp_path):
    start = time.perf_counter()
    proc = dry_run(tmp_path, billion_laughs("report.title"), timeout=90)
    seconds = time.perf_counter() - start
    assert proc.returncode != 0
    line = next(x for x in proc.stdout.splitlines() if "through YAML aliases" in x)
    assert "config key 'l" in line and f"at most {MAX_CONFIG_VALUES:,}" in line  # the first anchor past the limit
    assert "Building DAG" not in proc.stdout
    assert seconds < 60, f"planning took {seconds:.0f} s"  # it hung for > 90 s before the check


def test_aliases_that_stay_small_are_fine(tmp_path):
    proc = dry_run(tmp_path, 'p: &p ["ROMEO:", "JULIET:"]\ngpt: {train: {prompts: *p}, generate: {prompts: *p}}\n')
    # the top-level helper key `p` is then refused by the schema, naming it: the aliases themselves passed
    assert "config key 'p' is not a known key" in proc.stdout, proc.stdout[-2000:]
    assert "through YAML aliases" not in proc.stdout


@pytest.mark.parametrize("where", ["results/data/shakespeare/input.txt", "results", "./results/../results/x.txt",
                                   "link-into-results.txt"])
def test_a_data_source_inside_results_is_refused_and_kept(tmp_path, where):
    work = tmp_path / "work"
    victim = work / "results" / "data" / "shakespeare" / "input.txt"
    victim.parent.mkdir(parents=True)
    victim.write_text("First Citizen:\nmy own copy\n")
    (work / "results" / "x.txt").write_text("x")
    (work / "link-into-results.txt").symlink_to(victim)  # leads into results/ though its own path does not
    proc = dry_run(tmp_path, yaml.safe_dump({"data": {"shakespeare": {"path": where}}}))
    assert proc.returncode != 0
    line = next(x for x in proc.stdout.splitlines() if "config key 'data.shakespeare.path'" in x)
    assert f"= {where!r} lies inside results/" in line and "keep data sources outside results/" in line
    assert "Building DAG" not in proc.stdout
    assert victim.read_text() == "First Citizen:\nmy own copy\n"


def test_a_data_source_beside_results_plans(tmp_path):
    work = tmp_path / "work"
    (work / "data").mkdir(parents=True)
    (work / "data" / "input.txt").write_text("First Citizen:\nhi\n\nSecond Citizen:\nho\n")
    (work / "results-old").mkdir()  # a name that only starts like results/
    (work / "results-old" / "input.txt").write_text("x")
    for where in ("data/input.txt", "results-old/input.txt"):
        proc = dry_run(tmp_path, yaml.safe_dump({"data": {"shakespeare": {"path": where}}}))
        assert proc.returncode == 0, proc.stdout[-3000:]


def test_in_range_sizes_whose_product_cannot_fit_are_refused_naming_the_keys(tmp_path):
    huge = {"vit": {"model": {"dim": 8192, "depth": 512, "heads": 8}, "train": {"batch_size": 65536}},
            "gpt": {"runs": {"main": {}, "long": {"model": {"max_len": 16384}, "train": {"batch_size": 4096}}}}}
    assert describe(_merge(CONFIG, huge), schema()) == []  # every value is in range
    proc = dry_run(tmp_path, yaml.safe_dump(huge))
    assert proc.returncode != 0
    lines = [x.strip() for x in proc.stdout.splitlines() if "together need at least" in x]
    assert len(lines) == 2, proc.stdout[-3000:]
    vit, gpt = lines
    assert vit.startswith("config keys 'vit.train.batch_size', 'vit.model.img_size', 'vit.model.patch_size', "
                          "'vit.model.dim', 'vit.model.depth' together need at least")
    assert "50000 images x 65 tokens" in vit  # the batch can hold no more than CIFAR-10's 50,000 images
    assert gpt.startswith("config keys 'gpt.runs.long.train.batch_size', 'gpt.runs.long.model.max_len', "
                          "'gpt.model.d_model', 'gpt.model.n_layers'") and "run 'long'" in gpt
    assert "Building DAG" not in proc.stdout


def test_the_shipped_presets_fit_a_small_machine():
    for preset in (None, "cpu.yaml", "tiny.yaml"):
        merged = _merge(CONFIG, yaml.safe_load((ROOT / "config" / preset).read_text())) if preset else CONFIG
        assert configcheck.describe_memory(merged, available=4 * 2**30) == [], preset  # a 4 GiB laptop


def _saved_bytes(model, batch, loss_fn) -> int:
    """Bytes of the tensors autograd keeps for the backward pass of one training step (each storage once)."""
    import torch

    storages = {}

    def pack(t):
        storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        loss_fn(model, batch).backward()
    return sum(storages.values())


def test_the_memory_estimate_is_a_lower_bound_of_a_real_step():
    """What the estimate claims must never exceed what torch really holds: parameters at 16 bytes
    (weights, gradients, AdamW's two moments) plus the tensors saved for backward, measured."""
    import torch
    import torch.nn.functional as F

    from attnlab.gpt.model import DialogueGPT
    from attnlab.vit.model import VisionTransformer

    cfg = _merge(CONFIG, {"vit": {"model": {"dim": 64, "depth": 3, "heads": 4}, "train": {"batch_size": 16}},
                          "gpt": {"model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_len": 48},
                                  "train": {"batch_size": 8}},
                          "data": {"tokenizer": {"max_size": 500}}})
    needs = {what.split(":")[0]: need for need, _, what in configcheck.memory_need(cfg)}  # "ViT", "GPT", ...
    vit_need, gpt_need = needs["ViT"], needs["GPT"]

    torch.manual_seed(0)
    vit = VisionTransformer(**cfg["vit"]["model"])
    images = torch.randn(16, 3, 32, 32)
    real = 16 * sum(p.numel() for p in vit.parameters()) + _saved_bytes(
        vit, images, lambda m, x: F.cross_entropy(m(x), torch.zeros(16, dtype=torch.long)))
    assert real / 50 < vit_need <= real, (vit_need, real)

    m = cfg["gpt"]["model"]
    gpt = DialogueGPT(500, m["d_model"], m["n_heads"], m["n_layers"], m["max_len"], dropout=0.0)
    ids = torch.randint(0, 500, (8, 48))
    real = 16 * sum(p.numel() for p in gpt.parameters()) + _saved_bytes(
        gpt, ids, lambda g, x: F.cross_entropy(g(x).flatten(0, 1).float(), x.flatten()))
    assert real / 50 < gpt_need <= real, (gpt_need, real)


def test_an_image_size_other_than_cifars_is_refused_naming_the_key(tmp_path):
    proc = dry_run(tmp_path, yaml.safe_dump({"vit": {"model": {"img_size": 64, "pos_embed": "sincos"}}}))
    assert proc.returncode != 0
    assert "config key 'vit.model.img_size' = 64: CIFAR-10 images are 32x32, so set it to 32" in proc.stdout
    assert "pos_embed" not in proc.stdout.split("ConfigError")[-1]


# ------------------------------------------------------------- a stage CLI's --config file --
@pytest.mark.parametrize("text, says", [
    ("seed: !!python/object/apply:os.system ['echo hi']\n",
     "the YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' (line 1, column 7) is not allowed"),
    ("seed: !!binary aGk=\n", "the YAML tag 'tag:yaml.org,2002:binary'"),
    ("seed: !local 1\n", "the YAML tag '!local'"),
    ("a: &a [1, *a]\n", "config key 'a' contains itself"),
    (billion_laughs("theory.seq_lens"), "expands to"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nests too deep to read"),
    ("a: [1, 2\n", "is not valid YAML/JSON"),
    ("- 1\n- 2\n", "must hold a mapping, got list"),
])
def test_a_config_file_that_is_not_plain_data_is_one_config_error(tmp_path, text, says):
    path = tmp_path / "section.yaml"
    path.write_text(text)
    start = time.perf_counter()
    with pytest.raises(ConfigError) as err:
        load_config_file(path)
    assert time.perf_counter() - start < 5
    message = str(err.value)
    assert message.startswith(f"config file {path}") and says in message and "\n" not in message


def test_plain_yaml_and_json_still_load(tmp_path):
    (tmp_path / "a.yaml").write_text('p: &p ["x", "y"]\nq: *p\nr: "!not a tag"\nn: null\n')
    assert load_config_file(tmp_path / "a.yaml") == {"p": ["x", "y"], "q": ["x", "y"], "r": "!not a tag", "n": None}
    (tmp_path / "b.json").write_text('{"theory": {"seed": 3}}')
    assert load_config_file(tmp_path / "b.json") == {"theory": {"seed": 3}}
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert load_config_file(tmp_path / "empty.yaml") == {}


def test_the_theory_stage_is_refused_when_its_longest_sequence_cannot_fit():
    """attention_naive holds five float32 (T, d) tensors at once (x, q, k, v, y): 20 GiB here."""
    cfg = _merge(CONFIG, {"theory": {"seq_lens": [64, 65536], "d": 16384}})
    (line,) = configcheck.describe_memory(cfg, available=16 * 2**30)
    assert line.startswith("config keys 'theory.seq_lens', 'theory.d' together need at least 20.0 GiB")
    assert configcheck.describe_memory(cfg, available=32 * 2**30) == []
