"""The report stage: the writeup compiles from real result files and cites their numbers.

The result files are made once per session in a temporary folder: the module
checks and the RNN-vs-attention measurements are produced by running those
stages on tiny settings; the training results (which would need a real
training run) are written with realistic values, and their derived numbers
(accuracy from a confusion matrix, attention statistics from attention maps)
are computed here from that data. The PDF's text (pypdf) must then contain
those numbers, formatted as report/fmt.typ formats them (mirrored below).
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
from attnlab.report.facts import benchmark_seconds  # noqa: E402
from attnlab.report.inputs import make_inputs  # noqa: E402
from attnlab.report.validate import ReportInputError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

CONFIG = {
    "data": {
        "cifar10": {"url": "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
                    "md5": "c58f30108f718f92721af3b95e74349a", "path": None},
        "shakespeare": {"url": "https://example.org/input.txt", "sha256": None, "path": None,
                        "val_fraction": 0.1, "seed": 0},
        "tokenizer": {"min_freq": 1, "max_size": None},
    },
    "vit": {
        "runs": {"main": {}, "wide": {"model": {"dim": 96}}},
        "model": {"img_size": 32, "patch_size": 4, "dim": 64, "depth": 2, "heads": 4, "mlp_ratio": 2,
                  "dropout": 0.0, "pos_embed": "learned"},
        "train": {"epochs": 3, "batch_size": 64, "lr": 0.001, "seed": 0, "device": "auto"},
        "heatmaps": {"n_images": 4},
    },
    "gpt": {
        "runs": {"main": {}, "small": {"model": {"d_model": 32}}},
        "model": {"d_model": 64, "n_heads": 4, "n_layers": 2, "max_len": 128, "dropout": 0.1},
        "train": {"epochs": 3, "batch_size": 16, "lr": 0.001, "prompts": ["ROMEO :"], "sample_tokens": 12},
        "generate": {"prompts": ["JULIET :"], "num_tokens": 50, "bench_tokens": 64},
    },
    "theory": {"seq_lens": [16, 32, 64], "d": 8, "d_hidden": 8, "repeats": 1, "radii": [0.9, 1.0, 1.1],
               "contribution_lens": [1, 10, 20, 30], "seed": 0},
    "report": {"title": "attnlab test writeup", "author": "report tests"},
}
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


# ------------------------------------------------- python mirror of fmt.typ ---
def fx(x: float, d: int = 2) -> str:
    """report/fmt.typ's fx: round |x| * 10^d half away from zero (Typst's calc.round), not
    Python's round-half-even of the exact binary value, which differs on ties such as 8.25."""
    scaled = math.floor(abs(x) * 10**d + 0.5)
    s = str(scaled).rjust(d + 1, "0")
    s = f"{s[:-d]}.{s[-d:]}" if d > 0 else s
    return f"-{s}" if x < 0 and scaled > 0 else s


def pct(x: float, d: int = 1) -> str:
    return f"{100 * x:.{d}f}%"


def sig(x: float, n: int = 3) -> str:
    e = math.floor(math.log10(abs(x)))
    if round(abs(x) / 10 ** e, n - 1) >= 10:
        e += 1
    return fx(x, max(0, n - 1 - e))


def squash(text: str) -> str:
    """PDF text compared without whitespace (line breaks fall anywhere) and with math italics as ASCII."""
    text = unicodedata.normalize("NFKC", text).replace("\u2212", "-")
    return re.sub(r"\s+", "", text)


def pdf_text(path: Path, page: int | None = None) -> str:
    """The text without the page numbers, which pypdf puts last on each page (inside a sentence at a break)."""
    pages = pypdf.PdfReader(str(path)).pages
    return squash("\n".join(re.sub(r"\s*\d+\s*$", "", p.extract_text())
                             for p in (pages if page is None else [pages[page]])))


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


def _vit_run(out: Path, run: str, seed: int, data_source: str) -> None:
    import torch

    g = torch.Generator().manual_seed(seed)
    epochs = 3
    _write_csv(out / "metrics.csv", [
        {"epoch": e, "train_loss": 2.1 - 0.3 * e + 0.01 * seed, "train_acc": 0.2 + 0.1 * e, "val_loss": 2.0 - 0.25 * e,
         "val_acc": 0.25 + 0.08 * e + 0.013 * seed, "lr": 1e-3, "seconds": 10.0 + e,
         "images_per_s": 2345.6 + 100 * seed} for e in range(1, epochs + 1)])
    _png(out / "curves.png", f"vit {run} curves", seed)
    _write_json(out / "train_summary.json", {
        "device": "cpu", "hardware": "Test CPU (2 cores)", "n_params": 123456 + seed, "epochs": epochs,
        "train_seconds": 33.3 + seed, "final_val_acc": 0.49, "config_digest": "abc"})
    # a confusion matrix with a strong diagonal; accuracy and per-class rates follow from it
    conf = torch.randint(0, 4, (10, 10), generator=g) + torch.diag(torch.randint(10, 30, (10,), generator=g))
    acc = conf.diag().sum().item() / conf.sum().item()
    _write_json(out / "eval.json", {
        "test_accuracy": acc, "n_test": int(conf.sum()), "source": data_source, "classes": CLASSES,
        "per_class": {c: conf[i, i].item() / conf[i].sum().item() for i, c in enumerate(CLASSES)},
        "confusion": conf.tolist()})
    _png(out / "confusion.png", "confusion", seed + 1)
    # attention of the class token over an 8x8 patch grid, peaked near the centre
    yy, xx = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    centre = ((yy - 3.5) ** 2 + (xx - 3.5) ** 2)
    images = []
    inner = torch.zeros(8, 8, dtype=torch.bool)
    inner[2:6, 2:6] = True
    border = torch.ones(8, 8, dtype=torch.bool)
    border[1:7, 1:7] = False
    for i in range(4):
        a = torch.softmax((-0.15 * centre + 0.5 * torch.randn(8, 8, generator=g)).flatten(), 0).view(8, 8)
        true, pred = CLASSES[i], CLASSES[i] if i != 2 else CLASSES[5]
        images.append({"index": 10 * i + 3, "true": true, "pred": pred,
                       "center_mass": a[inner].sum().item(), "border_mass": a[border].sum().item(),
                       "entropy": -(a * a.log()).sum().item()})
    _write_json(out / "heatmap_stats.json", {
        "images": images,
        "summary": {"mean_center_mass": sum(i["center_mass"] for i in images) / 4,
                    "uniform_center_mass": inner.sum().item() / 64,
                    "mean_entropy": sum(i["entropy"] for i in images) / 4, "max_entropy": math.log(64)}})
    _png(out / "heatmaps.png", "heatmaps", seed + 2)
    _png(out / "rollout.png", "rollout", seed + 3)


def _gpt_run(out: Path, run: str, seed: int) -> None:
    _write_csv(out / "metrics.csv", [
        {"epoch": e, "train_loss": 5.0 - 0.5 * e, "val_loss": 5.1 - 0.41 * e - 0.03 * seed,
         "val_perplexity": math.exp(5.1 - 0.41 * e), "val_bits_per_char": 2.7 - 0.2 * e - 0.011 * seed,
         "unk_rate": 0.01, "lr": 1e-3, "seconds": 5.0, "tokens_per_s": 12345.6 + 10 * seed}
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
        "train_seconds": 44.4 + seed, "final_val_acc": None, "config_digest": "abc"})
    loss = 3.9123 - 0.1 * seed
    _write_json(out / "eval.json", {
        "val_loss": loss, "val_perplexity": math.exp(loss), "val_bits_per_char": 2.0413 + 0.1 * seed,
        "unk_rate": 0.0123, "n_tokens": 4321, "n_chars": 19876, "source": "results/data/shakespeare/val.txt"})
    _write_json(out / "generation.json", {
        "num_tokens": 50,
        "samples": [{"prompt": "JULIET :", "text": "JULIET : O Romeo , Romeo , wherefore art thou gone ?"}],
        "speed": {"new_tokens": 64, "plain_tokens_per_s": 123.456 + seed, "cached_tokens_per_s": 456.789,
                  "speedup": 456.789 / (123.456 + seed), "identical": True}})


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
        "val_tokens": 22000, "val_unk_rate": 0.0234, "min_freq": 1, "max_size": None,
        "source": {"path": str(shk), "sha256": hashlib.sha256(shk.read_bytes()).hexdigest(), "verified": False},
        "example": {"text": text, "tokens": tokens, "ids": [0] + [vocab[t] for t in tokens], "decoded": text}})
    _png(res / "data/shakespeare/lengths.png", "lengths", 7)

    data_source = str(res / "data/cifar10/test.pt")
    for seed, run in enumerate(CONFIG["vit"]["runs"]):
        _vit_run(res / "vit" / run, run, seed, data_source)
    for seed, run in enumerate(CONFIG["gpt"]["runs"]):
        _gpt_run(res / "gpt" / run, run, seed)
    _bench(res / "benchmarks/train_vit/main.tsv", 61.27)
    _bench(res / "benchmarks/train_gpt/main.tsv", 3725.5)
    # train_vit/wide and train_gpt/small have no benchmark: "not recorded"
    return make_inputs(CONFIG, results=res, repo=REPO, writeup=REPO / "report" / "writeup.typ")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    inputs = make_results(root)
    pdf = root / "writeup.pdf"
    build_report(inputs, pdf, data_json=root / "data.json")
    return root, inputs, pdf


def _load(path) -> dict:
    return json.loads(Path(path).read_text())


# ------------------------------------------------------------------- tests ---
def test_every_section_is_present(built):
    _, _, pdf = built
    text = pdf_text(pdf)
    for heading in ["attnlab test writeup", "What was run", "Provenance", "Data sources", "Wall times",
                    "Problem 1: RNNs versus transformers", "(a) Two steps", "(b) Three steps", "(c) T steps",
                    "(d) The first input", "(e) Cost of a forward pass", "(f) Very long sequences",
                    "Problem 2: Implementing a transformer", "Module checks",
                    "Problem 3: Vision Transformer", "(b) Positional embeddings", "(c) Training and test accuracy",
                    "(d) Attention heatmaps", "Problem 4: DialogueGPT", "(a) Tokenizer",
                    "(e) Why generating is slower", "(f) Generations during training", "(g) 50 generated tokens",
                    "Comparison of runs", "Appendix: configuration"]:
        assert_in(heading, text)
    assert len(pypdf.PdfReader(str(pdf)).pages) >= 8


def test_title_page_facts(built):
    root, inputs, pdf = built
    text = pdf_text(pdf)
    page1 = pdf_text(pdf, 0)
    from attnlab.config import digest

    assert_in(digest(CONFIG), page1)
    facts = _load(root / "data.json")
    assert facts["commit"] != ""
    assert_in(facts["commit"], page1)  # the real checkout's HEAD (or "unknown")
    man = _load(inputs["results"]["data"]["cifar10_manifest"])
    assert_in(man["checksum"]["value"], page1)
    assert_in("verified: yes", page1)
    sha = _load(inputs["results"]["data"]["vocab_report"])["source"]["sha256"]
    assert_in(sha, page1)
    assert_in("Test CPU (2 cores)", page1)
    # wall times from the benchmark TSVs (column s), and the missing ones
    assert_in(f"train_vit main {fx(61.27, 1)} 0:01:01", page1)
    assert_in("3725.5 1:02:06", page1)
    assert page1.count("notrecorded") == 4  # seconds and h:mm:ss of the two runs without a benchmark


def test_numbers_from_the_results_appear(built):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    R = inputs["results"]
    checks = _load(R["checks"]["module_checks"])
    assert_in(f"All {len(checks['checks'])} checks passed", text)
    for c in checks["checks"]:
        assert_in(c["name"], text)
    rows, cols = checks["W_O_shape"]
    assert_in(f"{rows} × {cols}", text)

    theory = _load(R["theory"]["rnn_vs_attention"])
    for m in theory["scaling"]["methods"].values():
        assert_in(f"{m['label']} {fx(m['slope_flops'])} {fx(m['slope_seconds'])}", text)
    _check_contribution_text(theory["contribution"], text)

    ev = _load(R["vit"]["main"]["eval"])
    assert_in(f"Test accuracy: {pct(ev['test_accuracy'])}", text)
    _check_heatmap_text(_load(R["vit"]["main"]["heatmap_stats"]), text)
    assert_in("3 of the 4 images are classified correctly", text)

    gen = _load(R["gpt"]["main"]["generation"])
    sp = gen["speed"]
    assert_in(f"plain generation {fx(sp['plain_tokens_per_s'], 1)} tokens/s", text)
    assert_in(f"with the KV cache {fx(sp['cached_tokens_per_s'], 1)} tokens/s ({fx(sp['speedup'])} × faster)", text)
    assert_in(gen["samples"][0]["text"], text)
    ge = _load(R["gpt"]["main"]["eval"])
    assert_in(f"{fx(ge['val_bits_per_char'], 3)} bits per character", text)
    vocab = _load(R["data"]["vocab_report"])
    assert_in(" ".join(map(str, vocab["example"]["ids"])), text)
    with open(R["gpt"]["main"]["samples"]) as fh:
        for line in fh:
            assert_in(json.loads(line)["text"], text)

    # comparison tables: every run, with its own numbers
    for run in CONFIG["vit"]["runs"]:
        e = _load(R["vit"][run]["eval"])
        assert_in(f"{run} ", text)
        assert_in(pct(e["test_accuracy"]), text)
    for run in CONFIG["gpt"]["runs"]:
        e = _load(R["gpt"][run]["eval"])
        assert_in(fx(e["val_bits_per_char"], 3), text)
    # the sincos demo from module_checks.json
    demo = checks["vit_sincos_demo"]
    if demo["status"] == "ran":
        assert_in(f"received {demo['transformer_tokens']['32']} tokens at 32×32", text)
    # appendix: the configuration itself
    assert_in("contribution_lens", text)
    assert_in("bench_tokens: 64", text)


def _lean_words(q: float, place: str) -> str:
    """The writeup's wording for a share q times its uniform baseline (thresholds 1.25, 1.05, 0.95, 0.8)."""
    if q >= 1.25:
        return f"clearly more on the {place} than chance"
    if q >= 1.05:
        return f"a slight lean towards the {place}"
    if q > 0.95:
        return f"no preference for the {place}"
    if q > 0.8:
        return f"a slight lean away from the {place}"
    return f"clearly less on the {place} than chance"


def _check_heatmap_text(stats: dict, text: str) -> None:
    """P3(d): shares against their uniform baselines, entropy against its maximum, rollout, per image."""
    hs = stats["summary"]
    cm, ucm = hs["mean_center_mass"], hs["uniform_center_mass"]
    assert_in(f"on average {pct(cm)} of it falls on the centre against {pct(ucm)} under uniform attention "
              f"({fx(cm / ucm)} times the uniform share: {_lean_words(cm / ucm, 'centre')})", text)
    if "mean_border_mass" in hs:
        bm, ubm = hs["mean_border_mass"], hs["uniform_border_mass"]
        assert_in(f"{pct(bm)} on the border against {pct(ubm)} ({fx(bm / ubm)} times the uniform share: "
                  f"{_lean_words(bm / ubm, 'border')})", text)
    hr = hs["mean_entropy"] / hs["max_entropy"]
    words = "close to uniform" if hr >= 0.95 else "moderately peaked" if hr >= 0.8 else "clearly peaked on a few patches"
    assert_in(f"{pct(hr)} of the maximum {fx(hs['max_entropy'])} (uniform): the maps are {words}", text)
    assert (squash("any preference for the centre is weak") in text) == (hr >= 0.95 and cm / ucm < 1.25)
    assert (squash("where CIFAR-10 objects usually are") in text) == (cm / ucm >= 1.25 and hr < 0.95)
    if "rollout_mean_center_mass" in hs:
        rc, ruc = hs["rollout_mean_center_mass"], hs["rollout_uniform_center_mass"]
        assert_in(f"Rollout: {pct(rc)} on the centre against {pct(ruc)} ({fx(rc / ruc)} times the uniform share: "
                  f"{_lean_words(rc / ruc, 'centre')})", text)
    for i in stats["images"]:
        assert_in(f"{i['index']} {i['true']}", text)
        assert_in(f"{pct(i['center_mass'])} {pct(i['border_mass'])} {pct(i['entropy'] / hs['max_entropy'])}", text)
    by_ent = sorted(stats["images"], key=lambda i: i["entropy"])
    peak, flat = by_ent[0], by_ent[-1]

    def who(i):
        return f"image {i['index']} ({i['true']}" + (f", predicted {i['pred']})" if i["pred"] != i["true"] else ")")

    assert_in(f"The most concentrated map is that of {who(peak)}: entropy {pct(peak['entropy'] / hs['max_entropy'])} "
              f"of the maximum, {pct(peak['center_mass'])} on the centre", text)
    assert_in(f"The flattest is that of {who(flat)}: {pct(flat['entropy'] / hs['max_entropy'])} of the maximum", text)


def _check_contribution_text(c: dict, text: str) -> None:
    """P1(d): the hidden-state law per rho, the fitted y rates, and the wording their deviation from rho calls for."""
    lens = c["lens"]
    for r, h in c["h_norms"].items():
        a, b = h[0], h[-1]
        if abs(b / a - 1) < 1e-6:
            assert_in(f"for ρ = {r} it stays at {sig(a)} for every T", text)
        else:
            word = "shrinks" if b < a else "grows"
            assert_in(f"for ρ = {r} it {word} from {sig(a)} at T = {lens[0]} to {sig(b)} at T = {lens[-1]}", text)
    for r, rate in c["fitted_rate"].items():
        assert_in(f"ρ = {r}: {fx(rate, 4)}", text)
    worst = max(abs(rate - float(r)) / float(r) for r, rate in c["fitted_rate"].items())
    assert_in(f"The largest relative deviation from ρ is {pct(worst, 2)}", text)
    assert (squash("the measured rate is ρ, as the analysis predicts") in text) == (worst <= 0.005)
    assert (squash("more than 5% off ρ") in text) == (worst > 0.05)
    q = [y / h for r in c["norms"] for y, h in zip(c["norms"][r], c["h_norms"][r])]
    assert_in(f"ranges from {sig(min(q))} to {sig(max(q))}", text)
    assert squash("per step)") not in text  # the old endpoint wording ("about 0.9996 per step") is gone


def test_heatmap_wording_follows_the_shares(built, tmp_path):
    """Near-uniform maps with a small centre lean read as weak; peaked central maps as central; rollout and
    border baselines, colour scale and per-image readings appear when the stats carry them."""
    _, inputs, pdf = built
    stats = _load(inputs["results"]["vit"]["main"]["heatmap_stats"])
    assert stats["summary"]["mean_center_mass"] / stats["summary"]["uniform_center_mass"] >= 1.25
    _check_heatmap_text(stats, pdf_text(pdf))

    def flat(d):
        # the issue's run: 1.19x the uniform centre share, entropy 97.8% of the maximum, rollout 24.9% vs 25%
        s = d["summary"]
        s.update(mean_center_mass=0.25 * 1.19, mean_entropy=0.978 * s["max_entropy"],
                 mean_border_mass=0.4, uniform_border_mass=28 / 64,
                 rollout_mean_center_mass=0.249, rollout_uniform_center_mass=0.25, rollout_mean_border_mass=0.44,
                 rollout_uniform_border_mass=28 / 64, rollout_mean_entropy=0.99 * s["max_entropy"],
                 rollout_max_entropy=s["max_entropy"], grid=[8, 8], colour_scale=[0.0, 0.05],
                 rollout_colour_scale=[0.0, 0.03])
        for i in d["images"]:
            i.update(entropy=0.99 * s["max_entropy"], center_mass=0.26, border_mass=0.43, rollout_center_mass=0.249)

    text = rebuild(built, tmp_path, {"vit/main/heatmap_stats.json": flat})
    stats = _load(tmp_path / "results/vit/main/heatmap_stats.json")
    _check_heatmap_text(stats, text)
    assert_in("1.19 times the uniform share: a slight lean towards the centre", text)
    assert_in("any preference for the centre is weak", text)
    assert_in("Rollout: 24.9% on the centre against 25.0% (1.00 times the uniform share: no preference", text)
    assert_in("One colour scale serves all 4 maps, from 0.0% to 5.0% of the attention on one patch", text)
    assert_in("the uniform share 1/64 = 1.56%", text)
    assert_in("rollout centre share", text)
    assert_in("0 of the 4 maps lean clearly on the centre and 4 are near-uniform", text)
    assert squash("where CIFAR-10 objects usually are") not in text


def test_contribution_wording_follows_the_rates(built, tmp_path):
    """The numbers the other way: rates far from rho get the 'more than 5% off' sentence, none of 'as predicted'."""
    def skew(d):
        c = d["contribution"]
        c["fitted_rate"] = {r: float(r) * 1.08 for r in c["fitted_rate"]}
        c["h_norms"]["1.0"] = [1.5] * len(c["lens"])  # level: "stays"

    text = rebuild(built, tmp_path, {"theory/rnn_vs_attention.json": skew})
    c = _load(tmp_path / "results/theory/rnn_vs_attention.json")["contribution"]
    _check_contribution_text(c, text)
    assert_in("for ρ = 1.0 it stays at 1.50 for every T", text)
    assert_in("more than 5% off ρ", text)


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

    # the CLI reports the same and exits 1
    (tmp_path / "inputs.json").write_text(json.dumps(inputs2))
    assert report_main(["--inputs", str(tmp_path / "inputs.json"), "--out", str(out)]) == 1
    assert not out.exists()


@pytest.mark.parametrize("rel, content, rule, why", [
    ("vit/main/heatmap_stats.json", "{\"images\": [", "vit_heatmaps", "is malformed"),
    ("gpt/small/eval.json", json.dumps({"val_loss": 1.0}), "evaluate_gpt", "val_bits_per_char"),
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
    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    path = copy / "theory/rnn_vs_attention.json"
    data = _load(path)
    data["contribution"]["norms"]["1.1"][-1] = float("inf")
    data["contribution"]["fitted_rate"]["1.1"] = None  # as the stage writes it: no rate through an overflow
    path.write_text(json.dumps(data))  # json.dumps writes Infinity
    assert "Infinity" in path.read_text()
    build_report(inputs2, tmp_path / "w.pdf")
    text = pdf_text(tmp_path / "w.pdf")
    assert_in("the norm reaches ∞ at T = 30", text)


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
    assert_in("Results dated 1970-01-02 00:00 UTC", pdf_text(tmp_path / "w.pdf", 0))
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
def test_tiny_pipeline_writeup_cites_its_results(tiny_run):
    """The report rule's PDF from the whole tiny pipeline (conftest.tiny_run) cites that run's own numbers."""
    res = tiny_run.workdir / "results"
    pdf = res / "report" / "writeup.pdf"
    text = pdf_text(pdf)
    inputs = _load(res / "logs" / "report.inputs.json")  # what the rule handed to attnlab.report
    R = inputs["results"]
    vit_main = next(iter(R["vit"]))
    gpt_main = next(iter(R["gpt"]))
    assert_in(f"Test accuracy: {pct(_load(res / 'vit' / vit_main / 'eval.json')['test_accuracy'])}", text)
    assert_in(f"{fx(_load(res / 'gpt' / gpt_main / 'eval.json')['val_bits_per_char'], 3)} bits per character", text)
    sp = _load(res / "gpt" / gpt_main / "generation.json")["speed"]
    assert_in(f"plain generation {fx(sp['plain_tokens_per_s'], 1)} tokens/s", text)
    for run in R["gpt"]:
        assert_in(fx(_load(res / "gpt" / run / "eval.json")["val_bits_per_char"], 3), text)
    for m in _load(res / "theory" / "rnn_vs_attention.json")["scaling"]["methods"].values():
        assert_in(f"{m['label']} {fx(m['slope_flops'])} {fx(m['slope_seconds'])}", text)
    for rule, runs in R["benchmarks"].items():
        for run, path in runs.items():
            s = benchmark_seconds(tiny_run.workdir / path)
            assert s is not None, f"{path} missing after a full run"
            assert_in(f"{rule} {run} {fx(s, 1)}", text)


def _printed(line: str, text: str) -> bool:
    """``line`` is in ``text``, possibly wrapped across a page break (which inserts the page number)."""
    if line in text:
        return True
    return any(re.search(re.escape(line[:k]) + r"\d{1,3}" + re.escape(line[k:]), text) for k in range(1, len(line)))


def test_code_appendix_prints_the_seed_classes_as_they_are(built):
    """The appendix holds the source of every seed class, as inspect reads it from the imported modules."""
    import inspect

    from attnlab.data.dialogues import DialogueDataset
    from attnlab.data.tokenizer import MyTokenizer
    from attnlab.gpt.model import DialogueGPT, DialogueLoss
    from attnlab.transformer import FFN, AttentionHead, AttentionResidual, MultiHeadedAttention, Transformer
    from attnlab.vit.model import PatchEmbed, VisionTransformer

    _, _, pdf = built
    text = pdf_text(pdf)
    assert_in("Appendix: code", text)
    appendix = text[text.index(squash("Appendix: code")):]
    for cls in (AttentionHead, MultiHeadedAttention, FFN, AttentionResidual, Transformer, PatchEmbed,
                VisionTransformer, MyTokenizer, DialogueDataset, DialogueGPT, DialogueLoss):
        src = inspect.getsource(cls)
        first = src.splitlines()[0]
        lines, start = inspect.getsourcelines(cls)
        # the header line, the file:lines reference, and every line of the body (page breaks may split it)
        assert_in(first, appendix)
        assert_in(f"lines {start}–{start + len(lines) - 1}", appendix)
        # line by line: a page break (and its page number) may fall between any two lines
        lost = [line for line in src.splitlines() if not _printed(squash(line), appendix)]
        assert not lost, f"{cls.__name__}: lines missing from the appendix: {lost[:3]}"
    assert_in("def generate(", appendix)  # the seed's generation, a method of DialogueGPT


def test_code_appendix_follows_the_source(tmp_path):
    """A changed source file changes the listing: it is read at build time, not copied."""
    from attnlab.report import code

    src = tmp_path / "src"
    (src / "attnlab").mkdir(parents=True)
    f = src / "attnlab" / "mod.py"
    f.write_text("import os\n\n\n@staticmethod\ndef helper(x):\n    return x + 1\n\n\nclass A:\n    pass\n")
    assert code.definition_source(f, "helper") == ("@staticmethod\ndef helper(x):\n    return x + 1\n", 4, 6)
    f.write_text("class A:\n    y = 2\n")
    assert code.definition_source(f, "A") == ("class A:\n    y = 2\n", 1, 2)
    with pytest.raises(code.CodeListingError, match="helper"):
        code.definition_source(f, "helper")
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


# ---------------------------------------- the text follows the numbers (issue 16) ---
def rebuild(built, tmp_path, edits: dict | None = None, config=None) -> str:
    """The PDF text for a copy of the results with ``edits`` ({relative JSON path: fn(data) -> None}) applied.

    ``config(cfg)`` may change the config handed to the report (the run settings the writeup quotes).
    """
    root, inputs, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    for rel, fn in (edits or {}).items():
        data = _load(copy / rel)
        fn(data)
        (copy / rel).write_text(json.dumps(data))
    if config is not None:
        config(inputs2["config"])
    build_report(inputs2, tmp_path / "w.pdf")
    return pdf_text(tmp_path / "w.pdf")


def _set(**kv):
    return lambda d: d.update(kv)


def test_vit_accuracy_wording_interval_and_validation_set(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    ev = _load(inputs["results"]["vit"]["main"]["eval"])
    p, n = ev["test_accuracy"], ev["n_test"]
    half = 1.96 * math.sqrt(p * (1 - p) / n)  # the normal-approximation binomial interval, by hand
    assert_in(f"binomial 95% interval of ±{fx(100 * half, 1)} points ({pct(p - half)} to {pct(p + half)})", text)
    assert p < 0.8 and squash("below the high 80s") in text and squash("in the high 80s the homework") not in text
    # no n_val in this summary: nothing is claimed about the validation set being the test set
    assert squash("same") + str(n) + squash("test images") not in text

    def wording(acc):
        def edit(d):
            d["test_accuracy"] = acc
        return edit

    hi = rebuild(built, tmp_path / "hi", {"vit/main/eval.json": wording(0.871)})
    assert_in("Test accuracy: 87.1%", hi)
    assert_in("That is in the high 80s the homework expects", hi)
    mid = rebuild(built, tmp_path / "mid", {"vit/main/eval.json": wording(0.855)})
    assert_in("That is in the 80s, but short of the high 80s (87% or more)", mid)
    assert squash("in the high 80s the homework expects") not in mid
    # the trainer records n_val: equal to n_test means validation is the test set
    assert squash("The evaluated weights") not in text  # the synthetic eval.json records no epoch
    same = rebuild(built, tmp_path / "same", {"vit/main/train_summary.json": _set(n_val=n),
                                              "vit/main/eval.json": _set(epoch=3)})
    assert_in("The evaluated weights are the last epoch's, not picked for their accuracy".replace("'", "’"), same)
    picked = rebuild(built, tmp_path / "picked", {"vit/main/train_summary.json": _set(n_val=n),
                                                  "vit/main/eval.json": _set(epoch=2)})
    assert_in("The evaluated weights are from epoch 2 of 3, picked on the same images the test accuracy is "
              "measured on, so that accuracy is biased upwards", picked)
    assert_in(f"The per-epoch \"validation\" set is the same {n} test images", same.replace("“", '"').replace("”", '"'))


def test_vit_epochs_against_plan_and_budget(built, tmp_path):
    _, _, pdf = built
    text = pdf_text(pdf)
    assert squash("of its time budget") not in text  # the synthetic summary has no plan nor budget
    budget = rebuild(built, tmp_path / "b", {"vit/main/train_summary.json": _set(
        epochs=204, planned_epochs=300, time_budget_s=280, stopped_by_budget=True)})
    assert_in("trained for 204 epochs of 300 planned", budget)
    assert_in("It stopped there because of its time budget of 0:04:40", budget)
    full = rebuild(built, tmp_path / "f", {"vit/main/train_summary.json": _set(
        epochs=300, planned_epochs=300, time_budget_s=280, stopped_by_budget=False)})
    assert_in("trained for 300 epochs of 300 planned", full)
    assert_in("It ran all planned epochs", full)
    assert squash("because of its time budget") not in full
    # an older summary without stopped_by_budget: inferred from epochs < planned with a budget set
    old = rebuild(built, tmp_path / "o", {"vit/main/train_summary.json": _set(
        epochs=7, planned_epochs=300, time_budget_s=60)})
    assert_in("It stopped there because of its time budget of 0:01:00", old)


def test_vit_train_below_validation_is_explained_only_when_true(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    rows = list(csv.DictReader(open(inputs["results"]["vit"]["main"]["metrics"])))
    assert float(rows[-1]["train_acc"]) > float(rows[-1]["val_acc"])  # as written: no explanation due
    assert squash("is below the validation accuracy") not in text

    def aug(cfg):
        cfg["vit"]["train"].update(mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)

    copy_rows = [dict(r) for r in rows]
    copy_rows[-1]["train_acc"] = "0.3"  # the numbers the other way: training below validation
    for tmp, cfg, expect in ((tmp_path / "mix", aug, "mixup and cutmix blend"),
                             (tmp_path / "plain", None, "without mixup")):
        text2 = _rebuild_with_metrics(built, tmp, copy_rows, cfg)
        assert_in(f"the training accuracy, {pct(0.3)}, is below the validation accuracy, "
                  f"{pct(float(rows[-1]['val_acc']))}", text2)
        assert_in(expect, text2)
        assert (squash("label smoothing (0.1)") in text2) == (cfg is not None)


def _rebuild_with_metrics(built, tmp, rows, config):
    root, inputs, _ = built
    copy = tmp / "results"
    shutil.copytree(root / "results", copy)
    _write_csv(copy / "vit/main/metrics.csv", rows)
    inputs2 = json.loads(json.dumps(inputs).replace(str(root / "results"), str(copy)))
    if config is not None:
        config(inputs2["config"])
    build_report(inputs2, tmp / "w.pdf")
    return pdf_text(tmp / "w.pdf")


def test_pos_embed_of_the_actual_run(built, tmp_path):
    _, _, pdf = built
    text = pdf_text(pdf)
    # CONFIG's vit model: learned, 32x32 images, patch 4 -> 64 patches + class token
    assert_in("Run main used pos_embed: learned: a table of 65 rows", text)
    assert squash("the table is the limit") in text and squash("longest sequence seen in training") not in text

    def sincos(cfg):
        cfg["vit"]["model"]["pos_embed"] = "sincos"

    other = rebuild(built, tmp_path, config=sincos)
    assert_in("Run main used pos_embed: sincos, the length-free code above", other)
    assert squash("a table of 65 rows") not in other


def _timings(rnn, std, naive=None, rearr=None, outliers=(), gpu=False):
    """An edit of rnn_vs_attention.json: these median seconds (T = 16, 32, 64), outliers flagged on the RNN."""
    def edit(d):
        sc = d["scaling"]
        M = sc["methods"]
        M["rnn_loop"]["seconds"] = rnn
        M["attention_standard"]["seconds"] = std
        M["attention_naive"]["seconds"] = naive or std
        M["attention_rearranged"]["seconds"] = rearr or [x / 10 for x in rnn]
        M["rnn_loop"]["outliers"] = list(outliers)
        M["rnn_loop"]["slope_seconds_clean"] = 0.97
        if gpu:
            d["scaling_gpu"] = json.loads(json.dumps({**sc, "device": "cuda", "hardware": "Test GPU 80GB",
                                                      "torch_threads": None}))
    return edit


def test_scaling_text_says_where_and_how_it_was_measured(built):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    th = _load(inputs["results"]["theory"]["rnn_vs_attention"])
    S = th["scaling"]
    assert S["torch_threads"] == 1 and S["device"] == "cpu"  # make_results runs the stage on one thread
    assert_in(f"on the CPU of the pipeline's machine, {S['hardware']}, with 1 torch thread".replace("'", "’"), text)
    assert_in(f"Forward time is the median of {S['repeats']} timed runs", text)
    assert_in("The run had no GPU, so none of these numbers measures parallel hardware", text)
    assert squash("on the machine in the title page") not in text
    for old in ("flops say", "GFLOP/s there"):
        assert squash(old) not in text
    # the table's columns say what they hold
    assert_in("time slope (CPU)", text)
    assert_in(f"median s at T = {S['seq_lens'][-1]}", text)


def test_full_comparison_with_softmax_attention_follows_the_times(built, tmp_path):
    # full softmax attention overtakes the RNN from T = 32, and the RNN point at 64 is flagged
    text = rebuild(built, tmp_path / "a", {"theory/rnn_vs_attention.json": _timings(
        rnn=[1e-3, 2e-3, 4e-3], std=[0.5e-3, 2.5e-3, 10e-3], outliers=[64])})
    assert_in("On the CPU at T = 64, the step-by-step RNN took 10.0 times as long as the rearranged attention", text)
    assert_in("With one thread this is not parallel hardware at work", text)
    assert_in("The comparison with full softmax attention, which is O(T2), goes the other way at length: at T = 64 "
              f"it took {sig(10e-3)} s, {sig(10e-3 / 4e-3)} times the RNN's time, and it is slower than the RNN "
              "from T = 32 on".replace("'", "’"), text)
    assert_in("Flagged points (median time more than 1.5× off the method's robust line): "
              "RNN, step by step (eq. 1-2) at T = 64".replace("'", "’"), text)
    assert_in("0.97 (RNN, step by step (eq. 1-2))", text)
    # the other way: softmax attention faster than the RNN everywhere, no outlier
    text = rebuild(built, tmp_path / "b", {"theory/rnn_vs_attention.json": _timings(
        rnn=[10e-3, 20e-3, 40e-3], std=[1e-3, 2e-3, 8e-3])})
    assert_in(f"At T = 64 full softmax attention, which is O(T2), took {sig(8e-3)} s, {sig(40e-3 / 8e-3)} times "
              "less than the RNN: over the lengths measured its quadratic work never cost more", text)
    assert squash("goes the other way") not in text
    assert_in("No median time is more than 1.5× off its method's robust line".replace("'", "’"), text)
    assert squash("Flagged points") not in text
    # slower at every length
    text = rebuild(built, tmp_path / "c", {"theory/rnn_vs_attention.json": _timings(
        rnn=[1e-3, 2e-3, 4e-3], std=[2e-3, 3e-3, 9e-3])})
    assert_in("and it is slower than the RNN at every length measured", text)


def test_gpu_timings_make_the_parallelism_point(built, tmp_path):
    text = rebuild(built, tmp_path, {"theory/rnn_vs_attention.json": _timings(
        rnn=[1e-3, 2e-3, 4e-3], std=[0.5e-3, 2.5e-3, 10e-3], gpu=True)})
    assert_in("The same methods were timed on the run's GPU, Test GPU 80GB".replace("'", "’"), text)
    assert_in("On the GPU at T = 64, the step-by-step RNN took 10.0 times as long", text)
    assert_in("Here the parallelism argument is measured", text)
    assert squash("The run had no GPU") not in text
    failed = rebuild(built, tmp_path / "f", {"theory/rnn_vs_attention.json": _set(
        scaling_gpu=None, scaling_gpu_error="CUDA out of memory")})
    assert_in("The run had a GPU, but timing on it failed (CUDA out of memory)", failed)
    assert squash("Here the parallelism argument is measured") not in failed


def test_heatmap_figure_uses_one_colour_scale(tmp_path):
    """heatmaps.py draws every map on one scale, the smallest to the largest patch share in the figure."""
    import torch

    from attnlab.vit.heatmaps import plot_overlays

    imgs = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    heat = torch.full((3, 2, 2), 0.25)
    heat[1] = torch.tensor([[0.7, 0.1], [0.1, 0.1]])  # the peak and the floor of the whole figure
    heat[2] = torch.tensor([[0.4, 0.2], [0.2, 0.2]])
    scale = plot_overlays(imgs, heat, ["a", "b", "c"], "t", tmp_path / "h.png")
    assert scale == (pytest.approx(0.1), pytest.approx(0.7))
    assert (tmp_path / "h.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the other way: a flatter figure gets a narrower scale, so colours are comparable within a figure only
    assert plot_overlays(imgs[:2], heat[[0, 2]], ["a", "c"], "t", tmp_path / "h2.png") == (
        pytest.approx(0.2), pytest.approx(0.4))


def test_generation_speed_is_called_latency_bound_only_when_it_is(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    R = inputs["results"]["gpt"]["main"]
    sp = _load(R["generation"])["speed"]
    n = _load(R["train_summary"])["n_params"]
    step = 1 / sp["cached_tokens_per_s"]
    bw = 4 * n / step  # bytes of float32 weights read once per step, by hand
    assert_in(f"a cached step took {sig(step * 1000)} ms. Reading all {n // 1000} {n % 1000:03d} weights once "
              f"({sig(4 * n / 1e6)} MB in float32) in that time is an effective {sig(bw / 1e9)} GB/s", text)
    assert bw < 5e9 and squash("well below a CPU's memory bandwidth".replace("'", "’")) in text
    assert squash("memory-bound") not in text.replace(squash("not memory-bound"), "")
    assert_in("training runs batches of 16 sequences with the backward pass", text)
    assert_in("That is not like for like", text)
    # on a GPU: slow steps are launch-bound; a (hypothetical) huge model read at 400 GB/s would be memory-bound
    gpu = rebuild(built, tmp_path / "g", {"gpt/main/train_summary.json": _set(device="cuda")})
    assert_in("far below a GPU's memory bandwidth (hundreds to thousands of GB/s): at batch 1 this model is "
              "latency- or launch-bound, not memory-bound".replace("'", "’"), gpu)
    big = rebuild(built, tmp_path / "m", {"gpt/main/train_summary.json": _set(device="cuda", n_params=int(1e11 / 4 * step * 4))})
    assert_in("reading the weights may be what bounds each step (memory-bound)", big)


def test_validation_minimum_kept_epoch_and_distinct_words(built, tmp_path):
    _, inputs, pdf = built
    text = pdf_text(pdf)
    rows = list(csv.DictReader(open(inputs["results"]["gpt"]["main"]["metrics"])))
    best = min(rows, key=lambda r: float(r["val_loss"]))
    assert best is rows[-1]
    assert_in(f"its minimum was {fx(float(best['val_loss']), 3)} at epoch {best['epoch']}, the last epoch", text)
    assert_in("The checkpoint evaluated below holds the last epoch's weights".replace("'", "’"), text)
    assert_in("distinct space-separated tokens, punctuation included, divided by all tokens of a sample", text)
    # the numbers the other way: the minimum in the middle, the best epoch kept
    rows2 = [dict(r) for r in rows]
    rows2[1]["val_loss"] = "3.5"
    root, inputs0, _ = built
    copy = tmp_path / "results"
    shutil.copytree(root / "results", copy)
    _write_csv(copy / "gpt/main/metrics.csv", rows2)
    s = _load(copy / "gpt/main/train_summary.json")
    s.update(kept_epoch=2, best_epoch=2, best_val_loss=3.5, selection="best_val_loss")
    (copy / "gpt/main/train_summary.json").write_text(json.dumps(s))
    inputs2 = json.loads(json.dumps(inputs0).replace(str(root / "results"), str(copy)))
    build_report(inputs2, tmp_path / "w.pdf")
    text2 = pdf_text(tmp_path / "w.pdf")
    last = float(rows2[-1]["val_loss"])
    assert_in(f"its minimum was 3.500 at epoch 2, after which it rose again by {fx(last - 3.5, 3)} (over-fitting)",
              text2)
    assert_in("holds the weights of epoch 2 (the epoch of lowest validation loss)", text2)
    # a minimum in the middle that the last epoch ties to 3 decimals: levelled off, not over-fitting
    rows3 = [dict(r) for r in rows]
    rows3[1]["val_loss"] = "3.5"
    rows3[-1]["val_loss"] = "3.5002"
    _write_csv(copy / "gpt/main/metrics.csv", rows3)
    build_report(inputs2, tmp_path / "w3.pdf")
    text3 = pdf_text(tmp_path / "w3.pdf")
    assert_in("its minimum was 3.500 at epoch 2, and the later epochs stayed within 0.001 of it (levelled off)", text3)
    assert squash("rose again by") not in text3
    # one epoch only: no minimum to speak of
    _write_csv(copy / "gpt/main/metrics.csv", rows[:1])
    build_report(inputs2, tmp_path / "w1.pdf")
    text1 = pdf_text(tmp_path / "w1.pdf")
    assert_in(f"Validation loss after the only epoch: {fx(float(rows[0]['val_loss']), 3)}", text1)
    assert squash("its minimum was") not in text1


def test_long_dialogues_are_explained_against_max_len(built, tmp_path):
    _, _, pdf = built
    text = pdf_text(pdf)
    assert_in("The model has learned positions for 128 tokens only", text)  # CONFIG gpt.model.max_len
    assert_in("cut into max_len-token pieces that overlap by one token", text)
    lt = {"mean": 30.0, "median": 24.0, "p95": 90, "p99": 120, "max": 300}
    long = rebuild(built, tmp_path / "l", {"data/shakespeare/vocab_report.json": _set(length_tokens=lt)})
    assert_in("The longest dialogue has 300 tokens (99% have at most 120, the median 24), so some exceed max_len", long)
    short = rebuild(built, tmp_path / "s", {"data/shakespeare/vocab_report.json": _set(length_tokens={**lt, "max": 128})})
    assert_in("so in run main every dialogue fits and nothing is cut", short)


def test_checksum_lines_say_what_was_checked(built, tmp_path):
    root, inputs, pdf = built
    page1 = pdf_text(pdf, 0)
    man = _load(inputs["results"]["data"]["cifar10_manifest"])
    assert_in(f"md5 {man['checksum']['value']} verified: yes (matches the expected value)", page1)
    sha = _load(inputs["results"]["data"]["vocab_report"])["source"]["sha256"]
    assert_in(f"sha256 {sha} not checked: no expected checksum applies to this source", page1)
    assert squash("official tarball's".replace("'", "’")) not in page1  # CONFIG downloads: no path

    # a local path with no expected checksum: the configured md5 is named as the tarball's, not this file's
    def local(cfg):
        cfg["data"]["cifar10"].update(path="/data/cifar-10-python.tar.gz", sha256=None)

    def unchecked(d):
        d["checksum"].update(expected=None, verified=False)

    text = rebuild(built, tmp_path / "p", {"data/cifar10/manifest.json": unchecked}, config=local)
    assert_in(f"md5 {man['checksum']['value']} not checked: no expected checksum applies to this source", text)
    assert_in("The data.cifar10.md5 in the configuration (appendix) is the official tarball's checksum; it is not "
              "applied to the local path this run read, and no data.cifar10.sha256 was set for it".replace("'", "’"),
              text)
    assert_in("Its data.cifar10.md5 belongs to the official tarball, not to the local file this run read", text)

    # data.cifar10.sha256 set (issue 11): the manifest checks sha256; a match and a mismatch read differently
    digest = hashlib.sha256(b"x").hexdigest()

    def with_sha(cfg):
        cfg["data"]["cifar10"].update(path="/data/cifar-10-python.tar.gz", sha256=digest)

    def sha_ok(d):
        d["checksum"] = {"algorithm": "sha256", "value": digest, "expected": digest, "verified": True}

    ok = rebuild(built, tmp_path / "s", {"data/cifar10/manifest.json": sha_ok}, config=with_sha)
    assert_in(f"sha256 {digest} verified: yes (matches the expected value)", ok)
    assert squash("official tarball's".replace("'", "’")) not in ok

    def sha_bad(d):
        d["checksum"] = {"algorithm": "sha256", "value": "0" * 64, "expected": digest, "verified": False}

    bad = rebuild(built, tmp_path / "b", {"data/cifar10/manifest.json": sha_bad}, config=with_sha)
    assert_in(f"sha256 {'0' * 64} verified: no (expected {digest})", bad)


def test_two_times_per_run_are_explained(built):
    _, inputs, pdf = built
    page1 = pdf_text(pdf, 0)
    s = _load(inputs["results"]["vit"]["main"]["train_summary"])
    assert_in(f"train_vit main {fx(61.27, 1)} 0:01:01 {fx(s['train_seconds'], 1)}", page1)
    g = _load(inputs["results"]["gpt"]["main"]["train_summary"])
    assert_in(f"train_gpt main {fx(3725.5, 1)} 1:02:06 {fx(g['train_seconds'], 1)}", page1)
    assert_in("Each training run has two times. Job seconds is Snakemake's benchmark: record".replace("'", "’"), page1)
    assert_in("Training-loop seconds is what the trainer itself counts in train_summary.json", page1)


def test_run_boilerplate_reads_naturally_with_one_run_each(built, tmp_path):
    _, _, pdf = built
    assert_in("The first run of each kind (main, main) is discussed in detail; all 4 runs appear", pdf_text(pdf))
    root, inputs, _ = built

    def one(cfg):
        cfg["vit"]["runs"] = {"main": {}}
        cfg["gpt"]["runs"] = {"main": {}}

    inputs2 = json.loads(json.dumps(inputs))
    one(inputs2["config"])
    del inputs2["results"]["vit"]["wide"], inputs2["results"]["gpt"]["small"]
    del inputs2["results"]["benchmarks"]["train_vit"]["wide"], inputs2["results"]["benchmarks"]["train_gpt"]["small"]
    build_report(inputs2, tmp_path / "w.pdf")
    text = pdf_text(tmp_path / "w.pdf")
    assert_in("Both runs are discussed in detail below, and their numbers are collected in the comparison tables", text)
    assert squash("The first run of each kind") not in text


def test_figure_captions_define_what_is_drawn(built):
    _, _, pdf = built
    text = pdf_text(pdf)
    assert_in("Right: validation bits per character; the dashed grey line at 2.12 bits/char is nanoGPT", text)
    assert_in("shakespeare-char baby GPT (1.47 nats/char on its own split)", text)
    assert_in("Dashed, same colour: to the hidden state", text)
    assert_in("each row normalised to the share of that true class", text)


def _gpt_baseline(d: dict) -> None:
    """An eval.json as evaluate_gpt writes it with the Kneser-Ney baseline (issue 12)."""
    kn_loss = d["val_loss"] + 0.125
    d.update({"val_bits_per_char_open": 2.2345, "spell_bits_per_unk": 21.7, "perplexity_ratio": math.exp(-0.125),
              "baseline": {"model": "interpolated Kneser-Ney (modified discounts)", "order": 4, "val_loss": kn_loss,
                           "val_perplexity": math.exp(kn_loss), "val_bits_per_char": 2.1789,
                           "val_bits_per_char_open": 2.3987, "n_tokens": d["n_tokens"], "char_order": 5}})


def _gpt_mixture(d: dict) -> None:
    _gpt_baseline(d)
    ppl = math.exp(d["val_loss"] - 0.2)
    d["mixture"] = {"definition": "per target ...", "lambda_per_fold": [0.63, 0.57], "perplexity": ppl,
                    "bits_per_char": 1.8765, "bits_per_char_open": 2.0987,
                    "ratio_to_baseline": ppl / d["baseline"]["val_perplexity"],
                    "ratio_to_model": ppl / d["val_perplexity"]}


def test_gpt_mixture_has_its_own_labelled_sentence(built, tmp_path):
    """The model + n-gram mixture appears as a combination, with its cross-fitted weights, beside (not instead
    of) DialogueGPT's own row; an eval.json with the baseline but no mixture still renders, without it."""
    plain = rebuild(built, tmp_path / "plain", {"gpt/main/eval.json": _gpt_baseline})
    mixed = rebuild(built, tmp_path / "mixed", {"gpt/main/eval.json": _gpt_mixture})
    ev = _load(built[1]["results"]["gpt"]["main"]["eval"])
    _gpt_mixture(ev)
    m = ev["mixture"]
    for text in (plain, mixed):
        # the table's DialogueGPT row keeps the model's own perplexity and bits/char
        assert_in(f"DialogueGPT {fx(ev['val_perplexity'], 1)} {fx(ev['val_bits_per_char'], 3)}", text)
        assert_in(f"Kneser-Ney 4-gram {fx(ev['baseline']['val_perplexity'], 1)}", text)
    assert squash("A combination with the n-gram model") not in plain
    assert_in("A combination with the n-gram model, not DialogueGPT alone.", mixed)
    assert_in(f"gives perplexity {fx(m['perplexity'], 1)} ({fx(m['bits_per_char'], 3)} bits/char, open vocabulary "
              f"{fx(m['bits_per_char_open'], 3)}): {fx(m['ratio_to_baseline'], 3)} × the Kneser-Ney perplexity and "
              f"{fx(m['ratio_to_model'], 3)} × DialogueGPT", mixed)
    assert_in("cross-fitted, never chosen on the targets it scores", mixed)
    assert_in("= 0.63 on half A, chosen on B; 0.57 on half B, chosen on A", mixed)
