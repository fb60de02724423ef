# Data: CIFAR-10 and tiny-shakespeare, from the official URLs or offline `path`s.
#
# With data.<set>.path set, the preparing rule reads that path directly (the
# input functions cifar10_source / shakespeare_text in common.smk pick it), so
# the download rule drops out of the DAG.

# md5 is the official tarball's checksum: passed only where it applies (datasources.cifar10_md5).
from datasources import cifar10_md5  # noqa: E402 (workflow/lib is on sys.path, see the Snakefile)


rule download_cifar10:
    output:
        CIFAR_DOWNLOAD,
    params:
        url=DATA["cifar10"]["url"],
        md5=DATA["cifar10"]["md5"],
        max_mb=DATA["cifar10"]["download_max_mb"],
        deadline_s=DATA["cifar10"]["download_deadline_s"],
        code=code("attnlab.data.cifar10", cli="attnlab.data.__main__"),
    log:
        "results/logs/download_cifar10.log",
    benchmark:
        "results/benchmarks/download_cifar10/download_cifar10.tsv"
    threads: 1
    resources:
        mem_mb=1000,
        runtime=60,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download_cifar10.py"


rule prepare_cifar10:
    input:
        source=cifar10_source,
    output:
        train="results/data/cifar10/train.pt",
        test="results/data/cifar10/test.pt",
        manifest="results/data/cifar10/manifest.json",
    params:
        md5=cifar10_md5(DATA["cifar10"]),
        sha256=DATA["cifar10"]["sha256"],
        code=code("attnlab.data.cifar10", cli="attnlab.data.__main__"),
    log:
        "results/logs/prepare_cifar10.log",
    benchmark:
        "results/benchmarks/prepare_cifar10/prepare_cifar10.tsv"
    threads: 2
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/prepare_cifar10.py"


rule download_shakespeare:
    output:
        SHAKESPEARE_DOWNLOAD,
    params:
        url=DATA["shakespeare"]["url"],
        sha256=DATA["shakespeare"]["sha256"],
        max_mb=DATA["shakespeare"]["download_max_mb"],
        deadline_s=DATA["shakespeare"]["download_deadline_s"],
        code=code("attnlab.data.shakespeare", cli="attnlab.data.__main__"),
    log:
        "results/logs/download_shakespeare.log",
    benchmark:
        "results/benchmarks/download_shakespeare/download_shakespeare.tsv"
    threads: 1
    resources:
        mem_mb=500,
        runtime=10,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/download_shakespeare.py"


rule build_vocab:
    input:
        text=shakespeare_text,
    output:
        vocab="results/data/shakespeare/vocab.json",
        dialogues="results/data/shakespeare/dialogues.pt",
        report="results/data/shakespeare/vocab_report.json",
        lengths=report("results/data/shakespeare/lengths.png", caption="../../report/lengths.rst",
                       category="Data"),
        val_text="results/data/shakespeare/val.txt",
    params:
        sha256=DATA["shakespeare"]["sha256"],
        code=code("attnlab.data.vocab", cli="attnlab.data.__main__"),
        # the stage's flat section: the split keys of data.shakespeare + data.tokenizer
        section={
            **{k: DATA["shakespeare"][k] for k in ("val_fraction", "seed")},
            **DATA["tokenizer"],
        },
    log:
        "results/logs/build_vocab.log",
    benchmark:
        "results/benchmarks/build_vocab/build_vocab.tsv"
    threads: 1
    resources:
        mem_mb=4000,
        runtime=30,
    conda:
        "../../envs/data.yaml"
    script:
        "../scripts/build_vocab.py"
