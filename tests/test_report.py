"""The report stage: the writeup compiles from real result files, cites their numbers, and keeps its shape.

The result files are made once per module in a temporary folder: the module
checks and the RNN-vs-attention measurements by running those stages on tiny
settings; the training results (which would need a real training run) are
written with realistic values, and their derived numbers (accuracy from a
confusion matrix, attention statistics and their tests from attention maps,
through the heatmap stage's own functions) are computed here from that data.
The PDF's text (pypdf) must then contain those numbers, formatted as
report/fmt.typ formats them (mirrored below), in words chosen by the same
rules the writeup applies, checked here the other way round as well.
"""

from __future__ import annotations

import csv
import hashlib
import json
import math
import re
import shutil
import unicodedata
from pathlib import Path

import pytest

pypdf = pytest.importorskip("pypdf")
pytest.importorskip("typst")

from attnlab.report.build import build_report  # noqa: E402
from attnlab.report.cli import main as report_main  # noqa: E402
from attnlab.report.facts import benchmark_seconds, preset_name  # noqa: E402
from attnlab.report.inputs import make_inputs  # noqa: E402
from attnlab.report.provenance import checkout_provenance  # noqa: E402
from attnlab.report.validate import ReportInputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CONFIG = {
    "data": {
        "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "md5": "c58f30108f718f92721af3b95e74349a", "path": None},
        "shakespeare": {"url": "https://example.org/input.txt", "sha256": None, "path": None,
                        "val_fraction": 0.1, "seed": 0},
        "tokenizer": {"min_freq": 2, "max_size": None},
    },
    "vit": {
        "runs": {"main": {}, "wide": {"model": {"dim": 96}}},
        "model": {"img_size": 32, "patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2.0,
                  "dropout": 0.0, "pos_embed": "learned", "drop_path": 0.0},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.001, "warmup_epochs": 0.5, "weight_decay": 0.05,
                  "label_smoothing": 0.1, "augment": "flip", "crop_padding": 0, "policy": "none",
                  "mixup_alpha": 0.0, "cutmix_alpha": 0.0, "mix_prob": 1.0, "ema_decay": None, "grad_clip": 1.0,
                  "seed": 0, "device": "auto", "time_budget_s": 540},
        "heatmaps": {"n_images": 4},
    },
    "gpt": {
        "runs": {"main": {}, "small": {"model": {"d_model": 32}}},
        "model": {"d_model": 64, "n_heads": 4, "n_layers": 2, "max_len": 128, "dropout": 0.1, "tie_weights": True},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.001, "warmup_steps": 10, "min_lr_ratio": 0.1,
                  "weight_decay": 0.1, "grad_clip": 1.0, "word_dropout": 0.0, "ema_decay": None, "keep": "best",
                  "prompts": ["ROMEO :"], "sample_tokens": 12, "time_budget_s": 780},
        "generate": {"prompts": ["JULIET :"], "num_tokens": 50, "bench_tokens": 64, "temperature": 0.8,
                     "top_k": 40, "seed": 0, "mask_tokens": ["<unk>", "<pad>"]},
    },
    "theory": {"seq_lens": [16, 32, 64], "d": 8, "d_hidden": 8, "repeats": 3, "radii": [0.9, 1.0, 1.1],
               "contribution_lens": [1, 10, 20, 30], "seed": 0},
    "report": {"title": "attnlab test writeup", "author": "report tests"},
}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
MAX_BODY_PAGES, MAX_PAGES, MAX_CODE_PAGES = 10, 20, 5


# ------------------------------------------------- python mirror of fmt.typ ---
def fx(x: float, d: int = 2) -> str:
    """report/fmt.typ's fx: round |x| * 10^d half away from zero (Typst's calc.round), not
    Python's round-half-even of the exact binary value, which differs on ties such as 8.25."""
    scaled = math.floor(abs(x) * 10**d + 0.5)
    s = str(scaled).rjust(d + 1, "0")
    s = f"{s[:-d]}.{s[-d:]}" if d > 0 else s
    return f"-{s}" if x < 0 and scaled > 0 else s


def pct(x: float, d: int = 1) -> str:
    return fx(100 * x, d) + "%"


def sig(x: float, n: int = 3) -> str:
    e = math.floor(math.log10(abs(x)))
    if round(abs(x) / 10 ** e, n - 1) >= 10:
        e += 1
    return fx(x, max(0, n - 1 - e))


def hms(seconds: float) -> str:
    s = int(math.floor(seconds + 0.5))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def pval(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {fx(p, 3)}"


def interval(lo: float, hi: float, d: int = 2) -> str:
    return f"{fx(lo, d)} to {fx(hi, d)}"


def typst_num(x) -> str:
    """A config value as Typst prints it: floats without a trailing .0 (1.0 -> "1")."""
    return f"{x:g}" if isinstance(x, float) else str(x)


def squash(text: str) -> str:
    """PDF text compared without whitespace (line breaks fall anywhere) and with math italics as ASCII."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-").replace("’", "'")
    return re.sub(r"\s+", "", text)


def page_texts(path: Path) -> list[str]:
    """Each page's text without its page number, which pypdf puts last (inside a sentence at a break)."""
    return [re.sub(r"\s*\d+\s*$", "", p.extract_text()) for p in pypdf.PdfReader(str(path)).pages]


def pdf_text(path: Path, page: int | None = None) -> str:
    pages = page_texts(path)
    return squash("\n".join(pages if page is None else [pages[page]]))


def appendix_page(path: Path) -> int:
    """0-based index of the page the appendix heading opens (its first line is "Appendix")."""
    for i, t in enumerate(page_texts(path)):
        if t.lstrip().startswith("Appendix\n") or t.strip() == "Appendix":
            return i
    raise AssertionError("no page opens with the appendix heading")


def body_text(path: Path) -> str:
    return squash("\n".join(page_texts(path)[:appendix_page(path)]))


def assert_in(expected: str, text: str) -> None:
    assert squash(expected) in text, f"{expected!r} not in the PDF text"


# ------------------------------------------------------------ result files ---
def _png(path: Path, title: str, seed: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    rng = np.random.default_rng(seed)
    fig, ax = plt.subplots(figsize=(4, 2.5), dpi=60)
    ax.plot(np.cumsum(rng.normal(size=20)))
    ax.set_title(title)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


def _write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, indent=1))


def _write_csv(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def _bench(path: Path, seconds: float) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
                    f"{seconds:.4f}\t0:00:{int(seconds):02d}\t512.1\t2048.5\t400.2\t410.3\t1.0\t2.0\t95.0\t{seconds:.2f}\n")


def _heatmap_stats(g) -> dict:
    """heatmap_stats.json from synthetic maps, through the heatmap stage's own statistics and tests."""
    import torch

    from attnlab.vit import heatmaps as vh

    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    centre = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2).flatten()
    trained = torch.stack([torch.softmax(-0.15 * centre + 0.5 * torch.randn(64, generator=g), 0) for _ in range(4)])
    untrained = torch.stack([torch.softmax(0.05 * torch.randn(64, generator=g), 0) for _ in range(4)])
    objects = torch.zeros(4, 64, dtype=torch.bool)
    for i in range(4):
        objects[i, torch.randperm(64, generator=g)[:32]] = True
    s, s0 = vh.map_stats(trained, 8, 8, objects), vh.map_stats(untrained, 8, 8, objects)
    uniform = {"center_mass": 16 / 64, "border_mass": 28 / 64, "object_mass": 0.5, "entropy": math.log(64)}
    images = []
    for i in range(4):
        rec = {"index": 10 * i + 3, "true": CLASSES[i], "pred": CLASSES[i] if i != 2 else CLASSES[5],
               "peak": [int(trained[i].argmax()) // 8, int(trained[i].argmax()) % 8]}
        for stat in vh.STATS:
            rec[stat] = s[stat][i].item()
            rec[f"untrained_{stat}"] = s0[stat][i].item()
            rec[f"rollout_{stat}"] = s[stat][i].item()
        images.append(rec)
    summary = {**vh._summary(s, 8, 8), **vh._summary(s, 8, 8, "rollout_"), "n_images": 4, "grid": [8, 8],
               "correct": 3, "colour_scale": [float(trained.min()), float(trained.max())],
               "rollout_colour_scale": [float(trained.min()), float(trained.max())]}
    tests = vh.compare(s, s0, uniform)
    return {"images": images, "summary": summary, "tests": {"attention": tests, "rollout": tests}}


def _vit_run(out: Path, run: str, seed: int, data_source: str) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    epochs = 3
    _write_csv(out / "metrics.csv", [
        {"epoch": e, "train_loss": 2.1 - 0.3 * e + 0.01 * seed, "train_acc": 0.2 + 0.1 * e, "val_loss": 2.0 - 0.35 * e,
         "val_acc": 0.25 + 0.08 * e + 0.013 * seed, "lr": 1e-3, "seconds": 10.0 + e,
         "images_per_s": 2345.6 + 100 * seed + 10 * e} for e in range(1, epochs + 1)])
    _png(out / "curves.png", f"vit {run} curves", seed)
    # a confusion matrix with a strong diagonal; accuracy and per-class rates follow from it
    conf = torch.randint(0, 4, (10, 10), generator=g) + torch.diag(torch.randint(10, 30, (10,), generator=g))
    acc = conf.diag().sum().item() / conf.sum().item()
    n_test = int(conf.sum())
    _write_json(out / "train_summary.json", {
        "device": "cpu", "hardware": "Test CPU (2 cores)", "n_params": 123456 + seed, "epochs": epochs,
        "planned_epochs": epochs, "time_budget_s": 540, "stopped_by_budget": False, "weights": "raw",
        "train_seconds": 333.3 + seed, "final_val_acc": 0.49, "n_val": n_test,
        "digests": {"config": "abc123vit000", "train.pt": "1" * 64, "test.pt": "2" * 64}})
    _write_json(out / "eval.json", {
        "test_accuracy": acc, "n_test": n_test, "source": data_source, "classes": CLASSES, "epoch": epochs,
        "per_class": {c: conf[i, i].item() / conf[i].sum().item() for i, c in enumerate(CLASSES)},
        "confusion": conf.tolist()})
    _png(out / "confusion.png", "confusion", seed + 1)
    _write_json(out / "heatmap_stats.json", _heatmap_stats(g))
    _png(out / "heatmaps.png", "heatmaps", seed + 2)
    _png(out / "rollout.png", "rollout", seed + 3)


LIKE = {"T": 64, "batch": 64, "repeats": 5, "device": "cpu", "torch_threads": 2,
        "seconds": {"forward": 0.0123, "steps_b1": 0.188, "steps_bN": 1.75},
        "seconds_min": {"forward": 0.0110, "steps_b1": 0.170, "steps_bN": 1.60},
        "seconds_max": {"forward": 0.0140, "steps_b1": 0.210, "steps_bN": 1.90},
        "steps_over_forward": 0.188 / 0.0123, "step_seconds_b1": 0.188 / 64, "step_seconds_bN": 1.75 / 64,
        "batch_step_ratio": 1.75 / 0.188, "weight_flops_per_token": 3340032,
        "gflops_per_s": {"forward": 17.4, "steps_b1": 1.14, "steps_bN": 7.82}, "same_predictions": True}


def _gpt_run(out: Path, run: str, seed: int) -> None:
    _write_csv(out / "metrics.csv", [
        {"epoch": e, "train_loss": 5.0 - 0.5 * e, "val_loss": 5.1 - 0.41 * e - 0.03 * seed,
         "val_perplexity": math.exp(5.1 - 0.41 * e), "val_bits_per_char": 2.7 - 0.2 * e - 0.011 * seed,
         "unk_rate": 0.01, "lr": 1e-3, "seconds": 5.0, "tokens_per_s": 12345.6 + 10 * seed + e}
        for e in range(1, 4)])
    _png(out / "curves.png", f"gpt {run} curves", seed)
    samples = [
        {"epoch": 1, "prompt": "ROMEO :", "text": "ROMEO : the the the the , , the the"},
        {"epoch": 2, "prompt": "ROMEO :", "text": "ROMEO : I will not , my lord , the king"},
        {"epoch": 3, "prompt": "ROMEO :", "text": "ROMEO : What say you to this , good Mercutio ?"},
    ]
    (out / "samples.jsonl").write_text("".join(json.dumps(s) + "\n" for s in samples))
    _write_json(out / "train_summary.json", {
        "device": "cpu", "hardware": "Test CPU (2 cores)", "n_params": 98765 + seed, "epochs": 3,
        "planned_epochs": 3, "time_budget_s": 780, "kept_epoch": 3, "selection": "best_val_loss",
        "weights": "raw", "train_seconds": 444.4 + seed,
        "digests": {"config": "abc123gpt000", "dialogues.pt": "3" * 64, "vocab": "4" * 64}})
    loss = 3.9123 - 0.1 * seed
    _write_json(out / "eval.json", {
        "val_loss": loss, "val_perplexity": math.exp(loss), "val_bits_per_char": 2.0413 + 0.1 * seed,
        "unk_rate": 0.0123, "n_tokens": 4321, "n_chars": 19876, "n_dialogues": 70, "epoch": 3,
        "source": "results/data/shakespeare/val.txt"})
    _write_json(out / "generation.json", {
        "num_tokens": 50,
        "samples": [{"prompt": "JULIET :", "text": "JULIET : O Romeo , Romeo , wherefore art thou gone ?"}],
        "speed": {"new_tokens": 64, "plain_tokens_per_s": 123.456 + seed, "cached_tokens_per_s": 456.789,
                  "speedup": 456.789 / (123.456 + seed), "identical": True},
        "like_for_like": LIKE, "sampled": [], "sampling": {"temperature": 0.8, "top_k": 40, "seed": 0},
        "mask_tokens": ["<unk>", "<pad>"]})


def make_results(root: Path) -> dict:
    """Every result file the writeup reads, under root/results; returns INPUTS for them."""
    import torch

    from attnlab.checks import run_checks
    from attnlab.theory.rnn_vs_attention import run as run_theory

    torch.set_num_threads(1)
    res = root / "results"
    run_checks(res / "checks")
    run_theory(CONFIG["theory"], res / "theory")

    tarball = root / "cifar-10-python.tar.gz"
    tarball.write_bytes(b"not really cifar but bytes with a checksum")
    md5 = hashlib.md5(tarball.read_bytes()).hexdigest()
    _write_json(res / "data/cifar10/manifest.json", {
        "source": str(tarball), "source_kind": "official-tarball",
        "checksum": {"algorithm": "md5", "value": md5, "expected": md5, "verified": True},
        "classes": CLASSES, "n_train": 5000, "n_test": 1000, "counts": {}, "seconds": 1.5})
    text = "ROMEO : I will go , and come again ."
    tokens = text.split(" ")
    vocab = {w: i for i, w in enumerate(["<start>", "<pad>", "<unk>"] + sorted(set(tokens)))}
    shk = root / "input.txt"
    shk.write_text(text + "\n")
    _write_json(res / "data/shakespeare/vocab_report.json", {
        "vocab_size": 4567, "n_train_dialogues": 6543, "n_val_dialogues": 727, "train_tokens": 200000,
        "val_tokens": 22000, "val_unk_rate": 0.0234, "min_freq": 2, "max_size": None,
        "source": {"path": str(shk), "sha256": hashlib.sha256(shk.read_bytes()).hexdigest(), "verified": False},
        "example": {"text": text, "tokens": tokens, "ids": [0] + [vocab[t] for t in tokens], "decoded": text}})
    _png(res / "data/shakespeare/lengths.png", "lengths", 7)

    data_source = str(res / "data/cifar10/test.pt")
    for seed, run in enumerate(CONFIG["vit"]["runs"]):
        _vit_run(res / "vit" / run, run, seed, data_source)
    for seed, run in enumerate(CONFIG["gpt"]["runs"]):
        _gpt_run(res / "gpt" / run, run, seed)
    _bench(res / "benchmarks/train_vit/main.tsv", 361.27)
    _bench(res / "benchmarks/train_gpt/main.tsv", 3725.5)
    # train_vit/wide and train_gpt/small have no benchmark: "not recorded"
    return make_inputs(CONFIG, results=res, provenance=checkout_provenance(REPO),
                       writeup=REPO / "report" / "writeup.typ")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs = make_results(root)
    pdf = root / "writeup.pdf"
    build_report(inputs, pdf, data_json=root / "data.json")
    return root, inputs, pdf


def _load(path) -> dict:
    return json.loads(Path(path).read_text())


def rebuild(built, tmp_path, edits: dict | None = None, config=None, csv_rows: dict | None = None) -> str:
    """The PDF text for a copy of the results with ``edits`` ({relative JSON path: fn(data) -> None}) applied,
    ``csv_rows`` ({relative CSV path: rows}) written, and ``config(cfg)`` applied to the config."""
    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    for rel, fn in (edits or {}).items():
        data = _load(copy / rel)
        fn(data)
        (copy / rel).write_text(json.dumps(data))
    for rel, rows in (csv_rows or {}).items():
        _write_csv(copy / rel, rows)
    if config is not None:
        config(inputs2["config"])
    build_report(inputs2, tmp_path / "w.pdf")
    return pdf_text(tmp_path / "w.pdf")


def _set(**kv):
    return lambda d: d.update(kv)


# ------------------------------------------------------------- the shape ---
def check_shape(pdf: Path) -> None:
    """Issue 23's shape: appendix by page 11, at most 20 pages, the code in at most 5, the headings in order."""
    pages = page_texts(pdf)
    first = appendix_page(pdf)
    assert first + 1 <= MAX_BODY_PAGES + 1, f"the appendix opens on page {first + 1}"
    assert len(pages) <= MAX_PAGES, f"{len(pages)} pages"
    text = squash("\n".join(pages))
    order = ["Summary", "Compute and deviations", "Problem 1: RNNs versus transformers", "(d)Answer.",
             "(e)Answer.", "(f)Answer.", "Problem 2: Implementing a transformer", "(a)Answer.", "(b)Answer.",
             "(c)Answer.", "Problem 3: Vision Transformer", "(a)Answer.", "(b)Answer.", "(c)Answer.",
             "(d)Answer.", "Problem 4: DialogueGPT", "(a)Answer.", "(c)Answer.", "(d)Answer.", "(e)Answer.",
             "(f)Answer.", "(g)Answer.", "Appendix", "A. Provenance", "B. Hyperparameters", "C. Problem 3",
             "D. Problem 4", "Code", "References"]
    at = 0
    for heading in order:
        i = text.find(squash(heading), at)
        assert i >= 0, f"{heading!r} missing or out of order"
        at = i + 1
    code_first = next(i for i, t in enumerate(pages) if "\nCode\n" in t or t.startswith("Code\n"))
    refs = next(i for i, t in enumerate(pages) if "\nReferences\n" in t or t.startswith("References\n"))
    assert refs - code_first + 1 <= MAX_CODE_PAGES + 1  # the references may share the code's last page


# Words of the machinery that ran the homework, not of the homework: banned from the body (issue 23), as
# whole words ("configuration" is plain English, "config" is a file's word).
BANNED = ["seed", "seeds", "snakemake", "pipeline", "rule", "rules", "attnlab", "config", "checkpoint",
          "results/", "src/", "train_summary", "inputs.json"]
FILE_NAME = re.compile(r"\w\.(?:json|jsonl|csv|pt|yaml|yml|png|svg|typ|py|tsv|txt)\b")


def _config_keys(node, out=None) -> set:
    out = set() if out is None else out
    if isinstance(node, dict):
        for k, v in node.items():
            if "_" in k:
                out.add(k)
            _config_keys(v, out)
    return out


def check_plain_words(pdf: Path, config: dict, run_names: list[str]) -> None:
    """No pipeline word, config key, file name or run name in the body (the title and author are the user's)."""
    body = body_text(pdf)
    for given in (config["report"].get("title"), config["report"].get("author")):
        if given:
            body = body.replace(squash(given), "", 1)
    words = re.sub(r"\s+", " ", " ".join(unicodedata.normalize("NFKC", t) for t in page_texts(pdf)[:appendix_page(pdf)]))
    for given in (config["report"].get("title"), config["report"].get("author")):
        if given:
            words = words.replace(given, "", 1)
    words = words.lower()
    for word in BANNED:
        assert not re.search(rf"(?<![\w/]){re.escape(word)}(?![\w])", words), f"the body says {word!r}"
    body = body.lower()
    for key in _config_keys(config) - {"attn_mask"}:
        assert key.lower() not in body, f"the body names the config key {key!r}"
    assert not FILE_NAME.search(body), f"the body names a file: {FILE_NAME.search(body).group(0)!r}"
    for run in run_names:
        assert f"run{run}" not in body, f"the body names the run {run!r}"


def test_the_shape_and_the_plain_words(built):
    _, inputs, pdf = built
    check_shape(pdf)
    runs = list(inputs["results"]["vit"]) + list(inputs["results"]["gpt"])
    check_plain_words(pdf, CONFIG, runs)


def test_the_plain_words_check_catches_pipeline_words(built, tmp_path):
    """The checks above can fail: a body naming a file, a config key or the seed is caught."""
    root, inputs, _ = built
    src = tmp_path / "report"
    shutil.copytree(REPO / "report", src)
    text = (src / "writeup.typ").read_text()
    for bad, why in (("(see eval.json)", "file"), ("(`label_smoothing`)", "config key"), ("with seed 0", "seed")):
        (src / "writeup.typ").write_text(text.replace("== (b)\n#ans[Each of the", f"== (b)\n{bad} #ans[Each of the", 1))
        build_report({**inputs, "writeup": str(src / "writeup.typ")}, tmp_path / "w.pdf")
        with pytest.raises(AssertionError):
            check_plain_words(tmp_path / "w.pdf", CONFIG, ["main"])
        (src / "writeup.typ").write_text(text)


# ------------------------------------------------ page 1: every number's source ---
def box_numbers_allowed(inputs: dict, facts: dict) -> set[str]:
    """Every number the summary box may show, formatted as the writeup formats it, from the JSON and config."""
    R = inputs["results"]
    vit, gpt = next(iter(R["vit"])), next(iter(R["gpt"]))
    vs, gs = _load(R["vit"][vit]["train_summary"]), _load(R["gpt"][gpt]["train_summary"])
    ev = _load(R["vit"][vit]["eval"])
    voc = _load(R["data"]["vocab_report"])
    vcfg, gcfg = facts["run_config"]["vit"][vit], facts["run_config"]["gpt"][gpt]
    out = set()

    def add(*xs):
        for x in xs:
            if x is None:
                continue
            if isinstance(x, str):
                out.update(re.findall(r"\d+(?:\.\d+)?", x))
            else:
                out.add(typst_num(x))
                out.add(str(int(x)) if float(x).is_integer() else typst_num(x))

    for s, cfg in ((vs, vcfg), (gs, gcfg)):
        add(s["n_params"], s["epochs"], s.get("planned_epochs"), s.get("kept_epoch"), s["hardware"])
        for t in (s["train_seconds"], s.get("time_budget_s")):
            if t is not None:
                add(hms(t))
        for section in ("model", "train"):
            for k, v in cfg[section].items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    add(v)
    add(ev["n_test"], 10000, voc["vocab_size"], voc.get("min_freq"), facts["preset"])
    add(*range(1, 12))  # citation numbers [1]..[11]
    add(2)  # "GPT-2"
    add(10)  # "CIFAR-10"
    return out


def check_summary_box(pdf: Path, inputs: dict, facts: dict) -> None:
    """Each number in the "Compute and deviations" box is a JSON/config value; the summary's headline numbers
    are the JSON's."""
    page1 = page_texts(pdf)[0]
    box = page1[page1.index("Compute and deviations"):]
    box = unicodedata.normalize("NFKC", box).replace("\u2009", "").replace(" ", " ")
    box = re.sub(r"(?<=\d)\s+(?=\d{3}\b)", "", box)  # grouped thousands: "123 456" -> "123456"
    allowed = box_numbers_allowed(inputs, facts)
    numbers = re.findall(r"\d+(?:\.\d+)?", box.replace(":", " "))
    stray = [n for n in numbers if n not in allowed and n.lstrip("0") not in allowed and n not in ("00", "0")]
    assert not stray, f"numbers in the box that no result or setting gives: {stray}"

    R = inputs["results"]
    vit, gpt = next(iter(R["vit"])), next(iter(R["gpt"]))
    ev, ge = _load(R["vit"][vit]["eval"]), _load(R["gpt"][gpt]["eval"])
    gen = _load(R["gpt"][gpt]["generation"])
    text = squash(page1)
    a, n = ev["test_accuracy"], ev["n_test"]
    half = 1.96 * math.sqrt(a * (1 - a) / n)
    assert_in(f"Validation accuracy {pct(a)} on", text)
    assert_in(f"(95% interval {pct(max(0, a - half))} to {pct(min(1, a + half))})", text)
    assert_in(f"{pct(a)} accuracy (95% binomial interval ±{fx(100 * half, 1)} points)", text)
    assert_in(f"validation perplexity {fx(ge['val_perplexity'], 1)}", text)
    lk = gen["like_for_like"]
    assert_in(f"T = {lk['T']} cached generation steps took {fx(lk['steps_over_forward'], 1)} times as long as one "
              "pass over the same tokens", text)
    assert_in(f"a step for {lk['batch']} sequences took {fx(lk['batch_step_ratio'])} times a step for one", text)
    ht = _load(R["vit"][vit]["heatmap_stats"])["tests"]["attention"]
    er = ht["entropy"]["trained"] / ht["entropy"]["uniform"]
    flat = "close to uniform" if er >= 0.95 else "moderately peaked" if er >= 0.8 else "peaked on a few patches"
    assert_in(f"The class token's attention is {flat} (entropy {pct(er)} of the maximum, that of a uniform map)", text)
    if "perplexity_ratio" in ge:
        assert_in(f"{fx(ge['perplexity_ratio'], 3)} times that of a Kneser-Ney", text)
    if "perplexity_ratio_ci" in ge:
        ci = ge["perplexity_ratio_ci"]
        assert_in(f"(95% interval {interval(ci['low'], ci['high'], 3)})", text)


def test_summary_box_numbers_come_from_the_results(built, tmp_path):
    root, inputs, pdf = built
    facts = _load(root / "data.json")
    check_summary_box(pdf, inputs, facts)
    page1 = pdf_text(pdf, 0)
    vs = _load(inputs["results"]["vit"]["main"]["train_summary"])
    assert_in(f"{vs['n_params'] // 1000} {vs['n_params'] % 1000:03d} parameters (width 64, 2 layers, 4 heads", page1)
    assert_in(f"training took {hms(vs['train_seconds'])}, under its time limit of {hms(540)}", page1)
    assert_in("the weights of epoch 3 kept", page1)
    # the check fails on a number no result gives
    text = rebuild(built, tmp_path, {"vit/main/train_summary.json": _set(n_params=777001)})
    assert_in("777 001 parameters", text)
    with pytest.raises(AssertionError, match="numbers in the box"):
        check_summary_box(tmp_path / "w.pdf", inputs, facts)


def test_deviations_follow_the_settings(built, tmp_path):
    _, _, pdf = built
    page1 = pdf_text(pdf, 0)
    assert_in("Departures from the starter code", page1)
    assert_in("label smoothing 0.1", page1)
    assert_in("random horizontal flips", page1)
    assert_in("AdamW [6] with weight decay 0.05", page1)
    assert_in("gradients clipped to norm 1", page1)
    assert_in("input and output embeddings tied [7]", page1)
    assert_in("words seen fewer than 2 times in training are <unk>", page1)
    assert_in("greedy decoding and sampling never produce <unk> or <pad>", page1)
    assert squash("mixup") not in page1 and squash("exponential moving average") not in page1

    def other(cfg):
        cfg["vit"]["train"].update(label_smoothing=0.0, augment="crop_flip", crop_padding=4, mixup_alpha=0.8,
                                   ema_decay=0.999)
        cfg["gpt"]["train"]["word_dropout"] = 0.1

    text = rebuild(built, tmp_path, config=other)
    assert squash("label smoothing") not in text[:text.index(squash("Problem 1"))]
    assert_in("random crops (padding 4) and horizontal flips", text)
    assert_in("mixup", text)
    assert_in("an exponential moving average of the weights (decay 0.999) is validated and kept", text)
    assert_in("word dropout 0.1", text)


def test_gpu_timings_get_their_own_table_and_comparisons(built, tmp_path):
    def gpu(d):
        d["scaling_gpu"] = json.loads(json.dumps({**d["scaling"], "device": "cuda", "hardware": "Test GPU 80GB",
                                                  "torch_threads": None}))

    text = rebuild(built, tmp_path, {"theory/rnn_vs_attention.json": gpu})
    assert_in("On the GPU (Test GPU 80GB, synchronised around each run)", text)
    assert text.count(squash("order the timings allow")) == 2  # the CPU table and the GPU table
    assert squash("This run had no GPU") not in text
    failed = rebuild(built, tmp_path / "f", {"theory/rnn_vs_attention.json": _set(
        scaling_gpu=None, scaling_gpu_error="CUDA out of memory")})
    assert_in("The run had a GPU, but timing on it failed (CUDA out of memory)", failed)


def test_preset_is_named_from_the_checkout_presets():
    from attnlab.config import preset

    assert preset_name(preset("cpu"), REPO / "config").startswith("small models sized for a 2-core CPU")
    assert preset_name(preset("config"), REPO / "config").startswith("the default sizes, meant for a GPU")
    custom = preset("cpu")
    custom["vit"]["model"]["dim"] = 52
    assert preset_name(custom, REPO / "config") == "a custom configuration"


# ------------------------------------------------------ numbers in the body ---
def test_numbers_from_the_results_appear(built):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    R = inputs["results"]
    checks = _load(R["checks"]["module_checks"])
    assert_in(f"All {len(checks['checks'])} module checks pass", text)
    for c in checks["checks"]:
        assert_in(c["name"], text)
    rows, cols = checks["W_O_shape"]
    assert_in(f"is {rows} × {cols}", text)

    ev = _load(R["vit"]["main"]["eval"])
    assert_in(f"Validation accuracy {pct(ev['test_accuracy'])} on {ev['n_test']} held-out images", text)
    gen = _load(R["gpt"]["main"]["generation"])
    assert_in(gen["samples"][0]["text"], text)
    sp = gen["speed"]
    assert_in(f"(the whole context re-encoded at every step) {fx(sp['plain_tokens_per_s'], 0)} tokens/s; with it "
              f"{fx(sp['cached_tokens_per_s'], 0)} tokens/s ({fx(sp['speedup'])}×), with the same output.", text)
    ge = _load(R["gpt"]["main"]["eval"])
    assert "baseline" not in ge
    assert_in("This evaluation has no n-gram baseline beside the model", text)
    vocab = _load(R["data"]["vocab_report"])
    assert_in(" ".join(map(str, vocab["example"]["ids"])), text)
    for line in open(R["gpt"]["main"]["samples"]):
        assert_in(json.loads(line)["text"], text)
    # the appendix: the hyperparameter table, the comparison of runs
    for run in CONFIG["vit"]["runs"]:
        assert_in(pct(_load(R["vit"][run]["eval"])["test_accuracy"]), text)
    for run in CONFIG["gpt"]["runs"]:
        assert_in(fx(_load(R["gpt"][run]["eval"])["val_bits_per_char"], 3), text)
    m = list(csv.DictReader(open(R["vit"]["main"]["metrics"])))
    assert_in(fx(sum(float(r["images_per_s"]) for r in m) / len(m), 0), text)  # mean over epochs, not the last
    assert squash("last val acc") not in text


def test_provenance_in_the_appendix(built):
    root, inputs, pdf = built
    from attnlab.config import digest

    pages = page_texts(pdf)
    appendix = squash("\n".join(pages[appendix_page(pdf):]))
    facts = _load(root / "data.json")
    assert_in(f"digest {digest(CONFIG)} of the whole merged configuration", appendix)
    assert_in("ViT main abc123vit000, GPT main abc123gpt000", appendix)
    assert_in(facts["commit"], appendix)
    man = _load(inputs["results"]["data"]["cifar10_manifest"])
    assert_in(f"md5 {man['checksum']['value']}: matches the expected value", appendix)
    sha = _load(inputs["results"]["data"]["vocab_report"])["source"]["sha256"]
    assert_in(f"sha256 {sha}: not checked (no expected value given)", appendix)
    assert_in(f"train_vit main {fx(361.27, 1)} 0:06:01 {fx(333.3, 1)}", appendix)
    assert_in("3725.5 1:02:06", appendix)
    assert appendix.count("notrecorded") == 4  # seconds and h:mm:ss of the two runs without a benchmark
    assert_in("results/vit/main/attention.html", appendix)
    assert_in("References", appendix)
    assert_in("[3] A. Dosovitskiy et al.", appendix)


# ----------------------------------------------------- the text follows the numbers ---
def test_problem1_timings_say_an_order_only_when_the_interval_does(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    S = _load(inputs["results"]["theory"]["rnn_vs_attention"])["scaling"]
    for m in S["methods"].values():
        f = m["time_fit"]
        ci = "none" if f["ci95"] is None else interval(*f["ci95"])
        words = {"linear": "O(T)", "quadratic": "O(T2)", "undecided": "cannot tell"}[m["time_order"]]
        assert_in(f"{fx(f['slope'])} ({ci}), {fx(f['r2'], 3)} {words}", text)
    assert_in(f"each time the median of {S['repeats']} runs after a warm-up", text)
    assert_in("Flops are counted from the formulas, not measured", text)
    assert_in("This run had no GPU, so none of these numbers measures parallel hardware", text)

    def fits(verdicts):
        def edit(d):
            for name, (ci, order) in verdicts.items():
                m = d["scaling"]["methods"][name]
                m["time_fit"] = {"slope": sum(ci) / 2, "ci95": ci, "r2": 0.99, "n": 3}
                m["time_order"] = order
        return edit

    t = rebuild(built, tmp_path, {"theory/rnn_vs_attention.json": fits({
        "rnn_loop": ([0.9, 1.1], "linear"), "attention_standard": ([1.2, 2.4], "undecided"),
        "attention_naive": ([1.8, 2.1], "quadratic")})})
    assert_in("1.00 (0.90 to 1.10), 0.990 O(T)", t)
    assert_in("1.80 (1.20 to 2.40), 0.990 cannot tell", t)
    assert_in("1.95 (1.80 to 2.10), 0.990 O(T2)", t)


def _comparisons(separation, ratio, repeats=3):
    from attnlab.theory.rnn_vs_attention import from_on

    def edit(d):
        sc = d["scaling"]
        sc["repeats"] = repeats
        lens = sc["seq_lens"]
        for c in sc["comparisons"]:
            c["separation"] = separation[c["b"]]
            c["ratio"] = ratio[c["b"]]
            c["b_slower_from"] = from_on(c["separation"], lens, 1)
            c["b_faster_from"] = from_on(c["separation"], lens, -1)
        for m in sc["methods"].values():
            m["outliers"] = []
    return edit


def test_comparisons_with_the_rnn_claim_only_separated_runs(built, tmp_path):
    sep = {"attention_rearranged": [-1, -1, -1], "attention_standard": [-1, 0, 1], "attention_naive": [0, 0, 0]}
    ratio = {"attention_rearranged": [0.5, 0.2, 0.1], "attention_standard": [0.5, 1.1, 3.0],
             "attention_naive": [1.0, 1.0, 1.1]}
    text = rebuild(built, tmp_path / "a", {"theory/rnn_vs_attention.json": _comparisons(sep, ratio)})
    assert_in("the rearranged form of equations 3–4 was faster at every length (10.0 times faster at T = 64)", text)
    assert_in("standard softmax attention was slower from T = 64 on (3.00 times the RNN's time at T = 64)", text)
    assert_in("the timed runs of the naive form of equations 3–4 and of the RNN overlap at T = 64", text)
    few = rebuild(built, tmp_path / "b", {"theory/rnn_vs_attention.json": _comparisons(sep, ratio, repeats=1)})
    assert_in("with 1 timed run per point these timings cannot say whether", few)
    assert squash("was slower from") not in few


def test_heatmap_wording_follows_the_tests(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    st = _load(inputs["results"]["vit"]["main"]["heatmap_stats"])
    t = st["tests"]["attention"]
    for key, name in (("center_mass", "share on the centre"), ("border_mass", "share on the border")):
        r = t[key]
        assert_in(f"{name} {pct(r['trained'])} {pct(r['untrained'])} {pct(r['uniform'])} "
                  f"{pval(r['p_vs_untrained'])} {pval(r['p_vs_uniform'])}", text)
    assert 2 / 16 <= t["center_mass"]["p_vs_untrained"]  # four images: p never below 0.125, so never significant
    c = t["center_mass"]
    assert_in(f"no difference that these 4 images can detect ({pct(c['trained'])} against {pct(c['untrained'])}; "
              f"{pval(c['p_vs_untrained'])})", text)
    assert squash("clearly") not in text  # the word promised significance without a correction
    assert_in("With 4 images the smallest possible two-sided p is 2/24 = 0.125", text)
    family = [k for k in ("center_mass", "border_mass", "object_mass", "entropy") if k in t]
    assert_in(f"each is held to 0.05 divided by their number (Bonferroni)", text)

    def significant(d):
        a = d["tests"]["attention"]
        a["center_mass"].update(trained=0.31, untrained=0.25, p_vs_untrained=0.002)
        a["entropy"].update(p_vs_untrained=0.004, trained=0.9 * a["entropy"]["uniform"],
                            untrained=a["entropy"]["uniform"])
        if "object_mass" in a:  # significant alone, not once corrected for the family of tests
            a["object_mass"].update(trained=0.6, untrained=0.5, p_vs_untrained=0.03)

    text2 = rebuild(built, tmp_path, {"vit/main/heatmap_stats.json": significant})
    assert_in("its share on the central patches is higher (31.0% against 25.0%; p = 0.002)", text2)
    assert_in("Compared with the untrained copy, the maps' entropy is lower (90.0% against 100.0%; p = 0.004)", text2)
    if "object_mass" in t:
        assert_in(f"its share is higher (60.0% against 50.0%; p = 0.030, which is not significant once corrected "
                  f"for the {len(family)} statistics tested)", text2)
    for i in st["images"]:
        assert_in(f"{i['index']} {i['true']}", text)
        assert_in(f"{pct(i['center_mass'])} {pct(i['border_mass'])} {pct(i['object_mass'])} "
                  f"{pct(i['entropy'] / st['summary']['max_entropy'])} {pct(i['untrained_center_mass'])}", text)


def test_generation_explanation_follows_the_batch_ratio(built, tmp_path):
    _, _, pdf = built
    text = pdf_text(pdf)
    q = LIKE["batch_step_ratio"]  # 9.3: partly overhead
    overhead = (64 - q) / 63
    assert_in(f"yet took {fx(q)} times as long: it grows far more slowly than the work", text)
    assert_in(f"put the fixed part at {pct(overhead, 0)} of a batch-1 step", text)
    assert_in(f"The {LIKE['T']} steps took {fx(LIKE['steps_over_forward'], 1)} times as long as one pass over the "
              "same tokens, and predicted the same tokens.", text)
    assert_in(f"{sig(LIKE['seconds']['forward'] * 1000)} ms ({sig(LIKE['seconds_min']['forward'] * 1000)}–"
              f"{sig(LIKE['seconds_max']['forward'] * 1000)})", text)
    assert squash("memory-bound") not in text and squash("bandwidth") not in text

    def ratio(q):
        def edit(d):
            d["like_for_like"]["batch_step_ratio"] = q
        return edit

    flat = rebuild(built, tmp_path / "f", {"gpt/main/generation.json": ratio(1.3)})
    assert_in("took 1.30 times as long: the step time is flat across batch sizes", flat)
    assert_in("generation here is overhead-bound", flat)
    work = rebuild(built, tmp_path / "w", {"gpt/main/generation.json": ratio(50.0)})
    assert_in("the time grows nearly with the work", work)
    assert squash("overhead-bound") not in work


def test_validation_loss_rise_is_called_overfitting_only_when_large(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    rows = list(csv.DictReader(open(inputs["results"]["gpt"]["main"]["metrics"])))
    assert_in(f"to its minimum, {fx(float(rows[-1]['val_loss']), 3)}, after epoch 3, the last one", text)
    assert_in("That is the last epoch, so the choice adds no selection bias", text)

    def with_losses(*losses):
        return [dict(r, val_loss=str(v)) for r, v in zip(rows, losses)]

    small = rebuild(built, tmp_path / "s", {"gpt/main/train_summary.json": _set(kept_epoch=2)},
                    csv_rows={"gpt/main/metrics.csv": with_losses(4.0, 3.5, 3.506)})
    assert_in("to its minimum, 3.500, after epoch 2, and ended 0.006 above it: it levelled off", small)
    assert squash("over-fitted") not in small
    assert_in("That epoch was picked by its validation loss on the same validation dialogues the scores below are "
              "computed on, which makes them slightly optimistic: the last epoch, which involves no choice, has a "
              "validation loss 0.006 nats per token higher", small)
    big = rebuild(built, tmp_path / "b", {"gpt/main/train_summary.json": _set(kept_epoch=2)},
                  csv_rows={"gpt/main/metrics.csv": with_losses(4.0, 3.5, 3.7)})
    assert_in("and then rose by 0.200 to 3.700 while the training loss kept falling: the model over-fitted", big)


def test_small_rises_on_the_plateau_are_said_not_hidden(built, tmp_path):
    _, inputs, _ = built
    rows = list(csv.DictReader(open(inputs["results"]["gpt"]["main"]["metrics"])))
    flat = rebuild(built, tmp_path, {"gpt/main/train_summary.json": _set(kept_epoch=2)},
                   csv_rows={"gpt/main/metrics.csv": [dict(r, val_loss=str(v))
                                                      for r, v in zip(rows, (3.52, 3.50, 3.51))]})
    assert_in("and ended 0.010 above it: it levelled off, staying within 1% of that minimum from epoch 1 on with "
              "small rises and falls (the largest rise, 0.010, after epoch 3)", flat)


def test_epochs_cut_by_the_time_limit_say_whether_the_schedule_was_refitted(built, tmp_path):
    _, inputs, _ = built
    rows = list(csv.DictReader(open(inputs["results"]["vit"]["main"]["metrics"])))
    cut = {"vit/main/train_summary.json": _set(planned_epochs=5, stopped_by_budget=True)}
    # the learning rate at the end is the peak's (the fixture's constant 1e-3): cut before the schedule ended
    early = rebuild(built, tmp_path / "e", cut)
    assert_in("3 epochs of 5 planned, stopped by the time limit before the end of the learning-rate schedule", early)
    # a last learning rate near 0: the schedule was refitted to the epochs that fit, and ran out
    ended = rebuild(built, tmp_path / "f", cut, csv_rows={"vit/main/metrics.csv": [
        dict(r, lr=str(1e-12 if i == len(rows) - 1 else 1e-3)) for i, r in enumerate(rows)]})
    assert_in("3 epochs of 5 planned (the time limit allowed 3, and the learning-rate schedule was fitted to them "
              "and ran to its end)", ended)


def test_the_heatmap_peaks_are_placed_on_the_grid(built):
    _, inputs, pdf = built
    st = _load(inputs["results"]["vit"]["main"]["heatmap_stats"])
    peaks = [i["peak"] for i in st["images"]]
    n = 8  # the fixture's 8 x 8 patch grid (_heatmap_stats), as the config's 32-pixel images in 4-pixel patches give
    centre = sum(all(n / 4 <= v < 3 * n / 4 for v in p) for p in peaks)
    border = sum(any(v in (0, n - 1) for v in p) for p in peaks)
    assert_in(f"the most-attended patch lies in the centre in {centre} of the {len(peaks)} images and on the border "
              f"ring in {border}", pdf_text(pdf))


def test_vit_accuracy_and_the_train_above_validation_loss(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    ev = _load(inputs["results"]["vit"]["main"]["eval"])
    assert ev["test_accuracy"] < 0.8
    assert_in(f"Answer. Validation accuracy {pct(ev['test_accuracy'])} on", text)
    assert_in("That is short of the “high 80s” the homework expects", text)
    assert_in("we did not test which of these differences costs the accuracy", text)
    assert_in(f"the {ev['n_test']} images validated after each epoch are the held-out test images", text)
    assert_in("they were not chosen by their accuracy on these images", text)
    rows = list(csv.DictReader(open(inputs["results"]["vit"]["main"]["metrics"])))
    assert float(rows[-1]["train_loss"]) > float(rows[-1]["val_loss"])
    assert_in("the training loss is measured against the label-smoothed targets (0.1)", text)
    assert_in("The training loss includes label smoothing (0.1)", text)  # Figure 3's caption
    hi = rebuild(built, tmp_path / "hi", {"vit/main/eval.json": _set(test_accuracy=0.871)})
    assert_in("87.1% on", hi)
    assert_in("That is in the high 80s, as the homework expects", hi)
    assert squash("short of") not in hi
    picked = rebuild(built, tmp_path / "p", {"vit/main/train_summary.json": _set(kept_epoch=2)})
    assert_in("The weights evaluated are those of epoch 2 of 3, chosen on these same images, which biases the "
              "accuracy upwards", picked)


def test_gpt_ratio_interval_wording(built, tmp_path):
    def baseline(low, high):
        def edit(d):
            kn = d["val_loss"] + 0.1
            d.update({"val_bits_per_char_open": 2.2345, "spell_bits_per_unk": 21.7,
                      "perplexity_ratio": math.exp(-0.1),
                      "perplexity_ratio_ci": {"ratio": math.exp(-0.1), "low": low, "high": high,
                                              "n_dialogues": 70, "n_boot": 2000},
                      "baseline": {"model": "interpolated Kneser-Ney (modified discounts)", "order": 4,
                                   "val_loss": kn, "val_perplexity": math.exp(kn), "val_bits_per_char": 2.1789,
                                   "val_bits_per_char_open": 2.3987, "n_tokens": d["n_tokens"], "char_order": 5}})
        return edit

    better = rebuild(built, tmp_path / "b", {"gpt/main/eval.json": baseline(0.87, 0.94)})
    assert_in(f"The ratio of the perplexities is {fx(math.exp(-0.1), 3)}, with a 95% interval of 0.870 to 0.940 "
              "from a paired bootstrap over the 70 validation dialogues", better)
    assert_in("the transformer is better than the n-gram model, and the interval excludes a tie", better)
    body = body_text(tmp_path / "b" / "w.pdf")
    assert squash("upper bound") not in body and squash("nanoGPT") not in body
    tie = rebuild(built, tmp_path / "t", {"gpt/main/eval.json": baseline(0.95, 1.02)})
    assert_in("the interval includes 1, so these dialogues do not show which model is better", tie)


# ------------------------------------------------------------ the code ---
def _printed(line: str, text: str) -> bool:
    """``line`` is in ``text``, possibly wrapped across a page break (which inserts the page number)."""
    if line in text:
        return True
    return any(re.search(re.escape(line[:k]) + r"\d{1,3}" + re.escape(line[k:]), text) for k in range(1, len(line)))


def test_code_appendix_prints_the_bodies_the_homework_asks_for(built):
    """Each body, as inspect reads it from the imported modules, is in the appendix, line by line."""
    import inspect

    from attnlab.data.tokenizer import MyTokenizer
    from attnlab.gpt.model import DialogueGPT, DialogueLoss
    from attnlab.transformer import AttentionHead, MultiHeadedAttention, Transformer
    from attnlab.vit.model import PatchEmbed

    _, _, pdf = built
    pages = page_texts(pdf)
    appendix = squash("\n".join(pages[appendix_page(pdf):]))
    for obj in (AttentionHead, MultiHeadedAttention.__init__, MultiHeadedAttention.forward, Transformer, PatchEmbed,
                MyTokenizer.encode, MyTokenizer.decode, DialogueGPT.__init__, DialogueGPT.forward, DialogueLoss):
        lines, start = inspect.getsourcelines(obj)
        assert_in(f"lines {start}–{start + len(lines) - 1}", appendix)
        lost = [line for line in lines if line.strip() and not _printed(squash(line), appendix)]
        assert not lost, f"{obj.__qualname__}: lines missing from the appendix: {lost[:3]}"
    # starter code the homework gives is not listed
    for given in ("class FFN", "class AttentionResidual", "class VisionTransformer", "class DialogueDataset",
                  "def generate("):
        assert squash(given) not in appendix


def test_code_appendix_follows_the_source(tmp_path):
    """A changed source file changes the listing: it is read at build time, not copied."""
    from attnlab.report import code

    src = tmp_path / "src"
    (src / "attnlab").mkdir(parents=True)
    f = src / "attnlab" / "mod.py"
    f.write_text("import os\n\n\n@staticmethod\ndef helper(x):\n    return x + 1\n\n\nclass A:\n    pass\n")
    assert code.definition_source(f, "helper") == ("@staticmethod\ndef helper(x):\n    return x + 1\n", 4, 6)
    f.write_text("class A:\n    y = 2\n\n    def m(self):\n        return 3\n")
    assert code.definition_source(f, "A") == ("class A:\n    y = 2\n\n    def m(self):\n        return 3\n", 1, 5)
    assert code.definition_source(f, "A.m") == ("    def m(self):\n        return 3\n", 4, 5)
    for missing in ("helper", "A.n", "B.m"):
        with pytest.raises(code.CodeListingError, match=re.escape(f"'{missing}'")):
            code.definition_source(f, missing)
    assert code.module_file("attnlab.mod", src) == f

    # the report rule's param: a copy of the real listed files elsewhere digests the same, a comment edit does not
    real = code.source_digest()
    moved = tmp_path / "moved"
    for path in code.source_files():
        rel = Path(path).relative_to(code.SRC)
        (moved / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, moved / rel)
    assert code.source_digest(moved) == real
    listed = moved / "attnlab" / "transformer.py"
    listed.write_text(listed.read_text() + "# a comment the appendix would print\n")
    assert code.source_digest(moved) != real


# ------------------------------------------------------------ plumbing ---
def test_same_results_give_same_bytes_anywhere(built, tmp_path):
    root, inputs, pdf = built
    again = tmp_path / "again.pdf"
    build_report(inputs, again)
    assert again.read_bytes() == pdf.read_bytes()
    # the results copied elsewhere (mtimes kept): the same PDF
    moved = tmp_path / "elsewhere"
    shutil.copytree(root / "results", moved / "results")
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(moved / "results")))
    build_report(inputs2, tmp_path / "moved.pdf")
    assert (tmp_path / "moved.pdf").read_bytes() == pdf.read_bytes()


def test_missing_result_names_file_and_rule(built, tmp_path):
    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    (copy / "vit/main/eval.json").unlink()
    out = tmp_path / "w.pdf"
    with pytest.raises(ReportInputError, match=r"results/vit/main/eval\.json is missing: it is made by rule evaluate_vit"):
        build_report(inputs2, out)
    assert not out.exists()

    # the CLI reports the same and exits 2
    (tmp_path / "inputs.json").write_text(json.dumps(inputs2))
    assert report_main(["--inputs", str(tmp_path / "inputs.json"), "--out", str(out)]) == 2
    assert not out.exists()


@pytest.mark.parametrize("rel, content, rule, why", [
    ("vit/main/heatmap_stats.json", "{\"images\": [", "vit_heatmaps", "is malformed"),
    ("vit/main/heatmap_stats.json", json.dumps({"images": [], "summary": {}}), "vit_heatmaps", "tests.attention"),
    ("gpt/small/eval.json", json.dumps({"val_loss": 1.0}), "evaluate_gpt", "val_bits_per_char"),
    ("gpt/main/generation.json", json.dumps({"num_tokens": 1}), "generate_gpt", "like_for_like"),
    ("gpt/main/metrics.csv", "epoch,train_loss\n1,2.0\n", "train_gpt", "lacks column"),
    ("theory/scaling.svg", "not a picture", "rnn_vs_attention", "not an SVG"),
])
def test_malformed_result_names_file_and_rule(built, tmp_path, rel, content, rule, why):
    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    (copy / rel).write_text(content)
    with pytest.raises(ReportInputError) as err:
        build_report(inputs2, tmp_path / "w.pdf")
    msg = str(err.value)
    assert str(copy / rel) in msg and f"made by rule {rule}" in msg and why in msg


def test_non_finite_norms_still_compile(built, tmp_path):
    """rho = 1.1 over long sequences overflows float64; Python writes Infinity, which Typst's JSON rejects."""
    def overflow(d):
        d["contribution"]["norms"]["1.1"][-1] = float("inf")
        d["contribution"]["fitted_rate"]["1.1"] = None  # as the stage writes it: no rate through an overflow

    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    path = copy / "theory/rnn_vs_attention.json"
    data = _load(path)
    overflow(data)
    path.write_text(json.dumps(data))  # json.dumps writes Infinity
    assert "Infinity" in path.read_text()
    build_report(inputs2, tmp_path / "w.pdf")
    assert_in("none for ρ = 1.1 (the norm left the floating-point range)", pdf_text(tmp_path / "w.pdf"))


def test_benchmark_seconds_reads_snakemake_tsv(tmp_path):
    p = tmp_path / "b.tsv"
    _bench(p, 12.5)
    assert benchmark_seconds(p) == 12.5
    assert benchmark_seconds(tmp_path / "absent.tsv") is None
    (tmp_path / "bad.tsv").write_text("x\ty\n1\t2\n")
    with pytest.raises(ValueError, match="column 's'"):
        benchmark_seconds(tmp_path / "bad.tsv")


def test_make_inputs_follows_the_results_layout():
    inputs = make_inputs(CONFIG, results="results")
    r = inputs["results"]
    assert r["vit"]["wide"]["eval"] == "results/vit/wide/eval.json"
    assert r["gpt"]["main"]["generation"] == "results/gpt/main/generation.json"
    assert r["theory"]["rnn_vs_attention"] == "results/theory/rnn_vs_attention.json"
    assert r["benchmarks"]["train_gpt"]["small"] == "results/benchmarks/train_gpt/small.tsv"
    assert list(r["vit"]) == ["main", "wide"]  # config order: the first run is the one shown in detail
    cfg = json.loads(json.dumps(CONFIG))
    cfg["vit"]["runs"]["wide"] = None  # a run set to null is dropped, as in the Snakefile
    assert list(make_inputs(cfg)["results"]["vit"]) == ["main"]


def test_source_date_epoch_sets_the_date(built, tmp_path, monkeypatch):
    _, inputs, _ = built
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "86400")
    build_report(inputs, tmp_path / "w.pdf")
    assert_in("Results dated 1970-01-02 00:00 UTC", pdf_text(tmp_path / "w.pdf"))
    info = pypdf.PdfReader(str(tmp_path / "w.pdf")).metadata
    assert info.creation_date.year == 1970


def test_a_broken_writeup_source_is_a_build_error(built, tmp_path):
    from attnlab.report.build import ReportBuildError

    _, inputs, _ = built
    src = tmp_path / "report"
    shutil.copytree(REPO / "report", src)
    (src / "writeup.typ").write_text((src / "writeup.typ").read_text() + "\n#let broken = (\n")
    with pytest.raises(ReportBuildError, match="writeup.typ"):
        build_report({**inputs, "writeup": str(src / "writeup.typ")}, tmp_path / "w.pdf")
    assert not (tmp_path / "w.pdf").exists()


@pytest.mark.slow
def test_tiny_pipeline_writeup(tiny_run):
    """The report rule's PDF from the whole tiny pipeline: its shape, its plain words, and page 1's numbers
    from that run's own files."""
    res = tiny_run.workdir / "results"
    pdf = res / "report" / "writeup.pdf"
    inputs = _load(res / "logs" / "report.inputs.json")  # what the rule handed to attnlab.report
    inputs = json.loads(json.dumps(inputs).replace('"results/', f'"{res}/'))
    check_shape(pdf)
    check_plain_words(pdf, inputs["config"], list(inputs["results"]["vit"]) + list(inputs["results"]["gpt"]))
    # the facts the rule built, rebuilt from the same inputs
    from attnlab.report.build import stage

    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        facts = stage(inputs, Path(tmp))
    check_summary_box(pdf, inputs, facts)
    text = pdf_text(pdf)
    # the appendix names the config digest each trainer recorded, as the trainers write it
    vit_digest = _load(inputs["results"]["vit"]["main"]["train_summary"])["digests"]["config"]
    gpt_digest = _load(inputs["results"]["gpt"]["main"]["train_summary"])["digests"]["config"]
    assert_in(f"ViT main {vit_digest}, GPT main {gpt_digest}", text)
    for rule, runs in inputs["results"]["benchmarks"].items():
        for run, path in runs.items():
            s = benchmark_seconds(path)
            assert s is not None, f"{path} missing after a full run"
            assert_in(f"{rule} {run} {fx(s, 1)}", text)
