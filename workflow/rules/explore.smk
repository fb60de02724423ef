# The interactive attention explorer: one self-contained offline HTML page per run (attnlab.explore).
#
# Each page reruns only when its checkpoint, its data or the page's own code change: the Python it
# runs (params.code) and the JavaScript, CSS and HTML it inlines (params.assets, by content).

import hashlib

# The digest of the files the pages inline, by name and content (a ``params`` value of both rules).
EXPLORE_ASSETS = sorted(p for p in SRC.joinpath("attnlab", "explore", "assets").iterdir() if p.is_file())
EXPLORE_ASSETS_DIGEST = hashlib.sha256(
    b"".join(b"%s\0%s\0" % (p.name.encode(), p.read_bytes()) for p in EXPLORE_ASSETS)
).hexdigest()[:16]


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
        assets=EXPLORE_ASSETS_DIGEST,
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
        assets=EXPLORE_ASSETS_DIGEST,
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


# Screenshots of each view of a page, in headless Chromium with the network off (explore.screenshots).
rule explore_views:
    input:
        html="results/{family}/{run}/attention.html",
    output:
        views=report(
            directory("results/{family}/{run}/attention_views"),
            patterns=["{view}.png"],
            caption="../../report/explore_views.rst",
            category="Attention explorer",
            subcategory="screenshots",
            labels={"model": "{family}", "run": "{run}", "view": "{view}"},
        ),
    wildcard_constraints:
        family="vit|gpt",
    params:
        code=code("attnlab.explore.views"),
    log:
        "results/logs/explore_views/{family}_{run}.log",
    benchmark:
        "results/benchmarks/explore_views/{family}_{run}.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/explore.yaml"
    script:
        "../scripts/explore_views.py"
