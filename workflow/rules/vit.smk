# ViT on CIFAR-10, one set of jobs per run of vit.runs (the {run} wildcard).

CIFAR = "results/data/cifar10"


rule train_vit:
    input:
        train=f"{CIFAR}/train.pt",
        test=f"{CIFAR}/test.pt",
    output:
        checkpoint="results/vit/{run}/checkpoint.pt",
        metrics="results/vit/{run}/metrics.csv",
        curves=report("results/vit/{run}/curves.png", caption="../../report/curves_vit.rst",
                      category="ViT", subcategory="{run}"),
        summary="results/vit/{run}/train_summary.json",
    params:
        section=lambda wc: run_section("vit", wc.run, ["model", "train"]),
        code=code("attnlab.vit.train"),
    log:
        "results/logs/train_vit/{run}.log",
    benchmark:
        "results/benchmarks/train_vit/{run}.tsv"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=480,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_vit.py"


rule evaluate_vit:
    input:
        checkpoint="results/vit/{run}/checkpoint.pt",
        test=f"{CIFAR}/test.pt",
    output:
        eval="results/vit/{run}/eval.json",
        confusion=report("results/vit/{run}/confusion.png", caption="../../report/confusion.rst",
                         category="ViT", subcategory="{run}"),
    params:
        code=code("attnlab.vit.evaluate"),
    log:
        "results/logs/evaluate_vit/{run}.log",
    benchmark:
        "results/benchmarks/evaluate_vit/{run}.tsv"
    threads: 2
    resources:
        mem_mb=8000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate_vit.py"


rule vit_heatmaps:
    input:
        checkpoint="results/vit/{run}/checkpoint.pt",
        test=f"{CIFAR}/test.pt",
    output:
        heatmaps=report("results/vit/{run}/heatmaps.png", caption="../../report/heatmaps.rst",
                        category="ViT", subcategory="{run}"),
        rollout=report("results/vit/{run}/rollout.png", caption="../../report/rollout.rst",
                       category="ViT", subcategory="{run}"),
        stats="results/vit/{run}/heatmap_stats.json",
    params:
        n_images=lambda wc: run_section("vit", wc.run, ["heatmaps"])["heatmaps"]["n_images"],
        code=code("attnlab.vit.heatmaps"),
    log:
        "results/logs/vit_heatmaps/{run}.log",
    benchmark:
        "results/benchmarks/vit_heatmaps/{run}.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/vit_heatmaps.py"
