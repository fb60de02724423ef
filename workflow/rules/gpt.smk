# DialogueGPT on tiny-shakespeare dialogues, one set of jobs per run of gpt.runs.

SHAKESPEARE = "results/data/shakespeare"


rule train_gpt:
    input:
        dialogues=f"{SHAKESPEARE}/dialogues.pt",
        vocab=f"{SHAKESPEARE}/vocab.json",
    output:
        checkpoint="results/gpt/{run}/checkpoint.pt",
        metrics="results/gpt/{run}/metrics.csv",
        samples="results/gpt/{run}/samples.jsonl",
        curves=report("results/gpt/{run}/curves.png", caption="../../report/curves_gpt.rst",
                      category="DialogueGPT", subcategory="{run}"),
        summary="results/gpt/{run}/train_summary.json",
    params:
        section=lambda wc: run_section("gpt", wc.run, ["model", "train"]),
        code=code("attnlab.gpt.train"),
    log:
        "results/logs/train_gpt/{run}.log",
    benchmark:
        "results/benchmarks/train_gpt/{run}.tsv"
    threads: 4
    resources:
        mem_mb=16000,
        runtime=480,
        gpu=1,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/train_gpt.py"


rule ngram_gpt:
    # The Kneser-Ney baseline on the same ids and targets, every order of
    # gpt.baseline.orders; the order with the best validation loss is the one
    # evaluate_gpt scores beside each run.
    input:
        dialogues=f"{SHAKESPEARE}/dialogues.pt",
        vocab=f"{SHAKESPEARE}/vocab.json",
        vocab_report=f"{SHAKESPEARE}/vocab_report.json",
        val=f"{SHAKESPEARE}/val.txt",
        source=shakespeare_text,  # the spelling model reads the training words dialogues.pt has as <unk>
    output:
        ngram="results/gpt/ngram.json",
    params:
        section=lambda wc: config["gpt"]["baseline"],
        code=code("attnlab.gpt.ngram"),
    log:
        "results/logs/ngram_gpt.log",
    benchmark:
        "results/benchmarks/ngram_gpt/ngram_gpt.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/ngram_gpt.py"


rule evaluate_gpt:
    input:
        checkpoint="results/gpt/{run}/checkpoint.pt",
        vocab=f"{SHAKESPEARE}/vocab.json",
        text=f"{SHAKESPEARE}/val.txt",
        ngram="results/gpt/ngram.json",
        dialogues=f"{SHAKESPEARE}/dialogues.pt",
        vocab_report=f"{SHAKESPEARE}/vocab_report.json",
        source=shakespeare_text,
    output:
        eval="results/gpt/{run}/eval.json",
    params:
        code=code("attnlab.gpt.evaluate"),
    log:
        "results/logs/evaluate_gpt/{run}.log",
    benchmark:
        "results/benchmarks/evaluate_gpt/{run}.tsv"
    threads: 2
    resources:
        mem_mb=8000,  # the model, and the n-gram baseline refit (under 1 GB at order 5)
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/evaluate_gpt.py"


rule generate_gpt:
    input:
        checkpoint="results/gpt/{run}/checkpoint.pt",
        vocab=f"{SHAKESPEARE}/vocab.json",
    output:
        txt="results/gpt/{run}/generation.txt",
        json="results/gpt/{run}/generation.json",
    params:
        section=lambda wc: run_section("gpt", wc.run, ["generate"]),
        code=code("attnlab.gpt.generate"),
    log:
        "results/logs/generate_gpt/{run}.log",
    benchmark:
        "results/benchmarks/generate_gpt/{run}.tsv"
    threads: quiet_cores()  # the generation timings (4e) want quiet cores: no other job beside them
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/train.yaml"
    script:
        "../scripts/generate_gpt.py"
