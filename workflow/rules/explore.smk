# The interactive attention explorer: one self-contained offline HTML page per run (attnlab.explore).
#
# Each page reruns only when its checkpoint, its data or the page's own code change: the Python it
# runs (params.code) and the JavaScript, CSS and HTML it inlines (params.assets, by content).

EXPLORE_ASSETS = SRC / "attnlab" / "explore" / "assets"


def explore_assets_digest():
    """A ``params`` value: the digest of the files the pages inline, by name and content."""
    import hashlib

    h = hashlib.sha256()
    for path in sorted(p for p in EXPLORE_ASSETS.iterdir() if p.is_file()):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


rule explore_vit:
    input:
        checkpoint="results/vit/{run}/checkpoint.pt",
        test=f"{CIFAR}/test.pt",
    output:
        html=report(
            "results/vit/{run}/attention.html",
            caption="../../report/explore_vit.rst",
            category="Attention explorer",
            subcategory="ViT",
            labels={"run": "{run}", "page": "ViT attention explorer"},
        ),
    params:
        n_images=lambda wc: run_section("vit", wc.run, ["heatmaps"])["heatmaps"]["n_images"],
        code=code("attnlab.explore.vit"),
        assets=explore_assets_digest(),
    log:
        "results/logs/explore_vit/{run}.log",
    benchmark:
        "results/benchmarks/explore_vit/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/explore_vit.py"


rule explore_gpt:
    input:
        checkpoint="results/gpt/{run}/checkpoint.pt",
        vocab=f"{SHAKESPEARE}/vocab.json",
        dialogues=f"{SHAKESPEARE}/dialogues.pt",
        generation="results/gpt/{run}/generation.json",
    output:
        html=report(
            "results/gpt/{run}/attention.html",
            caption="../../report/explore_gpt.rst",
            category="Attention explorer",
            subcategory="DialogueGPT",
            labels={"run": "{run}", "page": "DialogueGPT attention explorer"},
        ),
    params:
        code=code("attnlab.explore.gpt"),
        assets=explore_assets_digest(),
    log:
        "results/logs/explore_gpt/{run}.log",
    benchmark:
        "results/benchmarks/explore_gpt/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/explore_gpt.py"
