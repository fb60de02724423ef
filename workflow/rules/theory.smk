# RNN vs attention: measured scaling with sequence length, and contribution norms.

rule rnn_vs_attention:
    output:
        json="results/theory/rnn_vs_attention.json",
        csv="results/theory/scaling.csv",
        scaling="results/theory/scaling.png",
        contribution="results/theory/contribution.png",
    params:
        section=config["theory"],
        code=code("attnlab.theory", "attnlab.theory.__main__"),
    log:
        "results/logs/rnn_vs_attention.log",
    benchmark:
        "results/benchmarks/rnn_vs_attention/rnn_vs_attention.tsv"
    threads: 1  # timings are the point here: one thread, no neighbours on the same cores
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/rnn_vs_attention.py"
