# Homework Problem 2: the attention modules' checks, recorded as JSON + a mask figure.

rule module_checks:
    output:
        checks="results/checks/module_checks.json",
        mask=report("results/checks/attention_mask.png", caption="../../report/attention_mask.rst",
                    category="Module checks"),
    params:
        code=code("attnlab.checks", "attnlab.checks.__main__"),
    log:
        "results/logs/module_checks.log",
    benchmark:
        "results/benchmarks/module_checks/module_checks.tsv"
    threads: 1
    resources:
        mem_mb=2000,
        runtime=15,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/module_checks.py"
