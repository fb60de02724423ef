# Data: CIFAR-10 and tiny-shakespeare, from the official URLs or offline `path`s.
#
# With data.<set>.path set, the preparing rule reads that path directly (the
# input functions cifar10_source / shakespeare_text in common.smk pick it), so
# the download rule drops out of the DAG.

def _is_official_tarball(path):
    """Whether ``path`` is a tarball whose first file is one of the official batch files.

    Reads only the first member headers (the official tarball starts with its
    batch files), so the DAG is not slowed by reading the data.
    """
    import tarfile

    path = Path(path)
    if not path.is_file() or not tarfile.is_tarfile(path):
        return False
    try:
        with tarfile.open(path, mode="r|*") as tf:
            for member in tf:
                if member.isfile():
                    return Path(member.name).name in {*(f"data_batch_{i}" for i in range(1, 6)), "test_batch",
                                                      "batches.meta", "readme.html"}
    except (tarfile.TarError, EOFError, OSError):
        return False  # the prepare job names what is wrong with it
    return False


def cifar10_md5():
    """data.cifar10.md5 where it applies: the download, or a `path` that is the official tarball.

    It is the official tarball's checksum; for any other source the stage
    refuses an md5, and data.cifar10.sha256 verifies that source instead.
    """
    md5, path = DATA["cifar10"]["md5"], DATA["cifar10"]["path"]
    return md5 if path is None or _is_official_tarball(path) else None


rule download_cifar10:
    output:
        CIFAR_DOWNLOAD,
    params:
        url=DATA["cifar10"]["url"],
        md5=DATA["cifar10"]["md5"],
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
    input:
        pkg_sources("attnlab.data.cifar10", cli="attnlab.data.__main__"),
    script:
        "../scripts/download_cifar10.py"


rule prepare_cifar10:
    input:
        source=cifar10_source,
        code=pkg_sources("attnlab.data.cifar10", cli="attnlab.data.__main__"),
    output:
        train="results/data/cifar10/train.pt",
        test="results/data/cifar10/test.pt",
        manifest="results/data/cifar10/manifest.json",
    params:
        md5=cifar10_md5(),
        sha256=DATA["cifar10"]["sha256"],
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
    input:
        pkg_sources("attnlab.data.shakespeare", cli="attnlab.data.__main__"),
    script:
        "../scripts/download_shakespeare.py"


rule build_vocab:
    input:
        text=shakespeare_text,
        code=pkg_sources("attnlab.data.vocab", cli="attnlab.data.__main__"),
    output:
        vocab="results/data/shakespeare/vocab.json",
        dialogues="results/data/shakespeare/dialogues.pt",
        report="results/data/shakespeare/vocab_report.json",
        lengths="results/data/shakespeare/lengths.png",
        val_text="results/data/shakespeare/val.txt",
    params:
        sha256=DATA["shakespeare"]["sha256"],
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
