# RNN vs attention: measured scaling with sequence length, and contribution norms.

rule rnn_vs_attention:
    output:
        json="results/theory/rnn_vs_attention.json",
        csv="results/theory/scaling.csv",
        scaling=report("results/theory/scaling.svg", caption="../../report/scaling.rst",
                       category="RNN vs attention"),
        contribution=report("results/theory/contribution.svg", caption="../../report/contribution.rst",
                            category="RNN vs attention"),
    params:
        section=config["theory"],
        code=code("attnlab.theory", "attnlab.theory.__main__"),
    log:
        "results/logs/rnn_vs_attention.log",
    benchmark:
        "results/benchmarks/rnn_vs_attention/rnn_vs_attention.tsv"
    # CPU timings are the point here: the job reserves every core, so no other job runs beside it, and
    # times on one torch thread (with theory.gpu: auto a visible CUDA device is timed as well)
    threads: quiet_cores()
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/rnn_vs_attention.py"
